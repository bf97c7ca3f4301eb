//! pmmux plugin `xmpp`: matches a client whose first bytes open an XMPP stream (RFC 6120 §4.7):
//! an optional XML declaration, then `<stream:stream ...>` with the `stream` prefix bound to
//! `http://etherx.jabber.org/streams` and the default namespace `jabber:client` (client-to-server)
//! or `jabber:server` (server-to-server), optionally only for some `to` domains. Detection only:
//! matched connections are forwarded to the backend's `target`.
//!
//! Params (optional):
//!
//! ```toml
//! [backend.params]
//! to = ["example.org", "chat.example.net"]   # or one string; any case, trailing dot ignored
//! ```
//!
//! With `to`, only streams whose `to` attribute names one of the domains match (a stream without
//! `to` does not). Properties on a match:
//! * `xmpp.to`: the stream's `to` attribute, lowercase, without a trailing dot (empty when absent);
//! * `xmpp.namespace`: `jabber:client` or `jabber:server`.
//!
//! The backend answers `NeedMore` until the start tag's `>` has arrived and `NoMatch` from the
//! first byte that rules a stream header out (an HTTP request from its first byte, a TLS
//! ClientHello likewise), or when no header ends within [`stream::MAX_HEADER`] bytes. Direct TLS
//! (XEP-0368, port 5223) is TLS: route it with the `tls` plugin. Only the `stream:` prefix is
//! recognised, as every known client sends it.

pub mod stream;

use pmmux_plugin_api::{export_plugin, Backend, BackendSpec, ConnInfo, Detection, Property};

use stream::{parse, Header, Parse};

/// The backend's `[backend.params]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Domains the stream's `to` must name (one or a list).
    #[serde(default, deserialize_with = "pmmux_plugin_api::params::string_or_list")]
    pub to: Option<Vec<String>>,
}

/// An `xmpp` backend.
#[derive(Debug, Clone, Default)]
pub struct Xmpp {
    /// Normalised domains; `None` matches any stream.
    to: Option<Vec<String>>,
}

/// Lowercase, without one trailing dot.
pub fn normalise(domain: &str) -> String {
    let lower = domain.to_lowercase();
    match lower.strip_suffix('.') {
        Some(stripped) => stripped.to_owned(),
        None => lower,
    }
}

impl Xmpp {
    /// Builds the backend from its params; the error tells the user what is wrong with them.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        Self::from_params(spec.params()?)
    }

    /// Builds the backend from already parsed params.
    pub fn from_params(params: Params) -> Result<Self, String> {
        let to = match params.to {
            None => None,
            Some(list) if list.is_empty() => return Err("params.to must not be empty".into()),
            Some(list) => Some(
                list.iter()
                    .map(|d| {
                        let n = normalise(d.trim());
                        if n.is_empty() || n.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') {
                            Err(format!("params.to: `{d}` is not a domain"))
                        } else {
                            Ok(n)
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(Xmpp { to })
    }

    /// TCP detection over the bytes previewed so far.
    pub fn detect_stream(&self, preview: &[u8]) -> Detection {
        match parse(preview) {
            Parse::Complete(header) => self.verdict(&header),
            Parse::Incomplete => Detection::NeedMore,
            Parse::Invalid(_) => Detection::NoMatch,
        }
    }

    fn verdict(&self, header: &Header) -> Detection {
        let to = header.to.as_deref().map(normalise).unwrap_or_default();
        if let Some(wanted) = &self.to {
            if header.to.is_none() || !wanted.contains(&to) {
                return Detection::NoMatch;
            }
        }
        Detection::Match(vec![
            Property::new("xmpp.to", to),
            Property::new("xmpp.namespace", header.namespace.as_str()),
        ])
    }
}

impl Backend for Xmpp {
    fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
        self.detect_stream(preview)
    }
}

export_plugin! {
    name: "xmpp",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "xmpp" => Xmpp::new },
}
