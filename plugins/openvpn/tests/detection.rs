//! The `openvpn` backend over real first packets captured from OpenVPN clients, every prefix of the
//! TCP ones, other protocols, and thousands of random, truncated and mutated inputs.

use pmmux_openvpn::{parse_packet, parse_stream, OpenVpn, Verdict, EARLY_NEG_START, MAX_PACKET, MAX_RESEND_ID};
use pmmux_plugin_api::{Backend, Detection};
use pmmux_plugin_testkit::{
    assert_needs_more_until_whole, assert_no_params, assert_verdict_stable, conn_port, props, spec, Rng,
};

// Captured on loopback with a Python listener on 127.0.0.1 (port 0) that saved the first bytes (TCP)
// or the first datagram (UDP); client OpenVPN 2.6.14 (Debian 12, `openvpn 2.6.14-0+deb12u2`), run as
// `openvpn --client --remote 127.0.0.1 PORT --dev null --ca cert.pem --cert cert.pem --key key.pem
// --connect-retry-max 1` plus the options named below (throw-away self-signed key and cert).

/// `--proto tcp-client`: length 14, opcode 0x38 (V2, key id 0), no TLS wrapping.
const TCP_PLAIN: &[u8] = include_bytes!("data/tcp_plain.bin");
/// `--proto udp`: the same 14-byte packet without the length prefix.
const UDP_PLAIN: &[u8] = include_bytes!("data/udp_plain.bin");
/// `--proto tcp-client --tls-auth ta.key 1` (key from `openvpn --genkey secret ta.key`): HMAC-SHA1.
const TCP_TLS_AUTH: &[u8] = include_bytes!("data/tcp_tls_auth.bin");
/// `--proto udp --tls-crypt ta.key`: 54 bytes, encrypted after the session id.
const UDP_TLS_CRYPT: &[u8] = include_bytes!("data/udp_tls_crypt.bin");
/// `--proto tcp-client --tls-crypt-v2 cli.key` (keys from `openvpn --genkey tls-crypt-v2-server`
/// and `--genkey tls-crypt-v2-client`): opcode 0x50 (V3), 353 bytes with the wrapped client key.
const TCP_TLS_CRYPT_V2: &[u8] = include_bytes!("data/tcp_tls_crypt_v2.bin");

const TCP_CAPTURES: &[(&str, &[u8], &str)] = &[
    ("tcp_plain", TCP_PLAIN, "P_CONTROL_HARD_RESET_CLIENT_V2"),
    ("tcp_tls_auth", TCP_TLS_AUTH, "P_CONTROL_HARD_RESET_CLIENT_V2"),
    ("tcp_tls_crypt_v2", TCP_TLS_CRYPT_V2, "P_CONTROL_HARD_RESET_CLIENT_V3"),
];
const UDP_CAPTURES: &[(&str, &[u8], &str)] = &[
    ("udp_plain", UDP_PLAIN, "P_CONTROL_HARD_RESET_CLIENT_V2"),
    ("udp_tls_crypt", UDP_TLS_CRYPT, "P_CONTROL_HARD_RESET_CLIENT_V2"),
];

fn backend(params_toml: &str) -> Result<OpenVpn, String> {
    OpenVpn::new(&spec("openvpn", params_toml))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn tcp_captures_match_with_properties() {
    let ovpn = backend("").expect("no params");
    for &(name, stream, opcode) in TCP_CAPTURES {
        let expected = vec![
            ("openvpn.opcode".to_owned(), opcode.to_owned()),
            ("openvpn.session_id".to_owned(), hex(&stream[3..11])),
        ];
        assert_eq!(props(ovpn.detect(&conn_port(1194), stream)), expected, "{name}");
        let len = usize::from(u16::from_be_bytes([stream[0], stream[1]]));
        assert_eq!(len + 2, stream.len(), "{name}: one whole packet");
        // The same packet over UDP matches the same way.
        assert_eq!(
            props(ovpn.can_handle_message(&conn_port(1194), &stream[2..])),
            expected,
            "{name}"
        );
    }
}

#[test]
fn udp_captures_match_with_properties() {
    let ovpn = backend("").expect("no params");
    for &(name, datagram, opcode) in UDP_CAPTURES {
        let expected = vec![
            ("openvpn.opcode".to_owned(), opcode.to_owned()),
            ("openvpn.session_id".to_owned(), hex(&datagram[1..9])),
        ];
        assert_eq!(
            props(ovpn.can_handle_message(&conn_port(1194), datagram)),
            expected,
            "{name}"
        );
        let mut framed = (datagram.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(datagram);
        assert_eq!(
            props(ovpn.detect(&conn_port(1194), &framed)),
            expected,
            "{name} over TCP"
        );
    }
    assert_eq!(UDP_PLAIN[0], 0x38);
}

#[test]
fn every_strict_prefix_of_a_tcp_capture_needs_more() {
    let ovpn = backend("").expect("no params");
    for &(name, stream, _) in TCP_CAPTURES {
        assert_needs_more_until_whole(|d| ovpn.detect(&conn_port(1194), d), stream, name);
    }
}

#[test]
fn truncated_datagrams_are_no_match() {
    let ovpn = backend("").expect("no params");
    for n in 0..14 {
        assert_eq!(
            ovpn.can_handle_message(&conn_port(1194), &UDP_PLAIN[..n]),
            Detection::NoMatch,
            "{n}"
        );
    }
}

#[test]
fn other_opcodes_and_key_ids_are_no_match() {
    for byte in 0..=u8::MAX {
        let mut packet = UDP_PLAIN.to_vec();
        packet[0] = byte;
        // V3 (0x50) is --tls-crypt-v2 only, which the plain packet is not; a tls-crypt-v2 packet
        // under V2 reads as --tls-crypt with a longer body.
        let accepted = byte == 0x38 || byte == 0x50;
        assert_eq!(
            matches!(parse_packet(&packet), Verdict::Reset { .. }),
            byte == 0x38,
            "{byte:#04x}"
        );
        let mut v3 = TCP_TLS_CRYPT_V2[2..].to_vec();
        v3[0] = byte;
        assert_eq!(
            matches!(parse_packet(&v3), Verdict::Reset { .. }),
            accepted,
            "{byte:#04x}"
        );
        let mut stream = TCP_PLAIN.to_vec();
        stream[2] = byte;
        if !accepted {
            // Decided from the opcode byte, before the rest arrives.
            assert!(matches!(parse_stream(&stream[..3]), Verdict::Invalid(_)), "{byte:#04x}");
        }
    }
    // P_CONTROL_HARD_RESET_SERVER_V2 (8), as a server would answer.
    assert_eq!(
        parse_packet(&[[0x40].as_slice(), &[1; 13]].concat()),
        Verdict::Invalid("opcode is not a client hard reset (V2 or V3)")
    );
}

#[test]
fn implausible_lengths_are_no_match_early() {
    assert!(matches!(parse_stream(&[0x00, 13]), Verdict::Invalid(_)));
    assert!(matches!(parse_stream(&[0x00, 0]), Verdict::Invalid(_)));
    assert!(matches!(parse_stream(&[0x08, 0x01]), Verdict::Invalid(_)));
    assert!(matches!(parse_stream(&[0x09]), Verdict::Invalid(_)));
    assert_eq!(parse_stream(&[0x08, 0x00]), Verdict::Incomplete);
    let mut longest = UDP_PLAIN.to_vec();
    longest.resize(MAX_PACKET, 0);
    assert!(matches!(parse_packet(&longest), Verdict::Reset { .. }));
    longest.push(0);
    assert!(matches!(parse_packet(&longest), Verdict::Invalid(_)));
}

/// A hard reset with the right opcode and length but none of the wrappings' fixed bytes is not one:
/// the opcode alone would match one random datagram in 128 (and HTTP's `POST`, whose `P` is 0x50).
#[test]
fn an_opcode_alone_is_not_enough() {
    for packet in [
        &b"POST /api/v1/items HTTP/1.1\r\nHost: a.example\r\n\r\n"[..],
        &[0x38; 14],
        &[0x38; 54],
        &[0x50; 353],
        &[[0x38].as_slice(), &[0xff; 8], &[0, 0, 0, 0, 1]].concat(),
    ] {
        assert!(matches!(parse_packet(packet), Verdict::Invalid(_)), "{packet:02x?}");
    }
}

/// Splits a `--tls-auth` capture at its HMAC and rebuilds it with an HMAC of `size` bytes.
fn tls_auth_with_hmac(size: usize) -> Vec<u8> {
    let packet = &TCP_TLS_AUTH[2..];
    [&packet[..9], &vec![0xa5; size], &packet[9 + 20..]].concat()
}

#[test]
fn every_tls_auth_digest_and_the_first_resends_match() {
    for size in [16, 20, 28, 32, 48, 64] {
        assert!(
            matches!(parse_packet(&tls_auth_with_hmac(size)), Verdict::Reset { .. }),
            "{size}"
        );
    }
    assert!(matches!(parse_packet(&tls_auth_with_hmac(24)), Verdict::Invalid(_)));
    // The replay packet id after the HMAC: 1 on the first send, up to MAX_RESEND_ID on resends.
    for (id, accepted) in [
        (0u32, false),
        (1, true),
        (2, true),
        (MAX_RESEND_ID, true),
        (256, false),
        (EARLY_NEG_START, false),
        (EARLY_NEG_START + 1, true),
        (0x0e00_0001, false),
        (0x1000_0001, false),
    ] {
        let mut packet = TCP_TLS_AUTH[2..].to_vec();
        packet[29..33].copy_from_slice(&id.to_be_bytes());
        assert_eq!(matches!(parse_packet(&packet), Verdict::Reset { .. }), accepted, "{id}");
        let mut crypt = UDP_TLS_CRYPT.to_vec();
        crypt[9..13].copy_from_slice(&id.to_be_bytes());
        assert_eq!(
            matches!(parse_packet(&crypt), Verdict::Reset { .. }),
            accepted,
            "tls-crypt {id}"
        );
    }
    // tls-crypt is 54 bytes at least.
    assert!(matches!(parse_packet(&UDP_TLS_CRYPT[..53]), Verdict::Invalid(_)));
}

#[test]
fn tls_crypt_v2_needs_its_wrapped_key_length() {
    let packet = &TCP_TLS_CRYPT_V2[2..];
    assert!(matches!(parse_packet(packet), Verdict::Reset { .. }));
    // OpenVPN 2.6 offers early negotiation in the replay packet id.
    assert_eq!(packet[9..13], (EARLY_NEG_START + 1).to_be_bytes());
    let n = packet.len();
    for wkc in [0u16, 33, (n - 53) as u16, u16::MAX] {
        let mut bad = packet.to_vec();
        bad[n - 2..].copy_from_slice(&wkc.to_be_bytes());
        assert!(matches!(parse_packet(&bad), Verdict::Invalid(_)), "{wkc}");
    }
    // A V2 tls-crypt packet under the V3 opcode has no wrapped key.
    let mut v3 = UDP_TLS_CRYPT.to_vec();
    v3[0] = 0x50;
    assert!(matches!(parse_packet(&v3), Verdict::Invalid(_)));
}

#[test]
fn other_protocols_are_no_match() {
    let ovpn = backend("").expect("no params");
    let others: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03],
        b"0 alice 17\n",
        b"CNXN\x01\x00\x00\x01",
    ];
    for other in others {
        // Decided from the first byte over TCP.
        assert_eq!(
            ovpn.detect(&conn_port(1194), &other[..1]),
            Detection::NoMatch,
            "{other:?}"
        );
        assert_eq!(ovpn.detect(&conn_port(1194), other), Detection::NoMatch, "{other:?}");
        assert_eq!(
            ovpn.can_handle_message(&conn_port(1194), other),
            Detection::NoMatch,
            "{other:?}"
        );
    }
}

#[test]
fn params_are_refused() {
    assert_no_params(OpenVpn::new, "openvpn", "foo = 1");
}

#[test]
fn fuzz_no_panic_and_decisions_are_final() {
    let ovpn = backend("").expect("no params");
    let mut rng = Rng::new(0x0b5e_55ed_1194);
    let seeds: Vec<&[u8]> = TCP_CAPTURES
        .iter()
        .map(|c| c.1)
        .chain(UDP_CAPTURES.iter().map(|c| c.1))
        .collect();
    for round in 0..20_000 {
        let mut input: Vec<u8> = match round % 3 {
            0 => (0..rng.below(64)).map(|_| rng.next_u64() as u8).collect(),
            _ => seeds[rng.below(seeds.len())].to_vec(),
        };
        for _ in 0..rng.below(4) {
            if !input.is_empty() {
                let at = rng.below(input.len());
                input[at] = rng.next_u64() as u8;
            }
        }
        input.truncate(rng.below(input.len() + 1));
        let udp = ovpn.can_handle_message(&conn_port(1194), &input);
        assert_ne!(udp, Detection::NeedMore, "{input:?}");
        if input.is_empty() {
            continue;
        }
        // Once a prefix is decided, the longer input gives the same answer.
        assert_verdict_stable(|d| ovpn.detect(&conn_port(1194), d), &input);
    }
}
