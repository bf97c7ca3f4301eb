//! pmmux plugin `redis`: matches a Redis client by its first command. Takes no params. Detection
//! only: matched connections are forwarded to the backend's `target`.
//!
//! Deliberately conservative, since many protocols start with text:
//! * a RESP array of bulk strings (the "Redis serialization protocol specification"):
//!   `*<n>\r\n$<len>\r\n<command>\r\n...` with 1 ≤ n ≤ 1 048 576 (this backend's bound), no
//!   leading zeros, and a first element of 1 to 32 bytes that is a command name: ASCII letters, then letters or `_` (`GEORADIUS_RO`). The verdict
//!   comes once that first element is complete; the arguments are not waited for.
//! * an inline command, only `PING`, `AUTH` or `HELLO` (any case), then a line of printable ASCII
//!   ending in `\n` (optionally `\r\n`), at most 1024 bytes. Other inline commands are not matched.
//!
//! HTTP, TLS and SSH are refused by their first or second byte (`HEAD` by its third).
//!
//! Property on a match: `redis.command`, the command name in upper case (`PING`, `AUTH`, `GET`, ...).
//!
//! Health check: `PING`; healthy on `+PONG`, or on `-NOAUTH` (a server that wants a password is
//! up); anything else is unhealthy (see [`health_verdict`]).

use pmmux_plugin_api::{
    export_plugin, Backend, BackendSpec, ConnInfo, Detection, HealthProbe, HealthTransport, HealthVerdict, Property,
};

/// The largest array count accepted (a sanity bound: real commands are far shorter).
pub const MAX_ARRAY_LEN: u64 = 1024 * 1024;
/// The longest command name accepted in a RESP array.
pub const MAX_COMMAND_LEN: u64 = 32;
/// The longest inline command line accepted, newline included.
pub const MAX_INLINE_LEN: usize = 1024;
/// The inline commands matched.
const INLINE: [&[u8]; 3] = [b"PING", b"AUTH", b"HELLO"];

/// What the first bytes of a connection say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// A Redis command: its name, in upper case.
    Complete(String),
    /// Valid so far; more bytes are needed.
    Incomplete,
    /// Not a Redis command this backend accepts, with the reason.
    Invalid(&'static str),
}

/// Parses the start of a connection as a Redis command.
pub fn parse(preview: &[u8]) -> Parse {
    let result = match preview.first() {
        None => Err(Parse::Incomplete),
        Some(b'*') => parse_array(preview.get(1..).unwrap_or_default()),
        Some(_) => parse_inline(preview),
    };
    match result {
        Ok(command) => Parse::Complete(command),
        Err(verdict) => verdict,
    }
}

/// Reads a decimal number ended by `\r\n`: 1 to `max`, no sign, no leading zero. Returns it and the
/// rest of the input.
fn number(input: &[u8], max: u64) -> Result<(u64, &[u8]), Parse> {
    let mut value = 0u64;
    for (i, &b) in input.iter().enumerate() {
        match b {
            b'1'..=b'9' => {}
            b'0' if i > 0 => {}
            b'\r' if i > 0 => {
                return match input.get(i + 1) {
                    None => Err(Parse::Incomplete),
                    Some(b'\n') => Ok((value, input.get(i + 2..).unwrap_or_default())),
                    Some(_) => Err(Parse::Invalid("`\\r` without `\\n`")),
                };
            }
            _ => return Err(Parse::Invalid("not a positive decimal number")),
        }
        value = value * 10 + u64::from(b - b'0');
        if value > max {
            return Err(Parse::Invalid("number out of range"));
        }
    }
    Err(Parse::Incomplete)
}

/// After `*`: the count, then the first bulk string, which must be a command name.
fn parse_array(input: &[u8]) -> Result<String, Parse> {
    let (_, rest) = number(input, MAX_ARRAY_LEN)?;
    match rest.first() {
        None => return Err(Parse::Incomplete),
        Some(b'$') => {}
        Some(_) => return Err(Parse::Invalid("first element is not a bulk string")),
    }
    let (len, rest) = number(rest.get(1..).unwrap_or_default(), MAX_COMMAND_LEN)?;
    let len = len as usize; // at most 32
    let name = rest.get(..len.min(rest.len())).unwrap_or_default();
    let name_ok = name
        .iter()
        .enumerate()
        .all(|(i, &b)| b.is_ascii_alphabetic() || (i > 0 && b == b'_'));
    if !name_ok {
        return Err(Parse::Invalid("first element is not a command name"));
    }
    let tail = rest.get(len..).unwrap_or_default();
    let crlf = b"\r\n";
    if !crlf.starts_with(tail.get(..tail.len().min(2)).unwrap_or_default()) {
        return Err(Parse::Invalid("bulk string not ended by `\\r\\n`"));
    }
    if tail.len() < 2 {
        return Err(Parse::Incomplete);
    }
    Ok(String::from_utf8_lossy(name).to_ascii_uppercase())
}

/// An inline `PING`, `AUTH` or `HELLO` line.
fn parse_inline(input: &[u8]) -> Result<String, Parse> {
    let word_len = input
        .iter()
        .position(|b| !b.is_ascii_alphabetic())
        .unwrap_or(input.len());
    let word = input.get(..word_len).unwrap_or_default();
    let candidates = INLINE
        .iter()
        .filter(|c| c.len() >= word.len() && c.get(..word.len()).is_some_and(|p| p.eq_ignore_ascii_case(word)));
    let Some(command) = candidates.clone().find(|c| c.len() == word.len()) else {
        return if candidates.count() > 0 && word_len == input.len() {
            Err(Parse::Incomplete)
        } else {
            Err(Parse::Invalid("not an inline PING, AUTH or HELLO"))
        };
    };
    let rest = input.get(word_len..).unwrap_or_default();
    for (i, &b) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        match b {
            b'\n' => return Ok(String::from_utf8_lossy(command).into_owned()),
            b'\r' if last || rest.get(i + 1) == Some(&b'\n') => {}
            b' ' | b'\t' => {}
            _ if i == 0 => return Err(Parse::Invalid("the command word goes on")),
            _ if b.is_ascii_graphic() => {}
            _ => return Err(Parse::Invalid("control byte in an inline command")),
        }
        if word_len + i + 1 >= MAX_INLINE_LEN {
            return Err(Parse::Invalid("inline command too long"));
        }
    }
    Err(Parse::Incomplete)
}

/// A `redis` backend.
#[derive(Debug, Clone, Default)]
pub struct Redis;

impl Redis {
    /// Builds the backend; `redis` has no params, so any given are an error.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        spec.no_params()?;
        Ok(Redis)
    }

    /// Detection over the bytes previewed so far.
    pub fn detect_stream(&self, preview: &[u8]) -> Detection {
        match parse(preview) {
            Parse::Complete(command) => Detection::Match(vec![Property::new("redis.command", command)]),
            Parse::Incomplete => Detection::NeedMore,
            Parse::Invalid(_) => Detection::NoMatch,
        }
    }
}

impl Backend for Redis {
    fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
        self.detect_stream(preview)
    }

    fn health_probe(&self) -> Option<HealthProbe> {
        Some(HealthProbe {
            transport: HealthTransport::Tcp,
            send: b"PING\r\n".to_vec(),
        })
    }

    fn health_verdict(&self, response: &[u8], closed: bool) -> HealthVerdict {
        health_verdict(response, closed)
    }
}

/// Longest first answer line awaited.
const MAX_ANSWER_LINE: usize = 256;

/// Judges a server's answer to `PING` by its first line.
pub fn health_verdict(response: &[u8], closed: bool) -> HealthVerdict {
    let Some(end) = response.iter().take(MAX_ANSWER_LINE).position(|&b| b == b'\n') else {
        return if closed || response.len() >= MAX_ANSWER_LINE {
            HealthVerdict::Unhealthy("no answer line to PING".into())
        } else {
            HealthVerdict::NeedMore
        };
    };
    let line = String::from_utf8_lossy(&response[..end]);
    let line = line.trim_end();
    if line == "+PONG" || line.starts_with("-NOAUTH") {
        HealthVerdict::Healthy
    } else {
        HealthVerdict::Unhealthy(format!("answered `{}` to PING", line.escape_debug()))
    }
}

#[cfg(test)]
mod health_tests {
    use super::*;

    #[test]
    fn pong_and_noauth_are_healthy_anything_else_not() {
        assert_eq!(health_verdict(b"+PONG\r\n", false), HealthVerdict::Healthy);
        assert_eq!(
            health_verdict(b"-NOAUTH Authentication required.\r\n", false),
            HealthVerdict::Healthy
        );
        assert_eq!(health_verdict(b"+PO", false), HealthVerdict::NeedMore);
        assert!(matches!(health_verdict(b"+PO", true), HealthVerdict::Unhealthy(_)));
        // What an echo server sends back.
        let HealthVerdict::Unhealthy(why) = health_verdict(b"PING\r\n", false) else {
            panic!("an echo is not a Redis server");
        };
        assert!(why.contains("`PING`"), "{why}");
        assert!(matches!(
            health_verdict(b"-LOADING Redis is loading\r\n", false),
            HealthVerdict::Unhealthy(_)
        ));
        assert!(matches!(
            health_verdict(&[b'+'; 300], false),
            HealthVerdict::Unhealthy(_)
        ));
    }
}

export_plugin! {
    name: "redis",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "redis" => Redis::new },
}
