//! The `wireguard` backend over messages built from the WireGuard whitepaper (no WireGuard client can
//! run unprivileged here: the kernel module needs an interface), other protocols, and thousands of
//! random, truncated and mutated datagrams.

use pmmux_plugin_api::{Backend, Detection};
use pmmux_plugin_testkit::{conn_port, spec, Rng};
use pmmux_wireguard::{message_type, WireGuard};

fn backend(params_toml: &str) -> Result<WireGuard, String> {
    WireGuard::new(&spec("wireguard", params_toml))
}

fn message_type_of(detection: Detection) -> String {
    match detection {
        Detection::Match(p) => {
            assert_eq!(p.len(), 1);
            assert_eq!(p[0].key.as_str(), "wireguard.message_type");
            p[0].value.to_string()
        }
        other => panic!("expected a match, got {other:?}"),
    }
}

/// Deterministic filler standing in for keys, MACs and ciphertext.
fn filler(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// Whitepaper §5.4.2, handshake initiation: type 1 (1 byte), reserved zero (3), sender index (4),
/// unencrypted ephemeral (32), encrypted static (32 + 16), encrypted timestamp (12 + 16), mac1 (16),
/// mac2 (16, zero without a cookie) = 148 bytes.
fn initiation() -> Vec<u8> {
    let mut m = vec![1, 0, 0, 0];
    m.extend_from_slice(&0x1234_5678u32.to_le_bytes());
    m.extend_from_slice(&filler(32, 1)); // ephemeral
    m.extend_from_slice(&filler(48, 2)); // static
    m.extend_from_slice(&filler(28, 3)); // timestamp
    m.extend_from_slice(&filler(16, 4)); // mac1
    m.extend_from_slice(&[0; 16]); // mac2
    assert_eq!(m.len(), 148);
    m
}

/// §5.4.3, handshake response: type 2, reserved, sender (4), receiver (4), ephemeral (32),
/// encrypted nothing (0 + 16), mac1 (16), mac2 (16) = 92 bytes.
fn response() -> Vec<u8> {
    let mut m = vec![2, 0, 0, 0];
    m.extend_from_slice(&filler(8, 5));
    m.extend_from_slice(&filler(32, 6));
    m.extend_from_slice(&filler(16, 7));
    m.extend_from_slice(&filler(32, 8));
    assert_eq!(m.len(), 92);
    m
}

/// §5.4.7, cookie reply: type 3, reserved, receiver (4), nonce (24), encrypted cookie (16 + 16) = 64.
fn cookie_reply() -> Vec<u8> {
    let mut m = vec![3, 0, 0, 0];
    m.extend_from_slice(&filler(60, 9));
    assert_eq!(m.len(), 64);
    m
}

/// §5.4.6, transport data: type 4, reserved, receiver (4), counter (8), then the payload padded to
/// a multiple of 16 and its 16-byte tag. `padded` = 0 is a keepalive.
fn transport(padded: usize) -> Vec<u8> {
    let mut m = vec![4, 0, 0, 0];
    m.extend_from_slice(&filler(12 + padded + 16, 10));
    m
}

#[test]
fn each_message_type_matches_with_its_type() {
    let wg = backend("").expect("no params");
    assert_eq!(
        message_type_of(wg.can_handle_message(&conn_port(51820), &initiation())),
        "1"
    );
    assert_eq!(
        message_type_of(wg.can_handle_message(&conn_port(51820), &response())),
        "2"
    );
    assert_eq!(
        message_type_of(wg.can_handle_message(&conn_port(51820), &cookie_reply())),
        "3"
    );
    for padded in [0, 16, 32, 1408] {
        assert_eq!(
            message_type_of(wg.can_handle_message(&conn_port(51820), &transport(padded))),
            "4"
        );
    }
}

#[test]
fn handshake_only_matches_initiations_only() {
    let wg = backend("handshake_only = true").expect("valid params");
    assert_eq!(
        message_type_of(wg.can_handle_message(&conn_port(51820), &initiation())),
        "1"
    );
    for other in [response(), cookie_reply(), transport(0), transport(64)] {
        assert_eq!(wg.can_handle_message(&conn_port(51820), &other), Detection::NoMatch);
    }
}

#[test]
fn wrong_sizes_and_reserved_bytes_are_no_match() {
    let wg = backend("").expect("no params");
    let init = initiation();
    for n in 0..init.len() {
        assert_eq!(
            wg.can_handle_message(&conn_port(51820), &init[..n]),
            Detection::NoMatch,
            "initiation[..{n}]"
        );
    }
    let mut longer = init.clone();
    longer.push(0);
    assert_eq!(message_type(&longer), Err("wrong size for the message type"));
    for at in 1..4 {
        let mut bad = init.clone();
        bad[at] = 1;
        assert_eq!(message_type(&bad), Err("reserved bytes are not zero"));
    }
    for kind in [0u8, 5, 0x16, b'G'] {
        let mut bad = init.clone();
        bad[0] = kind;
        assert_eq!(message_type(&bad), Err("unknown message type"));
    }
    assert_eq!(message_type(&response()[..91]), Err("wrong size for the message type"));
    assert_eq!(
        message_type(&transport(0)[..31]),
        Err("wrong size for the message type")
    );
    assert_eq!(
        message_type(&transport(16)[..40]),
        Err("wrong size for the message type")
    );
}

#[test]
fn tcp_never_matches() {
    let wg = backend("").expect("no params");
    assert_eq!(wg.detect(&conn_port(51820), &initiation()), Detection::NoMatch);
    assert_eq!(wg.detect(&conn_port(51820), &[1]), Detection::NoMatch);
}

#[test]
fn other_protocols_are_no_match() {
    let wg = backend("").expect("no params");
    let mut dns = vec![0xc0, 0x7f, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 1];
    dns.resize(64, 0);
    let others: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n".to_vec(),
        b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n".to_vec(),
        [&[0x16, 0x03, 0x01, 0x00, 0x8f, 0x01, 0x00, 0x00, 0x8b][..], &[3; 139]].concat(),
        // An OpenVPN client hard reset (14 bytes) and a DNS query padded to 64 bytes.
        [&[0x38][..], &[7; 13]].concat(),
        dns,
    ];
    for other in &others {
        assert_eq!(
            wg.can_handle_message(&conn_port(51820), other),
            Detection::NoMatch,
            "{other:?}"
        );
        assert_eq!(wg.detect(&conn_port(51820), other), Detection::NoMatch);
    }
}

#[test]
fn params_are_checked() {
    let err = backend("handshake = true").expect_err("unknown param");
    assert!(err.contains("handshake"), "{err}");
    assert!(backend("handshake_only = \"yes\"").is_err());
    assert!(backend("handshake_only = false").is_ok());
}

#[test]
fn fuzz_no_panic_and_always_a_verdict() {
    let all = backend("").expect("no params");
    let strict = backend("handshake_only = true").expect("valid params");
    let seeds = [initiation(), response(), cookie_reply(), transport(0), transport(96)];
    let mut rng = Rng::new(0x5157_4e47_5541_5244);
    for round in 0..20_000 {
        let mut input: Vec<u8> = match round % 3 {
            0 => (0..rng.below(200)).map(|_| rng.next_u64() as u8).collect(),
            _ => seeds[rng.below(seeds.len())].clone(),
        };
        for _ in 0..rng.below(3) {
            if !input.is_empty() {
                let at = rng.below(input.len());
                input[at] = rng.next_u64() as u8;
            }
        }
        if rng.below(2) == 0 {
            input.truncate(rng.below(input.len() + 1));
        }
        let verdict = all.can_handle_message(&conn_port(51820), &input);
        assert_eq!(matches!(verdict, Detection::Match(_)), message_type(&input).is_ok());
        let strict_verdict = strict.can_handle_message(&conn_port(51820), &input);
        assert_eq!(
            matches!(strict_verdict, Detection::Match(_)),
            message_type(&input) == Ok(1)
        );
        assert_eq!(all.detect(&conn_port(51820), &input), Detection::NoMatch);
    }
}
