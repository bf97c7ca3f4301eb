//! The `rdp` backend over real connection requests captured from FreeRDP, every prefix, other
//! protocols, the `mstshash` param, and thousands of random, truncated and mutated inputs.

use pmmux_plugin_api::Detection;
use pmmux_plugin_testkit::{
    assert_needs_more_until_whole, assert_other_openings_refused_at_once, assert_verdict_stable, corrupt_and_truncate,
    pairs, props, spec, Rng,
};
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
        assert_needs_more_until_whole(|d| any.detect_preview(d), capture, "capture");
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
    assert_other_openings_refused_at_once(|d| any.detect_preview(d), "rdp");
}

#[test]
fn random_truncated_and_mutated_inputs_never_panic() {
    let any = rdp("");
    let mut rng = Rng::new(0x5eed_0d0b);
    for round in 0..6000 {
        let input = match round % 3 {
            0 => (0..rng.below(48)).map(|_| rng.next_u64() as u8).collect::<Vec<u8>>(),
            1 => XFREERDP_ALICE.to_vec(),
            _ => XFREERDP_BOB.to_vec(),
        };
        let input = corrupt_and_truncate(&mut rng, input);
        if input.is_empty() {
            continue;
        }
        assert_verdict_stable(|d| any.detect_preview(d), &input);
        match (any.detect_preview(&input), parse(&input)) {
            (Detection::Match(_), Parse::Complete(_))
            | (Detection::NeedMore, Parse::Incomplete)
            | (Detection::NoMatch, Parse::Invalid) => {}
            (v, p) => panic!("{input:02x?}: {v:?} vs {p:?}"),
        }
    }
}
