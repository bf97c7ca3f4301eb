//! The `quic` backend over real client Initials recorded from aioquic (see `data/README.md`): one
//! with a ClientHello in one datagram, and ClientHellos spread over two (QUIC v1) and three (QUIC
//! v2) datagrams, judged datagram by datagram as the host does.

mod common;

use common::*;
use pmmux_plugin_api::{Backend, Detection};
use pmmux_plugin_testkit::conn;
use pmmux_quic::detect::{judge, Judgement};
use pmmux_tls_core::ja4::{ja4_for, Transport};

#[test]
fn one_datagram_client_hello() {
    let found = props(quic("").can_handle_message(&conn(), SMALL));
    let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["quic.version", "quic.sni", "quic.alpn", "quic.ja4"]);
    assert_eq!(found[0].1, "1");
    assert_eq!(found[1].1, "example.com");
    assert_eq!(found[2].1, "h3");
    assert!(found[3].1.starts_with("q13d"), "{}", found[3].1);
    assert!(pmmux_tls_core::ja4::is_ja4_shaped(&found[3].1), "{}", found[3].1);
    for (params, matches) in [
        ("sni = \"example.com\"", true),
        ("sni = \"EXAMPLE.com.\"", true),
        ("sni = [\"other.example\", \"example.com\"]", true),
        ("sni = \"*.example.com\"", false),
        ("alpn = \"h3\"", true),
        ("alpn = [\"h2\", \"h3\"]", true),
        ("alpn = \"h3-29\"", false),
        ("sni = \"example.com\"\nalpn = \"hq-interop\"", false),
    ] {
        let verdict = quic(params).can_handle_message(&conn(), SMALL);
        assert_eq!(matches!(verdict, Detection::Match(_)), matches, "{params}: {verdict:?}");
        assert_eq!(quic(params).detect_datagrams(&conn(), &[SMALL]), verdict, "{params}");
        if !matches {
            assert_eq!(verdict, Detection::NoMatch, "{params}");
        }
    }
}

#[test]
fn quinn_client_hello() {
    let found = props(quic("sni = \"*.example\"\nalpn = \"h3-29\"").can_handle_message(&conn(), QUINN));
    assert_eq!(found[0], ("quic.version".to_owned(), "1".to_owned()));
    assert_eq!(found[1], ("quic.sni".to_owned(), "quinn.example".to_owned()));
    assert_eq!(found[2], ("quic.alpn".to_owned(), "h3,h3-29".to_owned()));
    assert_eq!(
        quic("alpn = \"h3-32\"").can_handle_message(&conn(), QUINN),
        Detection::NoMatch
    );
}

#[test]
fn two_datagram_client_hello() {
    let [first, second] = TWO;
    // Unfiltered: the first datagram decrypts and starts a ClientHello; its name is not there yet.
    let early = props(quic("").can_handle_message(&conn(), first));
    assert_eq!(early, vec![("quic.version".to_owned(), "1".to_owned())]);
    // Filtered: the whole ClientHello is needed.
    let sni = quic("sni = \"big.example.net\"");
    assert_eq!(sni.can_handle_message(&conn(), first), Detection::NeedMore);
    assert_eq!(sni.detect_datagrams(&conn(), &[first]), Detection::NeedMore);
    let whole = sni.detect_datagrams(&conn(), &[first, second]);
    assert_eq!(prop(whole.clone(), "quic.sni").as_deref(), Some("big.example.net"));
    let alpn = prop(whole, "quic.alpn").expect("alpn");
    assert!(alpn.starts_with("h3,x-alpn-000-abcdefgh,"), "{alpn}");
    assert_eq!(alpn.split(',').count(), 61);
    assert_eq!(
        quic("sni = \"small.example.net\"").detect_datagrams(&conn(), &[first, second]),
        Detection::NoMatch
    );
    assert!(matches!(
        quic("alpn = \"x-alpn-059-abcdefgh\"").detect_datagrams(&conn(), &[first, second]),
        Detection::Match(_)
    ));
    // The unfiltered backend reports everything once both are there.
    assert_eq!(
        prop(quic("").detect_datagrams(&conn(), &[first, second]), "quic.sni").as_deref(),
        Some("big.example.net")
    );
}

#[test]
fn second_datagram_first_retransmissions_and_strangers() {
    let [first, second] = TWO;
    let sni = quic("sni = \"big.example.net\"");
    // The datagrams arrive reordered: the first held one has CRYPTO from offset 1152 only.
    assert_eq!(sni.can_handle_message(&conn(), second), Detection::NeedMore);
    assert_eq!(quic("").can_handle_message(&conn(), second), Detection::NeedMore);
    assert!(matches!(
        sni.detect_datagrams(&conn(), &[second, first]),
        Detection::Match(_)
    ));
    // A retransmission of the first part changes nothing.
    assert_eq!(
        sni.detect_datagrams(&conn(), &[first, TWO_RETRANSMIT]),
        Detection::NeedMore
    );
    assert!(matches!(
        sni.detect_datagrams(&conn(), &[first, TWO_RETRANSMIT, second]),
        Detection::Match(_)
    ));
    assert!(matches!(
        sni.detect_datagrams(&conn(), &[TWO_RETRANSMIT, second]),
        Detection::Match(_)
    ));
    // Another connection's Initial (other DCID) between them is skipped.
    assert!(matches!(
        sni.detect_datagrams(&conn(), &[first, SMALL, second]),
        Detection::Match(_)
    ));
    assert!(matches!(
        sni.detect_datagrams(&conn(), &[first, b"junk", second]),
        Detection::Match(_)
    ));
    // But the first datagram must be this client's Initial.
    assert_eq!(
        sni.detect_datagrams(&conn(), &[b"junk", first, second]),
        Detection::NoMatch
    );
}

#[test]
fn three_datagram_client_hello_in_quic_v2() {
    let sni = quic("sni = \"*.example.org\"");
    assert_eq!(sni.detect_datagrams(&conn(), &THREE[..1]), Detection::NeedMore);
    assert_eq!(sni.detect_datagrams(&conn(), &THREE[..2]), Detection::NeedMore);
    let found = props(sni.detect_datagrams(&conn(), &THREE));
    assert_eq!(found[0], ("quic.version".to_owned(), "2".to_owned()));
    assert_eq!(found[1], ("quic.sni".to_owned(), "three.example.org".to_owned()));
    assert_eq!(found[2].1.split(',').count(), 121);
    // A gap (the middle datagram missing) keeps it incomplete until it comes.
    assert_eq!(
        sni.detect_datagrams(&conn(), &[THREE[0], THREE[2]]),
        Detection::NeedMore
    );
    assert!(matches!(
        sni.detect_datagrams(&conn(), &[THREE[0], THREE[2], THREE[1]]),
        Detection::Match(_)
    ));
    assert!(matches!(
        sni.detect_datagrams(&conn(), &[THREE[2], THREE[1], THREE[0]]),
        Detection::Match(_)
    ));
    assert_eq!(
        quic("sni = \"three.example.net\"").detect_datagrams(&conn(), &THREE),
        Detection::NoMatch
    );
    // Mixing in the v1 client's datagrams (other version and DCID) changes nothing.
    assert_eq!(
        sni.detect_datagrams(&conn(), &[THREE[0], TWO[1], THREE[1]]),
        Detection::NeedMore
    );
}

#[test]
fn ja4_is_the_tcp_fingerprint_with_the_quic_transport() {
    for datagrams in [
        &[SMALL][..],
        &[QUINN][..],
        &TWO[..],
        &THREE[..],
        &[RFC9001][..],
        &[RFC9369][..],
    ] {
        let ja4 = prop(quic("").detect_datagrams(&conn(), datagrams), "quic.ja4").expect("ja4");
        let Judgement::Complete { hello, .. } = judge(datagrams) else {
            panic!("incomplete")
        };
        let tcp = ja4_for(&hello, Transport::Tcp);
        assert!(tcp.starts_with("t13"), "{tcp}");
        assert_eq!(ja4, format!("q{}", &tcp[1..]));
    }
}
