//! The `host` and `path_prefix` filters and the params that build them.

use super::*;
use crate::{HostPattern, Http, HttpParams, RequestFilter, StringOrList};

fn pattern(p: &str) -> HostPattern {
    HostPattern::parse(p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

#[test]
fn a_name_matches_any_port_case_and_trailing_dot() {
    let p = pattern("a.example");
    for host in [
        "a.example",
        "a.example:8080",
        "A.EXAMPLE",
        "A.Example:80",
        "a.example.",
        "a.example.:443",
    ] {
        assert!(p.matches(host), "{host}");
    }
    for host in [
        "b.example",
        "xa.example",
        "a.example.org",
        "sub.a.example",
        "a.example..",
        "",
        "a.example:",
    ] {
        assert!(!p.matches(host), "{host}");
    }
    assert!(pattern("A.Example.").matches("a.example"));
}

#[test]
fn a_port_matches_only_that_port_and_80_is_the_default() {
    let p = pattern("a.example:8080");
    assert!(p.matches("a.example:8080"));
    assert!(p.matches("A.EXAMPLE:8080"));
    for host in [
        "a.example",
        "a.example:8081",
        "a.example:80",
        "a.example:x",
        "a.example:99999",
    ] {
        assert!(!p.matches(host), "{host}");
    }
    let p80 = pattern("a.example:80");
    assert!(p80.matches("a.example"));
    assert!(p80.matches("a.example:80"));
    assert!(!p80.matches("a.example:8080"));
}

#[test]
fn a_wildcard_matches_exactly_one_label() {
    let p = pattern("*.example.com");
    for host in [
        "a.example.com",
        "A.Example.COM:443",
        "x-1.example.com.",
        "_srv.example.com",
    ] {
        assert!(p.matches(host), "{host}");
    }
    for host in [
        "example.com",
        "b.a.example.com",
        ".example.com",
        "aexample.com",
        "a.example.com.org",
    ] {
        assert!(!p.matches(host), "{host}");
    }
    let with_port = pattern("*.example.com:8443");
    assert!(with_port.matches("a.example.com:8443"));
    assert!(!with_port.matches("a.example.com"));
}

#[test]
fn ip_literals_match() {
    assert!(pattern("127.0.0.1").matches("127.0.0.1:51013"));
    let v6 = pattern("[::1]:8080");
    assert!(v6.matches("[::1]:8080"));
    assert!(!v6.matches("[::1]:8081"));
    assert!(pattern("[::1]").matches("[::1]:1"));
    assert!(!pattern("[::1]").matches("::1"));
}

#[test]
fn non_ascii_hosts_do_not_panic_or_match() {
    let p = pattern("*.example");
    assert!(!p.matches("é.é.example"));
    assert!(p.matches("é.example"));
    assert!(!pattern("a.example").matches("ä.example"));
}

#[test]
fn invalid_patterns_are_rejected_with_the_pattern_named() {
    for bad in [
        "",
        "a b",
        "*",
        "*.",
        "a.*.b",
        "*a.example",
        "a..b",
        ".a",
        "a.example:0",
        "a.example:99999",
        "a.example:",
        "a.example:x",
        "::1",
        "[xyz]",
        "[]",
        "*.[::1]",
        "a/b",
        "a@b",
        "[::1]x",
    ] {
        let err = HostPattern::parse(bad).expect_err(bad);
        assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
    }
}

#[test]
fn path_prefixes_are_plain_case_sensitive_prefixes() {
    let f = RequestFilter::new(None, Some(StringOrList(vec!["/api".into(), "/health".into()]))).expect("valid");
    for path in ["/api", "/api/v1", "/api2", "/api?x=1", "/healthz"] {
        assert!(f.matches_path(path), "{path}");
    }
    for path in ["/", "/API", "/v1/api", "api"] {
        assert!(!f.matches_path(path), "{path}");
    }
    assert!(RequestFilter::default().matches_path("anything"));
}

#[test]
fn hosts_and_paths_combine() {
    let f = RequestFilter::new(
        Some(StringOrList(vec!["a.example".into(), "*.b.example".into()])),
        Some(StringOrList(vec!["/api/".into()])),
    )
    .expect("valid");
    assert!(f.has_host_filter());
    assert!(f.matches_host(Some("x.b.example:9000")));
    assert!(!f.matches_host(None));
    assert!(!RequestFilter::default().has_host_filter());
    assert!(RequestFilter::default().matches_host(None));
    let hit = probe_info(b"GET /api/x HTTP/1.1\r\nHost: A.example\r\n\r\n");
    assert!(f.matches(&hit));
    let wrong_path = probe_info(b"GET /apix HTTP/1.1\r\nHost: a.example\r\n\r\n");
    assert!(!f.matches(&wrong_path));
}

fn probe_info(bytes: &[u8]) -> crate::RequestInfo {
    match crate::probe(bytes) {
        crate::Probe::Request(info) => info,
        other => panic!("expected a request, got {other:?}"),
    }
}

#[test]
fn params_accept_a_string_or_a_list() {
    let one: HttpParams = spec("host = \"a.example\"").params().expect("one string");
    assert_eq!(one.host, Some(StringOrList(vec!["a.example".into()])));
    let many: HttpParams = spec("host = [\"a\", \"b\"]\npath_prefix = \"/x\"")
        .params()
        .expect("lists");
    assert_eq!(many.host, Some(StringOrList(vec!["a".into(), "b".into()])));
    assert_eq!(many.path_prefix, Some(StringOrList(vec!["/x".into()])));
    let none: HttpParams = spec("").params().expect("empty");
    assert_eq!((none.host, none.path_prefix), (None, None));
}

#[test]
fn bad_params_are_reported() {
    let err = |toml: &str| Http::new(&spec(toml)).expect_err(toml);
    assert!(err("hosts = \"a\"").contains("hosts"), "unknown field named");
    assert!(err("host = 5").contains("a string or a list of strings"));
    assert!(err("host = [1]").contains("string"));
    assert!(err("host = []").contains("empty"));
    assert!(err("path_prefix = []").contains("empty"));
    assert!(err("path_prefix = \"api\"").contains("must start with `/`"));
    assert!(err("path_prefix = \"/a b\"").contains("whitespace"));
    assert!(err("host = \"*.\"").contains("`*.`"));
    assert!(Http::new(&spec("path_prefix = \"*\"")).is_ok());
}
