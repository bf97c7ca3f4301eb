//! HTTP/2 with prior knowledge: `http-response` answers in HTTP/1.1 only, so it must never take a
//! connection that opens with the `PRI * HTTP/2.0` preface (the `http` plugin can, since it
//! forwards); and should such bytes reach a session anyway, it answers 400 and closes.

use super::*;
use pmmux_http_core::{H2_PREFACE, H2_VERSION};
use pmmux_plugin_api::{Backend, Detection};

#[test]
fn the_preface_is_no_match_from_its_third_byte_whatever_the_filters() {
    for params in ["", "host = \"127.0.0.1\"", "path_prefix = \"*\""] {
        let backend = HttpResponse::new(&spec(params)).expect("valid params");
        // `P` and `PR` may still start `POST`, `PUT` or `PROPFIND`.
        for n in 1..3 {
            assert_eq!(
                backend.detect(&conn(), &CURL_H2_PRIOR_KNOWLEDGE[..n]),
                Detection::NeedMore,
                "{params}: prefix {n}"
            );
        }
        for n in 3..=CURL_H2_PRIOR_KNOWLEDGE.len() {
            assert_eq!(
                backend.detect(&conn(), &CURL_H2_PRIOR_KNOWLEDGE[..n]),
                Detection::NoMatch,
                "{params}: prefix {n}"
            );
        }
    }
    assert!(CURL_H2_PRIOR_KNOWLEDGE.starts_with(H2_PREFACE));
    assert_eq!(H2_VERSION, "HTTP/2");
}

#[test]
fn a_session_fed_the_preface_answers_400_and_closes() {
    let (out, ctl) = serve(CURL_H2_PRIOR_KNOWLEDGE);
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out:?}");
    assert_eq!(ctl, SessionCtl::Close);
}

#[test]
fn params_have_no_h2c_switch() {
    let err = HttpResponse::new(&spec("h2c = true")).expect_err("unknown field");
    assert!(err.contains("unknown field `h2c`"), "{err}");
}
