//! Fuzz-style robustness: thousands of random, truncated and mutated inputs through detection and
//! the host-pattern parser, with a small deterministic PRNG (no extra dependencies). Asserts no
//! panic and a few invariants.

use super::*;
use crate::{detect, probe, HostPattern, Probe, RequestFilter, StringOrList, MAX_HEAD, METHODS};

pub(crate) use pmmux_plugin_testkit::Rng;

/// A random byte, biased towards bytes that matter to an HTTP parser.
fn byte(rng: &mut Rng) -> u8 {
    const INTERESTING: &[u8] = b"\r\n :/\t\0\x7f\xff\xc3Hh.*?[]";
    if rng.below(3) == 0 {
        INTERESTING[rng.below(INTERESTING.len())]
    } else {
        rng.next_u64() as u8
    }
}

/// One random edit of `input`: flip, replace, insert, delete, truncate, duplicate or splice.
pub(crate) fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    let len = input.len();
    match rng.below(7) {
        0 if len > 0 => {
            let at = rng.below(len);
            input[at] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let at = rng.below(len);
            input[at] = byte(rng);
        }
        2 => {
            let at = rng.below(len + 1);
            let b = byte(rng);
            input.insert(at, b);
        }
        3 if len > 0 => {
            let start = rng.below(len);
            let end = (start + 1 + rng.below(8)).min(len);
            input.drain(start..end);
        }
        4 => input.truncate(rng.below(len + 1)),
        5 if len > 0 => {
            let start = rng.below(len);
            let end = (start + 1 + rng.below(32)).min(len);
            let piece = input[start..end].to_vec();
            let at = rng.below(len + 1);
            input.splice(at..at, piece);
        }
        _ => {
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
    }
}

fn filters() -> Vec<RequestFilter> {
    vec![
        RequestFilter::default(),
        RequestFilter::new(Some(StringOrList(vec!["*.example".into(), "127.0.0.1".into()])), None).expect("valid"),
        RequestFilter::new(None, Some(StringOrList(vec!["/api".into()]))).expect("valid"),
    ]
}

/// Checks one input the way the host feeds it: growing prefixes until a decision.
fn check(input: &[u8], filters: &[RequestFilter], rng: &mut Rng) {
    let _ = probe(input);
    for filter in filters {
        let mut n = 0;
        loop {
            let verdict = detect(&input[..n], filter);
            match &verdict {
                Detection::NeedMore => assert!(n < MAX_HEAD, "NeedMore at {n} bytes"),
                Detection::Match(props) => {
                    let method = props.iter().find(|p| p.key.as_str() == "http.method");
                    let method = method.expect("http.method on every match").value.as_str();
                    assert!(METHODS.contains(&method), "{method}");
                    assert!(input.starts_with(method.as_bytes()));
                    break;
                }
                Detection::NoMatch => break,
            }
            if n == input.len() {
                break;
            }
            n = (n + 1 + rng.below(24)).min(input.len());
        }
    }
}

#[test]
fn random_truncated_and_mutated_inputs_never_panic() {
    let mut rng = Rng::new(0x5eed_0001);
    let filters = filters();
    let seeds: Vec<&[u8]> = HTTP_SAMPLES
        .iter()
        .map(|(_, s)| *s)
        .chain([TLS_CLIENT_HELLO, SSH_BANNER])
        .collect();
    for _ in 0..4000 {
        let mut input = seeds[rng.below(seeds.len())].to_vec();
        let other = seeds[rng.below(seeds.len())];
        for _ in 0..1 + rng.below(6) {
            mutate(&mut rng, &mut input, other);
        }
        check(&input, &filters, &mut rng);
    }
}

#[test]
fn random_bytes_never_panic_and_are_rejected_early() {
    let mut rng = Rng::new(0x5eed_0002);
    let filters = filters();
    for _ in 0..4000 {
        let len = rng.below(300);
        let mut input: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if rng.below(2) == 0 {
            // Give half of them a valid method so the parser proper gets exercised.
            let method = METHODS[rng.below(METHODS.len())];
            input.splice(0..0, format!("{method} /").bytes());
        }
        check(&input, &filters, &mut rng);
        let first_letters: Vec<u8> = METHODS.iter().map(|m| m.as_bytes()[0]).collect();
        if input.first().is_some_and(|b| !first_letters.contains(b)) {
            assert_eq!(detect(&input[..1], &filters[0]), Detection::NoMatch);
        }
    }
}

#[test]
fn valid_heads_with_random_fields_are_decided() {
    let mut rng = Rng::new(0x5eed_0003);
    for _ in 0..1000 {
        let mut head = format!("GET /{} HTTP/1.1\r\n", rng.below(1000));
        for i in 0..rng.below(20) {
            head.push_str(&format!("X-F{i}: {}\r\n", "v".repeat(rng.below(50))));
        }
        head.push_str("Host: h.example\r\n\r\n");
        match probe(head.as_bytes()) {
            Probe::Request(info) => assert_eq!(info.host.as_deref(), Some("h.example")),
            other => panic!("{head:?}: {other:?}"),
        }
    }
}

#[test]
fn random_host_patterns_and_hosts_never_panic() {
    let mut rng = Rng::new(0x5eed_0004);
    const ALPHABET: &[&str] = &[
        "a", "b", ".", "*", ":", "[", "]", "8", "0", "-", "_", "é", " ", "@", "/",
    ];
    let random = |rng: &mut Rng| -> String {
        (0..rng.below(14))
            .map(|_| ALPHABET[rng.below(ALPHABET.len())])
            .collect()
    };
    for _ in 0..5000 {
        let pattern = random(&mut rng);
        let host = random(&mut rng);
        if let Ok(p) = HostPattern::parse(&pattern) {
            let _ = p.matches(&host);
            // A valid plain pattern is a valid host that it matches.
            assert!(pattern.starts_with('*') || p.matches(&pattern), "{pattern}");
        }
    }
}
