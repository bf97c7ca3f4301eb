//! The `rdp` backend over real connection requests captured from FreeRDP, every prefix, other
//! protocols, the `mstshash` param, and thousands of random, truncated and mutated inputs.

use pmmux_plugin_api::Detection;
use pmmux_plugin_testkit::{spec, Rng};
use pmmux_rdp::{parse, protocol_names, Parse, Rdp};

// Captured on loopback with a Python listener on 127.0.0.1 (port 0) that saved the first bytes
// received; xfreerdp from freerdp2-x11 2.11.7+dfsg1-6~deb12u1 (Debian 12), run under Xvfb.

/// `xfreerdp /v:127.0.0.1:PORT /u:alice /p:x /cert:ignore`: cookie `mstshash=alice`, RDP_NEG_REQ
/// with SSL | HYBRID.
const XFREERDP_ALICE: &[u8] = include_bytes!("data/xfreerdp_alice.bin");
/// `xfreerdp /v:127.0.0.1:PORT /u:Bob.Smith /d:CORP /p:x /cert:ignore -sec-nla`: cookie
/// `mstshash=Bob.Smith`, RDP_NEG_REQ with SSL only.
const XFREERDP_BOB: &[u8] = include_bytes!("data/xfreerdp_bob_nonla.bin");

fn backend(params_toml: &str) -> Result<Rdp, String> {
    Rdp::new(&spec("rdp", params_toml))
}

fn rdp(params_toml: &str) -> Rdp {
    backend(params_toml).unwrap_or_else(|e| panic!("params {params_toml:?}: {e}"))
}

fn props(detection: Detection) -> Vec<(String, String)> {
    match detection {
        Detection::Match(props) => props.iter().map(|p| (p.key.to_string(), p.value.to_string())).collect(),
        other => panic!("expected a match, got {other:?}"),
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn captures_match_with_their_properties() {
    let any = rdp("");
    assert_eq!(
        props(any.detect_preview(XFREERDP_ALICE)),
        pairs(&[("rdp.mstshash", "alice"), ("rdp.requested_protocols", "ssl,hybrid")])
    );
    assert_eq!(
        props(any.detect_preview(XFREERDP_BOB)),
        pairs(&[("rdp.mstshash", "Bob.Smith"), ("rdp.requested_protocols", "ssl")])
    );
}

#[test]
fn every_strict_prefix_needs_more() {
    let any = rdp("");
    for capture in [XFREERDP_ALICE, XFREERDP_BOB] {
        for n in 1..capture.len() {
            assert_eq!(any.detect_preview(&capture[..n]), Detection::NeedMore, "prefix {n}");
        }
    }
}

/// A request built from MS-RDPBCGR §2.2.1.1 (X.224 Connection Request with no cookie, routing token or
/// RDP_NEG_REQ): the 11-byte minimum.
#[test]
fn bare_request_and_protocol_names() {
    let bare = [3, 0, 0, 11, 6, 0xe0, 0, 0, 0, 0, 0];
    assert_eq!(props(rdp("").detect_preview(&bare)), pairs(&[]));
    assert_eq!(rdp("mstshash = \"alice\"").detect_preview(&bare), Detection::NoMatch);
    assert_eq!(protocol_names(0), "rdp");
    assert_eq!(protocol_names(0x0b), "ssl,hybrid,hybrid_ex");
    assert_eq!(protocol_names(0x101), "ssl,0x00000100");
}

#[test]
fn mstshash_param_routes_case_insensitively() {
    assert!(matches!(
        rdp("mstshash = \"ALICE\"").detect_preview(XFREERDP_ALICE),
        Detection::Match(_)
    ));
    let list = rdp("mstshash = [\"carol\", \"bob.smith\"]");
    assert!(matches!(list.detect_preview(XFREERDP_BOB), Detection::Match(_)));
    assert_eq!(list.detect_preview(XFREERDP_ALICE), Detection::NoMatch);
    for bad in [
        "mstshash = []",
        "mstshash = \"\"",
        "mstshash = \"a b\"",
        "mstshash = 5",
        "user = \"a\"",
    ] {
        assert!(backend(bad).is_err(), "{bad}");
    }
    let err = backend("mstshash = 5").err().unwrap_or_default();
    assert!(
        err.contains("`mstshash`: invalid type: integer `5`, expected a string or a list of strings"),
        "{err}"
    );
}

#[test]
fn bad_headers_are_no_match_early() {
    let any = rdp("");
    for (name, input) in [
        ("tpkt version 2", &[2u8][..]),
        ("reserved byte", &[3, 1]),
        ("too short", &[3, 0, 0, 10]),
        ("too long", &[3, 0, 0x20, 0x00]),
        ("length indicator", &[3, 0, 0, 19, 13]),
        ("connection confirm", &[3, 0, 0, 19, 14, 0xd0]),
        ("dst-ref", &[3, 0, 0, 19, 14, 0xe0, 1]),
    ] {
        assert_eq!(any.detect_preview(input), Detection::NoMatch, "{name}");
    }
    let mut no_crlf = XFREERDP_ALICE.to_vec();
    no_crlf[33] = b' ';
    assert_eq!(any.detect_preview(&no_crlf), Detection::NoMatch, "cookie without CR LF");
}

#[test]
fn other_protocols_are_no_match_early() {
    let any = rdp("");
    let inputs: &[(&str, &[u8])] = &[
        ("http", b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        (
            "tls",
            &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03],
        ),
        ("ssh", b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"),
        ("socks5", &[5, 2, 0, 1]),
        ("syslog", b"<13>1 - - - - - - hi\n"),
    ];
    for (name, input) in inputs {
        assert_eq!(
            any.detect_preview(&input[..1]),
            Detection::NoMatch,
            "{name}: first byte"
        );
        assert_eq!(any.detect_preview(input), Detection::NoMatch, "{name}");
    }
}

#[test]
fn random_truncated_and_mutated_inputs_never_panic() {
    let any = rdp("");
    let mut rng = Rng::new(0x5eed_0d0b);
    for round in 0..6000 {
        let mut input = match round % 3 {
            0 => (0..rng.below(48)).map(|_| rng.next_u64() as u8).collect::<Vec<u8>>(),
            1 => XFREERDP_ALICE.to_vec(),
            _ => XFREERDP_BOB.to_vec(),
        };
        for _ in 0..rng.below(3) {
            if !input.is_empty() {
                let at = rng.below(input.len());
                input[at] = rng.next_u64() as u8;
            }
        }
        input.truncate(rng.below(input.len() + 1));
        if input.is_empty() {
            continue;
        }
        let mut decided: Option<Detection> = None;
        for n in 1..=input.len() {
            let verdict = any.detect_preview(&input[..n]);
            if let Some(previous) = &decided {
                assert_eq!(&verdict, previous, "{input:02x?} at {n}");
            } else if verdict != Detection::NeedMore {
                decided = Some(verdict);
            }
        }
        match (any.detect_preview(&input), parse(&input)) {
            (Detection::Match(_), Parse::Complete(_))
            | (Detection::NeedMore, Parse::Incomplete)
            | (Detection::NoMatch, Parse::Invalid) => {}
            (v, p) => panic!("{input:02x?}: {v:?} vs {p:?}"),
        }
    }
}
