//! The TLS ClientHello parser and JA4 (`pmmux-tls-core`), shared by `tls`, `quic` and `dtls`: the
//! input as TLS records (what a TCP client sends) and as a bare handshake message (what QUIC's
//! CRYPTO frames carry), every JA4 variant of a parsed hello, and the extension decoders alone.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmmux_tls_core::client_hello::{
    decode_alpn, decode_server_name, decode_supported_versions, parse_handshake, parse_records, ClientHello, Parse,
};
use pmmux_tls_core::ja4::{is_ja4_shaped, ja4, ja4_for, ja4_version, signature_algorithms, Transport};

fn fingerprints(hello: &ClientHello) {
    for transport in [Transport::Tcp, Transport::Quic, Transport::Dtls] {
        let fp = ja4_for(hello, transport);
        assert!(is_ja4_shaped(&fp), "not a JA4: {fp}");
    }
    assert_eq!(ja4(hello), ja4_for(hello, Transport::Tcp));
    let _ = (ja4_version(hello), signature_algorithms(hello));
    let _ = (hello.offers_tls13(), hello.best_version(), hello.version());
}

fuzz_target!(|data: &[u8]| {
    for parsed in [parse_records(data), parse_handshake(data)] {
        if let Parse::Complete(hello) = parsed {
            fingerprints(&hello);
        }
    }
    let _ = decode_server_name(data);
    let _ = decode_alpn(data);
    let _ = decode_supported_versions(data);
});
