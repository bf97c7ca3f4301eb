//! The PROXY protocol v1/v2 decoder the host runs on connections from a trusted front: no panic,
//! a complete header never claims more bytes than it was given, a decided prefix agrees with the
//! whole, and a decoded header re-encodes (v1 and v2) into bytes that decode to the same addresses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use pmmux::proxy_protocol::{decode, encode_v1, encode_v2, Command, Decoded, Header, MAX_HEADER_LEN};

fn canon(addr: Option<SocketAddr>) -> Option<SocketAddr> {
    addr.map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
}

fn round_trip(header: &Header) {
    let endpoints = header.source.zip(header.dest);
    let v2 = encode_v2(header.command, header.transport, endpoints, &header.tlvs);
    match decode(&v2) {
        Decoded::Complete(again) => {
            assert_eq!(again.len, v2.len());
            assert_eq!((again.command, again.transport), (header.command, header.transport));
            if header.command == Command::Proxy {
                // The encoder writes IPv4-mapped IPv6 pairs as IPv4 (what a dual-stack socket
                // reports for an IPv4 peer), so compare canonical forms.
                assert_eq!(
                    (canon(again.source), canon(again.dest)),
                    (canon(header.source), canon(header.dest))
                );
            }
            assert_eq!(again.tlvs, header.tlvs);
        }
        other => panic!("v2 of {header:?} decodes to {other:?}"),
    }
    let Some((source, dest)) = endpoints.filter(|(s, d)| s.is_ipv4() == d.is_ipv4()) else {
        return;
    };
    let v1 = encode_v1(source, dest);
    match decode(&v1) {
        Decoded::Complete(again) => {
            assert_eq!(
                (canon(again.source), canon(again.dest), again.len),
                (canon(header.source), canon(header.dest), v1.len())
            );
        }
        other => panic!("v1 of {source} -> {dest} decodes to {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let whole = decode(data);
    if let Decoded::Complete(header) = &whole {
        assert!(header.len <= data.len() && header.len <= MAX_HEADER_LEN, "{header:?}");
        round_trip(header);
    }
    let half = &data[..data.len().div_ceil(2)];
    match (decode(half), &whole) {
        (Decoded::NeedMore, _) | (Decoded::Invalid(_), Decoded::Invalid(_)) => {}
        (Decoded::Complete(a), Decoded::Complete(b)) => assert_eq!(&a, b),
        (early, late) => panic!("{early:?} on {} bytes, {late:?} on {}", half.len(), data.len()),
    }
});
