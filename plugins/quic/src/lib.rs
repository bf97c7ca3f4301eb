//! pmmux plugin `quic`: matches a UDP client whose first datagrams are a QUIC v1 (RFC 9000) or v2
//! (RFC 9369) client Initial, optionally only for some server names (SNI) or ALPN protocols. UDP
//! only: `detect` (TCP) never matches. Detection only: the host forwards the datagrams untouched.
//!
//! ```toml
//! [backend.params]
//! sni = ["example.com", "*.example.com"]   # or one string; `*.` matches exactly one label
//! alpn = "h3"                              # or a list; matches when the client offers any
//! ```
//!
//! The Initial packets are protected with keys everyone can derive from the Destination Connection
//! ID (RFC 9001 §5.2): the plugin derives them ([`keys`]), removes header protection, decrypts the
//! payload, collects the CRYPTO frames ([`frames`]) of every Initial packet of the client's datagrams
//! so far ([`detect`]), reassembles the crypto stream ([`crypto_stream`]) and parses the TLS
//! ClientHello in it with the parser shared with the `tls` plugin (`pmmux-tls-core`).
//!
//! A backend without params matches as soon as one Initial decrypts and its crypto stream starts
//! with a ClientHello. With `sni` or `alpn`, it answers `NeedMore` until the ClientHello is whole —
//! it may span two or three Initial datagrams (post-quantum key shares, many ALPN names) — and then
//! `Match` or `NoMatch`; the host passes all of the client's datagrams so far to
//! [`Backend::detect_datagrams`]. `sni` and `alpn` work as in the `tls` plugin: names compare
//! case-insensitively, a trailing dot ignored, `*.example.com` matches exactly one more label; a
//! ClientHello without a server name (or without ALPN) does not match a filter on it.
//!
//! Properties on a match:
//! * `quic.version`: `1` or `2`;
//! * `quic.sni`: the server name, lowercase, without a trailing dot (absent when the client sent
//!   none, or when an unfiltered backend matched before the ClientHello was whole);
//! * `quic.alpn`: the protocols offered, comma-separated, in the client's order (bytes outside
//!   printable ASCII, `,` and `\` written `\xNN`; absent like `quic.sni`);
//! * `quic.ja4`: the JA4 fingerprint with the QUIC transport `q`, e.g. `q13d0311h3_55b375c5d22e_387675cfb458` (quinn 0.11).

pub mod crypto_stream;
pub mod detect;
pub mod frames;
pub mod keys;
pub mod packet;

use pmmux_plugin_api::names::{normalize_host, NamePattern};
use pmmux_plugin_api::{export_plugin, Backend, BackendSpec, ConnInfo, Detection, Property};
use pmmux_tls_core::client_hello::ClientHello;
use pmmux_tls_core::ja4::{ja4_for, Transport};
use pmmux_tls_core::params::{alpn_matches, alpn_property, sni_matches};

use detect::{judge, Judgement};
use packet::Version;

/// The backend's `[backend.params]`, as written by the user.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Server names to match (exact or `*.` wildcard).
    #[serde(default, deserialize_with = "pmmux_plugin_api::params::string_or_list")]
    pub sni: Option<Vec<String>>,
    /// ALPN protocol names to match (any one offered suffices).
    #[serde(default, deserialize_with = "pmmux_plugin_api::params::string_or_list")]
    pub alpn: Option<Vec<String>>,
}

/// A `quic` backend.
#[derive(Debug, Clone, Default)]
pub struct Quic {
    /// Server name patterns, when filtered on SNI.
    sni: Option<Vec<NamePattern>>,
    /// Protocol names, when filtered on ALPN.
    alpn: Option<Vec<Vec<u8>>>,
}

impl Quic {
    /// Builds the backend from its params; the error tells the user what is wrong with them.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        Self::from_params(spec.params()?)
    }

    /// Validates the params.
    pub fn from_params(params: Params) -> Result<Self, String> {
        let sni = pmmux_tls_core::params::sni_patterns(params.sni)?;
        let alpn = pmmux_tls_core::params::alpn_names(params.alpn)?;
        Ok(Quic { sni, alpn })
    }

    /// Whether the backend filters on the ClientHello (and so must see it whole).
    fn filtered(&self) -> bool {
        self.sni.is_some() || self.alpn.is_some()
    }

    /// Whether a whole ClientHello satisfies the params.
    fn matches(&self, hello: &ClientHello) -> bool {
        let sni_ok = sni_matches(self.sni.as_deref(), hello.server_name.as_deref());
        let alpn_ok = alpn_matches(self.alpn.as_deref(), &hello.alpn);
        sni_ok && alpn_ok
    }

    /// The verdict over a client's datagrams so far, oldest first.
    pub fn detect_all(&self, datagrams: &[&[u8]]) -> Detection {
        match judge(datagrams) {
            Judgement::NotQuic(_) => Detection::NoMatch,
            Judgement::Incomplete { version, started } if started && !self.filtered() => {
                Detection::Match(vec![version_property(version)])
            }
            Judgement::Incomplete { .. } => Detection::NeedMore,
            Judgement::Complete { version, hello } if self.matches(&hello) => {
                Detection::Match(properties(version, &hello))
            }
            Judgement::Complete { .. } => Detection::NoMatch,
        }
    }
}

impl Backend for Quic {
    /// QUIC runs over UDP only.
    fn detect(&self, _conn: &ConnInfo<'_>, _preview: &[u8]) -> Detection {
        Detection::NoMatch
    }

    fn can_handle_message(&self, _client: &ConnInfo<'_>, message: &[u8]) -> Detection {
        self.detect_all(&[message])
    }

    fn detect_datagrams(&self, _client: &ConnInfo<'_>, datagrams: &[&[u8]]) -> Detection {
        if datagrams.is_empty() {
            return Detection::NeedMore;
        }
        self.detect_all(datagrams)
    }
}

fn version_property(version: Version) -> Property {
    Property::new("quic.version", version.name())
}

/// The `quic.*` properties of a whole ClientHello.
pub fn properties(version: Version, hello: &ClientHello) -> Vec<Property> {
    let mut props = Vec::new();
    props.push(version_property(version));
    if let Some(name) = &hello.server_name {
        props.push(Property::new("quic.sni", normalize_host(name)));
    }
    if !hello.alpn.is_empty() {
        props.push(Property::new("quic.alpn", alpn_property(&hello.alpn)));
    }
    props.push(Property::new("quic.ja4", ja4_for(hello, Transport::Quic)));
    props
}

export_plugin! {
    name: "quic",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "quic" => Quic::new },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_bad_params_are_refused() {
        let err = |p: Params| Quic::from_params(p).expect_err("refused");
        assert!(err(Params {
            sni: Some(vec![]),
            ..Default::default()
        })
        .contains("params.sni: the list is empty"));
        assert!(err(Params {
            alpn: Some(vec![]),
            ..Default::default()
        })
        .contains("params.alpn: the list is empty"));
        assert!(err(Params {
            alpn: Some(vec![String::new()]),
            ..Default::default()
        })
        .contains("1 to 255 bytes"));
        assert!(err(Params {
            sni: Some(vec!["a.*.b".into()]),
            ..Default::default()
        })
        .starts_with("params.sni:"));
    }
}
