//! pmmux plugin `socks5`: matches a client whose first bytes are a SOCKS5 method-selection greeting
//! (RFC 1928 §3): `VER = 5`, `NMETHODS >= 1`, then that many method bytes. Takes no params.
//!
//! Property on a match:
//! * `socks5.methods`: the offered authentication methods in the order sent, comma-separated:
//!   `none` (0x00), `gssapi` (0x01), `username-password` (0x02, RFC 1929), else `0xNN`.
//!
//! The backend answers `NeedMore` until the whole greeting is there and `NoMatch` from the first
//! byte that rules it out: a version other than 5, zero methods, a method of 0xFF ("no acceptable
//! methods" is a server's answer, never a client's offer), a method IANA has not assigned (0x0A to
//! 0x7F; 0x80 to 0xFE are for private use), or a method offered twice; a whole greeting without a
//! standard method (0x00 to 0x09) is refused too. Real clients offer one to three of `none`,
//! `gssapi` and `username-password`; without these checks one random first segment in 670 matched.
//! Bytes after the greeting (a client sending its request optimistically) do not change the verdict.

use pmmux_plugin_api::{export_plugin, Backend, BackendSpec, ConnInfo, Detection, Property};

/// The protocol version byte of SOCKS5.
pub const VERSION: u8 = 5;
/// Method 0xFF, "no acceptable methods": only a server sends it.
const NO_ACCEPTABLE: u8 = 0xff;
/// The methods IANA has assigned: `none` (0) to "JSON Parameter Block" (9).
const STANDARD: std::ops::RangeInclusive<u8> = 0x00..=0x09;
/// The methods reserved for private use.
const PRIVATE: std::ops::RangeInclusive<u8> = 0x80..=0xfe;

/// A `socks5` backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct Socks5;

impl Socks5 {
    /// Builds the backend; `socks5` has no params, so any given are an error.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        spec.no_params()?;
        Ok(Socks5)
    }
}

/// The outcome of parsing a greeting from the bytes seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Greeting {
    /// A whole greeting: the offered methods, in order.
    Complete(Vec<u8>),
    /// A valid prefix of a greeting.
    Incomplete,
    /// Not a SOCKS5 greeting.
    Invalid,
}

/// Parses the greeting at the start of `preview`.
pub fn parse_greeting(preview: &[u8]) -> Greeting {
    let Some((&version, rest)) = preview.split_first() else {
        return Greeting::Incomplete;
    };
    if version != VERSION {
        return Greeting::Invalid;
    }
    let Some((&count, rest)) = rest.split_first() else {
        return Greeting::Incomplete;
    };
    if count == 0 {
        return Greeting::Invalid;
    }
    let available = rest.get(..usize::from(count)).unwrap_or(rest);
    let mut seen = [false; 256];
    for &method in available {
        let offerable = method != NO_ACCEPTABLE && (STANDARD.contains(&method) || PRIVATE.contains(&method));
        if !offerable || std::mem::replace(&mut seen[usize::from(method)], true) {
            return Greeting::Invalid;
        }
    }
    if available.len() < usize::from(count) {
        return Greeting::Incomplete;
    }
    if !available.iter().any(|m| STANDARD.contains(m)) {
        return Greeting::Invalid;
    }
    Greeting::Complete(available.to_vec())
}

/// The name of an authentication method, as in the `socks5.methods` property.
pub fn method_name(method: u8) -> String {
    match method {
        0x00 => "none".to_owned(),
        0x01 => "gssapi".to_owned(),
        0x02 => "username-password".to_owned(),
        other => format!("0x{other:02x}"),
    }
}

/// The detection itself, over the bytes seen so far.
pub fn detect(preview: &[u8]) -> Detection {
    match parse_greeting(preview) {
        Greeting::Complete(methods) => {
            let names: Vec<String> = methods.iter().map(|&m| method_name(m)).collect();
            Detection::Match(vec![Property::new("socks5.methods", names.join(","))])
        }
        Greeting::Incomplete => Detection::NeedMore,
        Greeting::Invalid => Detection::NoMatch,
    }
}

impl Backend for Socks5 {
    fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
        detect(preview)
    }
}

export_plugin! {
    name: "socks5",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "socks5" => Socks5::new },
}
