//! What is not a DNS query is refused: responses, other opcodes, malformed messages, other
//! protocols (TCP ones from their first six bytes); and thousands of random, truncated and mutated
//! inputs neither panic nor break the contracts (UDP never needs more; on TCP, once a prefix is
//! decided, more bytes never change the answer).

mod common;

use common::*;
use pmmux_dns::message::{parse_query, parse_tcp, Parse};
use pmmux_plugin_api::{Backend, Detection};
use pmmux_plugin_testkit::{mutate_edits, Rng};

/// A copy of `message` with the bytes at `at` replaced.
fn patched(message: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut out = message.to_vec();
    out[at..at + bytes.len()].copy_from_slice(bytes);
    out
}

#[test]
fn responses_are_no_match() {
    let any = dns("");
    for (name, message, _, _) in all_messages() {
        let response = patched(&message, 2, &[message[2] | 0x80]);
        assert_eq!(
            parse_query(&response),
            Err("a response (QR = 1), not a query"),
            "{name}"
        );
        assert_eq!(any.detect_message(&response), Detection::NoMatch, "{name}");
        assert_eq!(any.detect_stream(&framed(&response)), Detection::NoMatch, "{name}");
    }
    // A whole answer to `www.example.com A`, as a server sends it: decided from its third byte.
    let mut answer = query(
        "www.example.com",
        1,
        [1, 0, 0],
        &[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4],
    );
    answer.extend_from_slice(&[93, 184, 215, 14]);
    answer[2..4].copy_from_slice(&[0x81, 0x80]);
    assert_eq!(any.detect_message(&answer), Detection::NoMatch);
    assert_eq!(any.detect_stream(&framed(&answer)[..5]), Detection::NoMatch);
}

#[test]
fn malformed_queries_are_no_match_with_their_reason() {
    let a = query("example.com", 1, [0, 0, 0], &[]);
    let ixfr_soa_tail: Vec<u8> = [&[0xc0, 0x0c, 0, 6, 0, 1, 0, 0, 0, 0, 0, 22, 0, 0][..], &[0; 20]].concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("message ends inside the header", vec![]),
        ("message ends inside the header", a[..11].to_vec()),
        ("message ends inside the question", a[..12].to_vec()),
        ("message ends inside the question", a[..a.len() - 1].to_vec()),
        ("opcode is not QUERY", patched(&a, 2, &[0x20])), // NOTIFY
        ("opcode is not QUERY", patched(&a, 2, &[0x28])), // UPDATE
        ("opcode is not QUERY", patched(&a, 2, &[0x30])), // DSO
        ("TC (truncated) set in a query", patched(&a, 2, &[0x03])),
        ("RCODE set in a query", patched(&a, 3, &[0x03])),
        ("QDCOUNT is not 1", patched(&a, 4, &[0, 0])), // e.g. a cookie-only query (RFC 7873 §5.4)
        ("QDCOUNT is not 1", patched(&a, 4, &[0, 2])),
        ("answer records in a query", patched(&a, 6, &[0, 1])),
        ("authority records in a query", patched(&a, 8, &[0, 2])),
        ("too many additional records for a query", patched(&a, 10, &[0, 3])),
        (
            "authority records in a query other than IXFR",
            query("example.com", 252, [0, 1, 0], &ixfr_soa_tail),
        ),
        (
            "the authority record of an IXFR query is not an SOA",
            query("example.com", 251, [0, 1, 0], &patched(&ixfr_soa_tail, 3, &[2])),
        ),
        ("compression pointer in the question", {
            let mut q = a[..12].to_vec();
            q.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
            q
        }),
        ("reserved label type in the question", patched(&a, 12, &[0x47])),
        ("question name longer than 255 bytes", {
            let long = vec!["a".repeat(63); 4].join(".");
            query(&long, 1, [0, 0, 0], &[])
        }),
        ("QCLASS is not IN, CH, HS or ANY", patched(&a, a.len() - 2, &[0, 0])),
        ("QCLASS is not IN, CH, HS or ANY", patched(&a, a.len() - 2, &[0, 254])),
        ("QCLASS is not IN, CH, HS or ANY", patched(&a, a.len() - 2, &[0x80, 1])), // mDNS QU bit
        ("message ends inside a record", query("example.com", 1, [0, 0, 1], &[])),
        ("message ends inside a record", {
            let full = query("example.com", 1, [0, 0, 1], &opt(&[(10, &[1; 8])]));
            full[..full.len() - 1].to_vec()
        }),
        ("more than one OPT record", {
            let tail = [opt(&[]), opt(&[])].concat();
            query("example.com", 1, [0, 0, 2], &tail)
        }),
        ("OPT record not owned by the root", {
            let tail = [&[0xc0, 0x0c][..], &opt(&[])[1..]].concat();
            query("example.com", 1, [0, 0, 1], &tail)
        }),
        ("EDNS option overruns the OPT record", {
            let mut tail = opt(&[(10, &[1; 8])]);
            tail[14] = 9; // the cookie option claims 9 bytes; 8 follow and the RDATA ends
            query("example.com", 1, [0, 0, 1], &tail)
        }),
        ("compression pointer that does not point back to an earlier name", {
            let tail = [&[0xc0, 0x02][..], &opt(&[])[1..]].concat(); // into the header
            query("example.com", 1, [0, 0, 1], &tail)
        }),
        ("compression pointer that does not point back to an earlier name", {
            let tail = [&[0xc0, 0x1d][..], &opt(&[])[1..]].concat(); // at itself
            query("example.com", 1, [0, 0, 1], &tail)
        }),
        ("reserved label type in a record owner name", {
            let tail = [&[0x80][..], &opt(&[])[1..]].concat();
            query("example.com", 1, [0, 0, 1], &tail)
        }),
        ("bytes after the last record", [&a[..], &[0]].concat()),
        ("bytes after the last record", [UDP_A, &[0, 0, 0, 0]].concat()),
    ];
    let any = dns("");
    for (why, message) in cases {
        assert_eq!(parse_query(&message), Err(why), "{message:02x?}");
        assert_eq!(any.detect_message(&message), Detection::NoMatch, "{why}");
        let stream = framed(&message);
        if message.len() >= 17 {
            assert_eq!(parse_tcp(&stream), Parse::Invalid(why), "{why} over TCP");
        }
        for n in 0..=stream.len() {
            let verdict = any.detect_stream(&stream[..n]);
            assert!(!matches!(verdict, Detection::Match(_)), "{why}: TCP prefix {n}");
        }
    }
}

#[test]
fn records_after_the_question_that_are_fine() {
    let any = dns("");
    // TSIG-like record owned by a pointer to the question name, after an OPT with two options.
    let tsig = [&[0xc0, 0x0c, 0, 250, 0, 255, 0, 0, 0, 0, 0, 3][..], &[1, 2, 3]].concat();
    let tail = [opt(&[(10, &[7; 8]), (12, &[0; 100])]), tsig].concat();
    let message = query("example.com", 16, [0, 0, 2], &tail);
    assert_eq!(props(any.detect_message(&message)), expected("example.com", "TXT"));
    // Class CH (`dig CH TXT version.bind`) and ANY are queries too.
    for class in [[0, 3], [0, 4], [0, 255]] {
        let q = query("version.bind", 16, [0, 0, 0], &[]);
        let q = patched(&q, q.len() - 2, &class);
        assert!(matches!(any.detect_message(&q), Detection::Match(_)), "{class:?}");
    }
    // The longest name (255 bytes on the wire) and every flag a query may carry (AA, RD, RA, Z, AD, CD).
    let longest = [vec!["a".repeat(63); 3], vec!["b".repeat(61)]].concat().join(".");
    let q = patched(&query(&longest, 1, [0, 0, 0], &[]), 2, &[0x05, 0xf0]);
    assert_eq!(props(any.detect_message(&q)), expected(&longest, "A"));
}

#[test]
fn other_protocols_are_no_match() {
    let any = dns("");
    // Text protocols and TLS over TCP: the flag bytes (4 and 5) already rule out a query.
    let streams: &[(&str, &[u8])] = &[
        ("http get", b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        ("http post", b"POST /api HTTP/1.1\r\nHost: example.com\r\n"),
        ("http options", b"OPTIONS * HTTP/1.1\r\n"),
        ("http connect", b"CONNECT example.com:443 HTTP/1.1\r\n"),
        ("http2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        ("ssh", b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"),
        // The start of curl's ClientHello (the `tls` plugin's capture): the handshake type reads as RCODE 1.
        (
            "tls client hello",
            &[
                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x2a, 0x27,
            ],
        ),
    ];
    for (name, input) in streams {
        assert_eq!(
            any.detect_stream(&input[..6]),
            Detection::NoMatch,
            "{name}: six bytes decide"
        );
        assert_eq!(any.detect(&conn(), input), Detection::NoMatch, "{name}");
        assert_eq!(
            any.can_handle_message(&conn(), input),
            Detection::NoMatch,
            "{name} as a datagram"
        );
    }
    // Datagram protocols that share ports with DNS in practice.
    let mut quic_initial = vec![0xc3, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0x44, 0xd0];
    quic_initial.resize(1200, 0);
    let mut wireguard = vec![1, 0, 0, 0, 0x9a, 0x3f, 0x11, 0x02];
    wireguard.resize(148, 0x5a);
    let stun_binding = [
        0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ];
    for (name, datagram) in [
        ("quic initial", &quic_initial[..]),
        ("wireguard initiation", &wireguard[..]),
        ("stun binding request", &stun_binding[..]),
    ] {
        assert_eq!(any.can_handle_message(&conn(), datagram), Detection::NoMatch, "{name}");
    }
}

#[test]
fn random_datagrams_are_no_match() {
    let any = dns("");
    let mut rng = Rng::new(7);
    for _ in 0..5000 {
        let len = rng.below(120);
        let datagram = rng.bytes(len);
        assert_eq!(any.detect_message(&datagram), Detection::NoMatch, "{datagram:02x?}");
    }
}

/// Up to 3 edits, with the boundary bytes of this protocol's lengths and types.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    mutate_edits(rng, seed, 3, &[0x00, 0x01, 0x3f, 0x40, 0xc0, 0xff])
}

/// On TCP, a prefix that is decided stays decided the same way.
fn check_consistent(stream: &[u8], cut: usize) {
    let whole = parse_tcp(stream);
    match parse_tcp(&stream[..cut.min(stream.len())]) {
        Parse::Incomplete => {}
        prefix => assert_eq!(prefix, whole, "prefix {cut} of {stream:02x?}"),
    }
}

#[test]
fn fuzz_random_truncated_and_mutated_inputs() {
    let backend = dns(r#"name_suffix = ["example.com", "arpa", "example.net"]
qtype = ["A", "AAAA", "PTR", "TXT", "HTTPS", "SRV", "MX", "AXFR", "IXFR"]"#);
    let any = dns("");
    let messages: Vec<Vec<u8>> = all_messages().into_iter().map(|(_, m, _, _)| m).collect();
    let streams: Vec<Vec<u8>> = messages.iter().map(|m| framed(m)).collect();
    let mut rng = Rng::new(0x5eed_d00d_1234_0053);
    // [UDP match, UDP no match, TCP match, TCP no match, TCP need more]
    let mut outcomes = [0usize; 5];
    for round in 0..20_000 {
        let (message, stream) = match round % 4 {
            // Noise, half of it behind a plausible query header.
            0 => {
                let len = rng.below(120);
                let mut input = rng.bytes(len);
                if rng.below(2) == 0 && input.len() >= 12 {
                    let additional = rng.below(3) as u8;
                    input[2..12].copy_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, additional]);
                }
                let stream = framed(&input);
                (input, stream)
            }
            // A real query, cut somewhere.
            1 => {
                let message = &messages[rng.below(messages.len())];
                let cut = message[..rng.below(message.len() + 1)].to_vec();
                let stream = streams[rng.below(streams.len())].clone();
                let cut_stream = stream[..rng.below(stream.len() + 1)].to_vec();
                (cut, cut_stream)
            }
            // Mutated queries, and mutated framed streams (the length prefix included).
            _ => {
                let at = rng.below(messages.len());
                let message = mutate(&mut rng, &messages[at]);
                let stream = if round % 4 == 2 {
                    framed(&message)
                } else {
                    mutate(&mut rng, &streams[at])
                };
                (message, stream)
            }
        };
        for b in [&backend, &any] {
            match b.can_handle_message(&conn(), &message) {
                Detection::Match(props) => {
                    assert_eq!(props.len(), 2);
                    outcomes[0] += 1;
                }
                Detection::NoMatch => outcomes[1] += 1,
                Detection::NeedMore => panic!("UDP needs more for {message:02x?}"),
            }
            outcomes[match b.detect(&conn(), &stream) {
                Detection::Match(_) => 2,
                Detection::NoMatch => 3,
                Detection::NeedMore => 4,
            }] += 1;
        }
        // The two parsers agree on a whole message, and TCP verdicts are stable as bytes arrive.
        let udp = parse_query(&message);
        if message.len() >= 17 {
            let tcp = parse_tcp(&framed(&message));
            assert_eq!(udp.clone().map_or_else(Parse::Invalid, Parse::Complete), tcp);
        }
        check_consistent(&stream, rng.below(stream.len() + 1));
    }
    assert!(
        outcomes.iter().all(|&n| n > 1000),
        "UDP match / no match, TCP match / no match / need more: {outcomes:?}"
    );
}
