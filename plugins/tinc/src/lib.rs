//! pmmux plugin `tinc`: matches a tinc daemon connecting to a peer, by the ID line it sends first:
//! `0 <name> 17\n` (tinc 1.0, protocol 17) or `0 <name> 17.<minor>\n` (tinc 1.1, e.g. `17.7`), where
//! `0` is the ID request and `<name>` a node name of letters, digits and `_` (tinc's `check_id`).
//! tinc 1.1 invitations (`0 ?<cookie> 17.1\n`, sent by `tinc join`) match too. Takes no params.
//!
//! This is what sslh's `tinc` probe matches (it only looks for `0 `), checked to the end of the
//! line so that other protocols starting with `0 ` are refused. The backend answers `NeedMore`
//! until the line ends and `NoMatch` at the first byte that cannot belong to an ID line (HTTP, TLS
//! and SSH are refused from their first byte), or when the line exceeds [`MAX_LINE`] bytes.
//!
//! Properties on a match:
//! * `tinc.name`: the node name (absent for an invitation);
//! * `tinc.invitation`: `yes` for an invitation (absent otherwise);
//! * `tinc.protocol`: the protocol version as sent, `17` or `17.<minor>`.

use pmmux_plugin_api::{export_plugin, Backend, BackendSpec, ConnInfo, Detection, Property};

/// The longest ID line accepted, newline included (tinc's own request buffer holds 2048 bytes).
pub const MAX_LINE: usize = 2048;
/// The only protocol major version tinc 1.0 and 1.1 speak.
const MAJOR: &[u8] = b"17";

/// A `tinc` backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tinc;

impl Tinc {
    /// Builds the backend; `tinc` has no params, so any given are an error.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        spec.no_params()?;
        Ok(Tinc)
    }
}

/// A parsed ID line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdLine {
    /// The node name, or an invitation's cookie (without its `?`).
    pub name: String,
    /// Whether this is an invitation (`0 ?<cookie> ...`).
    pub invitation: bool,
    /// The protocol version as sent: `17` or `17.<minor>`.
    pub protocol: String,
}

/// The outcome of parsing the bytes seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// A whole ID line.
    Complete(IdLine),
    /// Consistent with an ID line so far.
    Incomplete,
    /// Not an ID line, with the reason.
    Invalid(&'static str),
}

fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Characters of an invitation cookie (base64 in either alphabet).
fn cookie_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'=')
}

/// Parses the ID line at the start of `preview`; bytes after its newline are ignored.
pub fn parse(preview: &[u8]) -> Parse {
    let line_end = preview.iter().position(|&b| b == b'\n');
    let line = match line_end {
        Some(end) => preview.get(..end).unwrap_or_default(),
        None => preview,
    };
    if line.len() >= MAX_LINE {
        return Parse::Invalid("line longer than an ID line");
    }
    // Request number and separator.
    for (i, &want) in b"0 ".iter().enumerate() {
        match line.get(i) {
            Some(&b) if b == want => {}
            Some(_) => return Parse::Invalid("does not start with `0 ` (ID request)"),
            None => return incomplete(line_end),
        }
    }
    let rest = line.get(2..).unwrap_or_default();
    let (invitation, rest) = match rest.split_first() {
        Some((b'?', cookie)) => (true, cookie),
        _ => (false, rest),
    };
    let valid = if invitation { cookie_byte } else { name_byte };
    let name_len = rest.iter().take_while(|&&b| valid(b)).count();
    let Some((&after, version)) = rest.get(name_len..).and_then(<[u8]>::split_first) else {
        return incomplete(line_end);
    };
    if name_len == 0 {
        return Parse::Invalid("empty node name");
    }
    if after != b' ' {
        return Parse::Invalid("invalid character in the node name");
    }
    // `17`, then nothing or `.` and digits.
    for (i, &want) in MAJOR.iter().enumerate() {
        match version.get(i) {
            Some(&b) if b == want => {}
            Some(_) => return Parse::Invalid("protocol major version is not 17"),
            None => return incomplete(line_end),
        }
    }
    match version.get(MAJOR.len()..).unwrap_or_default() {
        [] => {}
        [b'.', minor @ ..] => {
            if !minor.iter().all(u8::is_ascii_digit) {
                return Parse::Invalid("protocol minor version is not a number");
            }
            if minor.is_empty() && line_end.is_some() {
                return Parse::Invalid("protocol minor version is empty");
            }
        }
        _ => return Parse::Invalid("protocol major version is not 17"),
    }
    if line_end.is_none() {
        return Parse::Incomplete;
    }
    let name = rest.get(..name_len).unwrap_or_default();
    Parse::Complete(IdLine {
        name: String::from_utf8_lossy(name).into_owned(),
        invitation,
        protocol: String::from_utf8_lossy(version).into_owned(),
    })
}

/// The line ended (or not) where more was expected.
fn incomplete(line_end: Option<usize>) -> Parse {
    if line_end.is_some() {
        Parse::Invalid("ID line ends early")
    } else {
        Parse::Incomplete
    }
}

/// The host's answer for `preview`, with the properties of a match.
pub fn detect(preview: &[u8]) -> Detection {
    match parse(preview) {
        Parse::Complete(id) => {
            let mut props = Vec::with_capacity(2);
            if id.invitation {
                props.push(Property::new("tinc.invitation", "yes"));
            } else {
                props.push(Property::new("tinc.name", id.name));
            }
            props.push(Property::new("tinc.protocol", id.protocol));
            Detection::Match(props)
        }
        Parse::Incomplete => Detection::NeedMore,
        Parse::Invalid(_) => Detection::NoMatch,
    }
}

impl Backend for Tinc {
    fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
        detect(preview)
    }
}

export_plugin! {
    name: "tinc",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "tinc" => Tinc::new },
}
