//! The `xmpp` backend over real client bytes and RFC 6120 examples, every prefix, params, other
//! protocols, and thousands of random, truncated and mutated inputs.
//!
//! Captures in `data/`: the first bytes sendxmpp 1.24 (Debian 12, Perl Net::XMPP) sent to a Python
//! listener on 127.0.0.1 (port 0) that never answered:
//! * `sendxmpp_stream.bin`: `echo hello | sendxmpp -u alice -p secret -j 127.0.0.1:PORT bob@example.org`;
//! * `sendxmpp_localhost.bin`: the same with `-j localhost:PORT`.

use pmmux_plugin_api::{Backend, Detection};
use pmmux_plugin_testkit::{assert_needs_more_until_whole, conn_port, props, spec, Rng};
use pmmux_xmpp::stream::{parse, Parse, MAX_HEADER};
use pmmux_xmpp::Xmpp;

const SENDXMPP_IP: &[u8] = include_bytes!("data/sendxmpp_stream.bin");
const SENDXMPP_LOCALHOST: &[u8] = include_bytes!("data/sendxmpp_localhost.bin");

/// RFC 6120 §9.1.1 step 1: the client's initial stream header (whitespace as in the RFC).
const RFC_C2S: &[u8] = b"<?xml version='1.0'?>
   <stream:stream
       from='juliet@im.example.com'
       to='im.example.com'
       version='1.0'
       xml:lang='en'
       xmlns='jabber:client'
       xmlns:stream='http://etherx.jabber.org/streams'>";

/// RFC 6120 §9.2.1 step 1: a server's initial stream header to a peer server.
const RFC_S2S: &[u8] = b"<?xml version='1.0'?>
   <stream:stream
       from='im.example.com'
       to='Example.NET.'
       version='1.0'
       xmlns='jabber:server'
       xmlns:stream='http://etherx.jabber.org/streams'>";

fn backend(params_toml: &str) -> Result<Xmpp, String> {
    Xmpp::new(&spec("xmpp", params_toml))
}

fn xmpp(params_toml: &str) -> Xmpp {
    backend(params_toml).unwrap_or_else(|e| panic!("params {params_toml:?}: {e}"))
}

fn expected(to: &str, ns: &str) -> Vec<(String, String)> {
    vec![
        ("xmpp.to".to_owned(), to.to_owned()),
        ("xmpp.namespace".to_owned(), ns.to_owned()),
    ]
}

const ALL: [(&str, &[u8], &str, &str); 4] = [
    ("sendxmpp ip", SENDXMPP_IP, "127.0.0.1", "jabber:client"),
    ("sendxmpp localhost", SENDXMPP_LOCALHOST, "localhost", "jabber:client"),
    ("rfc c2s", RFC_C2S, "im.example.com", "jabber:client"),
    ("rfc s2s", RFC_S2S, "example.net", "jabber:server"),
];

#[test]
fn stream_headers_match_with_properties() {
    let any = xmpp("");
    for (name, bytes, to, ns) in ALL {
        assert_eq!(props(any.detect(&conn_port(5222), bytes)), expected(to, ns), "{name}");
        // What follows the header (here, the start of a stanza) changes nothing.
        let more = [bytes, &b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"[..]].concat();
        assert_eq!(props(any.detect(&conn_port(5222), &more)), expected(to, ns), "{name}");
        // XMPP is TCP only.
        assert_eq!(any.can_handle_message(&conn_port(5222), bytes), Detection::NoMatch);
    }
}

#[test]
fn every_strict_prefix_needs_more() {
    let any = xmpp("");
    for (name, bytes, _, _) in ALL {
        assert_needs_more_until_whole(|d| any.detect(&conn_port(5222), d), bytes, name);
    }
}

#[test]
fn routes_by_to_any_case() {
    let im = xmpp("to = ['IM.Example.com', 'localhost']");
    assert_eq!(
        props(im.detect(&conn_port(5222), RFC_C2S)),
        expected("im.example.com", "jabber:client")
    );
    assert_eq!(
        props(im.detect(&conn_port(5222), SENDXMPP_LOCALHOST)),
        expected("localhost", "jabber:client")
    );
    assert_eq!(im.detect(&conn_port(5222), RFC_S2S), Detection::NoMatch);
    assert_eq!(im.detect(&conn_port(5222), SENDXMPP_IP), Detection::NoMatch);
    let net = xmpp("to = 'example.net.'");
    assert_eq!(
        props(net.detect(&conn_port(5222), RFC_S2S)),
        expected("example.net", "jabber:server")
    );
    // A header without `to` matches only when no `to` is configured.
    let no_to = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
    assert_eq!(
        props(xmpp("").detect(&conn_port(5222), no_to)),
        expected("", "jabber:client")
    );
    assert_eq!(net.detect(&conn_port(5222), no_to), Detection::NoMatch);
}

#[test]
fn variants_accepted() {
    let any = xmpp("");
    let cases: [(&[u8], &str); 4] = [
        (b"\xef\xbb\xbf<stream:stream xmlns=\"jabber:client\" to=\"a&amp;b.example\" xmlns:stream=\"http://etherx.jabber.org/streams\">", "a&b.example"),
        (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<stream:stream\tto = 'x.example' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>", "x.example"),
        (b"<stream:stream to='\xc3\xa9.example' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>", "\u{e9}.example"),
        (b"<stream:stream to='&#x41;.example' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>", "a.example"),
    ];
    for (bytes, to) in cases {
        assert_eq!(
            props(any.detect(&conn_port(5222), bytes)),
            expected(to, "jabber:client"),
            "{bytes:?}"
        );
    }
}

#[test]
fn not_streams_are_no_match_with_a_reason() {
    let any = xmpp("");
    let cases: [(&[u8], &str); 8] = [
        (
            b"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'>",
            "neither",
        ),
        (
            b"<stream:stream to='x' xmlns:stream='http://etherx.jabber.org/streams'>",
            "no default namespace",
        ),
        (b"<stream:stream to='x' xmlns='jabber:client'>", "not bound"),
        (
            b"<stream:stream xmlns='jabber:client' xmlns:stream='http://example.com/streams'>",
            "not bound",
        ),
        (b"<stream:streamx", "followed by attributes"),
        (b"<stream:stream to=x>", "unquoted"),
        (b"<stream:stream to='a'xmlns='jabber:client'>", "separated"),
        (b"<html><body>", "not an XML declaration"),
    ];
    for (bytes, reason) in cases {
        match parse(bytes) {
            Parse::Invalid(why) => assert!(why.contains(reason), "{bytes:?}: {why}"),
            other => panic!("{bytes:?}: {other:?}"),
        }
        assert_eq!(any.detect(&conn_port(5222), bytes), Detection::NoMatch);
    }
    // A header that never ends is refused at the limit.
    let endless = [
        &b"<stream:stream xmlns='jabber:client' "[..],
        &vec![b' '; MAX_HEADER][..],
    ]
    .concat();
    assert_eq!(any.detect(&conn_port(5222), &endless), Detection::NoMatch);
    assert_eq!(any.detect(&conn_port(5222), &endless[..100]), Detection::NeedMore);
}

#[test]
fn other_protocols_are_no_match_from_the_first_byte() {
    let any = xmpp("");
    let http = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let tls: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01];
    let ssh = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n";
    for bytes in [&http[..], tls, &ssh[..]] {
        assert_eq!(any.detect(&conn_port(5222), bytes), Detection::NoMatch);
        assert_eq!(any.detect(&conn_port(5222), &bytes[..1]), Detection::NoMatch);
    }
}

#[test]
fn bad_params_are_refused() {
    let cases = [
        ("to = []", "params.to must not be empty"),
        ("to = ''", "is not a domain"),
        ("to = 'user@example.org'", "is not a domain"),
        (
            "to = 5",
            "`to`: invalid type: integer `5`, expected a string or a list of strings",
        ),
        ("to = ['a', 5]", "`to`: invalid type: integer `5`, expected a string"),
        ("domain = 'a'", "unknown field `domain`"),
    ];
    for (params, want) in cases {
        let err = backend(params).unwrap_err();
        assert!(err.contains(want), "{params:?}: {err}");
    }
}

#[test]
fn fuzz_random_truncated_and_mutated_inputs() {
    let any = xmpp("");
    let routed = xmpp("to = 'localhost'");
    let mut rng = Rng::new(0xdead_beef_cafe_f00d);
    for round in 0..6000 {
        let seed = ALL[rng.below(ALL.len())].1;
        let input: Vec<u8> = match round % 3 {
            0 => {
                let mut r: Vec<u8> = (0..rng.below(200) + 1).map(|_| rng.next_u64() as u8).collect();
                r[0] = b'<';
                r
            }
            1 => seed[..rng.below(seed.len()) + 1].to_vec(),
            _ => {
                let mut m = seed.to_vec();
                for _ in 0..rng.below(4) + 1 {
                    let at = rng.below(m.len());
                    m[at] = if rng.below(2) == 0 {
                        rng.next_u64() as u8
                    } else {
                        b"<>'\"= &;?"[rng.below(9)]
                    };
                }
                m
            }
        };
        let whole = any.detect(&conn_port(5222), &input);
        let _ = routed.detect(&conn_port(5222), &input);
        // Once decided, more bytes never change the answer.
        for n in 1..input.len() {
            match any.detect(&conn_port(5222), &input[..n]) {
                Detection::NeedMore => {}
                early => {
                    assert_eq!(early, whole, "{input:?} at {n}");
                    break;
                }
            }
        }
    }
}
