//! The `syslog` backend over real messages captured from util-linux `logger`, every prefix, other
//! protocols, params, and thousands of random, truncated and mutated inputs (no panic, a stable
//! verdict).

use pmmux_plugin_api::Detection;
use pmmux_plugin_testkit::{assert_no_params, assert_verdict_stable, corrupt_and_truncate, props, Rng};
use pmmux_syslog::{detect, parse, Header, Parse, Syslog};

// Captured on loopback with a Python listener on 127.0.0.1 (port 0) that saved the first bytes
// received; `logger` from util-linux 2.38.1 (Debian 12).

/// `logger --tcp -n 127.0.0.1 -P PORT --rfc5424 hello from logger`: `<13>1 2026-...` (user.notice),
/// LF-terminated (non-transparent framing).
const LOGGER_RFC5424: &[u8] = include_bytes!("data/logger_rfc5424.bin");
/// `logger --tcp -n 127.0.0.1 -P PORT --rfc3164 -p mail.err hello from logger`: `<19>Nov 21 ...`.
const LOGGER_RFC3164: &[u8] = include_bytes!("data/logger_rfc3164.bin");
/// `logger --tcp -n 127.0.0.1 -P PORT --rfc5424 --octet-count -p local3.debug hello`:
/// `96 <159>1 2026-...` (RFC 6587 octet counting).
const LOGGER_OCTET: &[u8] = include_bytes!("data/logger_rfc5424_octet.bin");

const CAPTURES: [&[u8]; 3] = [LOGGER_RFC5424, LOGGER_RFC3164, LOGGER_OCTET];

fn expected(facility: &str, severity: &str) -> Vec<(String, String)> {
    vec![
        ("syslog.facility".to_owned(), facility.to_owned()),
        ("syslog.severity".to_owned(), severity.to_owned()),
    ]
}

#[test]
fn captures_match_with_their_properties() {
    assert!(LOGGER_RFC5424.starts_with(b"<13>1 "));
    assert_eq!(props(detect(LOGGER_RFC5424)), expected("user", "notice"));
    assert_eq!(props(detect(LOGGER_RFC3164)), expected("mail", "err"));
    assert_eq!(props(detect(LOGGER_OCTET)), expected("local3", "debug"));
    assert_eq!(
        parse(LOGGER_OCTET),
        Parse::Complete(Header {
            octet_count: Some(96),
            pri: 159
        })
    );
    assert_eq!(LOGGER_OCTET.len(), 96 + 3, "the count covers the rest");
}

#[test]
fn decided_on_the_byte_after_the_pri() {
    for capture in CAPTURES {
        let close = capture.iter().position(|&b| b == b'>').unwrap_or_default();
        for n in 1..=close {
            assert_eq!(detect(&capture[..n]), Detection::NeedMore, "{capture:02x?} prefix {n}");
        }
        for n in close + 2..=capture.len() {
            assert!(matches!(detect(&capture[..n]), Detection::Match(_)), "prefix {n}");
        }
    }
}

#[test]
fn pri_bounds_and_forms() {
    assert_eq!(props(detect(b"<0>x")), expected("kern", "emerg"));
    assert_eq!(props(detect(b"<191>x")), expected("local7", "debug"));
    assert_eq!(detect(b"<192"), Detection::NoMatch, "above 191, before the `>`");
    assert_eq!(detect(b"<01>"), Detection::NoMatch, "leading zero");
    assert_eq!(detect(b"<1000"), Detection::NoMatch, "four digits");
    assert_eq!(detect(b"<>"), Detection::NoMatch, "empty");
    assert_eq!(detect(b"<13>\x00"), Detection::NoMatch, "control byte after the PRI");
    assert_eq!(detect(b"0 <13>x"), Detection::NoMatch, "octet count 0");
    assert_eq!(detect(b"1234567890"), Detection::NoMatch, "octet count over 9 digits");
    assert_eq!(detect(b"12<13>x"), Detection::NoMatch, "no space after the count");
}

#[test]
fn other_protocols_are_no_match_early() {
    let inputs: &[(&str, &[u8], usize)] = &[
        ("http", b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", 1),
        (
            "tls",
            &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03],
            1,
        ),
        ("ssh", b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n", 1),
        ("socks5", &[5, 2, 0, 1], 1),
        ("rdp", &[3, 0, 0, 19, 14, 0xe0, 0, 0, 0, 0, 0], 1),
        ("xml", b"<?xml version=\"1.0\"?>", 2),
        ("redis inline", b"123abc", 4),
    ];
    for (name, input, decided_at) in inputs {
        assert_eq!(detect(&input[..*decided_at]), Detection::NoMatch, "{name}: early");
        assert_eq!(detect(input), Detection::NoMatch, "{name}");
    }
}

#[test]
fn params_are_refused() {
    assert_no_params(Syslog::new, "syslog", "facility = \"mail\"");
}

#[test]
fn random_truncated_and_mutated_inputs_never_panic() {
    let mut rng = Rng::new(0x5eed_5106);
    let alphabet = b"0123456789<> 1aZ\n";
    for round in 0..6000 {
        let input = match round % 3 {
            0 => (0..rng.below(16)).map(|_| rng.next_u64() as u8).collect::<Vec<u8>>(),
            1 => (0..rng.below(14))
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect(),
            _ => CAPTURES[rng.below(CAPTURES.len())][..12].to_vec(),
        };
        let input = corrupt_and_truncate(&mut rng, input);
        if input.is_empty() {
            continue;
        }
        assert_verdict_stable(detect, &input);
        match (detect(&input), parse(&input)) {
            (Detection::Match(_), Parse::Complete(_))
            | (Detection::NeedMore, Parse::Incomplete)
            | (Detection::NoMatch, Parse::Invalid) => {}
            (v, p) => panic!("{input:02x?}: {v:?} vs {p:?}"),
        }
    }
}
