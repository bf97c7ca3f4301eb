//! pmmux plugin `tls`: matches a client whose first bytes are a TLS ClientHello, optionally only for
//! some server names (SNI) or ALPN protocols. Detection only: the plugin never terminates TLS, the
//! host forwards the client's bytes untouched.
//!
//! Params (all optional, see [`matcher`]); a ClientHello must satisfy every one given:
//!
//! ```toml
//! [backend.params]
//! sni = ["example.com", "*.example.com"]   # or one string; `*.` matches exactly one label
//! alpn = "h2"                              # or a list; matches when the client offers any
//! min_version = "1.2"                      # "1.0" to "1.3": the best version offered is at least this
//! max_version = "1.3"                      # ... and at most this
//! ja4 = ["t13d1516h2_8daaf6152771_e5627efa2ab1"]  # or one string; the whole fingerprint, exactly
//! ```
//!
//! Properties on a match:
//! * `tls.sni`: the server name, lowercase, without a trailing dot (absent when the client sent none);
//! * `tls.alpn`: the protocols the client offers, comma-separated, in its order (absent without ALPN;
//!   bytes outside printable ASCII, `,` and `\` are written `\xNN`);
//! * `tls.version`: `1.3` when `supported_versions` offers it, else `1.2`, `1.1` or `1.0`;
//! * `tls.ja4`: the JA4 fingerprint (see [`ja4`]), e.g. `t13d1516h2_8daaf6152771_e5627efa2ab1`.
//!
//! A ClientHello may arrive over several TCP segments and several TLS records, and be larger than
//! 4 KiB (post-quantum key shares, padding): the backend answers `NeedMore` until it is whole, within
//! the host's preview limit (default 16 KiB). Anything that cannot be a ClientHello is `NoMatch`,
//! usually from its first byte; so are SSL 2.0-format and SSL 3.0 ClientHellos and malformed ones
//! (bad lengths, duplicate extensions, a server name that is not printable ASCII).

pub mod matcher;

// The parser and fingerprint live in `pmmux-tls-core` (shared with `quic`); re-exported under their
// old paths so `pmmux_tls::client_hello` and `pmmux_tls::ja4` keep working.
pub use pmmux_tls_core::{client_hello, ja4};

use pmmux_plugin_api::{export_plugin, Backend, BackendSpec, ConnInfo, Detection, Property};
use pmmux_tls_core::params::alpn_property;

use client_hello::{parse_records, ClientHello, Parse};
use matcher::{normalize_host, Matcher, Params};

/// A `tls` backend.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    matcher: Matcher,
}

impl Tls {
    /// Builds the backend from its params; the error tells the user what is wrong with them.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        let params: Params = spec.params()?;
        Ok(Tls {
            matcher: Matcher::from_params(params)?,
        })
    }

    /// The detection itself, over the bytes previewed so far.
    pub fn detect_preview(&self, preview: &[u8]) -> Detection {
        match parse_records(preview) {
            Parse::Incomplete => Detection::NeedMore,
            Parse::Invalid(_) => Detection::NoMatch,
            Parse::Complete(hello) if self.matcher.matches(&hello) => Detection::Match(properties(&hello)),
            Parse::Complete(_) => Detection::NoMatch,
        }
    }
}

impl Backend for Tls {
    fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
        self.detect_preview(preview)
    }
}

/// The `tls.*` properties of a ClientHello.
pub fn properties(hello: &ClientHello) -> Vec<Property> {
    let mut props = Vec::new();
    if let Some(name) = &hello.server_name {
        props.push(Property::new("tls.sni", normalize_host(name)));
    }
    if !hello.alpn.is_empty() {
        props.push(Property::new("tls.alpn", alpn_property(&hello.alpn)));
    }
    props.push(Property::new("tls.version", hello.version()));
    props.push(Property::new("tls.ja4", ja4::ja4(hello)));
    props
}

export_plugin! {
    name: "tls",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "tls" => Tls::new },
}
