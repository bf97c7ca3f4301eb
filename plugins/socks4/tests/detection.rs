//! The `socks4` backend over real requests captured from curl, every prefix, other protocols,
//! params, and thousands of random, truncated and mutated inputs (no panic, a stable verdict).

use pmmux_plugin_api::Detection;
use pmmux_plugin_testkit::{assert_verdict_stable, spec, Rng};
use pmmux_socks4::{detect, parse_request, Command, Parse, Socks4, MAX_FIELD};

// Captured on loopback with a Python listener on 127.0.0.1 (port 0) that saved the first bytes
// received; curl 7.88.1 (Debian 12). Each is the whole request, sent in one segment.

/// `curl --socks4 127.0.0.1:PORT http://127.0.0.1:8080/`: CONNECT 127.0.0.1:8080, empty user id.
const CURL_SOCKS4: &[u8] = include_bytes!("data/curl_socks4.bin");
/// `curl --socks4a 127.0.0.1:PORT http://example.com/`: CONNECT example.com:80 (DSTIP 0.0.0.1).
const CURL_SOCKS4A: &[u8] = include_bytes!("data/curl_socks4a.bin");
/// `curl --socks4a 127.0.0.1:PORT --proxy-user alice: http://example.com/`: user id `alice`.
const CURL_SOCKS4A_USER: &[u8] = include_bytes!("data/curl_socks4a_user.bin");

const CAPTURES: [&[u8]; 3] = [CURL_SOCKS4, CURL_SOCKS4A, CURL_SOCKS4A_USER];

fn backend(params_toml: &str) -> Result<Socks4, String> {
    Socks4::new(&spec("socks4", params_toml))
}

fn props(detection: Detection) -> Vec<(String, String)> {
    match detection {
        Detection::Match(props) => props.iter().map(|p| (p.key.to_string(), p.value.to_string())).collect(),
        other => panic!("expected a match, got {other:?}"),
    }
}

fn expected(command: &str, host: &str, port: &str) -> Vec<(String, String)> {
    vec![
        ("socks4.command".to_owned(), command.to_owned()),
        ("socks4.host".to_owned(), host.to_owned()),
        ("socks4.port".to_owned(), port.to_owned()),
    ]
}

#[test]
fn captures_match_with_their_properties() {
    assert_eq!(props(detect(CURL_SOCKS4)), expected("connect", "127.0.0.1", "8080"));
    assert_eq!(props(detect(CURL_SOCKS4A)), expected("connect", "example.com", "80"));
    assert_eq!(
        props(detect(CURL_SOCKS4A_USER)),
        expected("connect", "example.com", "80")
    );
    let Parse::Complete(request) = parse_request(CURL_SOCKS4A_USER) else {
        panic!("capture parses")
    };
    assert_eq!(request.user_id, b"alice");
    assert_eq!(request.command, Command::Connect);
}

#[test]
fn every_strict_prefix_needs_more() {
    for capture in CAPTURES {
        for n in 1..capture.len() {
            assert_eq!(detect(&capture[..n]), Detection::NeedMore, "{capture:02x?} prefix {n}");
        }
    }
}

#[test]
fn bind_and_plain_zero_address() {
    let bind = [4, 2, 0x1f, 0x90, 10, 0, 0, 7, b'u', 0];
    assert_eq!(props(detect(&bind)), expected("bind", "10.0.0.7", "8080"));
    // 0.0.0.0 is not the SOCKS4a marker (x must be non-zero): no domain follows.
    let zero = [4, 1, 0, 80, 0, 0, 0, 0, 0];
    assert_eq!(props(detect(&zero)), expected("connect", "0.0.0.0", "80"));
}

#[test]
fn invalid_requests_are_no_match_early() {
    assert_eq!(detect(&[4, 3]), Detection::NoMatch, "unknown command");
    assert_eq!(detect(&[4, 0]), Detection::NoMatch, "command 0");
    assert_eq!(
        detect(&[4, 1, 0, 80, 1, 2, 3, 4, b'a', b'\n']),
        Detection::NoMatch,
        "control byte in user id"
    );
    assert_eq!(
        detect(&[4, 1, 0, 80, 0, 0, 0, 1, 0, 0]),
        Detection::NoMatch,
        "empty domain"
    );
    let mut long = vec![4, 1, 0, 80, 1, 2, 3, 4];
    long.extend(std::iter::repeat_n(b'a', MAX_FIELD));
    assert_eq!(detect(&long), Detection::NeedMore, "255 bytes of user id so far");
    long.push(b'a');
    assert_eq!(detect(&long), Detection::NoMatch, "user id over 255 bytes");
}

#[test]
fn other_protocols_are_no_match_early() {
    let inputs: &[(&str, &[u8])] = &[
        ("http", b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        (
            "tls",
            &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03],
        ),
        ("ssh", b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"),
        ("socks5", &[5, 2, 0, 1]),
        ("rdp", &[3, 0, 0, 19, 14, 0xe0, 0, 0, 0, 0, 0]),
        ("syslog", b"<13>1 - - - - - - hi\n"),
    ];
    for (name, input) in inputs {
        assert_eq!(detect(&input[..1]), Detection::NoMatch, "{name}: first byte");
        assert_eq!(detect(input), Detection::NoMatch, "{name}");
    }
}

#[test]
fn params_are_refused() {
    assert!(backend("").is_ok());
    let err = backend("host = \"example.com\"").err().unwrap_or_default();
    assert!(err.contains("unknown field"), "{err}");
}

#[test]
fn random_truncated_and_mutated_inputs_never_panic() {
    let mut rng = Rng::new(0x5eed_0004);
    for round in 0..6000 {
        let mut input = match round % 4 {
            0 => (0..rng.below(24)).map(|_| rng.next_u64() as u8).collect::<Vec<u8>>(),
            1 => {
                let mut v = vec![4, 1 + rng.below(2) as u8, 0, 80, 0, 0, 0, rng.below(3) as u8];
                v.extend((0..rng.below(16)).map(|_| {
                    if rng.below(4) == 0 {
                        0
                    } else {
                        b'a' + rng.below(26) as u8
                    }
                }));
                v
            }
            _ => CAPTURES[rng.below(CAPTURES.len())].to_vec(),
        };
        for _ in 0..rng.below(3) {
            if !input.is_empty() {
                let at = rng.below(input.len());
                input[at] = rng.next_u64() as u8;
            }
        }
        input.truncate(rng.below(input.len() + 1));
        if input.is_empty() {
            continue;
        }
        assert_verdict_stable(detect, &input);
        match (detect(&input), parse_request(&input)) {
            (Detection::Match(_), Parse::Complete(_))
            | (Detection::NeedMore, Parse::Incomplete)
            | (Detection::NoMatch, Parse::Invalid) => {}
            (v, p) => panic!("{input:02x?}: {v:?} vs {p:?}"),
        }
    }
}
