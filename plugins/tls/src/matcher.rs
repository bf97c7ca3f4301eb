//! The `tls` backend's params (`sni`, `alpn`): reading and validating them, and deciding whether a
//! parsed [`ClientHello`] matches them.
//!
//! * `sni`: a host name or a list of them. Names compare case-insensitively, a trailing dot ignored.
//!   A pattern `*.example.com` matches exactly one more label, as in certificates (RFC 6125 §6.4.3):
//!   `a.example.com`, but neither `example.com` nor `a.b.example.com`. `*` only as the whole leftmost
//!   label; internationalized names in their `xn--` form, as clients send them. A ClientHello without
//!   a server name does not match.
//! * `alpn`: a protocol name or a list of them; matches when the client offers any of them (names
//!   compare exactly, RFC 7301). A ClientHello without ALPN does not match.
//!
//! With neither, every ClientHello matches.

use serde::de::Deserializer;
use serde::Deserialize;

use crate::client_hello::ClientHello;

/// The backend's `[backend.params]`, as written by the user.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Server names to match (exact or `*.` wildcard).
    #[serde(default, deserialize_with = "sni_list")]
    pub sni: Option<Vec<String>>,
    /// ALPN protocol names to match (any one offered suffices).
    #[serde(default, deserialize_with = "alpn_list")]
    pub alpn: Option<Vec<String>>,
}

fn sni_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    pmmux_plugin_api::params::string_or_list(d, "sni", "`sni`: a host name or a list of host names").map(Some)
}

fn alpn_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    pmmux_plugin_api::params::string_or_list(d, "alpn", "`alpn`: a protocol name or a list of protocol names").map(Some)
}

/// One validated `sni` pattern, lowercase, without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SniPattern {
    /// Matches this name only.
    Exact(String),
    /// `*.<suffix>`: matches one label followed by `.<suffix>`; holds the suffix.
    Wildcard(String),
}

impl SniPattern {
    /// Validates a pattern as written in the config; the error explains what is wrong with it.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if !pattern.is_ascii() {
            return Err(format!(
                "`{pattern}` is not ASCII: write internationalized names in their `xn--` form, as clients send them"
            ));
        }
        let lower = pattern.to_ascii_lowercase();
        let name = lower.strip_suffix('.').unwrap_or(&lower);
        if name == "*" {
            return Err("`*` alone would match any name: omit `sni` to accept every server name".into());
        }
        let (wildcard, rest) = match name.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, name),
        };
        if rest.contains('*') {
            return Err(format!(
                "`{pattern}`: a wildcard is only allowed as the whole leftmost label, as in `*.example.com`"
            ));
        }
        check_host_name(rest).map_err(|why| format!("`{pattern}` is not a valid host name: {why}"))?;
        Ok(if wildcard {
            SniPattern::Wildcard(rest.to_owned())
        } else {
            SniPattern::Exact(rest.to_owned())
        })
    }

    /// Whether `host` (already passed through [`normalize_host`]) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            SniPattern::Exact(name) => host == name,
            SniPattern::Wildcard(suffix) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        }
    }
}

/// Letters, digits, `-` and `_` in dot-separated labels of 1 to 63 characters, 253 in all.
fn check_host_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > 253 {
        return Err("longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label");
        }
        if label.len() > 63 {
            return Err("label longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("only letters, digits, `-` and `_` are allowed in labels");
        }
    }
    Ok(())
}

/// A client's server name as compared and reported: lowercase, without a trailing dot.
pub fn normalize_host(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    match lower.strip_suffix('.') {
        Some(stripped) => stripped.to_owned(),
        None => lower,
    }
}

/// What a `tls` backend requires of a ClientHello.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    sni: Option<Vec<SniPattern>>,
    alpn: Option<Vec<Vec<u8>>>,
}

impl Matcher {
    /// Validates the params; the error names the param and what is wrong.
    pub fn from_params(params: Params) -> Result<Self, String> {
        let sni = match params.sni {
            None => None,
            Some(list) if list.is_empty() => {
                return Err("params.sni: the list is empty; omit `sni` to accept every server name".into())
            }
            Some(list) => Some(
                list.iter()
                    .map(|p| SniPattern::parse(p).map_err(|e| format!("params.sni: {e}")))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let alpn = match params.alpn {
            None => None,
            Some(list) if list.is_empty() => {
                return Err("params.alpn: the list is empty; omit `alpn` to accept any protocol".into())
            }
            Some(list) => {
                if let Some(bad) = list.iter().find(|p| p.is_empty() || p.len() > 255) {
                    return Err(format!(
                        "params.alpn: `{bad}` is {} bytes long; protocol names are 1 to 255 bytes",
                        bad.len()
                    ));
                }
                Some(list.into_iter().map(String::into_bytes).collect())
            }
        };
        Ok(Matcher { sni, alpn })
    }

    /// Whether the ClientHello satisfies every configured param.
    pub fn matches(&self, hello: &ClientHello) -> bool {
        let sni_ok = match (&self.sni, &hello.server_name) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(patterns), Some(name)) => {
                let host = normalize_host(name);
                patterns.iter().any(|p| p.matches(&host))
            }
        };
        let alpn_ok = match &self.alpn {
            None => true,
            Some(wanted) => hello.alpn.iter().any(|offered| wanted.contains(offered)),
        };
        sni_ok && alpn_ok
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
            ("*", "omit `sni`"),
            ("", "it is empty"),
            ("a..b", "empty label"),
            ("bücher.example", "xn--"),
            ("a b.example", "only letters"),
            ("*.", "omit `sni`"),
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
            alpn: None,
        })
        .expect_err("empty sni");
        assert!(err.starts_with("params.sni: the list is empty"), "{err}");
        let err = Matcher::from_params(Params {
            sni: None,
            alpn: Some(vec![]),
        })
        .expect_err("empty alpn");
        assert!(err.starts_with("params.alpn: the list is empty"), "{err}");
        let err = Matcher::from_params(Params {
            sni: None,
            alpn: Some(vec!["".into()]),
        })
        .expect_err("empty name");
        assert!(err.contains("1 to 255 bytes"), "{err}");
    }
}
