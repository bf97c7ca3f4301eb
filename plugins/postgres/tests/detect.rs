//! The `postgres` backend over real psql captures, hand-built messages from the protocol
//! documentation, other protocols, params, and thousands of random and mutated inputs.

use pmmux_plugin_api::Detection;
use pmmux_plugin_testkit::{assert_needs_more_until_whole, assert_verdict_stable, pairs, props, spec, Rng};
use pmmux_postgres::message::{parse, Parse};
use pmmux_postgres::Postgres;

// See tests/data/README.md: psql 15.18 (Debian 12).
/// `psql "host=127.0.0.1 port=PORT user=alice dbname=shop sslmode=disable"`.
const STARTUP: &[u8] = include_bytes!("data/startup.bin");
/// `psql "host=127.0.0.1 port=PORT user=alice dbname=shop sslmode=require"`.
const SSL_REQUEST: &[u8] = include_bytes!("data/sslrequest.bin");
/// A `GSSENCRequest`, built from the protocol documentation ("Message Formats").
const GSSENC: &[u8] = &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
/// A `CancelRequest` (length 16, code 80877102, process ID 4242, secret key), built from the docs.
const CANCEL: &[u8] = &[
    0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0x10, 0x92, 0xde, 0xad, 0xbe, 0xef,
];

fn backend(params_toml: &str) -> Result<Postgres, String> {
    Postgres::new(&spec("postgres", params_toml))
}

fn pg(params_toml: &str) -> Postgres {
    backend(params_toml).unwrap_or_else(|e| panic!("params {params_toml:?}: {e}"))
}

/// A `StartupMessage` (protocol 3.0) with these parameters.
fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = vec![0, 3, 0, 0];
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

#[test]
fn psql_startup_matches_with_user_and_database() {
    let expected = pairs(&[
        ("postgres.request", "startup"),
        ("postgres.user", "alice"),
        ("postgres.database", "shop"),
    ]);
    assert_eq!(props(pg("").detect_stream(STARTUP)), expected);
}

#[test]
fn psql_ssl_request_and_built_requests_match() {
    assert_eq!(
        props(pg("").detect_stream(SSL_REQUEST)),
        pairs(&[("postgres.request", "ssl")])
    );
    assert_eq!(
        props(pg("").detect_stream(GSSENC)),
        pairs(&[("postgres.request", "gssenc")])
    );
    assert_eq!(
        props(pg("").detect_stream(CANCEL)),
        pairs(&[("postgres.request", "cancel")])
    );
}

#[test]
fn startup_without_database_has_no_database_property() {
    let msg = startup(&[("user", "bob"), ("options", "")]);
    assert_eq!(
        props(pg("").detect_stream(&msg)),
        pairs(&[("postgres.request", "startup"), ("postgres.user", "bob")])
    );
}

#[test]
fn every_strict_prefix_needs_more_or_is_never_contradicted() {
    for (name, whole) in [
        ("startup", STARTUP),
        ("ssl", SSL_REQUEST),
        ("gssenc", GSSENC),
        ("cancel", CANCEL),
    ] {
        assert_needs_more_until_whole(|d| pg("").detect_stream(d), whole, name);
    }
}

#[test]
fn other_protocols_are_refused_from_the_first_byte() {
    let others: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc],
        b"SSH-2.0-OpenSSH_9.2p1\r\n",
        b"*1\r\n$4\r\nping\r\n",
    ];
    for other in others {
        assert_eq!(pg("").detect_stream(&other[..1]), Detection::NoMatch, "{other:?}");
        assert_eq!(pg("").detect_stream(other), Detection::NoMatch, "{other:?}");
    }
}

#[test]
fn malformed_messages_are_refused() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("ssl with length 9", vec![0, 0, 0, 9, 0x04, 0xd2, 0x16, 0x2f]),
        ("unknown code", vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x31]),
        ("protocol 2", vec![0, 0, 0, 8, 0, 2, 0, 0]),
        ("length 4", vec![0, 0, 0, 4, 0, 3, 0, 0]),
        ("too long", vec![0, 0, 0x27, 0x11, 0, 3, 0, 0]),
        ("no user", startup(&[("database", "shop")])),
        ("empty startup", startup(&[])),
        ("cancel of 12 bytes", CANCEL[..12].iter().copied().chain([]).collect()),
    ];
    let mut cases = cases;
    cases[7].1[3] = 12;
    for (name, msg) in cases {
        assert_eq!(pg("").detect_stream(&msg), Detection::NoMatch, "{name}");
    }
    // A key that is not printable ASCII, and bytes after the terminator within the length.
    let mut bad_key = startup(&[("user", "a")]);
    bad_key[8] = 0x01;
    assert!(matches!(parse(&bad_key), Parse::Invalid(_)));
    let mut trailing = startup(&[("user", "a")]);
    trailing.extend_from_slice(b"x\0");
    let len = trailing.len() as u32;
    trailing[..4].copy_from_slice(&len.to_be_bytes());
    assert!(matches!(parse(&trailing), Parse::Invalid(_)));
}

#[test]
fn user_and_database_filters() {
    assert!(matches!(
        pg("user = \"alice\"").detect_stream(STARTUP),
        Detection::Match(_)
    ));
    assert!(matches!(
        pg("user = [\"bob\", \"alice\"]").detect_stream(STARTUP),
        Detection::Match(_)
    ));
    assert_eq!(pg("user = \"Alice\"").detect_stream(STARTUP), Detection::NoMatch);
    assert!(matches!(
        pg("database = \"shop\"").detect_stream(STARTUP),
        Detection::Match(_)
    ));
    assert_eq!(
        pg("database = [\"a\", \"b\"]").detect_stream(STARTUP),
        Detection::NoMatch
    );
    assert_eq!(
        pg("user = \"alice\"\ndatabase = \"x\"").detect_stream(STARTUP),
        Detection::NoMatch
    );
    // Without a database parameter the server uses the user name, and so does the filter.
    let bob = startup(&[("user", "bob")]);
    assert!(matches!(
        pg("database = \"bob\"").detect_stream(&bob),
        Detection::Match(_)
    ));
    // The user is inside TLS after an SSLRequest: a filtered backend never matches it.
    for request in [SSL_REQUEST, GSSENC, CANCEL] {
        assert_eq!(pg("user = \"alice\"").detect_stream(request), Detection::NoMatch);
        assert_eq!(pg("database = \"shop\"").detect_stream(request), Detection::NoMatch);
    }
}

#[test]
fn bad_params_are_refused() {
    for (toml, needle) in [
        ("users = \"a\"", "unknown field"),
        (
            "user = 5",
            "`user`: invalid type: integer `5`, expected a string or a list of strings",
        ),
        ("user = []", "empty list"),
        ("database = [\"\"]", "empty name"),
        (
            "database = [\"a\", 1]",
            "`database`: invalid type: integer `1`, expected a string",
        ),
    ] {
        let err = backend(toml).expect_err(toml);
        assert!(err.contains(needle), "{toml}: {err}");
    }
}

#[test]
fn random_truncated_and_mutated_inputs_never_panic_and_stay_consistent() {
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let backend = pg("user = [\"alice\", \"bob\"]");
    let seeds = [STARTUP, SSL_REQUEST, GSSENC, CANCEL];
    for i in 0..20_000 {
        let mut input = match i % 3 {
            0 => (0..rng.below(64) + 1)
                .map(|_| rng.next_u64() as u8)
                .collect::<Vec<u8>>(),
            _ => seeds[rng.below(seeds.len())].to_vec(),
        };
        if i % 3 != 0 {
            for _ in 0..rng.below(4) {
                let at = rng.below(input.len());
                input[at] = rng.next_u64() as u8;
            }
            input.truncate(rng.below(input.len()) + 1);
        }
        // Once a prefix is decided, the whole input must not say otherwise.
        assert_verdict_stable(|d| backend.detect_stream(d), &input);
    }
}
