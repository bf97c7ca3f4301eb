//! The test vectors of RFC 9001 Appendix A (QUIC v1) and RFC 9369 Appendix A (QUIC v2): the client
//! Initial keys of DCID 0x8394c8f03e515708, and the protected 1200-byte client Initial whose
//! ClientHello names `example.com`, through the key schedule, the packet decryption and the backend.

mod common;

use common::{props, quic, RFC9001 as V1_INITIAL, RFC9369 as V2_INITIAL};
use pmmux_plugin_api::{Backend, Detection};
use pmmux_plugin_testkit::conn;
use pmmux_quic::keys::{key_material, ClientInitialKeys};
use pmmux_quic::packet::{initial_packets, Version};

/// The Destination Connection ID of the RFC examples.
const DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

/// The CRYPTO frame of Appendix A.2 (the payload is this, then 917 bytes of PADDING).
const A2_CRYPTO_FRAME: &str = "060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868\
04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578\
616d706c652e636f6dff01000100000a00080006001d00170018001000070005\
04616c706e000500050100000000003300260024001d00209370b2c9caa47fba\
baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400\
0d0010000e0403050306030203080408050806002d00020101001c0002400100\
3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000\
75300901100f088394c8f03e51570806048000ffff";

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn v1_client_initial_keys_of_appendix_a1() {
    let m = key_material(Version::V1, &DCID);
    assert_eq!(
        m.secret.to_vec(),
        hex("c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea")
    );
    assert_eq!(m.key.to_vec(), hex("1f369613dd76d5467730efcbe3b1a22d"));
    assert_eq!(m.iv.to_vec(), hex("fa044b2f42a3fd3b46fb255c"));
    assert_eq!(m.hp.to_vec(), hex("9f50449e04a0e810283a1e9933adedd2"));
}

#[test]
fn v2_client_initial_keys_of_rfc9369_a1() {
    let m = key_material(Version::V2, &DCID);
    assert_eq!(
        m.secret.to_vec(),
        hex("14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b")
    );
    assert_eq!(m.key.to_vec(), hex("8b1a0bc121284290a29e0971b5cd045d"));
    assert_eq!(m.iv.to_vec(), hex("91f73e2351d8fa91660e909f"));
    assert_eq!(m.hp.to_vec(), hex("45b95e15235d6f45a6b19cbcb0294ba9"));
}

/// Decrypts a vector packet and checks packet number 2 and the plaintext payload of Appendix A.2.
fn decrypts_to_a2_payload(datagram: &[u8], version: Version) {
    let packets = initial_packets(datagram).expect("an Initial");
    assert_eq!(packets.len(), 1);
    assert_eq!(packets[0].version, version);
    assert_eq!(packets[0].dcid, DCID);
    let opened = ClientInitialKeys::new(version, &DCID)
        .open(&packets[0])
        .expect("decrypts");
    assert_eq!(opened.packet_number, 2);
    let mut payload = hex(A2_CRYPTO_FRAME);
    payload.resize(1162, 0);
    assert_eq!(opened.payload, payload);
}

#[test]
fn v1_protected_client_initial_of_appendix_a2_decrypts() {
    decrypts_to_a2_payload(V1_INITIAL, Version::V1);
}

#[test]
fn v2_protected_client_initial_of_rfc9369_a2_decrypts() {
    decrypts_to_a2_payload(V2_INITIAL, Version::V2);
}

#[test]
fn sealing_the_a2_payload_gives_the_protected_packets() {
    let mut payload = hex(A2_CRYPTO_FRAME);
    payload.resize(1162, 0);
    let v1 = ClientInitialKeys::new(Version::V1, &DCID)
        .seal(&hex("c300000001088394c8f03e5157080000449e"), 2, 4, &payload)
        .expect("sealed");
    assert_eq!(v1, V1_INITIAL);
    let v2 = ClientInitialKeys::new(Version::V2, &DCID)
        .seal(&hex("d36b3343cf088394c8f03e5157080000449e"), 2, 4, &payload)
        .expect("sealed");
    assert_eq!(v2, V2_INITIAL);
}

#[test]
fn the_backend_matches_both_vectors_with_their_properties() {
    for (datagram, version) in [(V1_INITIAL, "1"), (V2_INITIAL, "2")] {
        let found = props(quic("").can_handle_message(&conn(), datagram));
        assert_eq!(found[0], ("quic.version".to_owned(), version.to_owned()));
        assert_eq!(found[1], ("quic.sni".to_owned(), "example.com".to_owned()));
        assert_eq!(found[2], ("quic.alpn".to_owned(), "alpn".to_owned()));
        assert_eq!(found[3].0, "quic.ja4");
        assert!(found[3].1.starts_with("q13d0211an_"), "{:?}", found[3]);
        assert_eq!(found.len(), 4);
        assert!(matches!(
            quic("sni = \"example.com\"\nalpn = [\"h3\", \"alpn\"]").can_handle_message(&conn(), datagram),
            Detection::Match(_)
        ));
        assert_eq!(
            quic("sni = \"*.example.com\"").can_handle_message(&conn(), datagram),
            Detection::NoMatch
        );
        assert_eq!(
            quic("alpn = \"h3\"").can_handle_message(&conn(), datagram),
            Detection::NoMatch
        );
        // The same datagram as the only one of detect_datagrams.
        assert!(matches!(
            quic("sni = \"example.com\"").detect_datagrams(&conn(), &[datagram]),
            Detection::Match(_)
        ));
        // Never over TCP.
        assert_eq!(quic("").detect(&conn(), datagram), Detection::NoMatch);
    }
}

#[test]
fn another_dcid_does_not_decrypt() {
    for datagram in [V1_INITIAL, V2_INITIAL] {
        let mut changed = datagram.to_vec();
        changed[6] ^= 1; // first DCID byte
        assert_eq!(quic("").can_handle_message(&conn(), &changed), Detection::NoMatch);
        // A flipped bit in the ciphertext fails the AEAD tag.
        let mut changed = datagram.to_vec();
        changed[600] ^= 0x10;
        assert_eq!(quic("").can_handle_message(&conn(), &changed), Detection::NoMatch);
    }
}
