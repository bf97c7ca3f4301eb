//! The `name_suffix` and `qtype` params over the captured queries and synthetic ones: label
//! boundaries, case, lists, the root, `TYPE<n>`, and the messages bad params get.

mod common;

use common::*;
use pmmux_plugin_api::Detection;

/// The names of the captures (UDP and TCP) a backend with these params matches.
fn matched(params: &str) -> Vec<&'static str> {
    let backend = dns(params);
    all_messages()
        .into_iter()
        .filter(|(_, message, _, _)| matches!(backend.detect_message(message), Detection::Match(_)))
        .map(|(name, _, _, _)| name)
        .collect()
}

/// Whether a backend with these params matches a synthetic query for `name` and `qtype`.
fn hit(params: &str, name: &str, qtype: u16) -> bool {
    let message = query(name, qtype, [0, 0, 0], &[]);
    match dns(params).detect_message(&message) {
        Detection::Match(_) => true,
        Detection::NoMatch => false,
        Detection::NeedMore => panic!("UDP never needs more"),
    }
}

const EVERY_CAPTURE: [&str; 10] = [
    "udp_a",
    "udp_aaaa",
    "udp_txt_noedns",
    "udp_ptr",
    "udp_https",
    "udp_root_ns",
    "nslookup_srv",
    "tcp_mx",
    "tcp_axfr",
    "tcp_ixfr",
];

#[test]
fn without_params_every_query_matches() {
    assert_eq!(matched(""), EVERY_CAPTURE);
}

#[test]
fn name_suffix_on_the_captures() {
    let dot_com = ["udp_a", "udp_aaaa", "udp_txt_noedns", "tcp_axfr", "tcp_ixfr"];
    assert_eq!(matched(r#"name_suffix = "example.com""#), dot_com);
    assert_eq!(
        matched(r#"name_suffix = "EXAMPLE.Com.""#),
        dot_com,
        "case and trailing dot"
    );
    assert_eq!(matched(r#"name_suffix = "com""#), dot_com);
    assert_eq!(matched(r#"name_suffix = "www.example.com""#), ["udp_a", "udp_aaaa"]);
    assert_eq!(
        matched(r#"name_suffix = ["example.net", "in-addr.arpa", "example.org"]"#),
        ["udp_ptr", "udp_https", "nslookup_srv", "tcp_mx"]
    );
    assert_eq!(matched(r#"name_suffix = "127.in-addr.arpa""#), ["udp_ptr"]);
    assert_eq!(matched(r#"name_suffix = "svc.example.net""#), ["udp_https"]);
    assert!(
        matched(r#"name_suffix = "ample.com""#).is_empty(),
        "not on a label boundary"
    );
    assert!(matched(r#"name_suffix = "w.example.com""#).is_empty());
    assert_eq!(
        matched(r#"name_suffix = ".""#),
        EVERY_CAPTURE,
        "the root is below nothing"
    );
}

#[test]
fn name_suffix_label_boundaries_and_case() {
    let params = r#"name_suffix = "example.com""#;
    assert!(hit(params, "example.com", 1));
    assert!(hit(params, "a.example.com", 1));
    assert!(hit(params, "A.B.EXAMPLE.COM", 1));
    assert!(hit(params, "eXaMpLe.CoM", 1));
    assert!(!hit(params, "badexample.com", 1));
    assert!(!hit(params, "example.com.evil", 1));
    assert!(!hit(params, "example.co", 1));
    assert!(!hit(params, "com", 1));
    assert!(!hit(params, "", 1), "the root");
    // A single label holding a dot is not two labels.
    let mut dotted = query("", 1, [0, 0, 0], &[]);
    dotted.splice(12..13, b"\x0bexample.com\x00".iter().copied());
    assert_eq!(dns(params).detect_message(&dotted), Detection::NoMatch);
    assert_eq!(
        props(dns("").detect_message(&dotted)),
        expected("example\\.com", "A"),
        "escaped in the property"
    );
}

#[test]
fn root_suffix_matches_every_name_including_the_root() {
    for name in ["", "com", "a.b.c.d.e.f"] {
        assert!(hit(r#"name_suffix = ".""#, name, 16), "{name:?}");
    }
}

#[test]
fn qtype_single_list_case_and_generic_form() {
    assert_eq!(matched(r#"qtype = "A""#), ["udp_a"]);
    assert_eq!(matched(r#"qtype = "aaaa""#), ["udp_aaaa"]);
    assert_eq!(matched(r#"qtype = "TYPE28""#), ["udp_aaaa"]);
    assert_eq!(matched(r#"qtype = ["A", "AAAA"]"#), ["udp_a", "udp_aaaa"]);
    assert_eq!(
        matched(r#"qtype = ["txt", "Ptr", "https", "SRV"]"#),
        ["udp_txt_noedns", "udp_ptr", "udp_https", "nslookup_srv"]
    );
    assert_eq!(matched(r#"qtype = ["AXFR", "IXFR"]"#), ["tcp_axfr", "tcp_ixfr"]);
    assert!(
        matched(r#"qtype = "ANY""#).is_empty(),
        "ANY is type 255, not a wildcard"
    );
    assert!(hit(r#"qtype = "ANY""#, "example.com", 255));
    assert!(hit(r#"qtype = "type54""#, "example.com", 54));
    assert!(!hit(r#"qtype = "TYPE54""#, "example.com", 55));
}

#[test]
fn both_params_must_hold() {
    let params = r#"
name_suffix = ["example.com", "example.net"]
qtype = ["A", "HTTPS"]
"#;
    assert_eq!(matched(params), ["udp_a", "udp_https"]);
}

#[test]
fn properties_of_synthetic_queries() {
    let any = dns("");
    let cases = [
        ("WWW.Example.COM", 28, "www.example.com", "AAAA"),
        ("", 2, ".", "NS"),
        ("example.com", 54, "example.com", "TYPE54"),
        ("example.com", 65535, "example.com", "TYPE65535"),
        ("_dns.resolver.arpa", 64, "_dns.resolver.arpa", "SVCB"),
    ];
    for (name, qtype, qname, mnemonic) in cases {
        let message = query(name, qtype, [0, 0, 0], &[]);
        assert_eq!(props(any.detect_message(&message)), expected(qname, mnemonic), "{name}");
    }
    let mut binary = query("", 1, [0, 0, 0], &[]);
    binary.splice(12..13, [3, b'a', 0, b' ', 3, b'c', b'\\', 0xe9, 0]);
    assert_eq!(
        props(any.detect_message(&binary)),
        expected("a\\000\\032.c\\\\\\233", "A")
    );
}

#[test]
fn bad_params_are_explained() {
    for (params, says) in [
        (r#"name = "example.com""#, "unknown field `name`"),
        (r#"qtypes = "A""#, "unknown field `qtypes`"),
        (
            "name_suffix = 5",
            "`name_suffix`: invalid type: integer `5`, expected a string or a list of strings",
        ),
        (
            "qtype = 28",
            "`qtype`: invalid type: integer `28`, expected a string or a list of strings",
        ),
        (
            "qtype = [\"A\", 28]",
            "`qtype`: invalid type: integer `28`, expected a string",
        ),
        (r#"qtype = "AAA""#, "params.qtype: unknown type `AAA`"),
        (
            r#"qtype = ["A", "TYPE70000"]"#,
            "params.qtype: unknown type `TYPE70000`",
        ),
        (r#"qtype = []"#, "params.qtype: the list is empty"),
        (
            r#"name_suffix = """#,
            "params.name_suffix: an empty name: write \".\" for the root",
        ),
        (r#"name_suffix = []"#, "params.name_suffix: the list is empty"),
        (r#"name_suffix = "*.example.com""#, "no wildcards"),
        (r#"name_suffix = ["ok.example", ".example.com"]"#, "no leading dot"),
        (r#"name_suffix = "a..example""#, "empty label"),
    ] {
        let err = backend(params).expect_err(params);
        assert!(err.contains(says), "{params}: {err}");
    }
}
