//! The sans-I/O decoder: given the first bytes of a connection, says whether they hold a complete
//! PROXY header (v1 or v2, told apart by their first bytes), need more bytes, or cannot be one.
//! Bounded: never looks past [`V1_MAX_LEN`] bytes for v1 or [`MAX_HEADER_LEN`] for v2.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{
    Command, Header, Tlv, Transport, Version, MAX_HEADER_LEN, V1_MAX_LEN, V1_PREFIX, V2_FIXED_LEN, V2_MAX_PAYLOAD,
    V2_SIGNATURE, V2_UNIX_PATH_LEN,
};

/// What the first bytes of a connection hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole header; bytes past `header.len` are the stream's own.
    Complete(Header),
    /// A valid beginning of a header: read more (the header is never longer than [`MAX_HEADER_LEN`]).
    NeedMore,
    /// Not a valid PROXY header, and more bytes cannot make it one.
    Invalid(String),
}

fn invalid(why: impl Into<String>) -> Decoded {
    Decoded::Invalid(why.into())
}

/// Decodes a header at the start of `buf` (either version).
pub fn decode(buf: &[u8]) -> Decoded {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return if n < V2_SIGNATURE.len() {
            Decoded::NeedMore
        } else {
            decode_v2(buf)
        };
    }
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] == V1_PREFIX[..n] {
        return if n < V1_PREFIX.len() {
            Decoded::NeedMore
        } else {
            decode_v1(buf)
        };
    }
    invalid("the first bytes are neither a PROXY v1 line nor the v2 signature")
}

fn decode_v1(buf: &[u8]) -> Decoded {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        if window.len() >= V1_MAX_LEN {
            return invalid(format!("PROXY v1 line without CRLF within {V1_MAX_LEN} bytes"));
        }
        // A CR or LF anywhere else, or a byte no header holds, cannot become valid.
        return match window.iter().position(|&b| !is_v1_byte(b)) {
            Some(i) if !(i + 1 == window.len() && window[i] == b'\r') => {
                invalid("PROXY v1 line holds a byte outside printable ASCII")
            }
            _ => Decoded::NeedMore,
        };
    };
    let line = &buf[..end];
    if let Some(i) = line.iter().position(|&b| !is_v1_byte(b)) {
        return invalid(format!("PROXY v1 line holds byte 0x{:02x} at {i}", line[i]));
    }
    // Only printable ASCII remains: valid UTF-8.
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    parts.next(); // "PROXY"
    let proto = parts.next().unwrap_or("");
    let len = end + 2;
    let unknown = |transport| {
        Decoded::Complete(Header {
            len,
            version: Version::V1,
            command: Command::Proxy,
            transport,
            source: None,
            dest: None,
            unix: None,
            tlvs: Vec::new(),
        })
    };
    let v6 = match proto {
        // The receiver must ignore anything after UNKNOWN.
        "UNKNOWN" => return unknown(Transport::Unspec),
        "TCP4" => false,
        "TCP6" => true,
        other => {
            return invalid(format!(
                "PROXY v1 protocol `{}` is not TCP4, TCP6 or UNKNOWN",
                clip(other)
            ))
        }
    };
    let fields: Vec<&str> = parts.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return invalid(format!(
            "PROXY v1 {proto} line has {} fields after the protocol, not 4 (single spaces)",
            fields.len()
        ));
    };
    let ip = |s: &str| -> Option<IpAddr> {
        if v6 {
            s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        } else {
            s.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
        }
    };
    let (Some(src), Some(dst)) = (ip(src), ip(dst)) else {
        return invalid(format!("PROXY v1 {proto} addresses are not {proto} addresses"));
    };
    let (Some(sport), Some(dport)) = (port(sport), port(dport)) else {
        return invalid("PROXY v1 ports are not 0..=65535 without leading zeros");
    };
    Decoded::Complete(Header {
        len,
        version: Version::V1,
        command: Command::Proxy,
        transport: Transport::Stream,
        source: Some(SocketAddr::new(src, sport)),
        dest: Some(SocketAddr::new(dst, dport)),
        unix: None,
        tlvs: Vec::new(),
    })
}

fn is_v1_byte(b: u8) -> bool {
    (0x20..0x7f).contains(&b)
}

/// A decimal port as the spec writes it: digits only, no leading zero, at most 65535.
fn port(s: &str) -> Option<u16> {
    let digits_ok = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits_ok || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

fn clip(s: &str) -> &str {
    &s[..s.len().min(16)]
}

fn decode_v2(buf: &[u8]) -> Decoded {
    if buf.len() < V2_FIXED_LEN {
        // Check what is already there, so garbage after the signature fails early.
        if let Some(&ver_cmd) = buf.get(12) {
            if let Some(why) = bad_ver_cmd(ver_cmd) {
                return invalid(why);
            }
        }
        return Decoded::NeedMore;
    }
    let (ver_cmd, fam, payload_len) = (buf[12], buf[13], u16::from_be_bytes([buf[14], buf[15]]) as usize);
    if let Some(why) = bad_ver_cmd(ver_cmd) {
        return invalid(why);
    }
    if payload_len > V2_MAX_PAYLOAD {
        return invalid(format!(
            "PROXY v2 header announces {payload_len} bytes after its fixed part; at most {V2_MAX_PAYLOAD} accepted"
        ));
    }
    let len = V2_FIXED_LEN + payload_len;
    debug_assert!(len <= MAX_HEADER_LEN);
    if buf.len() < len {
        return Decoded::NeedMore;
    }
    let payload = &buf[V2_FIXED_LEN..len];
    let command = if ver_cmd & 0x0f == 0 {
        Command::Local
    } else {
        Command::Proxy
    };
    let transport = match fam & 0x0f {
        0 => Transport::Unspec,
        1 => Transport::Stream,
        2 => Transport::Dgram,
        t => return invalid(format!("PROXY v2 transport {t} is not UNSPEC, STREAM or DGRAM")),
    };
    let addr_len = match fam >> 4 {
        0 => 0,
        1 => 12,
        2 => 36,
        3 => 2 * V2_UNIX_PATH_LEN,
        f => {
            return invalid(format!(
                "PROXY v2 address family {f} is not UNSPEC, INET, INET6 or UNIX"
            ))
        }
    };
    if payload.len() < addr_len {
        return invalid(format!(
            "PROXY v2 header holds {} bytes, too few for its address family ({addr_len})",
            payload.len()
        ));
    }
    let (addrs, rest) = payload.split_at(addr_len);
    let endpoints = match fam >> 4 {
        1 => {
            let ip = |o: usize| IpAddr::V4(Ipv4Addr::new(addrs[o], addrs[o + 1], addrs[o + 2], addrs[o + 3]));
            Some((ip(0), ip(4), be16(&addrs[8..]), be16(&addrs[10..])))
        }
        2 => {
            let ip = |o: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&addrs[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(a))
            };
            Some((ip(0), ip(16), be16(&addrs[32..]), be16(&addrs[34..])))
        }
        // UNSPEC carries nothing; UNIX carries paths, below.
        _ => None,
    };
    let unix = (fam >> 4 == 3 && command == Command::Proxy).then(|| {
        let path = |field: &[u8]| field[..field.iter().position(|&b| b == 0).unwrap_or(field.len())].to_vec();
        let (src, dst) = addrs.split_at(V2_UNIX_PATH_LEN);
        (path(src), path(dst))
    });
    let tlvs = match parse_tlvs(rest) {
        Ok(t) => t,
        Err(why) => return invalid(why),
    };
    // LOCAL: the receiver must ignore the addresses and use the real endpoints.
    let (source, dest) = match (command, endpoints) {
        (Command::Proxy, Some((s, d, sp, dp))) => (Some(SocketAddr::new(s, sp)), Some(SocketAddr::new(d, dp))),
        _ => (None, None),
    };
    Decoded::Complete(Header {
        len,
        version: Version::V2,
        command,
        transport,
        source,
        dest,
        unix,
        tlvs,
    })
}

fn bad_ver_cmd(ver_cmd: u8) -> Option<String> {
    if ver_cmd >> 4 != 2 {
        return Some(format!("PROXY v2 version nibble is {}, not 2", ver_cmd >> 4));
    }
    if ver_cmd & 0x0f > 1 {
        return Some(format!("PROXY v2 command {} is not LOCAL or PROXY", ver_cmd & 0x0f));
    }
    None
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn parse_tlvs(mut rest: &[u8]) -> Result<Vec<Tlv>, String> {
    let mut tlvs = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 3 {
            return Err(format!("PROXY v2 TLV area ends with {} stray bytes", rest.len()));
        }
        let (kind, len) = (rest[0], be16(&rest[1..]) as usize);
        let Some(value) = rest.get(3..3 + len) else {
            return Err(format!("PROXY v2 TLV 0x{kind:02x} of {len} bytes runs past the header"));
        };
        tlvs.push(Tlv {
            kind,
            value: value.to_vec(),
        });
        rest = &rest[3 + len..];
    }
    Ok(tlvs)
}
