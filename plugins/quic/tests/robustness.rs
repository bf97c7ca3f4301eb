//! What the `quic` backend refuses, and its bounds: other UDP protocols, QUIC packets that are not a
//! client's first Initial (short header, version negotiation, Retry, Handshake, a too short DCID or
//! datagram, an unknown version), Initials with frames not allowed there, ClientHellos beyond the
//! 64 KiB kept; and seeded fuzzing of captures and synthetic Initials (no panic, deterministic
//! verdicts, a decided verdict kept as datagrams are added).

mod common;

use common::*;
use pmmux_plugin_api::{Backend, Detection};
use pmmux_plugin_testkit::{conn, mutate, same_kind, Rng};
use pmmux_quic::packet::Version;

fn no_match(datagram: &[u8]) {
    for params in ["", "sni = \"example.com\""] {
        assert_eq!(
            quic(params).can_handle_message(&conn(), datagram),
            Detection::NoMatch,
            "{datagram:02x?}"
        );
    }
}

#[test]
fn other_protocols_and_garbage() {
    no_match(b"");
    no_match(b"\0");
    no_match(&[0xff; 1500]);
    no_match(&[0; 1200]);
    // A DNS query, an OpenSSL DTLS 1.2 ClientHello, a WireGuard initiation (type 1, 148 bytes).
    no_match(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01");
    no_match(include_bytes!("../../dtls/tests/data/openssl_dtls12.bin"));
    let mut wg = vec![1, 0, 0, 0];
    wg.resize(148, 7);
    no_match(&wg);
    let mut rng = Rng::new(0x9e1c);
    for _ in 0..2000 {
        let len = rng.below(1500);
        let mut d = rng.bytes(len);
        if rng.below(2) == 0 && d.len() > 5 {
            // A long header with version 1: the rest random.
            d[0] |= 0xc0;
            d[1..5].copy_from_slice(&[0, 0, 0, 1]);
        }
        no_match(&d);
    }
}

#[test]
fn quic_packets_that_are_not_a_client_first_initial() {
    let good = initial(
        Version::V1,
        &DCID,
        0,
        &crypto(0, &client_hello(Some("a.example"), &["h3"], 0)),
    );
    assert!(matches!(
        quic("").can_handle_message(&conn(), &good),
        Detection::Match(_)
    ));
    // Short header (1-RTT) packet, the form of every packet after the handshake.
    let mut short = good.clone();
    short[0] = 0x40 | (short[0] & 0x0f);
    no_match(&short);
    // Version negotiation: version 0, then supported versions.
    let mut vn = vec![0x80 | 0x2a, 0, 0, 0, 0, 8];
    vn.extend_from_slice(&DCID);
    vn.push(0);
    vn.extend_from_slice(&[0, 0, 0, 1, 0x6b, 0x33, 0x43, 0xcf]);
    no_match(&vn);
    vn.resize(1200, 0);
    no_match(&vn);
    // Retry (v1 type 3; v2 type 0), padded to 1200 bytes to rule out the size check.
    for (first, version) in [(0xf0u8, [0, 0, 0, 1]), (0xc0, [0x6b, 0x33, 0x43, 0xcf])] {
        let mut retry = vec![first];
        retry.extend_from_slice(&version);
        retry.push(8);
        retry.extend_from_slice(&DCID);
        retry.push(0);
        retry.resize(1200, 0x55);
        no_match(&retry);
    }
    // Handshake and 0-RTT type bits on an otherwise good Initial.
    for bits in [0x10, 0x20, 0x30] {
        let mut other = good.clone();
        other[0] = (other[0] & 0xcf) | bits;
        no_match(&other);
    }
    // An unknown version (a draft), and QUIC v2's number on v1's type bits.
    let mut draft = good.clone();
    draft[1..5].copy_from_slice(&[0xff, 0, 0, 0x1d]);
    no_match(&draft);
    let mut v2 = good.clone();
    v2[1..5].copy_from_slice(&[0x6b, 0x33, 0x43, 0xcf]);
    no_match(&v2);
    // DCID shorter than a client's first (8 bytes), and a well-sealed packet with a 21-byte DCID.
    for dcid in [&[9u8; 4][..], &[9; 7], &[9; 21]] {
        let p = initial(
            Version::V1,
            dcid,
            0,
            &crypto(0, &client_hello(Some("a.example"), &[], 0)),
        );
        no_match(&p);
    }
    // The datagram must be at least 1200 bytes.
    let small = initial_packet(Version::V1, &DCID, 0, &crypto(0, &client_hello(None, &[], 0)), 0);
    assert!(small.len() < 1200);
    no_match(&small);
    no_match(&RFC9001[..1199]);
    // Fixed bit 0.
    let mut unfixed = good;
    unfixed[0] &= !0x40;
    no_match(&unfixed);
}

#[test]
fn frames_not_allowed_in_an_initial() {
    let hello = client_hello(Some("a.example"), &["h3"], 0);
    // STREAM (0x08), NEW_TOKEN (0x07), application CONNECTION_CLOSE (0x1d), HANDSHAKE_DONE (0x1e),
    // and PING encoded in two bytes.
    for bad in [
        &[0x08u8, 0, 1, b'x'][..],
        &[0x07, 1, 0],
        &[0x1d, 0, 0],
        &[0x1e],
        &[0x40, 0x01],
    ] {
        let mut frames = crypto(0, &hello);
        frames.extend_from_slice(bad);
        no_match(&initial(Version::V1, &DCID, 0, &frames));
    }
    // Allowed: PING, ACK, PADDING and a transport CONNECTION_CLOSE around the CRYPTO frame.
    let mut frames = vec![0x01, 0x02, 0, 0, 0, 0];
    frames.extend(crypto(0, &hello));
    frames.extend_from_slice(&[0x1c, 0, 0, 0]);
    assert!(matches!(
        quic("sni = \"a.example\"").can_handle_message(&conn(), &initial(Version::V1, &DCID, 0, &frames)),
        Detection::Match(_)
    ));
    // CRYPTO data that is not a ClientHello (a ServerHello, type 2).
    let mut not_hello = hello.clone();
    not_hello[0] = 2;
    no_match(&initial(Version::V2, &DCID, 0, &crypto(0, &not_hello)));
}

#[test]
fn out_of_order_frames_in_coalesced_packets() {
    let hello = client_hello(Some("x.example"), &["h3"], 300);
    let (a, b) = hello.split_at(200);
    let (b, c) = b.split_at(150);
    // Packet 1: frames [200..350) then [0..200); packet 2: [350..), then a 0-RTT packet (undecryptable
    // here, skipped), the whole padded to 1200 bytes by trailing zeros.
    let mut p1 = crypto(200, b);
    p1.extend(crypto(0, a));
    let mut datagram = initial_packet(Version::V1, &DCID, 0, &p1, 0);
    datagram.extend(initial_packet(Version::V1, &DCID, 1, &crypto(350, c), 0));
    let mut zero_rtt = vec![0xd1, 0, 0, 0, 1, 8];
    zero_rtt.extend_from_slice(&DCID);
    zero_rtt.extend_from_slice(&[0, 0x40, 30]);
    zero_rtt.extend_from_slice(&[0x77; 30]);
    datagram.extend(zero_rtt);
    datagram.resize(1200, 0);
    let found = props(quic("sni = \"x.example\"").can_handle_message(&conn(), &datagram));
    assert_eq!(found[1], ("quic.sni".to_owned(), "x.example".to_owned()));
    // Without the first packet, the second's CRYPTO (offset 350) starts nothing yet.
    let second_only = initial(Version::V1, &DCID, 1, &crypto(350, c));
    assert_eq!(quic("").can_handle_message(&conn(), &second_only), Detection::NeedMore);
}

#[test]
fn client_hellos_beyond_64_kib_are_not_followed() {
    // 70 000 bytes of padding and cipher suites before the server name: ~64 datagrams of 1100 bytes.
    let hello = client_hello(Some("far.example"), &["h3"], 70_000);
    let datagrams = hello_datagrams(Version::V1, &DCID, &hello, 1100);
    let sni = quic("sni = \"far.example\"");
    let all = refs(&datagrams);
    assert_eq!(sni.detect_datagrams(&conn(), &all[..10]), Detection::NeedMore);
    assert_eq!(sni.detect_datagrams(&conn(), &all), Detection::NoMatch);
    // Unfiltered, it matched on the first datagram already.
    assert!(matches!(
        quic("").detect_datagrams(&conn(), &all[..1]),
        Detection::Match(_)
    ));
    // Below the bound, a big ClientHello over many datagrams is followed to its end.
    let hello = client_hello(Some("near.example"), &["h3"], 40_000);
    let datagrams = hello_datagrams(Version::V2, &DCID, &hello, 1100);
    assert!(datagrams.len() > 30);
    assert!(matches!(
        sni.detect_datagrams(&conn(), &refs(&datagrams)),
        Detection::NoMatch
    ));
    let near = quic("sni = \"near.example\"");
    assert!(matches!(
        near.detect_datagrams(&conn(), &refs(&datagrams)),
        Detection::Match(_)
    ));
    // Many datagrams without the start: given up after 64 datagrams.
    let tail = initial(Version::V1, &DCID, 0, &crypto(10, b"rest"));
    let many: Vec<&[u8]> = std::iter::repeat_n(tail.as_slice(), 70).collect();
    assert_eq!(sni.detect_datagrams(&conn(), &many[..63]), Detection::NeedMore);
    assert_eq!(sni.detect_datagrams(&conn(), &many), Detection::NoMatch);
}

/// The corpus: every capture and vector, and synthetic Initials.
fn corpus() -> Vec<Vec<u8>> {
    let mut c: Vec<Vec<u8>> = [
        SMALL, QUINN, TWO[0], TWO[1], THREE[0], THREE[1], THREE[2], RFC9001, RFC9369,
    ]
    .iter()
    .map(|d| d.to_vec())
    .collect();
    c.push(initial(
        Version::V1,
        &DCID,
        0,
        &crypto(0, &client_hello(Some("a.example"), &["h3"], 0)),
    ));
    c
}

#[test]
fn fuzzed_datagrams_never_panic_and_judge_the_same_each_time() {
    let corpus = corpus();
    let backends = [quic(""), quic("sni = \"example.com\""), quic("alpn = \"h3\"")];
    let mut rng = Rng::new(0x051c_0fee);
    let mut matched = 0;
    for _ in 0..1500 {
        let mut d = corpus[rng.below(corpus.len())].clone();
        for _ in 0..=rng.below(3) {
            d = mutate(&mut rng, &d);
        }
        for b in &backends {
            let first = b.can_handle_message(&conn(), &d);
            assert_eq!(b.detect_datagrams(&conn(), &[&d]), first);
            matched += usize::from(matches!(first, Detection::Match(_)));
        }
    }
    // Edits after the packet (aioquic's zero padding) leave a match: the fuzzing reaches both sides.
    assert!(matched > 0);
}

#[test]
fn fuzzed_datagram_sequences_keep_a_decided_verdict() {
    let corpus = corpus();
    let filtered = [
        quic("sni = [\"big.example.net\", \"three.example.org\", \"example.com\"]"),
        quic("alpn = \"h3\""),
    ];
    let unfiltered = quic("");
    let mut rng = Rng::new(0xda7a);
    let (mut matches, mut no_matches) = (0, 0);
    for round in 0..300 {
        // A capture's datagrams in a random order, some mutated, duplicated or foreign.
        let base: Vec<Vec<u8>> = match round % 3 {
            0 => TWO.iter().map(|d| d.to_vec()).collect(),
            1 => THREE.iter().map(|d| d.to_vec()).collect(),
            _ => vec![SMALL.to_vec()],
        };
        let mut seq = Vec::new();
        for _ in 0..=rng.below(6) {
            let mut d = match rng.below(8) {
                0 => corpus[rng.below(corpus.len())].clone(),
                _ => base[rng.below(base.len())].clone(),
            };
            if rng.below(3) == 0 {
                d = mutate(&mut rng, &d);
            }
            seq.push(d);
        }
        let seq = refs(&seq);
        for b in &filtered {
            let mut decided: Option<Detection> = None;
            for n in 1..=seq.len() {
                let verdict = b.detect_datagrams(&conn(), &seq[..n]);
                // Filters only narrow: whatever a filtered backend accepts, the unfiltered one does.
                if matches!(verdict, Detection::Match(_)) {
                    let loose = unfiltered.detect_datagrams(&conn(), &seq[..n]);
                    assert!(matches!(loose, Detection::Match(_)), "round {round} at {n}");
                }
                match &decided {
                    Some(previous) => assert!(same_kind(&verdict, previous), "round {round} at {n}: {verdict:?}"),
                    None if verdict != Detection::NeedMore => decided = Some(verdict),
                    None => {}
                }
            }
            match decided {
                Some(Detection::Match(_)) => matches += 1,
                Some(_) => no_matches += 1,
                None => {}
            }
        }
    }
    // Not vacuous: many sequences decide each way.
    assert!(
        matches > 50 && no_matches > 50,
        "{matches} matches, {no_matches} no-matches"
    );
}
