//! The sans-I/O encoder: the header pmmux writes to an upstream before the previewed bytes, naming
//! the client (after an accepted inbound header) and the local address it reached.

use std::net::{IpAddr, SocketAddr};

use pmmux_plugin_api::Property;

use super::{Command, Tlv, Transport, Version, PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY, V2_MAX_PAYLOAD, V2_SIGNATURE};

/// Addresses as one family: IPv4-mapped IPv6 becomes IPv4; when the two still differ, the IPv4 one
/// is written as IPv4-mapped IPv6.
fn same_family(source: SocketAddr, dest: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (s, d) = (canon(source), canon(dest));
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    if s.is_ipv4() == d.is_ipv4() {
        (s, d)
    } else {
        (v6(s), v6(d))
    }
}

/// A version 1 line, `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n`.
pub fn encode_v1(source: SocketAddr, dest: SocketAddr) -> Vec<u8> {
    let (s, d) = same_family(source, dest);
    let proto = if s.is_ipv4() { "TCP4" } else { "TCP6" };
    format!("PROXY {proto} {} {} {} {}\r\n", s.ip(), d.ip(), s.port(), d.port()).into_bytes()
}

/// A version 2 header. `endpoints` `None` (or `Command::Local`) writes family UNSPEC with no
/// address. TLVs that would take the header past [`V2_MAX_PAYLOAD`] are left out.
pub fn encode_v2(
    command: Command,
    transport: Transport,
    endpoints: Option<(SocketAddr, SocketAddr)>,
    tlvs: &[Tlv],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x20 | if command == Command::Local { 0 } else { 1 });
    let proto = match transport {
        Transport::Unspec => 0,
        Transport::Stream => 1,
        Transport::Dgram => 2,
    };
    let endpoints = endpoints
        .filter(|_| command == Command::Proxy)
        .map(|(s, d)| same_family(s, d));
    let mut payload = Vec::new();
    let family = match endpoints {
        None => 0,
        Some((s, d)) => {
            match (s.ip(), d.ip()) {
                (IpAddr::V4(a), IpAddr::V4(b)) => {
                    payload.extend_from_slice(&a.octets());
                    payload.extend_from_slice(&b.octets());
                }
                (a, b) => {
                    let v6 = |ip: IpAddr| match ip {
                        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                        IpAddr::V6(v6) => v6.octets(),
                    };
                    payload.extend_from_slice(&v6(a));
                    payload.extend_from_slice(&v6(b));
                }
            }
            payload.extend_from_slice(&s.port().to_be_bytes());
            payload.extend_from_slice(&d.port().to_be_bytes());
            if s.is_ipv4() {
                1
            } else {
                2
            }
        }
    };
    out.push((family << 4) | proto);
    for tlv in tlvs {
        let fits = payload.len() + 3 + tlv.value.len() <= V2_MAX_PAYLOAD;
        if fits {
            payload.push(tlv.kind);
            // `fits` bounds the value below 65535.
            payload.extend_from_slice(&(tlv.value.len() as u16).to_be_bytes());
            payload.extend_from_slice(&tlv.value);
        }
    }
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

/// The header a backend with `proxy_protocol = version` sends for a TCP connection from `client`
/// to `local`. Version 2 carries PP2_TYPE_ALPN (the client's first offered protocol in `tls.alpn`
/// or `quic.alpn`) and PP2_TYPE_AUTHORITY (`tls.sni`, `quic.sni` or `http.host` without its
/// port) when the detection found them.
pub(crate) fn header_for(version: Version, client: SocketAddr, local: SocketAddr, properties: &[Property]) -> Vec<u8> {
    match version {
        Version::V1 => encode_v1(client, local),
        Version::V2 => encode_v2(
            Command::Proxy,
            Transport::Stream,
            Some((client, local)),
            &tlvs_from(properties),
        ),
    }
}

/// The header a backend with `proxy_protocol = version` sends for a client that came in over a
/// Unix socket, which has no IP address to name: v1 `PROXY UNKNOWN` and v2 `LOCAL` (family
/// UNSPEC, no TLVs), which the spec has the receiver accept with the connection's real endpoints
/// (pmmux's own address).
pub(crate) fn header_for_unix_client(version: Version) -> Vec<u8> {
    match version {
        Version::V1 => b"PROXY UNKNOWN\r\n".to_vec(),
        Version::V2 => encode_v2(Command::Local, Transport::Unspec, None, &[]),
    }
}

/// The TLVs the detection's properties allow.
pub(crate) fn tlvs_from(properties: &[Property]) -> Vec<Tlv> {
    let get = |key: &str| {
        properties
            .iter()
            .find(|p| p.key.as_str() == key)
            .map(|p| p.value.as_str())
            .filter(|v| !v.is_empty())
    };
    let mut tlvs = Vec::new();
    let alpn = get("tls.alpn")
        .or_else(|| get("quic.alpn"))
        .and_then(|list| list.split(',').next())
        .filter(|first| !first.is_empty());
    if let Some(alpn) = alpn {
        tlvs.push(Tlv {
            kind: PP2_TYPE_ALPN,
            value: alpn.as_bytes().to_vec(),
        });
    }
    let authority = get("tls.sni")
        .or_else(|| get("quic.sni"))
        .or_else(|| get("http.host").map(strip_port));
    if let Some(host) = authority.filter(|h| !h.is_empty() && h.len() <= 255) {
        tlvs.push(Tlv {
            kind: PP2_TYPE_AUTHORITY,
            value: host.as_bytes().to_vec(),
        });
    }
    tlvs
}

/// `example.com:8080` → `example.com`, `[::1]:80` → `::1`; a bare name or IPv6 address unchanged.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}
