//! The `tinc` backend over a real ID line captured from tincd and lines built from tinc's protocol
//! documentation, every prefix of them, other protocols, and thousands of random and mutated inputs.

use pmmux_plugin_api::Detection;
use pmmux_plugin_testkit::{assert_needs_more_until_whole, assert_no_params, assert_verdict_stable, pairs, props, Rng};
use pmmux_tinc::{detect, parse, Parse, Tinc, MAX_LINE};

/// Captured on loopback with a Python listener on 127.0.0.1 (port 0) saving the first bytes: tinc
/// 1.0.36 (Debian 12 `tinc 1.0.36-2+b2`), `tincd -c DIR -D` with `tinc.conf` = `Name = alice`,
/// `ConnectTo = bob`, `DeviceType = dummy` and `hosts/bob` = `Address = 127.0.0.1`, `Port = PORT`.
const TINCD_1_0_36: &[u8] = include_bytes!("data/tincd_1.0.36.bin");

/// tinc 1.1's ID line (`send_id` in src/protocol_auth.c: `"%d %s %d.%d", ID, name,
/// PROT_MAJOR, PROT_MINOR` with PROT_MAJOR 17, PROT_MINOR 7; doc/PROTOCOL and the tinc manual,
/// "Authentication protocol": `0 <name> 17.7`). Built from the specification: tinc 1.1 is not
/// packaged in Debian 12.
const TINC_1_1: &[u8] = b"0 node_2 17.7\n";
/// tinc 1.1's `tinc join` sends `0 ?<cookie> 17.1` (src/invitation.c, `"0 ?%s %d.%d"`).
const INVITATION: &[u8] = b"0 ?Zm9vYmFyYmF6cXV4MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1u 17.1\n";

const LINES: &[(&str, &[u8])] = &[
    ("tincd 1.0.36", TINCD_1_0_36),
    ("tinc 1.1", TINC_1_1),
    ("invitation", INVITATION),
];

#[test]
fn id_lines_match_with_properties() {
    assert_eq!(TINCD_1_0_36, b"0 alice 17\n");
    assert_eq!(
        props(detect(TINCD_1_0_36)),
        pairs(&[("tinc.name", "alice"), ("tinc.protocol", "17")])
    );
    assert_eq!(
        props(detect(TINC_1_1)),
        pairs(&[("tinc.name", "node_2"), ("tinc.protocol", "17.7")])
    );
    assert_eq!(
        props(detect(INVITATION)),
        pairs(&[("tinc.invitation", "yes"), ("tinc.protocol", "17.1")])
    );
    // Whatever follows the line (tinc waits for the peer's ID, but a proxy may batch) is ignored.
    let mut more = TINCD_1_0_36.to_vec();
    more.extend_from_slice(b"1 94 64 0 0 ABCDEF\n");
    assert_eq!(props(detect(&more)), props(detect(TINCD_1_0_36)));
}

#[test]
fn every_strict_prefix_needs_more() {
    for &(name, line) in LINES {
        assert_needs_more_until_whole(detect, line, name);
    }
}

#[test]
fn malformed_lines_are_no_match() {
    let cases: &[(&[u8], &str)] = &[
        (b"1 alice 17\n", "does not start with `0 ` (ID request)"),
        (b"0  alice 17\n", "empty node name"),
        (b"0 al-ice 17\n", "invalid character in the node name"),
        (b"0 alice 16\n", "protocol major version is not 17"),
        (b"0 alice 170\n", "protocol major version is not 17"),
        (b"0 alice 17.\n", "protocol minor version is empty"),
        (b"0 alice 17.x\n", "protocol minor version is not a number"),
        (b"0 alice\n", "ID line ends early"),
        (b"0 alice 1\n", "ID line ends early"),
        (b"0 alice 17\r\n", "protocol major version is not 17"),
        (b"0 ? 17\n", "empty node name"),
    ];
    for &(line, why) in cases {
        assert_eq!(parse(line), Parse::Invalid(why), "{line:?}");
        assert_eq!(detect(line), Detection::NoMatch, "{line:?}");
    }
    let long = [b"0 ".as_slice(), &vec![b'a'; MAX_LINE]].concat();
    assert_eq!(detect(&long), Detection::NoMatch);
    assert_eq!(detect(&long[..MAX_LINE - 1]), Detection::NeedMore);
}

#[test]
fn other_protocols_are_no_match_from_the_first_byte() {
    let others: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03],
        b"CNXN\x01\x00\x00\x01",
    ];
    for other in others {
        assert_eq!(detect(&other[..1]), Detection::NoMatch, "{other:?}");
        assert_eq!(detect(other), Detection::NoMatch, "{other:?}");
    }
    // Starts like an ID line, refused at the first impossible byte.
    assert_eq!(detect(b"0 GET /"), Detection::NoMatch);
    assert_eq!(detect(b"0x"), Detection::NoMatch);
}

#[test]
fn params_are_refused() {
    assert_no_params(Tinc::new, "tinc", "name = \"alice\"");
}

#[test]
fn fuzz_no_panic_and_decisions_are_final() {
    let mut rng = Rng::new(0x7469_6e63_1707);
    let alphabet = b"0 17.\n?_aZ9-";
    for round in 0..20_000 {
        let mut input: Vec<u8> = match round % 4 {
            0 => (0..rng.below(40)).map(|_| rng.next_u64() as u8).collect(),
            1 => (0..rng.below(40))
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect(),
            _ => LINES[rng.below(LINES.len())].1.to_vec(),
        };
        for _ in 0..rng.below(3) {
            if !input.is_empty() {
                let at = rng.below(input.len());
                input[at] = if rng.below(2) == 0 {
                    rng.next_u64() as u8
                } else {
                    alphabet[rng.below(alphabet.len())]
                };
            }
        }
        input.truncate(rng.below(input.len() + 1));
        if input.is_empty() {
            continue;
        }
        assert_verdict_stable(detect, &input);
    }
}
