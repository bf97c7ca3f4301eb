//! The `stun` backend over real captures, the RFC 5769 test vector, synthetic messages, other UDP
//! protocols, TCP prefixes, and thousands of random and mutated inputs (no panic, no false match of
//! random bytes).

use pmmux_plugin_api::Detection;
use pmmux_plugin_testkit::{assert_needs_more_until_whole, pairs, props, spec, Rng};
use pmmux_stun::message::{crc32, parse_message, FINGERPRINT_XOR};
use pmmux_stun::Stun;

// Captured on loopback with a Python listener on 127.0.0.1 (port 0) saving the first datagram or the
// first bytes of the connection; clients from Debian 12's coturn 4.6.1.

/// `turnutils_stunclient -p PORT 127.0.0.1`: a Binding request without attributes.
const STUNCLIENT: &[u8] = include_bytes!("data/turnutils_stunclient.bin");
/// `turnutils_stunclient -f -p PORT 127.0.0.1` (RFC 5780 mode): also a bare Binding request.
const STUNCLIENT_F: &[u8] = include_bytes!("data/turnutils_stunclient_f.bin");
/// `turnutils_uclient -n 1 -u user -w pass -e 127.0.0.1 -p PORT 127.0.0.1`: a TURN Allocate request
/// with REQUESTED-TRANSPORT, LIFETIME, EVEN-PORT, REQUESTED-ADDRESS-FAMILY and FINGERPRINT.
const ALLOCATE_UDP: &[u8] = include_bytes!("data/turn_allocate_udp.bin");
/// The same with `-t`: over TCP.
const ALLOCATE_TCP: &[u8] = include_bytes!("data/turn_allocate_tcp.bin");

/// RFC 5769 §2.1, "Sample Request": a Binding request with SOFTWARE, PRIORITY, ICE-CONTROLLED,
/// USERNAME, MESSAGE-INTEGRITY and FINGERPRINT.
const RFC5769_REQUEST: &[u8] = &[
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf,
    0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65,
    0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51,
    0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20,
    0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2,
    0x49, 0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
];

fn backend(params_toml: &str) -> Result<Stun, String> {
    Stun::new(&spec("stun", params_toml))
}

fn stun(params_toml: &str) -> Stun {
    backend(params_toml).unwrap_or_else(|e| panic!("{params_toml}: {e}"))
}

/// A message of `message_type` with `attrs` (type, value; values padded here) and optionally a
/// FINGERPRINT; `cookie` false writes a RFC 3489 transaction id instead of the magic cookie.
fn build(message_type: u16, attrs: &[(u16, &[u8])], fingerprint: bool, cookie: bool) -> Vec<u8> {
    let mut body = Vec::new();
    for (kind, value) in attrs {
        body.extend_from_slice(&kind.to_be_bytes());
        body.extend_from_slice(&(value.len() as u16).to_be_bytes());
        body.extend_from_slice(value);
        body.resize((body.len() + 3) & !3, 0);
    }
    let mut m = message_type.to_be_bytes().to_vec();
    let len = body.len() + if fingerprint { 8 } else { 0 };
    m.extend_from_slice(&(len as u16).to_be_bytes());
    m.extend_from_slice(if cookie {
        &[0x21, 0x12, 0xa4, 0x42]
    } else {
        &[0x5a, 0x17, 0x01, 0x99]
    });
    m.extend_from_slice(&[7; 12]);
    m.extend_from_slice(&body);
    if fingerprint {
        let crc = crc32(&m) ^ FINGERPRINT_XOR;
        m.extend_from_slice(&[0x80, 0x28, 0x00, 0x04]);
        m.extend_from_slice(&crc.to_be_bytes());
    }
    m
}

#[test]
fn captures_and_rfc5769_vector_match() {
    let any = stun("");
    let binding = pairs(&[("stun.method", "binding"), ("stun.class", "request")]);
    for (name, m) in [
        ("stunclient", STUNCLIENT),
        ("stunclient -f", STUNCLIENT_F),
        ("rfc5769", RFC5769_REQUEST),
    ] {
        assert_eq!(props(any.detect_message(m)), binding, "{name}");
        assert_eq!(props(any.detect_stream(m)), binding, "{name} over tcp");
    }
    let parsed = parse_message(RFC5769_REQUEST, false).expect("vector parses");
    assert!(parsed.fingerprint, "the vector's FINGERPRINT is checked");
    let turn = stun("methods = [\"binding\", \"allocate\"]");
    let allocate = pairs(&[("stun.method", "allocate"), ("stun.class", "request")]);
    assert_eq!(props(turn.detect_message(ALLOCATE_UDP)), allocate);
    assert_eq!(props(turn.detect_stream(ALLOCATE_TCP)), allocate);
    assert!(parse_message(ALLOCATE_TCP, false).expect("parses").fingerprint);
    // Binding only by default.
    assert_eq!(any.detect_message(ALLOCATE_UDP), Detection::NoMatch);
    assert_eq!(any.detect_stream(&ALLOCATE_TCP[..2]), Detection::NoMatch);
}

#[test]
fn indications_match_responses_do_not() {
    let any = stun("");
    let indication = build(0x0011, &[], true, true);
    assert_eq!(
        props(any.detect_message(&indication)),
        pairs(&[("stun.method", "binding"), ("stun.class", "indication")])
    );
    for response in [0x0101, 0x0111] {
        let m = build(response, &[(0x0020, &[0, 1, 2, 3, 4, 5, 6, 7])], true, true);
        assert!(parse_message(&m, false).is_ok(), "well formed");
        assert_eq!(any.detect_message(&m), Detection::NoMatch, "{response:04x}");
        assert_eq!(any.detect_stream(&m), Detection::NoMatch, "{response:04x} over tcp");
    }
    let send = stun("methods = \"send\"");
    let m = build(0x0016, &[(0x0013, b"hello")], false, true);
    assert_eq!(
        props(send.detect_message(&m)),
        pairs(&[("stun.method", "send"), ("stun.class", "indication")])
    );
}

#[test]
fn classic_rfc3489_only_when_asked() {
    let classic_request = build(0x0001, &[(0x0003, &[0, 0, 0, 0])], false, false);
    assert_eq!(stun("").detect_message(&classic_request), Detection::NoMatch);
    let classic = stun("classic = true");
    assert_eq!(
        props(classic.detect_message(&classic_request)),
        pairs(&[
            ("stun.method", "binding"),
            ("stun.class", "request"),
            ("stun.classic", "true")
        ])
    );
    // Only Binding requests, and never over TCP.
    assert_eq!(
        classic.detect_message(&build(0x0011, &[], false, false)),
        Detection::NoMatch
    );
    assert_eq!(classic.detect_stream(&classic_request), Detection::NoMatch);
    assert_eq!(classic.detect_message(STUNCLIENT), stun("").detect_message(STUNCLIENT));
}

#[test]
fn malformed_messages_are_no_match() {
    let any = stun("");
    let good = build(0x0001, &[(0x8022, b"pmmux test")], true, true);
    assert!(matches!(any.detect_message(&good), Detection::Match(_)));
    let mut bad_fp = good.clone();
    *bad_fp.last_mut().expect("non-empty") ^= 1;
    let mut longer = good.clone();
    longer.extend_from_slice(&[0; 4]);
    let mut odd_len = good.clone();
    odd_len[3] += 2;
    let mut overrun = build(0x0001, &[(0x8022, b"abcd")], false, true);
    overrun[22..24].copy_from_slice(&[0, 8]);
    let mut top_bits = STUNCLIENT.to_vec();
    top_bits[0] = 0x40;
    let fp_not_last = build(0x0001, &[(0x8028, &[0, 0, 0, 0]), (0x8022, b"abcd")], false, true);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("wrong fingerprint", bad_fp),
        ("trailing bytes", longer),
        ("length not a multiple of 4", odd_len),
        ("attribute overruns", overrun),
        ("top bits set", top_bits),
        ("fingerprint not last", fp_not_last),
        (
            "fingerprint of 8 bytes",
            build(0x0001, &[(0x8028, &[0; 8])], false, true),
        ),
        ("no cookie", build(0x0001, &[], false, false)),
    ];
    for (name, m) in cases {
        assert_eq!(any.detect_message(&m), Detection::NoMatch, "{name}");
    }
    for n in 0..good.len() {
        assert_eq!(any.detect_message(&good[..n]), Detection::NoMatch, "truncated to {n}");
    }
}

#[test]
fn tcp_prefixes_need_more_then_match() {
    let any = stun("");
    for m in [STUNCLIENT, RFC5769_REQUEST] {
        assert_needs_more_until_whole(|d| any.detect_stream(d), m, "capture");
        let mut more = m.to_vec();
        more.extend_from_slice(b"next message");
        assert!(matches!(any.detect_stream(&more), Detection::Match(_)));
    }
    let turn = stun("methods = \"allocate\"");
    assert_needs_more_until_whole(|d| turn.detect_stream(d), ALLOCATE_TCP, "allocate");
}

#[test]
fn params_are_validated() {
    assert!(backend("methods = []")
        .expect_err("empty")
        .contains("the list is empty"));
    let err = backend("methods = \"bind\"").expect_err("unknown");
    assert!(
        err.contains("unknown method `bind`") && err.contains("channel-bind"),
        "{err}"
    );
    assert!(backend("classic = true\nmethods = \"allocate\"")
        .expect_err("classic")
        .contains("binding"));
    assert!(backend("method = \"binding\"").is_err(), "unknown key");
    assert!(
        backend("methods = [\"Binding\", \"CHANNEL-BIND\"]").is_ok(),
        "names ignore case"
    );
}

/// Datagrams of other UDP protocols a STUN port may share.
fn other_protocols() -> Vec<(&'static str, Vec<u8>)> {
    let mut dns = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    dns.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
    let mut wireguard = vec![1, 0, 0, 0];
    wireguard.extend((0..144).map(|i| i as u8));
    let mut quic = vec![0xc0, 0, 0, 0, 1, 8];
    quic.extend_from_slice(&[0x11; 8]);
    quic.extend_from_slice(&[0, 0, 0x44, 0xd0]);
    quic.resize(1200, 0);
    let mut dtls = vec![0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 1, 0, 0, 4];
    dtls.resize(29, 0);
    // TURN ChannelData: channel 0x4000, length 4.
    let channel_data = vec![0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4];
    // RTP (version 2) and an all-zero datagram.
    let mut rtp = vec![0x80, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    rtp.resize(172, 0x55);
    vec![
        ("dns", dns),
        ("wireguard", wireguard),
        ("quic initial", quic),
        ("dtls", dtls),
        ("turn channel data", channel_data),
        ("rtp", rtp),
        ("zeros", vec![0; 48]),
        ("empty", vec![]),
    ]
}

#[test]
fn other_protocols_are_no_match() {
    let turn = stun("methods = [\"binding\", \"allocate\", \"send\", \"data\", \"refresh\"]\nclassic = true");
    for (name, m) in other_protocols() {
        assert_eq!(turn.detect_message(&m), Detection::NoMatch, "{name}");
        if !m.is_empty() {
            // The host never calls `detect` without a byte.
            assert_eq!(turn.detect_stream(&m), Detection::NoMatch, "{name} over tcp");
        }
    }
    for (name, m) in [
        ("http", &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]),
        ("tls", &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..]),
        ("ssh", &b"SSH-2.0-OpenSSH_9.2\r\n"[..]),
    ] {
        assert_eq!(
            turn.detect_stream(&m[..1]),
            Detection::NoMatch,
            "{name} refused from its first byte"
        );
    }
}

#[test]
fn fuzz_random_and_mutated_inputs_never_panic() {
    let all = stun("methods = [\"binding\", \"allocate\", \"send\", \"refresh\"]\nclassic = true");
    let mut rng = Rng::new(0x5eed_1234_abcd_0001);
    let seeds: Vec<&[u8]> = vec![STUNCLIENT, RFC5769_REQUEST, ALLOCATE_UDP, ALLOCATE_TCP];
    for i in 0..20_000 {
        let input = if i % 2 == 0 {
            let n = rng.below(120);
            rng.bytes(n)
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
        let udp = all.detect_message(&input);
        let tcp = all.detect_stream(&input);
        if i % 2 == 0 && input.len() >= 20 {
            // Random bytes matching would be a 1-in-2^32 cookie hit at best.
            assert_eq!(udp, Detection::NoMatch, "random {input:02x?}");
        }
        if let Detection::Match(_) = udp {
            assert!(input.len() >= 20);
        }
        let _ = tcp;
    }
}
