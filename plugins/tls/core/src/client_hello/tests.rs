//! Unit tests of the ClientHello parser: early decisions on record and handshake headers, length
//! bounds, and the extension decoders.

use super::*;

#[test]
fn record_header_decides_early() {
    assert_eq!(parse_records(b"G"), Parse::Invalid("not a TLS handshake record"));
    assert_eq!(parse_records(&[0x16]), Parse::Incomplete);
    assert_eq!(
        parse_records(&[0x16, 0x02]),
        Parse::Invalid("record version is not 3.x")
    );
    assert_eq!(
        parse_records(&[0x16, 0x03, 0x09]),
        Parse::Invalid("record version is not SSL 3.0 to TLS 1.3")
    );
    assert_eq!(
        parse_records(&[0x16, 0x03, 0x01, 0x41]),
        Parse::Invalid("record longer than 2^14 bytes")
    );
    assert_eq!(
        parse_records(&[0x16, 0x03, 0x01, 0x00, 0x00]),
        Parse::Invalid("empty handshake record")
    );
    assert_eq!(parse_records(&[0x16, 0x03, 0x01, 0x40, 0x00]), Parse::Incomplete);
    assert_eq!(
        parse_records(&[0x16, 0x03, 0x01, 0x00, 0x10, 0x02]),
        Parse::Invalid("handshake message is not a ClientHello")
    );
}

#[test]
fn handshake_length_bounds() {
    assert_eq!(
        parse_handshake(&[1, 0x03]),
        Parse::Invalid("ClientHello length exceeds what its fields allow")
    );
    assert_eq!(parse_handshake(&[1, 0x02, 0x00]), Parse::Incomplete);
    assert_eq!(
        parse_handshake(&[1, 0, 0, 10]),
        Parse::Invalid("ClientHello shorter than its mandatory fields")
    );
    assert_eq!(parse_handshake(&[1, 0, 1, 0, 0x03, 0x03]), Parse::Incomplete);
    assert_eq!(
        parse_handshake(&[1, 0, 1, 0, 0x02, 0x00]),
        Parse::Invalid("ClientHello version is not TLS 1.0 or later")
    );
}

#[test]
fn minimal_hello_without_extensions() {
    let mut body = vec![0x03, 0x01];
    body.extend_from_slice(&[7; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x00, 0x2f, 1, 0]);
    let mut msg = vec![1, 0, 0, body.len() as u8];
    msg.extend_from_slice(&body);
    let Parse::Complete(hello) = parse_handshake(&msg) else {
        panic!("expected complete")
    };
    assert_eq!(hello.cipher_suites, vec![0x002f]);
    assert_eq!(hello.version(), "1.0");
    assert!(hello.extensions.is_empty());
    for n in 0..msg.len() {
        assert_eq!(parse_handshake(&msg[..n]), Parse::Incomplete, "prefix {n}");
    }
}

#[test]
fn extension_decoders_for_other_framings() {
    assert_eq!(decode_server_name(b"\x00\x06\x00\x00\x03a.b"), Ok(Some("a.b".into())));
    assert_eq!(
        decode_server_name(b"\x00\x06\x00\x00\x04a.b"),
        Err("malformed server_name extension")
    );
    assert_eq!(
        decode_server_name(b"\x00\x06\x00\x00\x03a\nb"),
        Err("server name is not printable ASCII")
    );
    assert_eq!(decode_alpn(b"\x00\x03\x02h3"), Ok(vec![b"h3".to_vec()]));
    assert_eq!(decode_alpn(b"\x00\x01\x00"), Err("malformed ALPN extension"));
    assert_eq!(
        decode_supported_versions(b"\x04\x03\x04\xfe\xfc"),
        Ok(vec![0x0304, 0xfefc])
    );
    assert_eq!(
        decode_supported_versions(b"\x03\x03\x04\x00"),
        Err("malformed supported_versions extension")
    );
}
