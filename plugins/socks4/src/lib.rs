//! pmmux plugin `socks4`: matches a client whose first bytes are a SOCKS4 or SOCKS4a request
//! (CONNECT or BIND). Takes no params.
//!
//! The request: `VN = 4`, `CD` 1 (CONNECT) or 2 (BIND), `DSTPORT` (2 bytes, big-endian), `DSTIP`
//! (4 bytes), `USERID` terminated by NUL; with SOCKS4a, a `DSTIP` of `0.0.0.x` (x ≠ 0) means a
//! NUL-terminated domain name follows the user id.
//!
//! Properties on a match:
//! * `socks4.command`: `connect` or `bind`;
//! * `socks4.host`: the destination, an IPv4 address or (SOCKS4a) the domain name as sent;
//! * `socks4.port`: the destination port.
//!
//! The backend answers `NeedMore` until the terminating NULs are there and `NoMatch` from the first
//! byte that rules a request out: another version or command, a user id or domain with control
//! bytes or longer than 255 bytes, or an empty domain.

use pmmux_plugin_api::{export_plugin, Backend, BackendSpec, ConnInfo, Detection, Property};
use std::net::Ipv4Addr;

/// The protocol version byte of SOCKS4.
pub const VERSION: u8 = 4;
/// The longest user id or domain name accepted, without its NUL.
pub const MAX_FIELD: usize = 255;
/// Bytes before the user id: VN, CD, DSTPORT, DSTIP.
const HEADER: usize = 8;

/// A `socks4` backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct Socks4;

impl Socks4 {
    /// Builds the backend; `socks4` has no params, so any given are an error.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        spec.no_params()?;
        Ok(Socks4)
    }
}

/// The command of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// CD = 1.
    Connect,
    /// CD = 2.
    Bind,
}

impl Command {
    /// The name used in the `socks4.command` property.
    pub fn name(self) -> &'static str {
        match self {
            Command::Connect => "connect",
            Command::Bind => "bind",
        }
    }
}

/// A whole request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// CONNECT or BIND.
    pub command: Command,
    /// The destination port.
    pub port: u16,
    /// The destination: an IPv4 address, or the SOCKS4a domain name.
    pub host: String,
    /// The user id, as sent (often empty).
    pub user_id: Vec<u8>,
}

/// The outcome of parsing a request from the bytes seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// A whole request.
    Complete(Request),
    /// A valid prefix of a request.
    Incomplete,
    /// Not a SOCKS4 request.
    Invalid,
}

/// A NUL-terminated field starting at `start`: `Ok(Some((bytes, end)))` when its NUL is there
/// (`end` is just past it), `Ok(None)` while it is still arriving, `Err(())` when invalid.
fn field(preview: &[u8], start: usize) -> Result<Option<(&[u8], usize)>, ()> {
    let rest = preview.get(start..).unwrap_or_default();
    for (i, &b) in rest.iter().enumerate() {
        if b == 0 {
            return Ok(rest.get(..i).map(|f| (f, start + i + 1)));
        }
        if i >= MAX_FIELD || b < 0x20 || b == 0x7f {
            return Err(());
        }
    }
    Ok(None)
}

/// Parses the request at the start of `preview`.
pub fn parse_request(preview: &[u8]) -> Parse {
    let byte = |i: usize| preview.get(i).copied();
    match byte(0) {
        None => return Parse::Incomplete,
        Some(VERSION) => {}
        Some(_) => return Parse::Invalid,
    }
    let command = match byte(1) {
        None => return Parse::Incomplete,
        Some(1) => Command::Connect,
        Some(2) => Command::Bind,
        Some(_) => return Parse::Invalid,
    };
    let Some(&[_, _, p0, p1, a, b, c, d]) = preview.get(..HEADER) else {
        return Parse::Incomplete;
    };
    let port = u16::from_be_bytes([p0, p1]);
    let (user_id, end) = match field(preview, HEADER) {
        Err(()) => return Parse::Invalid,
        Ok(None) => return Parse::Incomplete,
        Ok(Some(found)) => found,
    };
    let host = if a == 0 && b == 0 && c == 0 && d != 0 {
        match field(preview, end) {
            Err(()) => return Parse::Invalid,
            Ok(None) => return Parse::Incomplete,
            Ok(Some((domain, _))) if domain.is_empty() || domain.contains(&b' ') => return Parse::Invalid,
            Ok(Some((domain, _))) => String::from_utf8_lossy(domain).into_owned(),
        }
    } else {
        Ipv4Addr::new(a, b, c, d).to_string()
    };
    Parse::Complete(Request {
        command,
        port,
        host,
        user_id: user_id.to_vec(),
    })
}

/// The detection itself, over the bytes seen so far.
pub fn detect(preview: &[u8]) -> Detection {
    match parse_request(preview) {
        Parse::Complete(request) => Detection::Match(vec![
            Property::new("socks4.command", request.command.name()),
            Property::new("socks4.host", request.host),
            Property::new("socks4.port", request.port.to_string()),
        ]),
        Parse::Incomplete => Detection::NeedMore,
        Parse::Invalid => Detection::NoMatch,
    }
}

impl Backend for Socks4 {
    fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
        detect(preview)
    }
}

export_plugin! {
    name: "socks4",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "socks4" => Socks4::new },
}
