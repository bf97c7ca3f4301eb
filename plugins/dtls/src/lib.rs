//! pmmux plugin `dtls`: matches a UDP client whose first datagram starts with a DTLS ClientHello
//! (DTLS 1.0, 1.2 or 1.3), optionally only for some server names (SNI). UDP only: DTLS has no TCP
//! transport, so `detect` never matches. Detection only: the plugin never terminates DTLS, the host
//! forwards the datagrams untouched.
//!
//! ```toml
//! [backend.params]
//! sni = ["a.example", "*.example.net"]   # or one string; `*.` matches exactly one label
//! ```
//!
//! `sni` names compare case-insensitively, a trailing dot ignored; `*.example.net` matches
//! `a.example.net` but neither `example.net` nor `a.b.example.net`. With `sni` set, a ClientHello
//! without a server name does not match — nor does a first fragment that ends before the
//! `server_name` extension (see below). Without `sni`, every ClientHello matches.
//!
//! What is checked is in [`client_hello`]: the record header (handshake, 0xFEFF / 0xFEFD, epoch 0),
//! the handshake header (ClientHello, message_seq 0 or 1, fragment_offset 0) and the body, cookie
//! included. A ClientHello larger than the path MTU comes in fragments: the first datagram then holds
//! only its start (fragment_length < length). It matches on its headers, and the server name, ALPN
//! and versions are reported when they lie inside it (OpenSSL puts `server_name` early; a capture
//! with `-mtu 256` carries it in the first fragment).
//!
//! Properties on a match:
//! * `dtls.version`: `1.3` when `supported_versions` offers 0xFEFC (RFC 9147: such a ClientHello
//!   has legacy_version 0xFEFD), else `1.2` or `1.0` from client_version;
//! * `dtls.sni`: the server name, lowercase, without a trailing dot (absent when none was seen);
//! * `dtls.alpn`: the protocols offered, comma-separated, in the client's order (absent without
//!   ALPN; bytes outside printable ASCII, `,` and `\` are written `\xNN`);
//! * `dtls.fragment = true` when the datagram held only the first fragment of the ClientHello.

pub mod client_hello;

use pmmux_plugin_api::{export_plugin, Backend, BackendSpec, ConnInfo, Detection, Property};
use pmmux_tls_core::params::{alpn_property, sni_matches};

use client_hello::{parse_datagram, ClientHello};

/// The backend's `[backend.params]`, as written by the user.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Server names to match (exact or `*.` wildcard).
    #[serde(default, deserialize_with = "pmmux_plugin_api::params::string_or_list")]
    pub sni: Option<Vec<String>>,
}

pub use pmmux_plugin_api::names::{normalize_host, NamePattern as SniPattern};

/// A `dtls` backend.
#[derive(Debug, Clone, Default)]
pub struct Dtls {
    sni: Option<Vec<SniPattern>>,
}

impl Dtls {
    /// Builds the backend from its params; the error tells the user what is wrong with them.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        Self::from_params(spec.params()?)
    }

    /// Validates the params.
    pub fn from_params(params: Params) -> Result<Self, String> {
        let sni = pmmux_tls_core::params::sni_patterns(params.sni)?;
        Ok(Dtls { sni })
    }

    /// The verdict over one whole datagram.
    pub fn detect_message(&self, datagram: &[u8]) -> Detection {
        match parse_datagram(datagram) {
            Ok(hello) if self.matches(&hello) => Detection::Match(properties(&hello)),
            _ => Detection::NoMatch,
        }
    }

    fn matches(&self, hello: &ClientHello) -> bool {
        sni_matches(self.sni.as_deref(), hello.server_name.as_deref())
    }
}

impl Backend for Dtls {
    /// DTLS runs over UDP only.
    fn detect(&self, _conn: &ConnInfo<'_>, _preview: &[u8]) -> Detection {
        Detection::NoMatch
    }

    fn can_handle_message(&self, _client: &ConnInfo<'_>, message: &[u8]) -> Detection {
        self.detect_message(message)
    }
}

/// The `dtls.*` properties of a ClientHello.
pub fn properties(hello: &ClientHello) -> Vec<Property> {
    let mut props = Vec::new();
    props.push(Property::new("dtls.version", hello.version()));
    if let Some(name) = &hello.server_name {
        props.push(Property::new("dtls.sni", normalize_host(name)));
    }
    if !hello.alpn.is_empty() {
        props.push(Property::new("dtls.alpn", alpn_property(&hello.alpn)));
    }
    if !hello.complete {
        props.push(Property::new("dtls.fragment", "true"));
    }
    props
}

export_plugin! {
    name: "dtls",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "dtls" => Dtls::new },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let exact = SniPattern::parse("A.Example.").expect("valid");
        assert!(exact.matches("a.example"));
        assert!(!exact.matches("b.a.example"));
        let wild = SniPattern::parse("*.example.net").expect("valid");
        assert!(wild.matches("a.example.net"));
        assert!(!wild.matches("example.net"));
        assert!(!wild.matches("a.b.example.net"));
        for bad in ["*", "", "a..b", "a.*.b", "bücher.example", "a b", "*."] {
            assert!(SniPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
