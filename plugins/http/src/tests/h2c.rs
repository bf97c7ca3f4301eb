//! HTTP/2 with prior knowledge: the captured curl preface, its prefixes, the `h2c` param, and the
//! filters that can never pass it.

use super::fuzz::{mutate, Rng};
use super::*;
use crate::{h2_properties, Http, HttpParams, H2_PREFACE};
use pmmux_plugin_api::Backend;

fn backend(params: &str) -> Http {
    Http::new(&spec(params)).unwrap_or_else(|e| panic!("{params}: {e}"))
}

#[test]
fn the_capture_starts_with_the_preface() {
    assert!(CURL_H2_PRIOR_KNOWLEDGE.starts_with(H2_PREFACE));
    assert!(
        CURL_H2_PRIOR_KNOWLEDGE.len() > H2_PREFACE.len(),
        "frames follow the preface"
    );
}

#[test]
fn prior_knowledge_matches_with_only_the_version() {
    let http = backend("");
    assert!(http.accepts_h2c());
    let d = http.detect(&conn(), CURL_H2_PRIOR_KNOWLEDGE);
    assert_eq!(prop(&d, "http.version").as_deref(), Some("HTTP/2"));
    assert_eq!(prop(&d, "http.method"), None);
    assert_eq!(prop(&d, "http.host"), None);
    assert_eq!(prop(&d, "http.path"), None);
}

#[test]
fn every_prefix_of_the_preface_needs_more_then_it_is_decided() {
    let http = backend("");
    let whole = http.detect(&conn(), CURL_H2_PRIOR_KNOWLEDGE);
    for n in 1..=CURL_H2_PRIOR_KNOWLEDGE.len() {
        let got = http.detect(&conn(), &CURL_H2_PRIOR_KNOWLEDGE[..n]);
        if n < H2_PREFACE.len() {
            assert_eq!(got, Detection::NeedMore, "prefix {n}");
        } else {
            assert_eq!(got, whole, "prefix {n}");
        }
    }
}

#[test]
fn h2c_false_refuses_prior_knowledge_as_soon_as_it_differs_from_http1() {
    let http = backend("h2c = false");
    assert!(!http.accepts_h2c());
    // `P` and `PR` could still be `POST`, `PUT`, `PROPFIND`...; `PRI` cannot.
    assert_eq!(http.detect(&conn(), b"P"), Detection::NeedMore);
    assert_eq!(http.detect(&conn(), b"PR"), Detection::NeedMore);
    for n in 3..=CURL_H2_PRIOR_KNOWLEDGE.len() {
        assert_eq!(
            http.detect(&conn(), &CURL_H2_PRIOR_KNOWLEDGE[..n]),
            Detection::NoMatch,
            "prefix {n}"
        );
    }
    // HTTP/1.x is unaffected.
    assert!(matches!(http.detect(&conn(), CURL_GET), Detection::Match(_)));
}

#[test]
fn host_and_path_filters_never_pass_prior_knowledge() {
    for params in [
        "host = \"127.0.0.1\"",
        "host = \"*.example\"",
        "path_prefix = \"/\"",
        "path_prefix = \"*\"",
        "h2c = false\nhost = \"a.example\"",
    ] {
        let http = backend(params);
        assert!(!http.accepts_h2c(), "{params}");
        assert_eq!(
            http.detect(&conn(), CURL_H2_PRIOR_KNOWLEDGE),
            Detection::NoMatch,
            "{params}"
        );
    }
}

#[test]
fn h2c_true_with_a_filter_is_refused() {
    for params in ["h2c = true\nhost = \"a.example\"", "h2c = true\npath_prefix = \"/api\""] {
        let err = Http::new(&spec(params)).expect_err(params);
        assert!(err.contains("params.h2c = true cannot be combined"), "{params}: {err}");
    }
    assert!(Http::new(&spec("h2c = true")).is_ok_and(|h| h.accepts_h2c()));
    let err = Http::new(&spec("h2c = \"yes\"")).expect_err("string");
    assert!(err.contains("invalid type"), "{err}");
    let parsed: HttpParams = spec("h2c = false").params().expect("bool");
    assert_eq!(parsed.h2c, Some(false));
}

#[test]
fn near_prefaces_and_http2_request_lines_are_no_match() {
    let http = backend("");
    for bytes in [
        &b"PRI * HTTP/2.1\r\n\r\nSM\r\n\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",
        b"PRI / HTTP/2.0\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"PRIX",
    ] {
        assert_eq!(
            http.detect(&conn(), bytes),
            Detection::NoMatch,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// Growing prefixes of mutated captures through three backends: no panic, a `NoMatch` or an HTTP/2
/// match is never changed by more bytes. (An HTTP/1.x match is decided on the `Host` line, and a
/// later malformed field may turn a longer prefix into `NoMatch`; the host keeps the first verdict.)
#[test]
fn mutated_prefaces_keep_their_first_verdict() {
    let backends = [backend(""), backend("h2c = false"), backend("host = \"a.example\"")];
    let mut rng = Rng::new(0x5eed_0b2c);
    let seeds: [&[u8]; 3] = [CURL_H2_PRIOR_KNOWLEDGE, CURL_GET, WRK_GET];
    for _ in 0..2000 {
        let mut input = seeds[rng.below(seeds.len())].to_vec();
        let other = seeds[rng.below(seeds.len())];
        for _ in 0..1 + rng.below(3) {
            mutate(&mut rng, &mut input, other);
        }
        for http in &backends {
            let mut first: Option<Detection> = None;
            for n in 1..=input.len() {
                let verdict = http.detect(&conn(), &input[..n]);
                match (&first, &verdict) {
                    (None, Detection::NeedMore) => {}
                    (None, _) => first = Some(verdict),
                    (Some(Detection::NoMatch), v) => assert_eq!(v, &Detection::NoMatch, "{input:?} at {n}"),
                    (Some(Detection::Match(props)), v) if props.len() == 1 => {
                        assert_eq!(v, &Detection::Match(h2_properties()), "{input:?} at {n}")
                    }
                    (Some(_), _) => {}
                }
            }
        }
    }
}
