//! pmmux plugin `syslog`: matches a client whose first bytes are a syslog message over TCP, RFC 5424
//! or RFC 3164 (BSD): `<PRI>` with PRI 0..=191, optionally preceded by an RFC 6587 octet count
//! (`123 <PRI>...`); non-transparent framing (messages ended by LF) needs no prefix. Takes no params.
//!
//! Properties on a match:
//! * `syslog.facility`: the facility name (`kern`, `user`, `mail`, `daemon`, `auth`, `syslog`, `lpr`,
//!   `news`, `uucp`, `cron`, `authpriv`, `ftp`, `ntp`, `audit`, `alert`, `clock`, `local0`..`local7`);
//! * `syslog.severity`: `emerg`, `alert`, `crit`, `err`, `warning`, `notice`, `info` or `debug`.
//!
//! The backend decides on the byte after `>` (which must be printable: a version digit, a timestamp or
//! text); it answers `NoMatch` from the first byte that rules a message out: anything but a digit or
//! `<` first, an octet count with a leading zero or over 9 digits, a PRI with a leading zero, over 3
//! digits or above 191.

use pmmux_plugin_api::{export_plugin, Backend, BackendSpec, ConnInfo, Detection, Property, UdpRouting};

/// The highest PRI value (facility 23, severity 7).
pub const MAX_PRI: u16 = 191;
/// The most digits accepted in an RFC 6587 octet count.
const MAX_COUNT_DIGITS: usize = 9;

const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp", "ntp",
    "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];
const SEVERITIES: [&str; 8] = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];

/// A `syslog` backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct Syslog;

impl Syslog {
    /// Builds the backend; `syslog` has no params, so any given are an error.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        spec.no_params()?;
        Ok(Syslog)
    }
}

/// The start of a syslog message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The RFC 6587 octet count, when the message is framed by one.
    pub octet_count: Option<u32>,
    /// The PRI value, 0..=191.
    pub pri: u16,
}

impl Header {
    /// The facility name (PRI / 8).
    pub fn facility(&self) -> &'static str {
        FACILITIES.get(usize::from(self.pri / 8)).copied().unwrap_or("unknown")
    }

    /// The severity name (PRI % 8).
    pub fn severity(&self) -> &'static str {
        SEVERITIES.get(usize::from(self.pri % 8)).copied().unwrap_or("unknown")
    }
}

/// The outcome of parsing the bytes seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// A header followed by a printable byte.
    Complete(Header),
    /// A valid prefix.
    Incomplete,
    /// Not syslog.
    Invalid,
}

/// Parses the start of `preview`.
pub fn parse(preview: &[u8]) -> Parse {
    let mut rest = preview;
    let mut octet_count = None;
    if rest.first().is_some_and(u8::is_ascii_digit) {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if rest.first() == Some(&b'0') || digits > MAX_COUNT_DIGITS {
            return Parse::Invalid;
        }
        let (count, after) = rest.split_at(digits);
        match after.first() {
            None => return Parse::Incomplete,
            Some(b' ') => {}
            Some(_) => return Parse::Invalid,
        }
        octet_count = Some(count.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')));
        rest = after.get(1..).unwrap_or_default();
    }
    match rest.first() {
        None => return Parse::Incomplete,
        Some(b'<') => {}
        Some(_) => return Parse::Invalid,
    }
    let rest = rest.get(1..).unwrap_or_default();
    let digits = rest.iter().take(4).take_while(|b| b.is_ascii_digit()).count();
    if digits > 3 || (digits > 1 && rest.first() == Some(&b'0')) {
        return Parse::Invalid;
    }
    let (pri, after) = rest.split_at(digits);
    let pri = pri.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if pri > MAX_PRI {
        return Parse::Invalid;
    }
    match after.first() {
        None => return Parse::Incomplete,
        Some(b'>') if digits > 0 => {}
        Some(_) => return Parse::Invalid,
    }
    match after.get(1) {
        None => Parse::Incomplete,
        Some(&b) if (0x20..0x7f).contains(&b) => Parse::Complete(Header { octet_count, pri }),
        Some(_) => Parse::Invalid,
    }
}

/// The detection itself, over the bytes seen so far.
pub fn detect(preview: &[u8]) -> Detection {
    match parse(preview) {
        Parse::Complete(header) => Detection::Match(vec![
            Property::new("syslog.facility", header.facility()),
            Property::new("syslog.severity", header.severity()),
        ]),
        Parse::Incomplete => Detection::NeedMore,
        Parse::Invalid => Detection::NoMatch,
    }
}

impl Backend for Syslog {
    /// Each syslog message stands alone (RFC 5426: one message per datagram).
    fn udp_routing(&self) -> UdpRouting {
        UdpRouting::PerMessage
    }

    fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
        detect(preview)
    }
}

export_plugin! {
    name: "syslog",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "syslog" => Syslog::new },
}
