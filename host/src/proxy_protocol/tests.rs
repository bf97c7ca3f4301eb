//! The encoder and decoder against the spec's examples, every truncation, and seeded random input.

use std::net::SocketAddr;

use pmmux_plugin_api::Property;

use super::encode::{encode_v1, encode_v2};
use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn complete(buf: &[u8]) -> Header {
    match decode(buf) {
        Decoded::Complete(h) => h,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn invalid(buf: &[u8]) -> String {
    match decode(buf) {
        Decoded::Invalid(why) => why,
        other => panic!("{:?} should be invalid: {other:?}", String::from_utf8_lossy(buf)),
    }
}

/// Every strict prefix of a complete header needs more; the whole decodes to the same header
/// with trailing bytes left alone.
fn check_truncations(full: &[u8]) -> Header {
    for cut in 0..full.len() {
        assert_eq!(
            decode(&full[..cut]),
            Decoded::NeedMore,
            "prefix of {cut} bytes of {full:?}"
        );
    }
    let h = complete(full);
    assert_eq!(h.len, full.len());
    let mut longer = full.to_vec();
    longer.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(complete(&longer), h);
    h
}

#[test]
fn v1_spec_examples() {
    let h = check_truncations(b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n");
    assert_eq!(h.source, Some(addr("255.255.255.255:65535")));
    assert_eq!(h.transport, Transport::Stream);
    let worst6 =
        b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(worst6.len(), 104);
    let h = check_truncations(worst6);
    assert_eq!(h.dest, Some(addr("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")));
    let h = check_truncations(b"PROXY UNKNOWN\r\n");
    assert_eq!((h.source, h.transport), (None, Transport::Unspec));
    // The spec's longest line: UNKNOWN followed by a TCP6 body, 107 bytes.
    let worst = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(worst.len(), V1_MAX_LEN);
    assert_eq!(check_truncations(worst).source, None);
    let h = check_truncations(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
    assert_eq!(h.source, Some(addr("192.168.0.1:56324")));
    assert_eq!(h.dest, Some(addr("192.168.0.11:443")));
}

#[test]
fn v1_refusals() {
    for bad in [
        &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"[..],
        b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        b"PROXY TCP4 ::1 ::1 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
        b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
        b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"GET / HTTP/1.1\r\n",
        b"proxy TCP4",
        b"\x16\x03\x01",
    ] {
        invalid(bad);
    }
    // No CRLF within 107 bytes: invalid at 107, not waiting for more.
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(V1_MAX_LEN, b'a');
    assert_eq!(decode(&long[..V1_MAX_LEN - 1]), Decoded::NeedMore);
    assert!(invalid(&long).contains("107"));
}

/// The v2 header HAProxy sent in a capture: TCP over IPv4, 172.19.0.1:42578 -> 172.19.0.3:80.
const V2_CAPTURED: [u8; 28] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c, 0xac, 0x13, 0x00,
    0x01, 0xac, 0x13, 0x00, 0x03, 0xa6, 0x52, 0x00, 0x50,
];

#[test]
fn v2_captured_header_and_our_encoding_agree() {
    let h = check_truncations(&V2_CAPTURED);
    assert_eq!(
        (h.version, h.command, h.transport),
        (Version::V2, Command::Proxy, Transport::Stream)
    );
    assert_eq!(h.source, Some(addr("172.19.0.1:42578")));
    assert_eq!(h.dest, Some(addr("172.19.0.3:80")));
    let ours = encode_v2(
        Command::Proxy,
        Transport::Stream,
        Some((addr("172.19.0.1:42578"), addr("172.19.0.3:80"))),
        &[],
    );
    assert_eq!(ours, V2_CAPTURED);
}

#[test]
fn v2_round_trips_every_shape() {
    let tlvs = vec![
        Tlv {
            kind: PP2_TYPE_ALPN,
            value: b"h2".to_vec(),
        },
        Tlv {
            kind: PP2_TYPE_AUTHORITY,
            value: b"www.example".to_vec(),
        },
    ];
    for (transport, s, d) in [
        (Transport::Stream, "10.0.0.1:1234", "10.0.0.2:443"),
        (Transport::Dgram, "10.0.0.1:53", "10.0.0.2:53"),
        (Transport::Stream, "[2001:db8::1]:1", "[2001:db8::2]:2"),
    ] {
        let bytes = encode_v2(Command::Proxy, transport, Some((addr(s), addr(d))), &tlvs);
        let h = check_truncations(&bytes);
        assert_eq!(
            (h.transport, h.source, h.dest),
            (transport, Some(addr(s)), Some(addr(d)))
        );
        assert_eq!(h.tlvs, tlvs);
    }
    // LOCAL: no addresses, family UNSPEC; a decoder ignores addresses in LOCAL anyway.
    let local = encode_v2(Command::Local, Transport::Unspec, None, &[]);
    assert_eq!(local.len(), V2_FIXED_LEN);
    assert_eq!(&local[12..], &[0x20, 0x00, 0, 0]);
    let h = check_truncations(&local);
    assert_eq!((h.command, h.source), (Command::Local, None));
    let mut local_with_addr = V2_CAPTURED;
    local_with_addr[12] = 0x20;
    assert_eq!(complete(&local_with_addr).source, None);
    // Mixed families: the IPv4 one is written as IPv4-mapped IPv6.
    let h = complete(&encode_v2(
        Command::Proxy,
        Transport::Stream,
        Some((addr("1.2.3.4:5"), addr("[2001:db8::2]:6"))),
        &[],
    ));
    assert_eq!(h.source, Some(addr("[::ffff:1.2.3.4]:5")));
    // An INET6 header carrying two IPv4-mapped addresses (fuzz finding: the fuzz target expected
    // them back verbatim) re-encodes as INET, the form the host writes for an IPv4 client.
    let mapped = (addr("[::ffff:33.33.0.36]:65535"), addr("[::ffff:255.255.255.255]:1"));
    let h = complete(&encode_v2(Command::Proxy, Transport::Stream, Some(mapped), &[]));
    assert_eq!(
        (h.source, h.dest),
        (Some(addr("33.33.0.36:65535")), Some(addr("255.255.255.255:1")))
    );
}

#[test]
fn v2_refusals_and_bounds() {
    let mut bad_version = V2_CAPTURED;
    bad_version[12] = 0x11;
    assert!(invalid(&bad_version[..13]).contains("version"));
    let mut bad_command = V2_CAPTURED;
    bad_command[12] = 0x22;
    invalid(&bad_command);
    let mut bad_family = V2_CAPTURED;
    bad_family[13] = 0x41;
    invalid(&bad_family);
    let mut bad_transport = V2_CAPTURED;
    bad_transport[13] = 0x13;
    invalid(&bad_transport);
    // Announced length below the address size.
    let mut short = V2_CAPTURED[..16].to_vec();
    short[15] = 4;
    short.extend_from_slice(&[0; 4]);
    invalid(&short);
    // A TLV running past the header.
    let mut tlv = encode_v2(Command::Local, Transport::Unspec, None, &[]);
    tlv[15] = 3;
    tlv.extend_from_slice(&[0x02, 0x00, 0x05]);
    assert!(invalid(&tlv).contains("TLV"));
    // Oversize: refused as soon as the length is known, without waiting for the bytes.
    let mut huge = V2_CAPTURED[..16].to_vec();
    huge[14..16].copy_from_slice(&((V2_MAX_PAYLOAD + 1) as u16).to_be_bytes());
    assert!(invalid(&huge).contains("at most"));
    huge[14..16].copy_from_slice(&(V2_MAX_PAYLOAD as u16).to_be_bytes());
    assert_eq!(decode(&huge), Decoded::NeedMore);
    // A signature that goes wrong half way.
    invalid(b"\r\n\r\n\0\r\nQUIX");
}

#[test]
fn v1_encoding() {
    assert_eq!(
        encode_v1(addr("192.0.2.7:5555"), addr("127.0.0.1:80")),
        b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 80\r\n"
    );
    assert_eq!(
        encode_v1(addr("[::1]:1"), addr("[::1]:2")),
        b"PROXY TCP6 ::1 ::1 1 2\r\n"
    );
    // A v4 client on a dual-stack socket arrives as IPv4-mapped: written as TCP4.
    assert_eq!(
        encode_v1(addr("[::ffff:10.1.2.3]:1"), addr("[::ffff:10.1.2.4]:2")),
        b"PROXY TCP4 10.1.2.3 10.1.2.4 1 2\r\n"
    );
    let h = complete(&encode_v1(addr("1.2.3.4:5"), addr("[::1]:6")));
    assert_eq!(h.source, Some(addr("[::ffff:1.2.3.4]:5")));
}

#[test]
fn tlvs_come_from_detection_properties() {
    let props = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| Property::new(*k, *v)).collect::<Vec<_>>();
    let tlvs = encode::tlvs_from(&props(&[("tls.sni", "a.example"), ("tls.alpn", "h2,http/1.1")]));
    assert_eq!(
        tlvs,
        vec![
            Tlv {
                kind: PP2_TYPE_ALPN,
                value: b"h2".to_vec()
            },
            Tlv {
                kind: PP2_TYPE_AUTHORITY,
                value: b"a.example".to_vec()
            }
        ]
    );
    let tlvs = encode::tlvs_from(&props(&[("http.host", "web.example:8080")]));
    assert_eq!(tlvs[0].value, b"web.example");
    let tlvs = encode::tlvs_from(&props(&[("http.host", "[2001:db8::1]:80")]));
    assert_eq!(tlvs[0].value, b"2001:db8::1");
    assert!(encode::tlvs_from(&props(&[("ssh.banner", "SSH-2.0-x")])).is_empty());
    // v1 never carries TLVs; v2 carries them after the addresses.
    let client = addr("198.51.100.9:40000");
    let local = addr("127.0.0.1:443");
    let p = props(&[("quic.sni", "q.example"), ("quic.alpn", "h3")]);
    assert_eq!(header_for(Version::V1, client, local, &p), encode_v1(client, local));
    let h = complete(&header_for(Version::V2, client, local, &p));
    assert_eq!(h.source, Some(client));
    assert_eq!(h.tlvs.len(), 2);
}

/// Random bytes, random mutations of valid headers and random truncations never panic, and a
/// `Complete` never claims more bytes than it was given nor more than the bound.
#[test]
fn seeded_fuzz_never_panics() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let seeds: Vec<Vec<u8>> = vec![
        V2_CAPTURED.to_vec(),
        encode_v1(addr("1.2.3.4:5"), addr("6.7.8.9:10")),
        encode_v1(addr("[::1]:5"), addr("[::2]:10")),
        encode_v2(
            Command::Proxy,
            Transport::Stream,
            Some((addr("[::1]:5"), addr("[::2]:10"))),
            &encode::tlvs_from(&[Property::new("tls.sni", "x.example")]),
        ),
        b"PROXY UNKNOWN\r\n".to_vec(),
    ];
    let mut complete_count = 0;
    for round in 0..200_000u32 {
        let mut buf = if round % 4 == 0 {
            let len = (next() % 300) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Give the random tail a real start half of the time.
            if next() % 2 == 0 {
                let prefix: &[u8] = if next() % 2 == 0 { &V2_SIGNATURE } else { V1_PREFIX };
                b.splice(0..0, prefix.iter().copied());
            }
            b
        } else {
            seeds[(next() % seeds.len() as u64) as usize].clone()
        };
        for _ in 0..(next() % 4) {
            if buf.is_empty() {
                break;
            }
            let i = (next() % buf.len() as u64) as usize;
            buf[i] = next() as u8;
        }
        let cut = (next() % (buf.len() as u64 + 1)) as usize;
        let buf = &buf[..cut];
        if let Decoded::Complete(h) = decode(buf) {
            complete_count += 1;
            assert!(h.len <= buf.len() && h.len <= MAX_HEADER_LEN, "{h:?}");
        }
    }
    assert!(
        complete_count > 1000,
        "the fuzz reached too few complete headers: {complete_count}"
    );
}

/// The spec's UNIX family (0x3): 216 address bytes, two 108-byte `sun_path` fields, each path up
/// to its first NUL; TLVs may follow; LOCAL ignores the addresses.
#[test]
fn v2_unix_family_decodes_both_paths() {
    let mut h = V2_SIGNATURE.to_vec();
    let tlv = [super::PP2_TYPE_AUTHORITY, 0, 1, b'a'];
    h.extend_from_slice(&[0x21, 0x31, 0, 216 + tlv.len() as u8]);
    let mut src = [0u8; 108];
    src[..9].copy_from_slice(b"/run/a.so");
    // A path filling all 108 bytes has no NUL and is taken whole.
    let dst = [b'd'; 108];
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&tlv);
    let header = check_truncations(&h);
    assert_eq!((header.command, header.transport), (Command::Proxy, Transport::Stream));
    assert_eq!(header.unix, Some((b"/run/a.so".to_vec(), dst.to_vec())));
    assert_eq!((header.source, header.dest), (None, None));
    assert_eq!(header.tlvs.len(), 1);
    h[12] = 0x20;
    assert_eq!(complete(&h).unix, None, "LOCAL");
    // Fewer than 216 address bytes for family UNIX is invalid.
    let mut short = V2_SIGNATURE.to_vec();
    short.extend_from_slice(&[0x21, 0x31, 0, 200]);
    short.extend_from_slice(&[0u8; 200]);
    assert!(invalid(&short).contains("too few"));
}

/// For a client that came over a Unix socket pmmux names no address: v1 UNKNOWN and v2 LOCAL,
/// which decode as the spec says (use the real endpoints).
#[test]
fn a_unix_client_is_sent_as_unknown_or_local() {
    let v1 = super::encode::header_for_unix_client(super::Version::V1);
    assert_eq!(v1, b"PROXY UNKNOWN\r\n");
    let h = complete(&v1);
    assert_eq!((h.transport, h.source), (Transport::Unspec, None));
    let v2 = super::encode::header_for_unix_client(super::Version::V2);
    assert_eq!(v2.len(), 16);
    let h = complete(&v2);
    assert_eq!(
        (h.command, h.transport, h.source, h.tlvs.len()),
        (Command::Local, Transport::Unspec, None, 0)
    );
}
