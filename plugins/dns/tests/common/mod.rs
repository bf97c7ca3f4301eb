//! Shared by the integration tests: the captured queries, a `dns` backend built from TOML params,
//! TCP framing and a builder for synthetic messages.
#![allow(dead_code)] // each test file uses a different part

use pmmux_dns::Dns;
use pmmux_plugin_api::{ConnInfo, Detection};
use pmmux_plugin_testkit::conn_port;

// Captured on loopback with a Python listener on 127.0.0.1 (port 0) that saved the first datagram
// (UDP) or the first message with its length prefix (TCP); clients from Debian 12's bind9 tools,
// `DiG 9.18.49-1~deb12u3-Debian` and nslookup of the same version. Every dig command also had
// `-p PORT +tries=1 +time=1`. dig sets RD and AD, and by default sends EDNS (UDP size 1232) with a
// COOKIE option.

/// `dig @127.0.0.1 www.example.com A` (EDNS with a cookie).
pub const UDP_A: &[u8] = include_bytes!("../data/udp_a.bin");
/// `dig @127.0.0.1 www.example.com AAAA`.
pub const UDP_AAAA: &[u8] = include_bytes!("../data/udp_aaaa.bin");
/// `dig @127.0.0.1 Example.COM TXT +noedns` (no additional records, name in mixed case).
pub const UDP_TXT_NOEDNS: &[u8] = include_bytes!("../data/udp_txt_noedns.bin");
/// `dig @127.0.0.1 -x 127.0.0.1` (PTR for `1.0.0.127.in-addr.arpa`).
pub const UDP_PTR: &[u8] = include_bytes!("../data/udp_ptr.bin");
/// `dig @127.0.0.1 _443._tcp.svc.example.net HTTPS +nocookie` (EDNS without options).
pub const UDP_HTTPS: &[u8] = include_bytes!("../data/udp_https.bin");
/// `dig @127.0.0.1 . NS +noedns` (the root).
pub const UDP_ROOT_NS: &[u8] = include_bytes!("../data/udp_root_ns.bin");
/// `nslookup -port=PORT -type=SRV -timeout=1 -retry=1 _sip._udp.Example.NET 127.0.0.1` (RD only, no EDNS).
pub const NSLOOKUP_SRV: &[u8] = include_bytes!("../data/nslookup_srv.bin");
/// `dig @127.0.0.1 example.org MX +tcp` (length prefix, then the message).
pub const TCP_MX: &[u8] = include_bytes!("../data/tcp_mx.bin");
/// `dig @127.0.0.1 example.com AXFR` (dig uses TCP for zone transfers; RD clear).
pub const TCP_AXFR: &[u8] = include_bytes!("../data/tcp_axfr.bin");
/// `dig @127.0.0.1 example.com IXFR=2024010101` (TCP; an SOA with a compressed owner name in the
/// authority section, RFC 1995).
pub const TCP_IXFR: &[u8] = include_bytes!("../data/tcp_ixfr.bin");

/// The UDP captures, with their expected `dns.qname` and `dns.qtype`.
pub const UDP_CAPTURES: &[(&str, &[u8], &str, &str)] = &[
    ("udp_a", UDP_A, "www.example.com", "A"),
    ("udp_aaaa", UDP_AAAA, "www.example.com", "AAAA"),
    ("udp_txt_noedns", UDP_TXT_NOEDNS, "example.com", "TXT"),
    ("udp_ptr", UDP_PTR, "1.0.0.127.in-addr.arpa", "PTR"),
    ("udp_https", UDP_HTTPS, "_443._tcp.svc.example.net", "HTTPS"),
    ("udp_root_ns", UDP_ROOT_NS, ".", "NS"),
    ("nslookup_srv", NSLOOKUP_SRV, "_sip._udp.example.net", "SRV"),
];

/// The TCP captures (length-prefixed), with their expected `dns.qname` and `dns.qtype`.
pub const TCP_CAPTURES: &[(&str, &[u8], &str, &str)] = &[
    ("tcp_mx", TCP_MX, "example.org", "MX"),
    ("tcp_axfr", TCP_AXFR, "example.com", "AXFR"),
    ("tcp_ixfr", TCP_IXFR, "example.com", "IXFR"),
];

/// The message inside a single-message TCP capture.
pub fn message_of(stream: &[u8]) -> &[u8] {
    let len = usize::from(u16::from_be_bytes([stream[0], stream[1]]));
    assert_eq!(len + 2, stream.len(), "capture is exactly one message");
    &stream[2..]
}

/// A message with its TCP length prefix.
pub fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = (message.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(message);
    out
}

/// Every message the captures hold, UDP and TCP alike, with its expected properties.
pub fn all_messages() -> Vec<(&'static str, Vec<u8>, &'static str, &'static str)> {
    let udp = UDP_CAPTURES.iter().map(|&(n, m, q, t)| (n, m.to_vec(), q, t));
    let tcp = TCP_CAPTURES
        .iter()
        .map(|&(n, s, q, t)| (n, message_of(s).to_vec(), q, t));
    udp.chain(tcp).collect()
}

/// A `dns` backend from `[backend.params]` given as TOML text.
pub fn backend(params_toml: &str) -> Result<Dns, String> {
    let spec = pmmux_plugin_testkit::spec("dns", params_toml);
    Dns::new(&spec)
}

/// The backend for valid params; panics with the error otherwise.
pub fn dns(params_toml: &str) -> Dns {
    backend(params_toml).unwrap_or_else(|e| panic!("params {params_toml:?}: {e}"))
}

/// Connection facts for calling the `Backend` hooks directly.
pub fn conn() -> ConnInfo<'static> {
    conn_port(5353)
}

/// The properties of a match as (key, value) pairs; panics on anything but a match.
pub fn props(detection: Detection) -> Vec<(String, String)> {
    match detection {
        Detection::Match(props) => props.iter().map(|p| (p.key.to_string(), p.value.to_string())).collect(),
        other => panic!("expected a match, got {other:?}"),
    }
}

/// `dns.qname` and `dns.qtype` as the property list of a match.
pub fn expected(qname: &str, qtype: &str) -> Vec<(String, String)> {
    vec![
        ("dns.qname".to_owned(), qname.to_owned()),
        ("dns.qtype".to_owned(), qtype.to_owned()),
    ]
}

/// A query for `name` (dotted, no escapes; "" for the root) of type `qtype`, class IN, RD set, with
/// the given header counts and raw bytes appended after the question.
pub fn query(name: &str, qtype: u16, counts: [u16; 3], tail: &[u8]) -> Vec<u8> {
    let mut out = vec![0xab, 0xcd, 0x01, 0x00, 0, 1];
    for count in counts {
        out.extend_from_slice(&count.to_be_bytes());
    }
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(tail);
    out
}

/// A root-owned OPT record (UDP size 1232) with these options as (code, data).
pub fn opt(options: &[(u16, &[u8])]) -> Vec<u8> {
    let mut rdata = Vec::new();
    for (code, data) in options {
        rdata.extend_from_slice(&code.to_be_bytes());
        rdata.extend_from_slice(&(data.len() as u16).to_be_bytes());
        rdata.extend_from_slice(data);
    }
    let mut out = vec![0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0];
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(&rdata);
    out
}
