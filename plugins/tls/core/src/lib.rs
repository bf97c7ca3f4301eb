//! TLS ClientHello parsing ([`client_hello`]), the JA4 fingerprint ([`ja4`]) and the `sni` / `alpn`
//! params with the ALPN property ([`params`]), shared by the pmmux
//! plugins `tls` (ClientHello in TLS records over TCP) and `quic` (ClientHello in QUIC CRYPTO frames);
//! `dtls` uses its extension decoders (its record framing and ClientHello body differ: cookie, DTLS
//! versions, first fragments read as far as they go).
//!
//! This is a plain library rather than part of the `tls` plugin crate because a plugin `cdylib`
//! cannot link another plugin's `rlib`: both would define the root-module symbol.

pub mod client_hello;
pub mod ja4;
pub mod params;
