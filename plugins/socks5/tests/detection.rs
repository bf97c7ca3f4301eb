//! The `socks5` backend over real greetings captured from curl, every prefix, other protocols,
//! params, and thousands of random, truncated and mutated inputs (no panic, a stable verdict).

use pmmux_plugin_api::Detection;
use pmmux_plugin_testkit::{
    assert_needs_more_until_whole, assert_no_params, assert_other_openings_refused_at_once, assert_verdict_stable,
    corrupt_and_truncate, props, Rng,
};
use pmmux_socks5::{detect, parse_greeting, Greeting, Socks5};

// Captured on loopback with a Python listener on 127.0.0.1 (port 0) that saved the first bytes
// received; curl 7.88.1 (Debian 12). curl sends the greeting alone and waits for the server's choice.

/// `curl --socks5 127.0.0.1:PORT http://x/`: methods none and GSSAPI (`05 02 00 01`).
const CURL_NOAUTH: &[u8] = include_bytes!("data/curl_noauth.bin");
/// `curl --socks5 127.0.0.1:PORT --proxy-user bob:secret http://x/`: none, GSSAPI and
/// username/password (`05 03 00 01 02`).
const CURL_USERPASS: &[u8] = include_bytes!("data/curl_userpass.bin");

fn methods(list: &str) -> Vec<(String, String)> {
    vec![("socks5.methods".to_owned(), list.to_owned())]
}

#[test]
fn captures_match_with_their_methods() {
    assert_eq!(CURL_NOAUTH, [5, 2, 0, 1]);
    assert_eq!(props(detect(CURL_NOAUTH)), methods("none,gssapi"));
    assert_eq!(props(detect(CURL_USERPASS)), methods("none,gssapi,username-password"));
}

#[test]
fn every_strict_prefix_needs_more() {
    for capture in [CURL_NOAUTH, CURL_USERPASS] {
        assert_needs_more_until_whole(detect, capture, &format!("{capture:02x?}"));
    }
}

#[test]
fn a_request_sent_right_after_the_greeting_still_matches() {
    let mut optimistic = CURL_NOAUTH.to_vec();
    optimistic.extend_from_slice(&[5, 1, 0, 3, 1, b'x', 0, 80]);
    assert_eq!(props(detect(&optimistic)), methods("none,gssapi"));
}

#[test]
fn private_and_unknown_methods_are_named_in_hex() {
    assert_eq!(props(detect(&[5, 3, 0x03, 0x80, 0xfe])), methods("0x03,0x80,0xfe"));
}

#[test]
fn invalid_greetings_are_no_match_early() {
    assert_eq!(detect(&[5, 0]), Detection::NoMatch, "zero methods");
    assert_eq!(
        detect(&[5, 2, 0xff]),
        Detection::NoMatch,
        "0xff offered, decided before the end"
    );
    assert_eq!(detect(&[4]), Detection::NoMatch, "socks4");
}

/// Checks that keep random bytes out: one random first segment in 670 was a greeting before.
#[test]
fn unassigned_repeated_or_only_private_methods_are_no_match() {
    for unassigned in [0x0a, 0x41, 0x7f] {
        assert_eq!(
            detect(&[5, 3, 0, unassigned]),
            Detection::NoMatch,
            "{unassigned:#x}, decided early"
        );
    }
    assert_eq!(detect(&[5, 3, 0, 2, 0]), Detection::NoMatch, "none offered twice");
    assert_eq!(detect(&[5, 2, 0x80, 0x81]), Detection::NoMatch, "private methods only");
    assert_eq!(detect(&[5, 2, 0x80]), Detection::NeedMore, "a standard one may follow");
    assert_eq!(props(detect(&[5, 2, 0x80, 0x09])), methods("0x80,0x09"));
}

#[test]
fn other_protocols_are_no_match_from_their_first_byte() {
    assert_other_openings_refused_at_once(detect, "socks5");
}

#[test]
fn params_are_refused() {
    assert_no_params(Socks5::new, "socks5", "methods = [\"none\"]");
}

#[test]
fn random_truncated_and_mutated_inputs_never_panic() {
    let mut rng = Rng::new(0x5eed_0005);
    for round in 0..5000 {
        let input = match round % 3 {
            0 => (0..rng.below(12)).map(|_| rng.next_u64() as u8).collect::<Vec<u8>>(),
            1 => {
                let count = rng.below(6) as u8;
                let mut v = vec![5, count];
                v.extend((0..rng.below(8)).map(|_| rng.next_u64() as u8));
                v
            }
            _ => CURL_USERPASS.to_vec(),
        };
        let input = corrupt_and_truncate(&mut rng, input);
        if input.is_empty() {
            continue;
        }
        assert_verdict_stable(detect, &input);
        let verdict = detect(&input);
        let expected = parse_greeting(&input);
        match (&verdict, expected) {
            (Detection::Match(_), Greeting::Complete(_))
            | (Detection::NeedMore, Greeting::Incomplete)
            | (Detection::NoMatch, Greeting::Invalid) => {}
            (v, g) => panic!("{input:02x?}: {v:?} vs {g:?}"),
        }
    }
}
