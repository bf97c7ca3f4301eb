//! The `bittorrent` backend over real client bytes and bytes built from the BEPs, every prefix of
//! the TCP handshake, other protocols, and thousands of random, truncated and mutated inputs.
//!
//! Captured from aria2 1.36.0 (Debian 12) on loopback: `aria2c -d DIR --enable-dht=...
//! "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=test&tr=..."` against a Python
//! script on 127.0.0.1 (ports 0) serving an HTTP tracker that lists one peer, the peer being a
//! listener that saved the first bytes of each connection:
//! * `aria2_handshake.bin`: the plain BEP 3 handshake (peer id `A2-1-36-0-...`), sent on aria2's
//!   retry after the listener closed its first, encrypted attempt;
//! * `aria2_mse_encrypted.bin`: that first attempt, an MSE/PE (obfuscated) handshake;
//! * `aria2_dht_query.bin`: the DHT `ping` aria2 sent to `--dht-entry-point=127.0.0.1:PORT`.
//!
//! The UDP tracker connect request and the uTP SYN are built from BEP 15 and BEP 29 (aria2 did not
//! use the `udp://` tracker in the capture run, and does not speak uTP).

use pmmux_bittorrent::{detect_message, detect_stream, BitTorrent, HANDSHAKE_DECIDES_AT};
use pmmux_plugin_api::{Backend, Detection};
use pmmux_plugin_testkit::{
    assert_no_params, assert_verdict_stable, conn_port, props, random_prefix_or_mutant, spec, Rng,
};

const HANDSHAKE: &[u8] = include_bytes!("data/aria2_handshake.bin");
const MSE: &[u8] = include_bytes!("data/aria2_mse_encrypted.bin");
const DHT_PING: &[u8] = include_bytes!("data/aria2_dht_query.bin");
const INFO_HASH: &str = "0123456789abcdef0123456789abcdef01234567";

/// BEP 15 connect request: protocol id, action 0 (connect), transaction id.
const TRACKER_CONNECT: &[u8] = b"\x00\x00\x04\x17\x27\x10\x19\x80\x00\x00\x00\x00\xde\xad\xbe\xef";
/// BEP 29 ST_SYN: type 4 / version 1, no extension, connection id, timestamps, window, seq, ack.
const UTP_SYN: &[u8] = &[
    0x41, 0, 0x30, 0x39, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 1, 0, 0,
];

fn kind(k: &str) -> Vec<(String, String)> {
    vec![("bittorrent.kind".to_owned(), k.to_owned())]
}

fn backend(params_toml: &str) -> Result<BitTorrent, String> {
    BitTorrent::new(&spec("bittorrent", params_toml))
}

#[test]
fn aria2_handshake_matches_with_info_hash() {
    assert_eq!(HANDSHAKE.len(), 68);
    let want = vec![
        ("bittorrent.kind".to_owned(), "handshake".to_owned()),
        ("bittorrent.info_hash".to_owned(), INFO_HASH.to_owned()),
    ];
    let bt = backend("").unwrap();
    assert_eq!(props(bt.detect(&conn_port(6881), HANDSHAKE)), want);
    // Decided once the info hash is in; the peer id is not waited for.
    assert_eq!(props(detect_stream(&HANDSHAKE[..HANDSHAKE_DECIDES_AT])), want);
    // A handshake is not a datagram protocol.
    assert_eq!(bt.can_handle_message(&conn_port(6881), HANDSHAKE), Detection::NoMatch);
}

#[test]
fn every_strict_prefix_needs_more() {
    for n in 1..HANDSHAKE_DECIDES_AT {
        assert_eq!(detect_stream(&HANDSHAKE[..n]), Detection::NeedMore, "prefix {n}");
    }
}

#[test]
fn udp_kinds_match() {
    let bt = backend("").unwrap();
    assert_eq!(props(bt.can_handle_message(&conn_port(6881), DHT_PING)), kind("dht"));
    assert_eq!(
        props(bt.can_handle_message(&conn_port(6881), TRACKER_CONNECT)),
        kind("tracker")
    );
    assert_eq!(props(bt.can_handle_message(&conn_port(6881), UTP_SYN)), kind("utp"));
    // BEP 5 examples: a find_node query, a ping response, an error.
    let find_node = b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe";
    assert_eq!(props(detect_message(find_node)), kind("dht"));
    assert_eq!(
        props(detect_message(b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re")),
        kind("dht")
    );
    assert_eq!(
        props(detect_message(b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee")),
        kind("dht")
    );
    // uTP SYN with a selective-ack extension (4 bytes of mask).
    let mut with_ext = UTP_SYN.to_vec();
    with_ext[1] = 1;
    with_ext.extend_from_slice(&[0, 4, 0, 0, 0, 0]);
    assert_eq!(props(detect_message(&with_ext)), kind("utp"));
}

#[test]
fn near_misses_are_no_match() {
    let mut cases: Vec<Vec<u8>> = vec![
        TRACKER_CONNECT[..15].to_vec(),
        [TRACKER_CONNECT, b"x"].concat(),
        [&TRACKER_CONNECT[..8], &[0, 0, 0, 1], &TRACKER_CONNECT[12..]].concat(), // announce action
        UTP_SYN[..19].to_vec(),
        b"d1:ad2:id19:abcdefghij012345678e1:q4:ping1:t2:aa1:y1:qe".to_vec(), // 19-byte id
        b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:y1:qe".to_vec(),       // no t
        b"d1:q4:ping1:t2:aa1:y1:q1:ad2:id20:abcdefghij0123456789ee".to_vec(), // unsorted keys
        [DHT_PING, b"x"].concat(),
        DHT_PING[..DHT_PING.len() - 1].to_vec(),
        MSE.to_vec(),
        HANDSHAKE.to_vec(),
    ];
    for (ty, ext) in [(0x01, 0), (0x21, 0), (0x42, 0), (0x41, 3), (0x41, 1)] {
        let mut bad = UTP_SYN.to_vec();
        bad[0] = ty;
        bad[1] = ext;
        cases.push(bad);
    }
    for case in cases {
        assert_eq!(detect_message(&case), Detection::NoMatch, "{case:?}");
    }
}

#[test]
fn other_protocols_are_no_match_early() {
    assert_eq!(detect_stream(MSE), Detection::NoMatch);
    assert_eq!(detect_stream(b"G"), Detection::NoMatch);
    assert_eq!(detect_stream(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Detection::NoMatch);
    assert_eq!(detect_stream(&[0x16, 0x03, 0x01, 0x02, 0x00]), Detection::NoMatch);
    assert_eq!(detect_stream(b"SSH-2.0-OpenSSH_9.2p1\r\n"), Detection::NoMatch);
    assert_eq!(detect_stream(b"\x13BitTorrent protocoX"), Detection::NoMatch);
    for dgram in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0x16, 3, 1, 0, 5, 1, 0, 0, 1, 3],
        b"SSH-2.0-x\r\n",
    ] {
        assert_eq!(detect_message(dgram), Detection::NoMatch);
    }
}

#[test]
fn params_are_refused() {
    assert_no_params(BitTorrent::new, "bittorrent", "info_hash = 'x'");
}

#[test]
fn fuzz_random_truncated_and_mutated_inputs() {
    let seeds: [&[u8]; 5] = [HANDSHAKE, DHT_PING, TRACKER_CONNECT, UTP_SYN, MSE];
    let mut rng = Rng::new(0x1234_5678_9abc_def1);
    for round in 0..10_000 {
        let input = random_prefix_or_mutant(&mut rng, round, &seeds, 100);
        assert_ne!(detect_message(&input), Detection::NeedMore);
        // TCP: once decided, more bytes never change the answer.
        assert_verdict_stable(detect_stream, &input);
    }
}
