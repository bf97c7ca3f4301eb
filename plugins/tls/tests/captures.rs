//! Real ClientHellos captured from OpenSSL and curl (see `common`): matching with the right
//! properties, every prefix needing more, record-layer fragmentation, and ClientHellos over 4 KiB.

mod common;

use common::*;
use pmmux_plugin_api::Detection;
use pmmux_plugin_testkit::pairs;
use pmmux_tls::client_hello::{parse_handshake, parse_records, Parse, EXT_KEY_SHARE, EXT_PADDING};

#[test]
fn each_capture_matches_with_its_properties() {
    let any = tls("");
    let expected = [
        (
            OPENSSL_TLS13,
            pairs(&[
                ("tls.sni", "a.example"),
                ("tls.alpn", "h2,http/1.1"),
                ("tls.version", "1.3"),
                ("tls.ja4", JA4_OPENSSL_TLS13),
            ]),
        ),
        (
            CURL,
            pairs(&[
                ("tls.sni", "b.example"),
                ("tls.alpn", "h2,http/1.1"),
                ("tls.version", "1.3"),
                ("tls.ja4", JA4_CURL),
            ]),
        ),
        (
            OPENSSL_TLS12,
            pairs(&[
                ("tls.sni", "c.example"),
                ("tls.alpn", "http/1.1"),
                ("tls.version", "1.2"),
                ("tls.ja4", JA4_OPENSSL_TLS12),
            ]),
        ),
        (
            OPENSSL_TLS11,
            pairs(&[
                ("tls.sni", "d.example"),
                ("tls.version", "1.1"),
                ("tls.ja4", JA4_OPENSSL_TLS11),
            ]),
        ),
        (
            OPENSSL_NOSNI,
            pairs(&[("tls.version", "1.3"), ("tls.ja4", JA4_OPENSSL_NOSNI)]),
        ),
    ];
    for (capture, props_expected) in expected {
        assert_eq!(props(any.detect_preview(capture)), props_expected);
    }
}

#[test]
fn parsed_fields_of_a_capture() {
    let Parse::Complete(hello) = parse_records(CURL) else {
        panic!("curl capture parses")
    };
    assert_eq!(hello.legacy_version, 0x0303);
    assert_eq!(hello.session_id.len(), 32);
    assert_eq!(hello.cipher_suites.first(), Some(&0x1302));
    assert_eq!(hello.compression_methods, vec![0]);
    assert_eq!(hello.server_name.as_deref(), Some("b.example"));
    assert_eq!(hello.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert!(hello.supported_versions.contains(&0x0304));
    assert!(hello.extension(EXT_PADDING).is_some(), "curl pads its ClientHello");
    assert!(hello.extension(EXT_KEY_SHARE).is_some());
    // The QUIC path sees the same message without the record layer.
    assert_eq!(parse_handshake(handshake_of(CURL)), Parse::Complete(hello));
}

#[test]
fn every_strict_prefix_needs_more() {
    let any = tls("");
    for (name, capture) in CAPTURES {
        for n in 0..capture.len() {
            assert_eq!(
                any.detect_preview(&capture[..n]),
                Detection::NeedMore,
                "{name}: prefix {n}"
            );
        }
        let handshake = handshake_of(capture);
        for n in 0..handshake.len() {
            assert_eq!(
                parse_handshake(&handshake[..n]),
                Parse::Incomplete,
                "{name}: handshake prefix {n}"
            );
        }
    }
}

#[test]
fn captures_reframed_into_small_records_still_parse() {
    let any = tls("");
    for (name, capture) in CAPTURES {
        let whole = parse_records(capture);
        assert!(matches!(whole, Parse::Complete(_)), "{name}");
        for fragment in [1, 7, 100, 256] {
            let reframed = records(handshake_of(capture), fragment);
            assert_eq!(parse_records(&reframed), whole, "{name}: {fragment}-byte records");
            assert_eq!(
                any.detect_preview(&reframed),
                any.detect_preview(capture),
                "{name}: {fragment}"
            );
        }
        // Every prefix of a fragmented hello (cut inside headers and payloads alike) needs more.
        let reframed = records(handshake_of(capture), 100);
        for n in 0..reframed.len() {
            assert_eq!(
                any.detect_preview(&reframed[..n]),
                Detection::NeedMore,
                "{name}: 100-byte records, prefix {n}"
            );
        }
    }
}

#[test]
fn bytes_after_the_client_hello_are_ignored() {
    let any = tls("");
    let mut stream = OPENSSL_TLS13.to_vec();
    stream.extend_from_slice(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01]); // ChangeCipherSpec (middlebox compat)
    stream.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x04, 1, 2, 3, 4]); // early data
    assert_eq!(any.detect_preview(&stream), any.detect_preview(OPENSSL_TLS13));
}

#[test]
fn another_record_type_inside_a_fragmented_hello_is_no_match() {
    let reframed = records(handshake_of(CURL), 100);
    let mut broken = reframed[..105].to_vec();
    broken.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x02, 0, 0]);
    assert_eq!(
        parse_records(&broken),
        Parse::Invalid("ClientHello interrupted by a non-handshake record")
    );
    assert_eq!(tls("").detect_preview(&broken), Detection::NoMatch);
}

/// A ClientHello with a hybrid post-quantum key share (X25519MLKEM768, 1216 bytes), several classic
/// ones and a large padding extension: well over 4 KiB.
fn big_hello() -> HelloBuilder {
    let mut shares = Vec::new();
    for (group, len) in [
        (0x11ec_u16, 1216_usize),
        (0x001d, 32),
        (0x0017, 65),
        (0x0018, 97),
        (0x0019, 133),
    ] {
        shares.extend_from_slice(&group.to_be_bytes());
        shares.extend_from_slice(&(len as u16).to_be_bytes());
        shares.extend(std::iter::repeat_n(0x42, len));
    }
    let mut key_share = (shares.len() as u16).to_be_bytes().to_vec();
    key_share.extend_from_slice(&shares);
    HelloBuilder {
        extra: vec![(EXT_KEY_SHARE, key_share), (EXT_PADDING, vec![0; 5000])],
        ..HelloBuilder::sni("big.example")
    }
}

#[test]
fn client_hello_larger_than_4_kib() {
    let builder = big_hello();
    let handshake = builder.handshake();
    assert!(handshake.len() > 6 * 1024, "{} bytes", handshake.len());
    let expected = pairs(&[
        ("tls.sni", "big.example"),
        ("tls.alpn", "h2,http/1.1"),
        ("tls.version", "1.3"),
        // Ciphers 1301,1302,c02f; extensions SNI, ALPN, 002b, 0033, 0015; no signature algorithms.
        ("tls.ja4", "t13d0305h2_40b44b994229_96269a492c76"),
    ]);
    let backend = tls(r#"sni = "*.example""#);
    // One record, TCP-segment-sized records, tiny records: all the same.
    for fragment in [1 << 14, 1400, 100, 3] {
        let stream = records(&handshake, fragment);
        assert_eq!(
            props(backend.detect_preview(&stream)),
            expected,
            "{fragment}-byte records"
        );
        for cut in [1, 5, 4096, 4097, stream.len() / 2, stream.len() - 1] {
            assert_eq!(
                backend.detect_preview(&stream[..cut]),
                Detection::NeedMore,
                "{fragment}: cut {cut}"
            );
        }
    }
    let Parse::Complete(hello) = parse_handshake(&handshake) else {
        panic!("parses without records")
    };
    assert_eq!(hello.extension(EXT_PADDING).map(<[u8]>::len), Some(5000));
}

#[test]
fn client_hello_over_one_record_spans_two() {
    // 20 KB cannot fit a 16 KiB record: the client must fragment it.
    let builder = HelloBuilder {
        extra: vec![(EXT_PADDING, vec![0; 20_000])],
        ..Default::default()
    };
    let stream = builder.record();
    assert!(stream.len() > (1 << 14) + 10);
    assert!(matches!(parse_records(&stream), Parse::Complete(_)));
}
