//! The `dtls` backend over real OpenSSL captures, synthetic ClientHellos (DTLS 1.3, which OpenSSL 3.0
//! cannot send), other UDP protocols and thousands of random and mutated datagrams (no panic).

use pmmux_dtls::client_hello::parse_datagram;
use pmmux_dtls::Dtls;
use pmmux_plugin_api::{Backend, Detection};
use pmmux_plugin_testkit::{conn_port, pairs, props, spec, Rng};

// Captured on loopback with a Python UDP listener on 127.0.0.1 (port 0) saving the first datagram;
// client OpenSSL 3.0 (Debian 12).

/// `openssl s_client -dtls1_2 -connect 127.0.0.1:PORT -servername a.example -alpn h2,webrtc`.
const DTLS12: &[u8] = include_bytes!("data/openssl_dtls12.bin");
/// `openssl s_client -dtls1 -cipher DEFAULT@SECLEVEL=0 -connect ... -servername b.example`.
const DTLS10: &[u8] = include_bytes!("data/openssl_dtls10.bin");
/// `openssl s_client -dtls1_2 -connect ... -noservername`.
const NOSNI: &[u8] = include_bytes!("data/openssl_nosni.bin");
/// `openssl s_client -dtls1_2 -mtu 256 -connect ... -servername c.example -alpn coap`: the first
/// datagram holds the first fragment (offset 0, 203 of 209 bytes) ...
const FRAGMENT0: &[u8] = include_bytes!("data/openssl_mtu_fragment0.bin");
/// ... and the second datagram the rest (offset 203).
const FRAGMENT1: &[u8] = include_bytes!("data/openssl_mtu_fragment1.bin");

fn backend(params_toml: &str) -> Result<Dtls, String> {
    Dtls::new(&spec("dtls", params_toml))
}

fn dtls(params_toml: &str) -> Dtls {
    backend(params_toml).unwrap_or_else(|e| panic!("{params_toml}: {e}"))
}

fn u16_vec(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// A DTLS ClientHello datagram: one record, one unfragmented handshake message.
fn hello(sni: Option<&str>, versions: &[u16], cookie: &[u8]) -> Vec<u8> {
    let mut body = vec![0xfe, 0xfd];
    body.extend_from_slice(&[0x42; 32]);
    body.push(0); // session id
    body.push(cookie.len() as u8);
    body.extend_from_slice(cookie);
    body.extend_from_slice(&u16_vec(&[0x13, 0x01, 0xc0, 0x2b]));
    body.extend_from_slice(&[1, 0]);
    let mut ext = Vec::new();
    if let Some(name) = sni {
        let mut entry = vec![0];
        entry.extend_from_slice(&u16_vec(name.as_bytes()));
        ext.extend_from_slice(&[0, 0]);
        ext.extend_from_slice(&u16_vec(&u16_vec(&entry)));
    }
    if !versions.is_empty() {
        let list: Vec<u8> = versions.iter().flat_map(|v| v.to_be_bytes()).collect();
        let mut data = vec![list.len() as u8];
        data.extend_from_slice(&list);
        ext.extend_from_slice(&[0, 43]);
        ext.extend_from_slice(&u16_vec(&data));
    }
    body.extend_from_slice(&u16_vec(&ext));
    let len = (body.len() as u32).to_be_bytes();
    let mut hs = vec![1, len[1], len[2], len[3], 0, 0, 0, 0, 0, len[1], len[2], len[3]];
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0];
    rec.extend_from_slice(&u16_vec(&hs));
    rec
}

#[test]
fn captures_match_with_properties() {
    let any = dtls("");
    assert_eq!(
        props(any.detect_message(DTLS12)),
        pairs(&[
            ("dtls.version", "1.2"),
            ("dtls.sni", "a.example"),
            ("dtls.alpn", "h2,webrtc")
        ])
    );
    assert_eq!(
        props(any.detect_message(DTLS10)),
        pairs(&[("dtls.version", "1.0"), ("dtls.sni", "b.example")])
    );
    assert_eq!(props(any.detect_message(NOSNI)), pairs(&[("dtls.version", "1.2")]));
    assert_eq!(
        props(any.detect_message(FRAGMENT0)),
        pairs(&[
            ("dtls.version", "1.2"),
            ("dtls.sni", "c.example"),
            ("dtls.alpn", "coap"),
            ("dtls.fragment", "true")
        ])
    );
    // A later fragment carries no ClientHello fields: not a client's first datagram.
    assert_eq!(any.detect_message(FRAGMENT1), Detection::NoMatch);
    // Over TCP, never.
    let conn = conn_port(4433);
    assert_eq!(any.detect(&conn, DTLS12), Detection::NoMatch);
    assert!(matches!(any.can_handle_message(&conn, DTLS12), Detection::Match(_)));
}

#[test]
fn sni_param_routes_and_requires_a_name() {
    let a = dtls("sni = \"A.example\"");
    assert!(matches!(a.detect_message(DTLS12), Detection::Match(_)));
    assert_eq!(a.detect_message(DTLS10), Detection::NoMatch);
    assert_eq!(a.detect_message(NOSNI), Detection::NoMatch);
    let wild = dtls("sni = [\"*.example\", \"other.test\"]");
    for m in [DTLS12, DTLS10, FRAGMENT0] {
        assert!(matches!(wild.detect_message(m), Detection::Match(_)));
    }
    assert_eq!(wild.detect_message(NOSNI), Detection::NoMatch);
    assert_eq!(
        wild.detect_message(&hello(Some("x.y.example"), &[], &[])),
        Detection::NoMatch
    );
    assert!(backend("sni = []").expect_err("empty").contains("the list is empty"));
    assert!(backend("sni = \"a.*.example\"")
        .expect_err("bad")
        .contains("params.sni"));
    assert!(backend("alpn = \"h2\"").is_err(), "unknown param");
}

#[test]
fn dtls13_and_cookie_hellos() {
    let any = dtls("sni = \"q.example\"");
    let v13 = hello(Some("q.example"), &[0xfefc, 0xfefd], &[]);
    assert_eq!(
        props(any.detect_message(&v13)),
        pairs(&[("dtls.version", "1.3"), ("dtls.sni", "q.example")])
    );
    // The ClientHello repeated after a HelloVerifyRequest: message_seq 1, with a cookie.
    let mut with_cookie = hello(Some("q.example"), &[], &[7; 20]);
    with_cookie[17..19].copy_from_slice(&[0, 1]);
    with_cookie[4..11].copy_from_slice(&[0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(
        props(any.detect_message(&with_cookie)),
        pairs(&[("dtls.version", "1.2"), ("dtls.sni", "q.example")])
    );
}

#[test]
fn malformed_hellos_are_no_match() {
    let any = dtls("");
    let good = hello(Some("a.example"), &[0xfefd], &[]);
    assert!(parse_datagram(&good).is_ok());
    let mutate = |at: usize, v: u8| {
        let mut m = good.clone();
        m[at] = v;
        m
    };
    let mut trailing = good.clone();
    trailing[12] += 1; // record length beyond the datagram
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("alert record", mutate(0, 21)),
        ("tls version", mutate(1, 3)),
        ("dtls 1.3 record version", mutate(2, 0xfc)),
        ("epoch 1", mutate(4, 1)),
        ("server hello", mutate(13, 2)),
        ("message_seq 2", mutate(18, 2)),
        ("fragment offset", mutate(21, 5)),
        ("record overruns datagram", trailing),
        ("client version", mutate(26, 0x03)),
        ("session id of 33", mutate(59, 33)),
        ("sni not printable", hello(Some("a\nb"), &[], &[])),
        ("empty sni", hello(Some(""), &[], &[])),
    ];
    for (name, m) in cases {
        assert_eq!(any.detect_message(&m), Detection::NoMatch, "{name}");
    }
    for n in 0..good.len() {
        assert_eq!(any.detect_message(&good[..n]), Detection::NoMatch, "truncated to {n}");
    }
}

#[test]
fn other_udp_protocols_are_no_match() {
    let any = dtls("");
    let mut dns = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    dns.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
    let mut wireguard = vec![1, 0, 0, 0];
    wireguard.extend((0..144).map(|i| i as u8));
    let mut quic = vec![0xc0, 0, 0, 0, 1, 8];
    quic.extend_from_slice(&[0x11; 8]);
    quic.extend_from_slice(&[0, 0, 0x44, 0xd0]);
    quic.resize(1200, 0);
    let stun = [
        0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ];
    let mut tls = vec![0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c, 0x03, 0x03];
    tls.resize(69, 0);
    for (name, m) in [
        ("dns", dns),
        ("wireguard", wireguard),
        ("quic initial", quic),
        ("stun", stun.to_vec()),
        ("tls record", tls),
        ("empty", vec![]),
    ] {
        assert_eq!(any.detect_message(&m), Detection::NoMatch, "{name}");
    }
}

#[test]
fn fuzz_random_and_mutated_datagrams_never_panic() {
    let any = dtls("sni = \"*.example\"");
    let mut rng = Rng::new(0xd715_5eed_0000_0001);
    let v13 = hello(Some("q.example"), &[0xfefc], &[1, 2, 3]);
    let seeds: Vec<&[u8]> = vec![DTLS12, DTLS10, NOSNI, FRAGMENT0, FRAGMENT1, &v13];
    for i in 0..20_000 {
        let input: Vec<u8> = if i % 3 == 0 {
            let n = rng.below(300);
            (0..n).map(|_| rng.next_u64() as u8).collect()
        } else {
            let mut m = seeds[rng.below(seeds.len())].to_vec();
            for _ in 0..=rng.below(4) {
                let at = rng.below(m.len());
                m[at] = rng.next_u64() as u8;
            }
            let cut = rng.below(m.len() + 1);
            m.truncate(cut);
            m
        };
        let verdict = any.detect_message(&input);
        if i % 3 == 0 && input.first() != Some(&0x16) {
            assert_eq!(verdict, Detection::NoMatch);
        }
    }
}
