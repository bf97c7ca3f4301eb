//! The `socks4` backend over real requests captured from curl, every prefix, other protocols,
//! params, and thousands of random, truncated and mutated inputs (no panic, a stable verdict).

use pmmux_plugin_api::Detection;
use pmmux_plugin_testkit::{
    assert_needs_more_until_whole, assert_no_params, assert_other_openings_refused_at_once, assert_verdict_stable,
    corrupt_and_truncate, props, Rng,
};
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
        assert_needs_more_until_whole(detect, capture, &format!("{capture:02x?}"));
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
    assert_other_openings_refused_at_once(detect, "socks4");
}

#[test]
fn params_are_refused() {
    assert_no_params(Socks4::new, "socks4", "host = \"example.com\"");
}

#[test]
fn random_truncated_and_mutated_inputs_never_panic() {
    let mut rng = Rng::new(0x5eed_0004);
    for round in 0..6000 {
        let input = match round % 4 {
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
        let input = corrupt_and_truncate(&mut rng, input);
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
