//! The `adb` backend over a real `CNXN` captured from `adb connect`, messages built from adb's
//! protocol.txt, every prefix of them, other protocols, and thousands of random and mutated inputs.

use pmmux_adb::{detect, parse, Adb, Parse, MAX_DATA};
use pmmux_plugin_api::Detection;
use pmmux_plugin_testkit::{
    assert_needs_more_until_whole, assert_no_params, assert_verdict_stable, corrupt_and_truncate, props, Rng,
};

/// Captured on loopback with a Python listener on 127.0.0.1 (port 0) saving the first bytes: Android
/// Debug Bridge 1.0.41, "Version 29.0.6-debian" (Debian 12 `adb 1:29.0.6-28`), `adb connect
/// 127.0.0.1:PORT` with `ANDROID_ADB_SERVER_PORT` set to a free port (server killed afterwards).
/// Version 0x01000001, maxdata 1 MiB, 119 bytes of `host::features=...` with a trailing NUL.
const ADB_CONNECT: &[u8] = include_bytes!("data/adb_connect_29.0.6.bin");

/// A `CNXN` built from protocol.txt ("CONNECT(version, maxdata, "system-identity-string")"; six
/// little-endian words: command, arg0, arg1, data_length, data_check, magic = command ^ 0xffffffff),
/// with version 0x01000000 (A_VERSION_MIN, checksummed) and maxdata 4096 as older hosts send.
fn cnxn(version: u32, identity: &[u8]) -> Vec<u8> {
    let command = u32::from_le_bytes(*b"CNXN");
    let check: u32 = identity.iter().map(|&b| u32::from(b)).sum();
    let mut m = Vec::new();
    for w in [command, version, 4096, identity.len() as u32, check, command ^ u32::MAX] {
        m.extend_from_slice(&w.to_le_bytes());
    }
    m.extend_from_slice(identity);
    m
}

fn expected(version: &str, banner: &str) -> Vec<(String, String)> {
    vec![
        ("adb.version".to_owned(), version.to_owned()),
        ("adb.banner".to_owned(), banner.to_owned()),
    ]
}

const FEATURES: &str = "host::features=remount_shell,abb_exec,abb,apex,fixed_push_mkdir,ls_v2,stat_v2,\
                        fixed_push_symlink_timestamp,cmd,shell_v2";

#[test]
fn capture_matches_with_properties() {
    assert_eq!(ADB_CONNECT.len(), 24 + 119);
    assert_eq!(props(detect(ADB_CONNECT)), expected("0x01000001", FEATURES));
    match parse(ADB_CONNECT) {
        Parse::Complete(c) => assert_eq!(c.max_data, 1024 * 1024),
        other => panic!("{other:?}"),
    }
}

#[test]
fn spec_built_messages_match() {
    let old = cnxn(0x0100_0000, b"host::\0");
    assert_eq!(props(detect(&old)), expected("0x01000000", "host::"));
    // sslh accepts a CNXN after one empty message, which some adb versions send first.
    let after_empty = [&[0u8; 24][..], ADB_CONNECT].concat();
    assert_eq!(props(detect(&after_empty)), expected("0x01000001", FEATURES));
}

#[test]
fn every_strict_prefix_needs_more() {
    let after_empty = [&[0u8; 24][..], ADB_CONNECT].concat();
    let old = cnxn(0x0100_0000, b"host::\0");
    for input in [ADB_CONNECT, &after_empty, &old] {
        assert_needs_more_until_whole(detect, input, "capture");
    }
}

#[test]
fn malformed_messages_are_no_match_early() {
    let good = cnxn(0x0100_0001, b"host::\0");
    let patch = |at: usize, bytes: &[u8]| {
        let mut m = good.clone();
        m[at..at + bytes.len()].copy_from_slice(bytes);
        m
    };
    let cases: Vec<(Vec<u8>, usize, &str)> = vec![
        (patch(0, b"AUTH"), 1, "command is not CNXN"),
        (patch(3, b"X"), 4, "command is not CNXN"),
        (patch(4, &0x0200_0000u32.to_le_bytes()), 8, "unknown protocol version"),
        (patch(8, &[0; 4]), 12, "maximum payload size is 0"),
        (patch(12, &[4, 0, 0, 0]), 16, "payload length outside what a CNXN takes"),
        (
            patch(12, &((MAX_DATA + 1) as u32).to_le_bytes()),
            16,
            "payload length outside what a CNXN takes",
        ),
        (patch(20, &[0; 4]), 24, "magic is not the command's complement"),
        (patch(24, b"devic"), 25, "system identity does not start with `host:`"),
        (patch(2, &[0]), 3, "command is not CNXN"),
    ];
    for (message, decided_at, why) in cases {
        assert_eq!(parse(&message), Parse::Invalid(why));
        assert_eq!(
            parse(&message[..decided_at]),
            Parse::Invalid(why),
            "decided by byte {decided_at}"
        );
        assert_eq!(detect(&message[..decided_at - 1]), Detection::NeedMore, "{why}");
    }
    assert_eq!(parse(&[0, 0, 1]), Parse::Invalid("leading message is not an empty one"));
    assert_eq!(parse(&[0; 25]), Parse::Invalid("more than one empty message"));
}

#[test]
fn other_protocols_are_no_match_from_the_first_byte() {
    let others: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03],
        b"0 alice 17\n",
        &[0x00, 0x0e, 0x38, 0x59],
    ];
    for other in others {
        let first = if other[0] == 0 { 2 } else { 1 };
        assert_eq!(detect(&other[..first]), Detection::NoMatch, "{other:?}");
        assert_eq!(detect(other), Detection::NoMatch, "{other:?}");
    }
}

#[test]
fn params_are_refused() {
    assert_no_params(Adb::new, "adb", "serial = \"x\"");
}

#[test]
fn fuzz_no_panic_and_decisions_are_final() {
    let mut rng = Rng::new(0xadb_c0ffee);
    let seeds = [
        ADB_CONNECT.to_vec(),
        cnxn(0x0100_0000, b"host::\0"),
        [&[0u8; 24][..], ADB_CONNECT].concat(),
    ];
    for round in 0..20_000 {
        let input: Vec<u8> = match round % 3 {
            0 => (0..rng.below(80)).map(|_| rng.next_u64() as u8).collect(),
            _ => seeds[rng.below(seeds.len())].clone(),
        };
        let input = corrupt_and_truncate(&mut rng, input);
        if input.is_empty() {
            continue;
        }
        assert_verdict_stable(detect, &input);
    }
}
