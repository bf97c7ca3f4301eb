//! The `smb` backend over real smbclient captures, other protocols, params, and thousands of
//! random and mutated inputs.

use pmmux_plugin_api::Detection;
use pmmux_plugin_testkit::{assert_verdict_stable, only_property, spec, Rng};
use pmmux_smb::{parse, Parse, Smb};

// See tests/data/README.md: smbclient 4.17.12 (Debian 12).
/// `smbclient -L //127.0.0.1 -p PORT -N`.
const SMB2: &[u8] = include_bytes!("data/smb2_negotiate.bin");
/// `smbclient -L //127.0.0.1 -p PORT -N -m NT1 --option="client min protocol=NT1"`.
const SMB1: &[u8] = include_bytes!("data/smb1_negotiate.bin");

fn backend(params_toml: &str) -> Result<Smb, String> {
    Smb::new(&spec("smb", params_toml))
}

fn smb(params_toml: &str) -> Smb {
    backend(params_toml).unwrap_or_else(|e| panic!("params {params_toml:?}: {e}"))
}

fn dialect(detection: Detection) -> String {
    only_property(detection, "smb.dialect")
}

fn patched(base: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    out[at..at + bytes.len()].copy_from_slice(bytes);
    out
}

#[test]
fn captures_match_with_their_dialect() {
    assert_eq!(dialect(smb("").detect_stream(SMB2)), "smb2");
    assert_eq!(dialect(smb("").detect_stream(SMB1)), "smb1");
}

#[test]
fn strict_prefixes_need_more_until_the_fixed_parts_are_in() {
    // SMB1: header, WordCount, ByteCount and the first dialect's buffer format (40 bytes).
    // SMB2: header, NEGOTIATE fields and the five dialects (4 + 64 + 36 + 10 = 114 bytes).
    for (whole, decided_at) in [(SMB1, 40), (SMB2, 114)] {
        for n in 1..decided_at {
            assert_eq!(smb("").detect_stream(&whole[..n]), Detection::NeedMore, "prefix {n}");
        }
        for n in decided_at..=whole.len() {
            assert!(
                matches!(smb("").detect_stream(&whole[..n]), Detection::Match(_)),
                "prefix {n}"
            );
        }
    }
}

#[test]
fn other_protocols_are_refused_early() {
    let others: [(&[u8], usize); 5] = [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1),
        (&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc], 1),
        (b"SSH-2.0-OpenSSH_9.2p1\r\n", 1),
        // A PostgreSQL SSLRequest also starts with zero bytes: refused at its fifth.
        (&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], 5),
        // A NetBIOS session request (type 0x81, port 139), not direct TCP.
        (&[0x81, 0, 0, 0x44, 0x20, 0x43], 1),
    ];
    for (other, decided_at) in others {
        assert_eq!(
            smb("").detect_stream(&other[..decided_at]),
            Detection::NoMatch,
            "{other:?}"
        );
        assert_eq!(smb("").detect_stream(other), Detection::NoMatch, "{other:?}");
    }
}

#[test]
fn malformed_negotiates_are_refused() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("SMB1 other command", patched(SMB1, 8, &[0x73])),
        ("SMB1 reply", patched(SMB1, 13, &[0x98])),
        ("SMB1 WordCount", patched(SMB1, 36, &[1])),
        ("SMB1 ByteCount", patched(SMB1, 37, &[0x1c])),
        ("SMB1 buffer format", patched(SMB1, 39, &[0x04])),
        ("SMB1 too short", patched(SMB1, 3, &[0x20])),
        ("SMB2 header size", patched(SMB2, 8, &[0x41])),
        ("SMB2 other command", patched(SMB2, 16, &[0x01])),
        ("SMB2 response", patched(SMB2, 20, &[0x01])),
        ("SMB2 NEGOTIATE size", patched(SMB2, 68, &[0x25])),
        ("SMB2 no dialects", patched(SMB2, 70, &[0])),
        ("SMB2 too many dialects", patched(SMB2, 70, &[65])),
        ("SMB2 dialects beyond length", patched(SMB2, 1, &[0, 0, 0x6c])),
        ("SMB2 odd dialect", patched(SMB2, 105, &[0x04])),
        ("length over 65 535", patched(SMB2, 1, &[1])),
        ("another protocol id", patched(SMB2, 4, &[0xfd])),
    ];
    for (name, msg) in cases {
        assert!(matches!(parse(&msg), Parse::Invalid(_)), "{name}: {:?}", parse(&msg));
        assert_eq!(smb("").detect_stream(&msg), Detection::NoMatch, "{name}");
    }
}

#[test]
fn dialect_param() {
    assert_eq!(dialect(smb("dialect = \"smb2\"").detect_stream(SMB2)), "smb2");
    assert_eq!(smb("dialect = \"smb2\"").detect_stream(SMB1), Detection::NoMatch);
    assert_eq!(smb("dialect = [\"smb1\"]").detect_stream(SMB2), Detection::NoMatch);
    assert_eq!(
        dialect(smb("dialect = [\"SMB1\", \"smb3\"]").detect_stream(SMB2)),
        "smb2"
    );
    for (toml, needle) in [
        ("dialects = \"smb1\"", "unknown field"),
        ("dialect = \"cifs\"", "unknown `cifs`"),
        ("dialect = []", "empty list"),
        (
            "dialect = 2",
            "`dialect`: invalid type: integer `2`, expected a string or a list of strings",
        ),
    ] {
        let err = backend(toml).expect_err(toml);
        assert!(err.contains(needle), "{toml}: {err}");
    }
}

#[test]
fn random_truncated_and_mutated_inputs_never_panic_and_stay_consistent() {
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let any = smb("");
    for i in 0..10_000 {
        let mut input = match i % 3 {
            0 => {
                let mut v: Vec<u8> = (0..rng.below(128) + 1).map(|_| rng.next_u64() as u8).collect();
                v[0] = 0; // get past the first byte often
                v
            }
            _ => if rng.below(2) == 0 { SMB1 } else { SMB2 }.to_vec(),
        };
        if i % 3 != 0 {
            for _ in 0..rng.below(4) {
                // Mutate mostly the fixed parts, where the checks are.
                let at = rng.below(input.len().min(120));
                input[at] = rng.next_u64() as u8;
            }
            input.truncate(rng.below(input.len()) + 1);
        }
        assert_verdict_stable(|d| any.detect_stream(d), &input);
    }
}
