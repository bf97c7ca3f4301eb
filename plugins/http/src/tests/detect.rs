//! Detection over captured requests: properties, every prefix, early decisions, non-HTTP input and
//! malformed requests.

use super::*;
use crate::{detect, probe, Http, Probe, RequestFilter, StringOrList, MAX_HEAD, MAX_HEADERS};
use pmmux_plugin_api::Backend;
use pmmux_plugin_testkit::same_kind;

fn any() -> RequestFilter {
    RequestFilter::default()
}

fn hosts(patterns: &[&str]) -> RequestFilter {
    let list = StringOrList(patterns.iter().map(|s| s.to_string()).collect());
    RequestFilter::new(Some(list), None).expect("valid host patterns")
}

/// Where detection can decide: just after the `Host` line, or at the end of the head without one.
fn decision_point(request: &[u8]) -> usize {
    let text = String::from_utf8_lossy(request).to_ascii_lowercase();
    match text.find("\r\nhost:") {
        Some(at) => at + 2 + text[at + 2..].find('\n').expect("host line ends") + 1,
        None => text.find("\r\n\r\n").expect("head ends") + 4,
    }
}

#[test]
fn captured_requests_match_with_their_properties() {
    let d = detect(CURL_GET, &any());
    assert_eq!(prop(&d, "http.method").as_deref(), Some("GET"));
    assert_eq!(prop(&d, "http.host").as_deref(), Some("A.Example:8080"));
    assert_eq!(prop(&d, "http.path").as_deref(), Some("/api/v1/items?x=1"));
    assert_eq!(prop(&d, "http.version").as_deref(), Some("HTTP/1.1"));

    let d = detect(CURL_HEAD, &any());
    assert_eq!(prop(&d, "http.method").as_deref(), Some("HEAD"));
    assert_eq!(prop(&d, "http.path").as_deref(), Some("/index.html"));

    let d = detect(CURL_POST, &any());
    assert_eq!(prop(&d, "http.method").as_deref(), Some("POST"));
    assert_eq!(prop(&d, "http.path").as_deref(), Some("/form"));

    let d = detect(CURL_CHUNKED, &any());
    assert_eq!(prop(&d, "http.method").as_deref(), Some("PUT"));

    let d = detect(CURL_HTTP10, &any());
    assert_eq!(prop(&d, "http.host"), None);
    assert_eq!(prop(&d, "http.path").as_deref(), Some("/old"));
    assert_eq!(prop(&d, "http.version").as_deref(), Some("HTTP/1.0"));

    let d = detect(URLLIB_GET, &any());
    assert!(prop(&d, "http.host").is_some_and(|h| h.starts_with("127.0.0.1:")));
    assert_eq!(prop(&d, "http.path").as_deref(), Some("/py?q=1"));

    assert_eq!(
        prop(&detect(WGET_GET, &any()), "http.path").as_deref(),
        Some("/file.txt")
    );
    assert_eq!(prop(&detect(WRK_GET, &any()), "http.path").as_deref(), Some("/bench"));
    // Two pipelined/keep-alive requests: the first one decides.
    assert_eq!(
        prop(&detect(CURL_KEEPALIVE, &any()), "http.path").as_deref(),
        Some("/one")
    );
}

#[test]
fn every_prefix_needs_more_until_the_host_is_known() {
    for (name, request) in HTTP_SAMPLES {
        let decide = decision_point(request);
        let full = detect(request, &any());
        for n in 0..request.len() {
            let got = detect(&request[..n], &any());
            if n < decide {
                assert_eq!(got, Detection::NeedMore, "{name}: prefix {n} of {}", request.len());
            } else {
                assert_eq!(got, full, "{name}: prefix {n} decided differently");
            }
        }
    }
}

#[test]
fn every_prefix_needs_more_then_a_filtered_out_host_is_no_match() {
    let other = hosts(&["other.example"]);
    for (name, request) in HTTP_SAMPLES {
        let decide = decision_point(request);
        for n in 0..=request.len() {
            let want = if n < decide {
                Detection::NeedMore
            } else {
                Detection::NoMatch
            };
            assert_eq!(detect(&request[..n], &other), want, "{name}: prefix {n}");
        }
    }
}

#[test]
fn decides_on_the_host_line_before_the_head_ends() {
    let partial = b"GET /x HTTP/1.1\r\nHost: a.example\r\nUser-Agent: long";
    let d = detect(partial, &hosts(&["a.example"]));
    assert_eq!(prop(&d, "http.host").as_deref(), Some("a.example"));
    assert_eq!(detect(partial, &hosts(&["b.example"])), Detection::NoMatch);
    assert!(matches!(probe(partial), Probe::Request(r) if !r.head_complete));
    assert_eq!(detect(b"GET /x HTTP/1.1\r\nHost: a.exa", &any()), Detection::NeedMore);
    assert_eq!(
        detect(b"GET /x HTTP/1.1\r\nAccept: */*\r\n", &any()),
        Detection::NeedMore
    );
}

#[test]
fn absolute_form_and_connect_targets_name_the_host() {
    let proxy = b"GET http://B.example:81/x?y HTTP/1.1\r\nHost: ignored.example\r\n\r\n";
    let d = detect(proxy, &hosts(&["b.example:81"]));
    assert_eq!(prop(&d, "http.host").as_deref(), Some("B.example:81"));
    assert_eq!(prop(&d, "http.path").as_deref(), Some("/x?y"));
    // Decided from the request line alone.
    let line_end = proxy.iter().position(|&b| b == b'\n').expect("request line") + 1;
    assert_eq!(detect(&proxy[..line_end - 1], &any()), Detection::NeedMore);
    assert!(matches!(detect(&proxy[..line_end], &any()), Detection::Match(_)));
    assert_eq!(detect(proxy, &hosts(&["ignored.example"])), Detection::NoMatch);

    let bare = b"GET http://user@c.example HTTP/1.1\r\n\r\n";
    let d = detect(bare, &any());
    assert_eq!(prop(&d, "http.host").as_deref(), Some("c.example"));
    assert_eq!(prop(&d, "http.path").as_deref(), Some("/"));

    let connect = b"CONNECT a.example:443 HTTP/1.1\r\n";
    let d = detect(connect, &hosts(&["a.example:443"]));
    assert_eq!(prop(&d, "http.method").as_deref(), Some("CONNECT"));
    assert_eq!(prop(&d, "http.host").as_deref(), Some("a.example:443"));

    let options = b"OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n";
    assert_eq!(prop(&detect(options, &any()), "http.path").as_deref(), Some("*"));
}

#[test]
fn a_request_without_host_passes_only_without_a_host_filter() {
    assert!(matches!(detect(CURL_HTTP10, &any()), Detection::Match(_)));
    assert_eq!(detect(CURL_HTTP10, &hosts(&["127.0.0.1"])), Detection::NoMatch);
    let paths = RequestFilter::new(None, Some(StringOrList(vec!["/old".into()]))).expect("valid");
    assert!(matches!(detect(CURL_HTTP10, &paths), Detection::Match(_)));
    // A non-conforming HTTP/1.1 request without Host is treated the same way.
    let no_host = b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n";
    assert!(matches!(detect(no_host, &any()), Detection::Match(_)));
    assert_eq!(detect(no_host, &hosts(&["a.example"])), Detection::NoMatch);
}

#[test]
fn other_protocols_are_rejected_at_the_first_byte() {
    for (name, bytes) in [("tls", TLS_CLIENT_HELLO), ("ssh", SSH_BANNER)] {
        for n in 1..=bytes.len() {
            assert_eq!(detect(&bytes[..n], &any()), Detection::NoMatch, "{name} prefix {n}");
        }
    }
    for bytes in [
        &b"\x00\x01\x02"[..],
        b"\xff\xfe",
        b"*2\r\n$4\r\nPING",
        b"\r\nGET / HTTP/1.1\r\n",
    ] {
        assert_eq!(detect(bytes, &any()), Detection::NoMatch, "{bytes:?}");
    }
}

#[test]
fn methods_are_checked_before_the_request_line_is_complete() {
    assert_eq!(detect(b"", &any()), Detection::NeedMore);
    assert_eq!(detect(b"PROPPATC", &any()), Detection::NeedMore);
    assert_eq!(detect(b"PROPPATCH ", &any()), Detection::NeedMore);
    assert_eq!(detect(b"PROPPATCHX", &any()), Detection::NoMatch);
    assert_eq!(detect(b"GETX", &any()), Detection::NoMatch);
    assert_eq!(detect(b"GE ", &any()), Detection::NoMatch);
    assert_eq!(detect(b"get / HTTP/1.1\r\n", &any()), Detection::NoMatch);
    assert_eq!(detect(b"BREW /pot HTTP/1.1\r\n", &any()), Detection::NoMatch);
    assert_eq!(detect(b"MKCOL /dav/", &any()), Detection::NeedMore);
    assert_eq!(detect(b"GET /", &any()), Detection::NeedMore);
    assert_eq!(detect(b"GET / HTTP/1.", &any()), Detection::NeedMore);
}

#[test]
fn malformed_requests_are_no_match() {
    let cases: &[&[u8]] = &[
        b"GET / HTTP/2.0\r\n",
        b"GET / HTTP/1.2\r\n",
        b"GET / FTP/1.1\r\n",
        b"GET /\r\n",
        b"GET  / HTTP/1.1\r\n",
        b"GET /a b HTTP/1.1\r\n",
        b"GET /\x01 HTTP/1.1\r\n",
        b"GET / HTTP/1.1\r\nHost a.example\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n",
        b"GET / HTTP/1.1\r\nHost: \xc3\x28\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-Folded: a\r\n b\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\rHost: a\r\n\r\n",
    ];
    for bytes in cases {
        assert_eq!(
            detect(bytes, &any()),
            Detection::NoMatch,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn oversized_heads_and_too_many_fields_are_no_match() {
    let mut huge = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
    huge.resize(MAX_HEAD + 10, b'a');
    assert_eq!(detect(&huge, &any()), Detection::NoMatch);
    assert_eq!(detect(&huge[..MAX_HEAD - 1], &any()), Detection::NeedMore);

    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"Host: a.example\r\n\r\n");
    assert_eq!(detect(&many, &any()), Detection::NoMatch);
}

#[test]
fn bare_lf_line_endings_are_accepted() {
    let d = detect(b"GET /lf HTTP/1.1\nHost: a.example\n\n", &hosts(&["a.example"]));
    assert_eq!(prop(&d, "http.path").as_deref(), Some("/lf"));
}

#[test]
fn the_backend_uses_its_params() {
    let http = Http::new(&spec("host = \"a.example\"\npath_prefix = [\"/api/\", \"/health\"]")).expect("valid params");
    assert!(matches!(http.detect(&conn(), CURL_GET), Detection::Match(_)));
    assert_eq!(http.detect(&conn(), CURL_GET_PLAIN), Detection::NoMatch);
    assert_eq!(http.detect(&conn(), &CURL_GET[..10]), Detection::NeedMore);
    let any = Http::new(&spec("")).expect("no params");
    assert!(matches!(any.detect(&conn(), WRK_GET), Detection::Match(_)));
}

/// Fuzz finding: a head whose fields after `Host` were malformed matched when its first segment
/// ended after the `Host` line but not when it came whole, so routing depended on segmentation.
/// The verdict is now taken at the `Host` line: every prefix says `NeedMore` or the same.
#[test]
fn the_verdict_does_not_depend_on_how_the_head_is_cut() {
    let heads: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Folded: a\r\n b\r\n\r\n",
        b"GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\nHost: c\r\n\r\n",
        b"CONNECT a.example:443 HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-Pad: 1\r\nBad Name: x\r\nHost: a.example\r\n\r\n",
        b"GET / HTTP/1.0\r\nUser-Agent: x\r\n\r\n",
    ];
    for head in heads {
        let whole = detect(head, &any());
        for cut in 1..head.len() {
            let early = detect(&head[..cut], &any());
            assert!(
                early == Detection::NeedMore || same_kind(&early, &whole),
                "{:?}: {early:?} on {cut} bytes, {whole:?} on all",
                String::from_utf8_lossy(head)
            );
        }
    }
    // A second Host or a bad field after the first Host: routed by the first (the server refuses).
    for head in &heads[..3] {
        let d = detect(head, &hosts(&["a.example"]));
        assert!(
            matches!(&d, Detection::Match(p) if p.iter().any(|p| p.value() == "a.example")),
            "{d:?}"
        );
    }
    assert_eq!(detect(heads[5], &any()), Detection::NoMatch, "a bad field before Host");
}
