//! The `sni`, `alpn`, `min_version`, `max_version` and `ja4` params, end to end: from TOML params to a verdict on real and synthetic
//! ClientHellos, and the messages for bad params.

mod common;

use common::*;
use pmmux_plugin_api::Detection;

fn matches(params: &str, stream: &[u8]) -> bool {
    match tls(params).detect_preview(stream) {
        Detection::Match(_) => true,
        Detection::NoMatch => false,
        Detection::NeedMore => panic!("{params}: a whole ClientHello needs no more"),
    }
}

#[test]
fn no_params_match_any_client_hello() {
    for (name, capture) in CAPTURES {
        assert!(matches("", capture), "{name}");
    }
}

#[test]
fn sni_exact_and_case_insensitive() {
    assert!(matches(r#"sni = "a.example""#, OPENSSL_TLS13));
    assert!(matches(r#"sni = "A.Example""#, OPENSSL_TLS13));
    assert!(matches(r#"sni = "a.example.""#, OPENSSL_TLS13));
    assert!(!matches(r#"sni = "b.example""#, OPENSSL_TLS13));
    assert!(!matches(r#"sni = "example""#, OPENSSL_TLS13));
    // The client's spelling does not matter either, and the property is normalized.
    let stream = HelloBuilder::sni("WWW.Example.COM.").record();
    assert!(matches(r#"sni = "www.example.com""#, &stream));
    let found = props(tls("").detect_preview(&stream));
    assert_eq!(found[0], ("tls.sni".to_string(), "www.example.com".to_string()));
}

#[test]
fn sni_wildcard_matches_one_label_only() {
    let wildcard = r#"sni = "*.example.com""#;
    assert!(matches(wildcard, &HelloBuilder::sni("a.example.com").record()));
    assert!(matches(wildcard, &HelloBuilder::sni("A.EXAMPLE.com").record()));
    assert!(!matches(wildcard, &HelloBuilder::sni("a.b.example.com").record()));
    assert!(!matches(wildcard, &HelloBuilder::sni("example.com").record()));
    assert!(!matches(wildcard, &HelloBuilder::sni("a.example.org").record()));
    assert!(!matches(wildcard, &HelloBuilder::sni("aexample.com").record()));
    assert!(matches(r#"sni = "*.example""#, CURL));
}

#[test]
fn sni_list_matches_any_entry() {
    let list = r#"sni = ["x.example", "*.other.test", "b.example"]"#;
    assert!(matches(list, CURL));
    assert!(!matches(list, OPENSSL_TLS13));
    assert!(matches(list, &HelloBuilder::sni("mail.other.test").record()));
}

#[test]
fn sni_set_but_client_sent_none_is_no_match() {
    assert!(!matches(r#"sni = "a.example""#, OPENSSL_NOSNI));
    assert!(!matches(r#"sni = "*.example""#, OPENSSL_NOSNI));
    assert!(matches(
        r#"alpn = "h2""#,
        &HelloBuilder {
            sni: None,
            ..Default::default()
        }
        .record()
    ));
}

#[test]
fn alpn_matches_when_any_offered_protocol_is_wanted() {
    assert!(matches(r#"alpn = "h2""#, OPENSSL_TLS13));
    assert!(matches(r#"alpn = "http/1.1""#, CURL));
    assert!(matches(r#"alpn = ["h3", "http/1.1"]"#, OPENSSL_TLS12));
    assert!(!matches(r#"alpn = "h2""#, OPENSSL_TLS12));
    assert!(!matches(r#"alpn = "h3""#, CURL));
    // Names compare exactly (RFC 7301).
    assert!(!matches(r#"alpn = "H2""#, OPENSSL_TLS13));
    // No ALPN offered at all.
    assert!(!matches(r#"alpn = "http/1.1""#, OPENSSL_TLS11));
}

#[test]
fn sni_and_alpn_must_both_match() {
    assert!(matches("sni = \"a.example\"\nalpn = \"h2\"", OPENSSL_TLS13));
    assert!(!matches("sni = \"a.example\"\nalpn = \"h3\"", OPENSSL_TLS13));
    assert!(!matches("sni = \"b.example\"\nalpn = \"h2\"", OPENSSL_TLS13));
}

#[test]
fn version_range_uses_the_best_offered_version() {
    // Captures: TLS 1.3 (supported_versions), 1.2 and 1.1 (legacy_version only).
    assert!(matches(r#"min_version = "1.3""#, CURL));
    assert!(!matches(r#"min_version = "1.3""#, OPENSSL_TLS12));
    assert!(matches(r#"min_version = "1.2""#, OPENSSL_TLS12));
    assert!(!matches(r#"min_version = "1.2""#, OPENSSL_TLS11));
    assert!(matches(r#"max_version = "1.1""#, OPENSSL_TLS11));
    assert!(!matches(r#"max_version = "1.2""#, OPENSSL_TLS13));
    assert!(matches("min_version = \"1.2\"\nmax_version = \"1.2\"", OPENSSL_TLS12));
    assert!(!matches("min_version = \"1.2\"\nmax_version = \"1.2\"", OPENSSL_NOSNI));
    // "Legacy" clients: a range of old versions only.
    assert!(matches("min_version = \"1.0\"\nmax_version = \"1.1\"", OPENSSL_TLS11));
    // A bare TOML number works too.
    assert!(matches("min_version = 1.3", OPENSSL_TLS13));
    // supported_versions wins over legacy_version, GREASE and unknown values are ignored.
    let only12 = HelloBuilder {
        versions: vec![0x3a3a, 0x0303],
        ..Default::default()
    };
    assert!(matches(r#"max_version = "1.2""#, &only12.record()));
    let legacy10 = HelloBuilder {
        legacy_version: 0x0301,
        versions: vec![],
        ..Default::default()
    };
    assert!(matches(r#"max_version = "1.0""#, &legacy10.record()));
    assert!(!matches(r#"min_version = "1.1""#, &legacy10.record()));
}

#[test]
fn ja4_routes_by_exact_fingerprint() {
    assert!(matches(&format!("ja4 = {JA4_CURL:?}"), CURL));
    assert!(!matches(&format!("ja4 = {JA4_CURL:?}"), OPENSSL_TLS13));
    let list = format!("ja4 = [{JA4_OPENSSL_TLS12:?}, {JA4_OPENSSL_NOSNI:?}]");
    assert!(matches(&list, OPENSSL_TLS12));
    assert!(matches(&list, OPENSSL_NOSNI));
    assert!(!matches(&list, OPENSSL_TLS13));
    // Combined with the other params: all must hold.
    assert!(matches(&format!("sni = \"b.example\"\nja4 = {JA4_CURL:?}"), CURL));
    assert!(!matches(&format!("sni = \"a.example\"\nja4 = {JA4_CURL:?}"), CURL));
    assert!(!matches(&format!("max_version = \"1.2\"\nja4 = {JA4_CURL:?}"), CURL));
}

#[test]
fn bad_params_are_refused_with_a_clear_message() {
    for (params, says) in [
        ("sni = []", "params.sni: the list is empty"),
        ("alpn = []", "params.alpn: the list is empty"),
        (
            r#"sni = "a.*.com""#,
            "a wildcard is only allowed as the whole leftmost label",
        ),
        (r#"sni = ["ok.example", "*.*.example"]"#, "`*.*.example`"),
        (
            r#"sni = "*""#,
            "params.sni: `*` alone would match any name: omit the param",
        ),
        (r#"sni = "a b""#, "not a valid host name"),
        (r#"alpn = """#, "1 to 255 bytes"),
        (
            "sni = 5",
            "`sni`: invalid type: integer `5`, expected a string or a list of strings",
        ),
        ("alpn = [1]", "`alpn`: invalid type: integer `1`, expected a string"),
        ("snii = \"a.example\"", "unknown field `snii`"),
        (
            r#"min_version = "1.4""#,
            "params.min_version: `1.4` is not a TLS version",
        ),
        (
            r#"max_version = "TLSv1.2""#,
            "params.max_version: `TLSv1.2` is not a TLS version",
        ),
        ("min_version = 1.25", "`1.25` is not a TLS version"),
        ("min_version = 3", "a TLS version"),
        (
            "min_version = \"1.3\"\nmax_version = \"1.2\"",
            "above params.max_version",
        ),
        ("ja4 = []", "params.ja4: the list is empty"),
        (r#"ja4 = "t13d1516h2""#, "is not a JA4 fingerprint"),
        (
            r#"ja4 = "T13D1516H2_8DAAF6152771_E5627EFA2AB1""#,
            "is not a JA4 fingerprint (lowercase",
        ),
        (
            "ja4 = 1",
            "`ja4`: invalid type: integer `1`, expected a string or a list of strings",
        ),
    ] {
        match backend(params) {
            Ok(_) => panic!("{params}: accepted"),
            Err(err) => assert!(err.contains(says), "{params}: {err}"),
        }
    }
}
