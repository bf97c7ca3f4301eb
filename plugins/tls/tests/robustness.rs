//! Non-TLS input is refused early, malformed ClientHellos are refused, and thousands of random,
//! truncated and mutated inputs neither panic nor break the streaming contract (once `Invalid` or
//! `Complete`, more bytes never change the answer).

mod common;

use common::*;
use pmmux_plugin_api::Detection;
use pmmux_plugin_testkit::{mutate_edits, Rng};
use pmmux_tls::client_hello::{parse_handshake, parse_records, Parse};

#[test]
fn other_protocols_are_no_match_from_their_first_bytes() {
    let any = tls("");
    let inputs: &[(&str, &[u8])] = &[
        ("http", b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        ("http2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        ("ssh", b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"),
        ("socks5", &[0x05, 0x01, 0x00]),
        ("rdp / tpkt", &[0x03, 0x00, 0x00, 0x13, 0x0e, 0xe0]),
        ("sslv2 hello", &[0x80, 0x2e, 0x01, 0x03, 0x01]),
        ("openvpn", &[0x00, 0x0e, 0x38]),
        ("tls alert", &[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28]),
        ("tls application data", &[0x17, 0x03, 0x03, 0x00, 0x01, 0x00]),
    ];
    for (name, input) in inputs {
        assert_eq!(
            any.detect_preview(&input[..1]),
            Detection::NoMatch,
            "{name}: first byte decides"
        );
        assert_eq!(any.detect_preview(input), Detection::NoMatch, "{name}");
    }
}

#[test]
fn bad_record_headers_are_no_match_within_five_bytes() {
    let any = tls("");
    for header in [
        [0x16, 0x02, 0x00, 0x00, 0x10], // not 3.x
        [0x16, 0x03, 0x05, 0x00, 0x10], // beyond TLS 1.3
        [0x16, 0x03, 0x01, 0x00, 0x00], // empty record
        [0x16, 0x03, 0x01, 0x40, 0x01], // over 2^14
        [0x16, 0x03, 0x01, 0xff, 0xff],
    ] {
        assert_eq!(any.detect_preview(&header), Detection::NoMatch, "{header:02x?}");
    }
}

#[test]
fn random_bytes_are_no_match_quickly() {
    let any = tls("");
    let mut rng = Rng::new(7);
    for _ in 0..1000 {
        let mut input = rng.bytes(64);
        if input[0] == 0x16 {
            input[0] = 0x42;
        }
        assert_eq!(any.detect_preview(&input[..1]), Detection::NoMatch);
    }
}

#[test]
fn malformed_client_hellos_are_no_match() {
    let any = tls("");
    let mut not_hello = handshake_of(CURL).to_vec();
    not_hello[0] = 2; // ServerHello
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("server hello", records(&not_hello, 1 << 14)),
        ("sni not printable", HelloBuilder::sni("a\nb.example").record()),
        (
            "empty alpn name",
            HelloBuilder {
                alpn: vec![vec![]],
                ..Default::default()
            }
            .record(),
        ),
        (
            "odd supported_versions",
            HelloBuilder {
                extra: vec![(43, vec![3, 3, 4, 3])],
                versions: vec![],
                ..Default::default()
            }
            .record(),
        ),
        ("two host names", {
            let list = [&[0u8, 0, 3][..], b"a.b", &[0, 0, 3], b"c.d"].concat();
            let ext = [&(list.len() as u16).to_be_bytes()[..], &list].concat();
            HelloBuilder {
                sni: None,
                extra: vec![(0, ext)],
                ..Default::default()
            }
            .record()
        }),
        (
            "duplicate sni",
            HelloBuilder {
                extra: vec![(0, vec![0, 4, 0, 0, 1, b'x'])],
                ..Default::default()
            }
            .record(),
        ),
        (
            "ssl 3.0 hello",
            HelloBuilder {
                legacy_version: 0x0300,
                versions: vec![],
                ..Default::default()
            }
            .record(),
        ),
    ];
    for (name, stream) in cases {
        assert!(matches!(parse_records(&stream), Parse::Invalid(_)), "{name}");
        assert_eq!(any.detect_preview(&stream), Detection::NoMatch, "{name}");
    }
}

#[test]
fn a_bad_length_inside_the_hello_is_no_match_before_the_rest_arrives() {
    // Cipher suites claiming more than the whole message holds: decided at that field.
    let mut handshake = handshake_of(OPENSSL_TLS13).to_vec();
    let suites_at = 4 + 2 + 32 + 1 + usize::from(handshake[4 + 2 + 32]);
    handshake[suites_at] = 0xff;
    let stream = records(&handshake, 1 << 14);
    assert!(matches!(parse_records(&stream[..5 + suites_at + 2]), Parse::Invalid(_)));
}

/// The verdicts for a prefix and for the whole input must agree: a prefix that is `Invalid` or
/// `Complete` stays so however many bytes follow.
fn check_consistent(input: &[u8], cut: usize) {
    let cut = cut.min(input.len());
    let whole = parse_records(input);
    match parse_records(&input[..cut]) {
        Parse::Incomplete => {}
        prefix => assert_eq!(prefix, whole, "prefix {cut} of {input:02x?}"),
    }
    let whole = parse_handshake(input);
    match parse_handshake(&input[..cut]) {
        Parse::Incomplete => {}
        prefix => assert_eq!(prefix, whole, "handshake prefix {cut} of {input:02x?}"),
    }
}

/// Up to 4 edits, with the boundary bytes of this protocol's lengths and types.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    mutate_edits(rng, seed, 4, &[0x00, 0x01, 0x7f, 0x80, 0xff])
}

#[test]
fn fuzz_random_truncated_and_mutated_inputs() {
    let any = tls(r#"sni = ["*.example", "example.com"]
alpn = ["h2", "http/1.1"]"#);
    let big = HelloBuilder {
        extra: vec![(21, vec![0; 4500])],
        ..Default::default()
    };
    let mut handshakes: Vec<Vec<u8>> = CAPTURES.iter().map(|(_, c)| handshake_of(c).to_vec()).collect();
    handshakes.push(big.handshake());
    let mut streams: Vec<Vec<u8>> = CAPTURES.iter().map(|(_, c)| c.to_vec()).collect();
    streams.extend(handshakes.iter().map(|h| records(h, 61)));
    let mut rng = Rng::new(0x5eed_1234_abcd_0042);
    let mut outcomes = [0usize; 3];
    for round in 0..20_000 {
        let input = match round % 4 {
            // Pure noise, half of it behind a plausible record and handshake header.
            0 => {
                let len = rng.below(300);
                let mut input = rng.bytes(len);
                if rng.below(2) == 0 && input.len() >= 6 {
                    let (high, low) = (input[3] & 0x3f, input[4]);
                    input[..6].copy_from_slice(&[0x16, 0x03, 0x01, high, low, 0x01]);
                }
                input
            }
            // A real hello, truncated somewhere.
            1 => {
                let stream = &streams[rng.below(streams.len())];
                stream[..rng.below(stream.len() + 1)].to_vec()
            }
            // Mutated hellos, with and without the record layer.
            2 => {
                let stream = &streams[rng.below(streams.len())];
                mutate(&mut rng, stream)
            }
            _ => {
                let handshake = &handshakes[rng.below(handshakes.len())];
                mutate(&mut rng, handshake)
            }
        };
        let verdict = any.detect_preview(&input);
        outcomes[match verdict {
            Detection::Match(_) => 0,
            Detection::NoMatch => 1,
            Detection::NeedMore => 2,
        }] += 1;
        check_consistent(&input, rng.below(input.len() + 1));
    }
    // The generator exercised every verdict, not just the first byte check.
    assert!(
        outcomes.iter().all(|&n| n > 500),
        "match / no match / need more: {outcomes:?}"
    );
}
