//! pmmux plugin `smb`: matches an SMB client by its first message, a NEGOTIATE request over direct
//! TCP (port 445 style: MS-SMB2 §2.1, a 4-byte header of a zero byte and a 24-bit big-endian
//! length, then the SMB message). Detection only: matched connections are forwarded to the
//! backend's `target`.
//!
//! * SMB1 (MS-CIFS §2.2.4.52.1): the `\xFFSMB` header with command `SMB_COM_NEGOTIATE` (0x72), the
//!   reply flag clear, `WordCount` 0 and a `ByteCount` that fills the message exactly, the dialect
//!   strings starting with their 0x02 buffer format. Clients that also speak SMB2 send this
//!   "multi-protocol" negotiate listing `SMB 2.002` and `SMB 2.???`: it is reported as `smb1`.
//! * SMB2/3 (MS-SMB2 §2.2.1.2 and §2.2.3): the 64-byte `\xFESMB` sync header with command
//!   NEGOTIATE (0), the server-to-redirector flag clear, then a NEGOTIATE request of structure size
//!   36 with 1 to 64 dialects, each 0x02xx or 0x03xx.
//!
//! The verdict comes once these fixed parts are in (40 bytes for SMB1, 104 plus the dialects for
//! SMB2), without waiting for negotiate contexts. Messages are at most 65 535 bytes here, so the
//! length's first byte is 0 too: anything not starting with two zero bytes is refused at once.
//!
//! Params (optional): `dialect`, `"smb1"` or `"smb2"` (`"smb3"` is the same header as `"smb2"`) or a
//! list, to match only those.
//!
//! Property on a match: `smb.dialect`, `smb1` or `smb2` (SMB 2 and 3 share the `\xFESMB` header).

use pmmux_plugin_api::{export_plugin, Backend, BackendSpec, ConnInfo, Detection, Property};
use serde::Deserialize;

/// The longest message accepted (a NEGOTIATE request is far smaller).
pub const MAX_MESSAGE_LEN: usize = 0xffff;
/// The most SMB2 dialects accepted in one NEGOTIATE request.
pub const MAX_DIALECTS: usize = 64;

/// Which SMB header the NEGOTIATE came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `\xFFSMB`.
    Smb1,
    /// `\xFESMB` (SMB 2.x and 3.x).
    Smb2,
}

impl Dialect {
    /// The `smb.dialect` value.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Smb1 => "smb1",
            Dialect::Smb2 => "smb2",
        }
    }
}

/// What the first bytes of a connection say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// An SMB NEGOTIATE request.
    Complete(Dialect),
    /// Valid so far; more bytes are needed.
    Incomplete,
    /// Not an SMB NEGOTIATE request, with the reason.
    Invalid(&'static str),
}

/// Checks `preview[at..]` against `expected` as far as the bytes go.
fn prefix_ok(preview: &[u8], at: usize, expected: &[u8]) -> bool {
    let seen = preview.get(at..).unwrap_or_default();
    let n = seen.len().min(expected.len());
    seen.get(..n) == expected.get(..n)
}

fn le16(preview: &[u8], at: usize) -> Option<usize> {
    let bytes = preview.get(at..at + 2)?;
    Some(usize::from(u16::from_le_bytes([*bytes.first()?, *bytes.get(1)?])))
}

fn byte(preview: &[u8], at: usize) -> Option<u8> {
    preview.get(at).copied()
}

/// Parses the start of a connection as an SMB NEGOTIATE request.
pub fn parse(preview: &[u8]) -> Parse {
    if !prefix_ok(preview, 0, &[0, 0]) {
        return Parse::Invalid("not a session message of at most 65 535 bytes");
    }
    let smb1 = prefix_ok(preview, 4, b"\xffSMB");
    let smb2 = prefix_ok(preview, 4, b"\xfeSMB");
    if !smb1 && !smb2 {
        return Parse::Invalid("no SMB protocol identifier");
    }
    let Some(len) = preview
        .get(1..4)
        .map(|b| b.iter().fold(0usize, |acc, &x| acc << 8 | usize::from(x)))
    else {
        return Parse::Incomplete;
    };
    // Both identifiers match while only the length is in: decide once the fifth byte arrives.
    match preview.get(4) {
        None => Parse::Incomplete,
        Some(0xff) => parse_smb1(preview, len),
        Some(_) => parse_smb2(preview, len),
    }
}

/// After `\xFFSMB`: MS-CIFS §2.2.3.1 header, then the NEGOTIATE parameters and data.
fn parse_smb1(preview: &[u8], len: usize) -> Parse {
    const HEADER: usize = 4 + 32;
    if len < 32 + 3 + 2 {
        return Parse::Invalid("too short for an SMB1 NEGOTIATE");
    }
    if byte(preview, 8).is_some_and(|c| c != 0x72) {
        return Parse::Invalid("SMB1 command is not NEGOTIATE");
    }
    if byte(preview, 13).is_some_and(|flags| flags & 0x80 != 0) {
        return Parse::Invalid("SMB1 reply flag set");
    }
    if byte(preview, HEADER).is_some_and(|words| words != 0) {
        return Parse::Invalid("SMB1 NEGOTIATE WordCount is not 0");
    }
    let Some(byte_count) = le16(preview, HEADER + 1) else {
        return Parse::Incomplete;
    };
    if 32 + 3 + byte_count != len {
        return Parse::Invalid("SMB1 ByteCount does not fill the message");
    }
    match byte(preview, HEADER + 3) {
        None => Parse::Incomplete,
        Some(0x02) => Parse::Complete(Dialect::Smb1),
        Some(_) => Parse::Invalid("SMB1 dialect without its 0x02 buffer format"),
    }
}

/// After `\xFESMB`: the MS-SMB2 §2.2.1.2 sync header, then the §2.2.3 NEGOTIATE request.
fn parse_smb2(preview: &[u8], len: usize) -> Parse {
    const HEADER: usize = 4 + 64;
    const NEGOTIATE: usize = 36;
    if len < 64 + NEGOTIATE + 2 {
        return Parse::Invalid("too short for an SMB2 NEGOTIATE");
    }
    let checks: [(usize, &[u8], &'static str); 3] = [
        (8, &[64, 0], "SMB2 header StructureSize is not 64"),
        (16, &[0, 0], "SMB2 command is not NEGOTIATE"),
        (HEADER, &[36, 0], "SMB2 NEGOTIATE StructureSize is not 36"),
    ];
    for (at, expected, why) in checks {
        if !prefix_ok(preview, at, expected) {
            return Parse::Invalid(why);
        }
    }
    if byte(preview, 20).is_some_and(|flags| flags & 0x01 != 0) {
        return Parse::Invalid("SMB2 server-to-redirector flag set");
    }
    let Some(count) = le16(preview, HEADER + 2) else {
        return Parse::Incomplete;
    };
    if !(1..=MAX_DIALECTS).contains(&count) {
        return Parse::Invalid("SMB2 DialectCount out of range");
    }
    if 64 + NEGOTIATE + 2 * count > len {
        return Parse::Invalid("SMB2 dialects beyond the message");
    }
    for i in 0..count {
        let at = HEADER + NEGOTIATE + 2 * i;
        match byte(preview, at + 1) {
            Some(2 | 3) => {}
            Some(_) => return Parse::Invalid("SMB2 dialect is not 2.x or 3.x"),
            None => return Parse::Incomplete,
        }
    }
    Parse::Complete(Dialect::Smb2)
}

/// The backend's `[backend.params]`, as written by the user.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// `smb1` and/or `smb2`: the only headers matched.
    #[serde(default, deserialize_with = "pmmux_plugin_api::params::string_or_list")]
    pub dialect: Option<Vec<String>>,
}

/// An `smb` backend.
#[derive(Debug, Clone)]
pub struct Smb {
    dialects: Vec<Dialect>,
}

impl Smb {
    /// Builds the backend from its params; the error tells the user what is wrong with them.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        let params: Params = spec.params()?;
        let dialects = match params.dialect {
            None => vec![Dialect::Smb1, Dialect::Smb2],
            Some(list) if list.is_empty() => {
                return Err("`dialect` is an empty list: omit it to match both".into());
            }
            Some(list) => list
                .iter()
                .map(|d| match d.to_ascii_lowercase().as_str() {
                    "smb1" => Ok(Dialect::Smb1),
                    "smb2" | "smb3" => Ok(Dialect::Smb2),
                    _ => Err(format!("`dialect`: unknown `{d}` (use \"smb1\" or \"smb2\")")),
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Smb { dialects })
    }

    /// Detection over the bytes previewed so far.
    pub fn detect_stream(&self, preview: &[u8]) -> Detection {
        match parse(preview) {
            Parse::Complete(dialect) if self.dialects.contains(&dialect) => {
                Detection::Match(vec![Property::new("smb.dialect", dialect.name())])
            }
            Parse::Complete(_) | Parse::Invalid(_) => Detection::NoMatch,
            Parse::Incomplete => Detection::NeedMore,
        }
    }
}

impl Backend for Smb {
    fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
        self.detect_stream(preview)
    }
}

export_plugin! {
    name: "smb",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "smb" => Smb::new },
}
