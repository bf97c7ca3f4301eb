//! Real queries captured from dig and nslookup (see `common`): matching over UDP and TCP with the
//! right properties, the parsed header fields, and TCP's every-prefix-needs-more contract.

mod common;

use common::*;
use pmmux_dns::message::{parse_query, parse_tcp, Edns, Parse, CLASS_IN};
use pmmux_plugin_api::{Backend, Detection, UdpAction};

#[test]
fn each_udp_capture_matches_with_its_properties() {
    let any = dns("");
    for &(name, datagram, qname, qtype) in UDP_CAPTURES {
        let verdict = any.can_handle_message(&conn(), datagram);
        assert_eq!(props(verdict), expected(qname, qtype), "{name}");
    }
}

#[test]
fn each_tcp_capture_matches_with_its_properties() {
    let any = dns("");
    for &(name, stream, qname, qtype) in TCP_CAPTURES {
        assert_eq!(props(any.detect(&conn(), stream)), expected(qname, qtype), "{name}");
    }
}

#[test]
fn the_same_query_matches_the_same_way_over_either_transport() {
    let any = dns("");
    for (name, message, qname, qtype) in all_messages() {
        assert_eq!(
            props(any.detect_message(&message)),
            expected(qname, qtype),
            "{name} over UDP"
        );
        assert_eq!(
            props(any.detect_stream(&framed(&message))),
            expected(qname, qtype),
            "{name} over TCP"
        );
    }
}

#[test]
fn matched_datagrams_are_forwarded() {
    let any = dns("");
    assert_eq!(any.handle_message(&conn(), UDP_A), UdpAction::Forward(None));
}

#[test]
fn parsed_fields_of_the_captures() {
    let a = parse_query(UDP_A).expect("udp_a parses");
    assert_eq!(a.id, 0xc07f);
    assert_eq!(a.flags, 0x0120, "RD and AD, as dig sends them");
    assert!(a.recursion_desired());
    assert_eq!(a.labels, vec![b"www".to_vec(), b"example".to_vec(), b"com".to_vec()]);
    assert_eq!((a.qtype, a.qclass), (1, CLASS_IN));
    assert_eq!(
        a.edns,
        Some(Edns {
            udp_payload_size: 1232,
            version: 0,
            dnssec_ok: false
        })
    );

    let txt = parse_query(UDP_TXT_NOEDNS).expect("udp_txt_noedns parses");
    assert_eq!(txt.edns, None);
    assert_eq!(
        txt.labels,
        vec![b"Example".to_vec(), b"COM".to_vec()],
        "case kept as sent"
    );
    assert_eq!(txt.qname(), "example.com", "reported lowercase");

    let root = parse_query(UDP_ROOT_NS).expect("udp_root_ns parses");
    assert!(root.labels.is_empty());

    let srv = parse_query(NSLOOKUP_SRV).expect("nslookup_srv parses");
    assert_eq!(srv.flags, 0x0100);

    let Parse::Complete(axfr) = parse_tcp(TCP_AXFR) else {
        panic!("tcp_axfr parses")
    };
    assert!(!axfr.recursion_desired(), "dig clears RD for zone transfers");
    let Parse::Complete(ixfr) = parse_tcp(TCP_IXFR) else {
        panic!("tcp_ixfr parses")
    };
    assert_eq!(ixfr.qtype, 251);
    assert!(ixfr.edns.is_some());
}

#[test]
fn every_strict_tcp_prefix_needs_more_then_the_whole_decides() {
    let backends = [dns(""), dns(r#"qtype = "A""#), dns(r#"name_suffix = "example.com""#)];
    let mut streams: Vec<(&str, Vec<u8>)> = TCP_CAPTURES.iter().map(|&(n, s, _, _)| (n, s.to_vec())).collect();
    streams.extend(all_messages().into_iter().map(|(n, m, _, _)| (n, framed(&m))));
    for backend in &backends {
        for (name, stream) in &streams {
            let whole = backend.detect_stream(stream);
            assert_ne!(whole, Detection::NeedMore, "{name}");
            for n in 0..stream.len() {
                assert_eq!(
                    backend.detect_stream(&stream[..n]),
                    Detection::NeedMore,
                    "{name}: prefix {n}"
                );
            }
        }
    }
}

#[test]
fn bytes_after_the_first_tcp_message_are_ignored() {
    let any = dns("");
    // dig +keepopen style pipelining: a second query right behind the first, whole or cut short.
    let mut stream = TCP_MX.to_vec();
    stream.extend_from_slice(TCP_AXFR);
    assert_eq!(any.detect_stream(&stream), any.detect_stream(TCP_MX));
    stream.truncate(TCP_MX.len() + 3);
    assert_eq!(any.detect_stream(&stream), any.detect_stream(TCP_MX));
}

#[test]
fn a_length_prefix_in_its_own_segment_still_works() {
    // Some clients write the two length bytes and the message separately: the preview grows.
    let any = dns("");
    assert_eq!(any.detect_stream(&TCP_MX[..1]), Detection::NeedMore);
    assert_eq!(any.detect_stream(&TCP_MX[..2]), Detection::NeedMore);
    assert!(matches!(any.detect_stream(TCP_MX), Detection::Match(_)));
}

#[test]
fn a_tcp_stream_is_not_a_datagram_and_a_datagram_is_not_a_stream() {
    let any = dns("");
    for &(name, stream, _, _) in TCP_CAPTURES {
        assert_eq!(any.detect_message(stream), Detection::NoMatch, "{name} as a datagram");
    }
    for &(name, datagram, _, _) in UDP_CAPTURES {
        // Its ID reads as a length: at best a long wait for bytes that never come.
        let verdict = any.detect_stream(datagram);
        assert!(
            !matches!(verdict, Detection::Match(_)),
            "{name} without its length prefix: {verdict:?}"
        );
    }
}
