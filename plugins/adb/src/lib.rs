//! pmmux plugin `adb`: matches an Android Debug Bridge host connecting to a device over TCP (as
//! `adb connect HOST:PORT` does), by the `CNXN` message it sends first. Takes no params.
//!
//! An adb message (adb's protocol.txt, "ADB protocol") is a 24-byte header of six little-endian
//! 32-bit words: `command` (`CNXN` = 0x4e584e43), `arg0` (the protocol version, 0x01000000 or
//! 0x01000001), `arg1` (the largest payload the sender takes), `data_length`, `data_check` (a
//! checksum that version 0x01000001 no longer verifies, so it is not checked here) and `magic`
//! (`command ^ 0xffffffff`), followed by `data_length` bytes of payload. A host's `CNXN` payload
//! is its system identity, `host::<banner>` (e.g. `host::features=shell_v2,cmd,...`).
//!
//! As sslh does, the payload must start with `host:`, and a `CNXN` preceded by one empty 24-byte
//! message (all zero, sent first by some adb versions) matches too. The backend answers `NeedMore`
//! until the whole message (header and payload) is there, and `NoMatch` at the first field that
//! rules it out (HTTP, TLS and SSH from their first byte). A payload longer than [`MAX_DATA`]
//! bytes is refused.
//!
//! Properties on a match:
//! * `adb.version`: `arg0` in hex (`0x01000001`);
//! * `adb.banner`: the system identity up to its first NUL (`host::features=...`), at most
//!   [`MAX_BANNER`] bytes, non-UTF-8 bytes replaced.

use pmmux_plugin_api::{export_plugin, Backend, BackendSpec, ConnInfo, Detection, Property};

/// `CNXN` as it appears on the wire.
const CNXN: &[u8; 4] = b"CNXN";
/// The identity prefix of an adb host (sslh checks the same).
const HOST: &[u8] = b"host:";
/// Size of a message header.
pub const HEADER: usize = 24;
/// The largest `CNXN` payload accepted (real ones are a few hundred bytes).
pub const MAX_DATA: usize = 4096;
/// The longest `adb.banner` reported.
pub const MAX_BANNER: usize = 1024;
/// The protocol versions adb has used: `A_VERSION_MIN` and `A_VERSION` (with checksums skipped).
const VERSIONS: [u32; 2] = [0x0100_0000, 0x0100_0001];

/// An `adb` backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct Adb;

impl Adb {
    /// Builds the backend; `adb` has no params, so any given are an error.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        spec.no_params()?;
        Ok(Adb)
    }
}

/// A parsed `CNXN` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// `arg0`: the protocol version.
    pub version: u32,
    /// `arg1`: the largest payload the host accepts.
    pub max_data: u32,
    /// The system identity, up to its first NUL.
    pub identity: Vec<u8>,
}

/// The outcome of parsing the bytes seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// A whole `CNXN` message from a host.
    Complete(Connect),
    /// Consistent with one so far.
    Incomplete,
    /// Not one, with the reason.
    Invalid(&'static str),
}

/// The little-endian word at `at`, if all its bytes are there.
fn word(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

/// True when `have` is consistent with the start of `want`.
fn prefix_ok(have: &[u8], want: &[u8]) -> bool {
    let n = have.len().min(want.len());
    have.get(..n) == want.get(..n)
}

/// Parses the stream seen so far.
pub fn parse(preview: &[u8]) -> Parse {
    let Some(&first) = preview.first() else {
        return Parse::Incomplete;
    };
    if first == 0 {
        // One empty message first: 24 zero bytes, then the CNXN.
        let zeros = preview.iter().take(HEADER).take_while(|&&b| b == 0).count();
        if zeros < preview.len().min(HEADER) {
            return Parse::Invalid("leading message is not an empty one");
        }
        return match preview.get(HEADER..) {
            Some(rest) if !rest.is_empty() => match parse_message(rest) {
                Parse::Invalid(_) if rest.first() == Some(&0) => Parse::Invalid("more than one empty message"),
                other => other,
            },
            _ => Parse::Incomplete,
        };
    }
    parse_message(preview)
}

/// Parses a `CNXN` message at the start of `msg`.
fn parse_message(msg: &[u8]) -> Parse {
    if !prefix_ok(msg, CNXN) {
        return Parse::Invalid("command is not CNXN");
    }
    let version = word(msg, 4);
    if version.is_some_and(|v| !VERSIONS.contains(&v)) {
        return Parse::Invalid("unknown protocol version");
    }
    if word(msg, 8) == Some(0) {
        return Parse::Invalid("maximum payload size is 0");
    }
    let data_length = word(msg, 12).map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    if data_length.is_some_and(|n| !(HOST.len()..=MAX_DATA).contains(&n)) {
        return Parse::Invalid("payload length outside what a CNXN takes");
    }
    if word(msg, 20).is_some_and(|m| m != u32::from_le_bytes(*CNXN) ^ u32::MAX) {
        return Parse::Invalid("magic is not the command's complement");
    }
    let payload = msg.get(HEADER..).unwrap_or_default();
    if !prefix_ok(payload, HOST) {
        return Parse::Invalid("system identity does not start with `host:`");
    }
    let (Some(version), Some(max_data), Some(data_length)) = (version, word(msg, 8), data_length) else {
        return Parse::Incomplete;
    };
    let Some(data) = payload.get(..data_length) else {
        return Parse::Incomplete;
    };
    let identity = data.iter().take_while(|&&b| b != 0).copied().collect();
    Parse::Complete(Connect {
        version,
        max_data,
        identity,
    })
}

/// The host's answer for `preview`, with the properties of a match.
pub fn detect(preview: &[u8]) -> Detection {
    match parse(preview) {
        Parse::Complete(connect) => {
            let banner = connect.identity.get(..MAX_BANNER).unwrap_or(&connect.identity);
            Detection::Match(vec![
                Property::new("adb.version", format!("{:#010x}", connect.version)),
                Property::new("adb.banner", String::from_utf8_lossy(banner).into_owned()),
            ])
        }
        Parse::Incomplete => Detection::NeedMore,
        Parse::Invalid(_) => Detection::NoMatch,
    }
}

impl Backend for Adb {
    fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
        detect(preview)
    }
}

export_plugin! {
    name: "adb",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "adb" => Adb::new },
}
