//! The `tls` backend's params (`sni`, `alpn`, `min_version`, `max_version`, `ja4`): reading and
//! validating them, and deciding whether a parsed [`ClientHello`] matches them.
//!
//! * `sni`: a host name or a list of them. Names compare case-insensitively, a trailing dot ignored.
//!   A pattern `*.example.com` matches exactly one more label, as in certificates (RFC 6125 §6.4.3):
//!   `a.example.com`, but neither `example.com` nor `a.b.example.com`. `*` only as the whole leftmost
//!   label; internationalized names in their `xn--` form, as clients send them. A ClientHello without
//!   a server name does not match.
//! * `alpn`: a protocol name or a list of them; matches when the client offers any of them (names
//!   compare exactly, RFC 7301). A ClientHello without ALPN does not match.
//!
//! * `min_version`, `max_version`: `"1.0"`, `"1.1"`, `"1.2"` or `"1.3"` (a TOML string; a bare
//!   number such as `1.2` is accepted too). The best version the client offers
//!   ([`ClientHello::best_version`]: the highest of `supported_versions`, else `legacy_version`) must
//!   lie in the range, bounds included. `min_version` above `max_version` is refused.
//! * `ja4`: a JA4 fingerprint or a list of them (see [`crate::ja4`]); matches when the ClientHello's
//!   fingerprint equals one of them exactly, all three parts (lowercase, as JA4 prints them).
//!
//! With none, every ClientHello matches; with several, all must hold.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::client_hello::ClientHello;
use crate::ja4::{is_ja4_shaped, ja4};
use pmmux_tls_core::params::{alpn_matches, sni_matches};

/// The backend's `[backend.params]`, as written by the user.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Server names to match (exact or `*.` wildcard).
    #[serde(default, deserialize_with = "pmmux_plugin_api::params::string_or_list")]
    pub sni: Option<Vec<String>>,
    /// ALPN protocol names to match (any one offered suffices).
    #[serde(default, deserialize_with = "pmmux_plugin_api::params::string_or_list")]
    pub alpn: Option<Vec<String>>,
    /// Lowest acceptable best offered version, `"1.0"` to `"1.3"`.
    #[serde(default, deserialize_with = "version")]
    pub min_version: Option<String>,
    /// Highest acceptable best offered version, `"1.0"` to `"1.3"`.
    #[serde(default, deserialize_with = "version")]
    pub max_version: Option<String>,
    /// JA4 fingerprints to match (any one suffices).
    #[serde(default, deserialize_with = "pmmux_plugin_api::params::string_or_list")]
    pub ja4: Option<Vec<String>>,
}

/// Reads a version as a string (`"1.2"`) or a TOML float (`1.2`), as text; checked later.
fn version<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct VersionText;
    impl Visitor<'_> for VersionText {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a TLS version: \"1.0\", \"1.1\", \"1.2\" or \"1.3\"")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
            Ok(format!("{v:?}"))
        }
    }
    d.deserialize_any(VersionText).map(Some)
}

/// The protocol version number of `"1.0"` to `"1.3"`.
pub fn parse_version(text: &str) -> Option<u16> {
    match text {
        "1.0" => Some(0x0301),
        "1.1" => Some(0x0302),
        "1.2" => Some(0x0303),
        "1.3" => Some(0x0304),
        _ => None,
    }
}

pub use pmmux_plugin_api::names::{normalize_host, NamePattern as SniPattern};

/// What a `tls` backend requires of a ClientHello.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    sni: Option<Vec<SniPattern>>,
    alpn: Option<Vec<Vec<u8>>>,
    /// Inclusive bounds on [`ClientHello::best_version`].
    min_version: Option<u16>,
    max_version: Option<u16>,
    ja4: Option<Vec<String>>,
}

impl Matcher {
    /// Validates the params; the error names the param and what is wrong.
    pub fn from_params(params: Params) -> Result<Self, String> {
        let sni = pmmux_tls_core::params::sni_patterns(params.sni)?;
        let alpn = pmmux_tls_core::params::alpn_names(params.alpn)?;
        let version = |name: &str, text: Option<String>| match text {
            None => Ok(None),
            Some(t) => parse_version(&t).map(Some).ok_or_else(|| {
                format!("params.{name}: `{t}` is not a TLS version; write \"1.0\", \"1.1\", \"1.2\" or \"1.3\"")
            }),
        };
        let min_version = version("min_version", params.min_version)?;
        let max_version = version("max_version", params.max_version)?;
        if let (Some(min), Some(max)) = (min_version, max_version) {
            if min > max {
                return Err("params.min_version is above params.max_version: no ClientHello could match".into());
            }
        }
        let ja4 = match params.ja4 {
            None => None,
            Some(list) if list.is_empty() => {
                return Err("params.ja4: the list is empty; omit `ja4` to accept any fingerprint".into())
            }
            Some(list) => {
                if let Some(bad) = list.iter().find(|f| !is_ja4_shaped(f)) {
                    return Err(format!(
                        "params.ja4: `{bad}` is not a JA4 fingerprint (lowercase, like \
                         `t13d1516h2_8daaf6152771_e5627efa2ab1`)"
                    ));
                }
                Some(list)
            }
        };
        Ok(Matcher {
            sni,
            alpn,
            min_version,
            max_version,
            ja4,
        })
    }

    /// Whether the ClientHello satisfies every configured param.
    pub fn matches(&self, hello: &ClientHello) -> bool {
        let sni_ok = sni_matches(self.sni.as_deref(), hello.server_name.as_deref());
        let alpn_ok = alpn_matches(self.alpn.as_deref(), &hello.alpn);
        let best = hello.best_version();
        let version_ok =
            self.min_version.is_none_or(|min| best >= min) && self.max_version.is_none_or(|max| best <= max);
        // Cheapest checks first: the fingerprint hashes.
        sni_ok && alpn_ok && version_ok && self.ja4.as_ref().is_none_or(|list| list.contains(&ja4(hello)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> SniPattern {
        SniPattern::parse(p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    #[test]
    fn exact_names_ignore_case_and_trailing_dot() {
        let p = pattern("WWW.Example.COM.");
        assert_eq!(p, SniPattern::Exact("www.example.com".into()));
        assert!(p.matches(&normalize_host("www.EXAMPLE.com.")));
        assert!(!p.matches("example.com"));
        assert!(!p.matches("wwww.example.com"));
    }

    #[test]
    fn wildcard_matches_exactly_one_label() {
        let p = pattern("*.Example.com");
        assert!(p.matches("a.example.com"));
        assert!(p.matches("xn--bcher-kva.example.com"));
        assert!(!p.matches("example.com"));
        assert!(!p.matches(".example.com"));
        assert!(!p.matches("a.b.example.com"));
        assert!(!p.matches("aexample.com"));
        assert!(!p.matches("a.example.com.evil"));
    }

    #[test]
    fn bad_patterns_are_explained() {
        for (bad, says) in [
            ("a.*.com", "only allowed as the whole leftmost label"),
            ("*example.com", "only allowed as the whole leftmost label"),
            ("f*.example.com", "only allowed as the whole leftmost label"),
            ("*.*.example.com", "only allowed as the whole leftmost label"),
            ("*", "omit the param"),
            ("", "it is empty"),
            ("a..b", "empty label"),
            ("bücher.example", "xn--"),
            ("a b.example", "only letters"),
            ("*.", "omit the param"),
        ] {
            let err = SniPattern::parse(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert!(SniPattern::parse(&long_label).is_err());
    }

    #[test]
    fn empty_lists_are_refused() {
        let err = Matcher::from_params(Params {
            sni: Some(vec![]),
            ..Default::default()
        })
        .expect_err("empty sni");
        assert!(err.starts_with("params.sni: the list is empty"), "{err}");
        let err = Matcher::from_params(Params {
            alpn: Some(vec![]),
            ..Default::default()
        })
        .expect_err("empty alpn");
        assert!(err.starts_with("params.alpn: the list is empty"), "{err}");
        let err = Matcher::from_params(Params {
            alpn: Some(vec!["".into()]),
            ..Default::default()
        })
        .expect_err("empty name");
        assert!(err.contains("1 to 255 bytes"), "{err}");
    }
}
