//! Params validation, the rendered response, and detection shared with `http`.

use super::*;
use crate::{reason, Response};
use pmmux_plugin_api::{Backend, Detection, Handling};

fn response(toml: &str) -> String {
    let backend = HttpResponse::new(&spec(toml)).unwrap_or_else(|e| panic!("{toml}: {e}"));
    feed(&mut backend.session(), WRK_GET, WRK_GET.len()).0
}

fn error(toml: &str) -> String {
    HttpResponse::new(&spec(toml)).expect_err(toml)
}

#[test]
fn defaults_are_an_empty_200_text_response() {
    assert_eq!(
        response(""),
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    );
}

#[test]
fn status_body_and_content_type_are_rendered() {
    assert_eq!(
        response("status = 404\nbody = \"nope\"\ncontent_type = \"text/html\""),
        "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\nContent-Type: text/html\r\n\r\nnope"
    );
    // Content-Length counts bytes, not characters.
    assert!(response("body = \"é\"").contains("Content-Length: 2\r\n"));
    // An empty content type leaves the field out; unknown statuses have an empty reason.
    assert_eq!(
        response("status = 599\ncontent_type = \"\""),
        "HTTP/1.1 599 \r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(reason(418), "I'm a teapot");
}

#[test]
fn statuses_without_content_get_no_length_or_type() {
    assert_eq!(response("status = 204"), "HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(response("status = 304"), "HTTP/1.1 304 Not Modified\r\n\r\n");
    assert!(error("status = 204\nbody = \"x\"").contains("must be empty"));
    assert!(error("status = 103\nbody = \"x\"").contains("must be empty"));
}

#[test]
fn bad_params_are_reported() {
    for status in ["99", "600", "-1", "0", "70000", "9223372036854775807"] {
        let err = error(&format!("status = {status}"));
        assert!(err.contains("100 to 599"), "{status}: {err}");
    }
    assert!(error("status = \"200\"").contains("invalid"));
    assert!(error("content_type = \"text/plain\\r\\nX-Injected: 1\"").contains("one line"));
    assert!(error("bodyy = \"typo\"").contains("bodyy"));
    assert!(error("host = []").contains("empty"));
    assert!(error("path_prefix = \"api\"").contains("/"));
    assert!(Response::new(200, "", "a\u{7f}").is_err());
}

#[test]
fn detection_is_http_with_its_filters() {
    let any = backend();
    for request in [
        CURL_GET_PLAIN,
        CURL_HEAD,
        CURL_POST,
        CURL_HTTP10,
        WGET_GET,
        URLLIB_GET,
        WRK_GET,
    ] {
        assert!(matches!(any.detect(&conn(), request), Detection::Match(_)));
    }
    assert_eq!(any.detect(&conn(), &WRK_GET[..20]), Detection::NeedMore);
    assert_eq!(any.detect(&conn(), TLS_CLIENT_HELLO), Detection::NoMatch);
    assert_eq!(any.detect(&conn(), SSH_BANNER), Detection::NoMatch);
    assert_eq!(any.detect(&conn(), &TLS_CLIENT_HELLO[..1]), Detection::NoMatch);

    let filtered = HttpResponse::new(&spec("host = \"*.example\"\npath_prefix = \"/health\"")).expect("valid");
    let hit = b"GET /healthz HTTP/1.1\r\nHost: API.example:8080\r\n\r\n";
    match filtered.detect(&conn(), hit) {
        Detection::Match(props) => {
            let host = props
                .iter()
                .find(|p| p.key.as_str() == "http.host")
                .map(|p| p.value.as_str());
            assert_eq!(host, Some("API.example:8080"));
        }
        other => panic!("expected a match, got {other:?}"),
    }
    assert_eq!(filtered.detect(&conn(), WRK_GET), Detection::NoMatch);
    assert_eq!(
        filtered.detect(&conn(), b"GET /other HTTP/1.1\r\nHost: a.example\r\n\r\n"),
        Detection::NoMatch
    );
}

#[test]
fn open_serves_and_the_preview_is_answered_first() {
    let backend = backend();
    let Handling::Serve(mut session) = backend.open(&conn(), WRK_GET) else {
        panic!("http-response must serve");
    };
    let mut out = Vec::new();
    assert_eq!(session.on_data(WRK_GET, &mut out), SessionCtl::Continue);
    assert_eq!(String::from_utf8_lossy(&out), OK);
    // UDP is not this backend's business.
    assert_eq!(backend.can_handle_message(&conn(), b"x"), Detection::NoMatch);
}
