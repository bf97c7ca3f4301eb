//! Shared by the `quic` plugin's test files: the recorded captures, backend construction, and a
//! builder of protected client Initial datagrams (through the plugin's own sealing, checked against
//! the RFC vectors in `rfc_vectors.rs`) for cases no real client sends on demand.
#![allow(dead_code)]

use pmmux_plugin_api::Detection;
use pmmux_plugin_testkit::spec;
use pmmux_quic::keys::ClientInitialKeys;
use pmmux_quic::packet::Version;
use pmmux_quic::Quic;

/// aioquic 1.7.2, QUIC v1, `server_name=example.com`, ALPN `h3`: one Initial datagram.
pub const SMALL: &[u8] = include_bytes!("../data/aioquic_v1_small.bin");
/// aioquic, QUIC v1, `big.example.net`, 61 ALPN names: the ClientHello (1676 bytes) spans two
/// Initial datagrams (CRYPTO 0..1152 and 1152..1676).
pub const TWO: [&[u8]; 2] = [
    include_bytes!("../data/aioquic_v1_two_0.bin"),
    include_bytes!("../data/aioquic_v1_two_1.bin"),
];
/// The client's retransmission of `TWO[0]` (packet number 2, same CRYPTO range).
pub const TWO_RETRANSMIT: &[u8] = include_bytes!("../data/aioquic_v1_two_0_retransmit.bin");
/// aioquic, QUIC v2, `three.example.org`, 121 ALPN names: the ClientHello (2878 bytes) spans three
/// Initial datagrams.
pub const THREE: [&[u8]; 3] = [
    include_bytes!("../data/aioquic_v2_three_0.bin"),
    include_bytes!("../data/aioquic_v2_three_1.bin"),
    include_bytes!("../data/aioquic_v2_three_2.bin"),
];
/// quinn 0.11.12 (rustls 0.23.46, ring), QUIC v1, `quinn.example`, ALPN `h3,h3-29`: one datagram,
/// a 20-byte DCID.
pub const QUINN: &[u8] = include_bytes!("../data/quinn_v1.bin");
/// RFC 9001 Appendix A.2: `example.com`, ALPN `alpn`.
pub const RFC9001: &[u8] = include_bytes!("../data/rfc9001_a2_client_initial.bin");
/// RFC 9369 Appendix A.2 (QUIC v2).
pub const RFC9369: &[u8] = include_bytes!("../data/rfc9369_a2_client_initial.bin");

/// A backend from `[backend.params]` TOML.
pub fn quic(params: &str) -> Quic {
    Quic::new(&spec("quic", params)).unwrap_or_else(|e| panic!("{params}: {e}"))
}

/// The properties of a match, as pairs; panics on another verdict.
pub fn props(d: Detection) -> Vec<(String, String)> {
    match d {
        Detection::Match(p) => p.iter().map(|p| (p.key.to_string(), p.value.to_string())).collect(),
        other => panic!("expected a match, got {other:?}"),
    }
}

/// The value of property `key` in a match.
pub fn prop(d: Detection, key: &str) -> Option<String> {
    props(d).into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// A QUIC variable-length integer.
pub fn varint(v: u64) -> Vec<u8> {
    match v {
        0..=63 => vec![v as u8],
        64..=16383 => ((v as u16) | 0x4000).to_be_bytes().to_vec(),
        16384..=1_073_741_823 => ((v as u32) | 0x8000_0000).to_be_bytes().to_vec(),
        _ => (v | 0xc000_0000_0000_0000).to_be_bytes().to_vec(),
    }
}

/// A CRYPTO frame.
pub fn crypto(offset: u64, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    f.extend(varint(offset));
    f.extend(varint(data.len() as u64));
    f.extend_from_slice(data);
    f
}

fn vec16(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn extension(kind: u16, body: &[u8]) -> Vec<u8> {
    let mut out = kind.to_be_bytes().to_vec();
    out.extend(vec16(body));
    out
}

/// A TLS 1.3 ClientHello handshake message (type, length, body) as a QUIC client sends it: optional
/// server name, ALPN names, `supported_versions` 1.3, `quic_transport_parameters`, and `pad` more
/// bytes: up to 60 000 in a `padding` extension placed before `server_name`, the rest as extra
/// (unassigned) cipher suites, since each list is limited to 64 KiB.
pub fn client_hello(sni: Option<&str>, alpn: &[&str], pad: usize) -> Vec<u8> {
    let in_extension = pad.min(60_000);
    let extra_suites = (pad - in_extension).div_ceil(2);
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x11; 32]);
    body.push(0);
    let mut suites = vec![0x13, 0x01, 0x13, 0x02];
    for i in 0..extra_suites {
        suites.extend_from_slice(&(0x5000u16 + (i % 0x1000) as u16).to_be_bytes());
    }
    body.extend(vec16(&suites));
    body.extend_from_slice(&[1, 0]);
    let mut ext = Vec::new();
    if in_extension > 0 {
        ext.extend(extension(21, &vec![0; in_extension]));
    }
    if let Some(name) = sni {
        let mut entry = vec![0];
        entry.extend(vec16(name.as_bytes()));
        ext.extend(extension(0, &vec16(&entry)));
    }
    if !alpn.is_empty() {
        let mut list = Vec::new();
        for a in alpn {
            list.push(a.len() as u8);
            list.extend_from_slice(a.as_bytes());
        }
        ext.extend(extension(16, &vec16(&list)));
    }
    ext.extend(extension(43, &[2, 0x03, 0x04]));
    ext.extend(extension(57, &[0x01, 0x02, 0x40, 0x64]));
    body.extend(vec16(&ext));
    let mut msg = vec![1];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend(body);
    msg
}

/// One protected client Initial packet carrying `frames` (padded with PADDING to `min_len` bytes
/// of packet), for `dcid` in `version`, packet number `pn` in two bytes.
pub fn initial_packet(version: Version, dcid: &[u8], pn: u64, frames: &[u8], min_len: usize) -> Vec<u8> {
    let type_bits = match version {
        Version::V1 => 0x00,
        Version::V2 => 0x10,
    };
    let mut header = vec![0xc0 | type_bits];
    header.extend_from_slice(&version.wire().to_be_bytes());
    header.push(dcid.len() as u8);
    header.extend_from_slice(dcid);
    header.push(3);
    header.extend_from_slice(b"scd");
    header.push(0); // no token
    let fixed = header.len() + 2 + 2 + 16; // Length (2-byte varint), packet number, tag
    let mut payload = frames.to_vec();
    // The header protection sample needs 4 bytes after the packet number's start and 16 more.
    payload.resize(payload.len().max(min_len.saturating_sub(fixed)).max(18), 0);
    header.extend(((2 + payload.len() + 16) as u16 | 0x4000).to_be_bytes());
    ClientInitialKeys::new(version, dcid)
        .seal(&header, pn, 2, &payload)
        .expect("sealed")
}

/// A 1200-byte datagram holding one Initial packet with `frames`.
pub fn initial(version: Version, dcid: &[u8], pn: u64, frames: &[u8]) -> Vec<u8> {
    initial_packet(version, dcid, pn, frames, 1200)
}

/// A client's Initial datagrams carrying `hello` in CRYPTO frames of at most `chunk` bytes, one
/// frame per datagram, in order.
pub fn hello_datagrams(version: Version, dcid: &[u8], hello: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    hello
        .chunks(chunk)
        .enumerate()
        .map(|(i, part)| initial(version, dcid, i as u64, &crypto((i * chunk) as u64, part)))
        .collect()
}

/// Borrows every datagram.
pub fn refs(datagrams: &[Vec<u8>]) -> Vec<&[u8]> {
    datagrams.iter().map(Vec::as_slice).collect()
}

/// A client DCID.
pub const DCID: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
