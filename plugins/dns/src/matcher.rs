//! The `dns` backend's params (`name_suffix`, `qtype`): reading and validating them, and deciding
//! whether a parsed [`Query`] matches them.
//!
//! * `name_suffix`: a domain name or a list of them; a query matches when its name is one of them or
//!   lies below one, on label boundaries: `example.com` matches `example.com` and `a.b.example.com`,
//!   not `badexample.com`. Case-insensitive (ASCII, as DNS compares names); a trailing dot is
//!   accepted. `"."` (the root) matches every name. Refused: `""`, a leading dot, `*` (a suffix
//!   already covers every name below it), `\` escapes, spaces and non-ASCII (write internationalized
//!   names in their `xn--` form, as they travel in queries), empty labels, labels over 63 bytes,
//!   names over 255 bytes on the wire.
//! * `qtype`: a type or a list of them, as mnemonics (`A`, `AAAA`, `TXT`, `HTTPS`, ...) or as
//!   `TYPE<n>` (RFC 3597), case-insensitive; a query matches when its QTYPE is one of them. `ANY`
//!   means queries of type ANY (255), not "any type": omit `qtype` for that.
//!
//! Both are optional; with both, a query must satisfy both. An empty list is refused (omit the
//! param instead).

use serde::Deserialize;

use crate::message::{Query, MAX_NAME_LEN};
use crate::rrtype;

/// The backend's `[backend.params]`, as written by the user.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Domain names the query name must equal or lie below.
    #[serde(default, deserialize_with = "pmmux_plugin_api::params::string_or_list")]
    pub name_suffix: Option<Vec<String>>,
    /// Query types to match.
    #[serde(default, deserialize_with = "pmmux_plugin_api::params::string_or_list")]
    pub qtype: Option<Vec<String>>,
}

/// A validated `name_suffix`: its labels, lowercase, without the root label; empty for the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameSuffix(Vec<Vec<u8>>);

impl NameSuffix {
    /// Validates a suffix as written in the config; the error explains what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err(
                "an empty name: write \".\" for the root (it matches every name), or omit `name_suffix`".into(),
            );
        }
        if text == "." {
            return Ok(NameSuffix(Vec::new()));
        }
        if !text.is_ascii() {
            return Err(format!(
                "`{text}` is not ASCII: write internationalized names in their `xn--` form, as queries carry them"
            ));
        }
        if text.contains('*') {
            return Err(format!(
                "`{text}`: no wildcards; a suffix already matches every name below it (write `example.com`, not `*.example.com`)"
            ));
        }
        if text.contains('\\') {
            return Err(format!("`{text}`: `\\` escapes are not supported"));
        }
        if let Some(rest) = text.strip_prefix('.') {
            return Err(format!(
                "`{text}`: no leading dot; `{rest}` matches {rest} itself and every name below it"
            ));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("`{text}`: spaces and control characters are not allowed"));
        }
        let name = text.strip_suffix('.').unwrap_or(text);
        let mut labels = Vec::new();
        let mut wire_len = 1; // the root label
        for label in name.split('.') {
            if label.is_empty() {
                return Err(format!("`{text}`: empty label"));
            }
            if label.len() > 63 {
                return Err(format!("`{text}`: label `{label}` is longer than 63 bytes"));
            }
            wire_len += 1 + label.len();
            labels.push(label.to_ascii_lowercase().into_bytes());
        }
        if wire_len > MAX_NAME_LEN {
            return Err(format!("`{text}`: longer than 255 bytes as a DNS name"));
        }
        Ok(NameSuffix(labels))
    }

    /// Whether a name (its labels, as sent) equals this suffix or lies below it.
    pub fn matches(&self, labels: &[Vec<u8>]) -> bool {
        labels.len() >= self.0.len()
            && labels
                .iter()
                .rev()
                .zip(self.0.iter().rev())
                .all(|(label, wanted)| label.eq_ignore_ascii_case(wanted))
    }
}

/// What a `dns` backend requires of a query.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    suffixes: Option<Vec<NameSuffix>>,
    qtypes: Option<Vec<u16>>,
}

impl Matcher {
    /// Validates the params; the error names the param and what is wrong.
    pub fn from_params(params: Params) -> Result<Self, String> {
        let suffixes = match params.name_suffix {
            None => None,
            Some(list) if list.is_empty() => {
                return Err("params.name_suffix: the list is empty; omit `name_suffix` to accept every name".into())
            }
            Some(list) => Some(
                list.iter()
                    .map(|s| NameSuffix::parse(s).map_err(|e| format!("params.name_suffix: {e}")))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let qtypes = match params.qtype {
            None => None,
            Some(list) if list.is_empty() => {
                return Err("params.qtype: the list is empty; omit `qtype` to accept every type".into())
            }
            Some(list) => Some(
                list.iter()
                    .map(|t| {
                        rrtype::parse(t).ok_or_else(|| {
                            format!(
                                "params.qtype: unknown type `{t}`; write a mnemonic such as A, AAAA, MX, TXT, \
                                 SRV or HTTPS, or TYPE<n> with n from 0 to 65535"
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(Matcher { suffixes, qtypes })
    }

    /// Whether the query satisfies every configured param.
    pub fn matches(&self, query: &Query) -> bool {
        let name_ok = self
            .suffixes
            .as_ref()
            .is_none_or(|list| list.iter().any(|s| s.matches(&query.labels)));
        let type_ok = self.qtypes.as_ref().is_none_or(|list| list.contains(&query.qtype));
        name_ok && type_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(name: &str) -> Vec<Vec<u8>> {
        name.split('.').map(|l| l.as_bytes().to_vec()).collect()
    }

    fn suffix(text: &str) -> NameSuffix {
        NameSuffix::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn suffixes_match_on_label_boundaries_ignoring_case() {
        let s = suffix("Example.COM.");
        assert!(s.matches(&labels("example.com")));
        assert!(s.matches(&labels("WWW.EXAMPLE.com")));
        assert!(s.matches(&labels("a.b.example.com")));
        assert!(!s.matches(&labels("badexample.com")));
        assert!(!s.matches(&labels("example.com.evil")));
        assert!(!s.matches(&labels("com")));
        assert!(!s.matches(&[]));
        // A label holding a dot is one label, not two.
        assert!(!s.matches(&[b"example.com".to_vec()]));
    }

    #[test]
    fn the_root_matches_everything() {
        let root = suffix(".");
        assert!(root.matches(&[]));
        assert!(root.matches(&labels("example.com")));
    }

    #[test]
    fn bad_suffixes_are_explained() {
        for (bad, says) in [
            ("", "an empty name: write \".\" for the root"),
            ("*.example.com", "no wildcards"),
            (".example.com", "no leading dot; `example.com` matches"),
            ("a..b", "empty label"),
            ("example.com..", "empty label"),
            ("a b.example", "spaces"),
            ("bücher.example", "xn--"),
            ("a\\.b", "escapes"),
        ] {
            let err = NameSuffix::parse(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert!(NameSuffix::parse(&long_label).is_err());
        let long_name = vec!["a".repeat(63); 4].join(".");
        assert!(NameSuffix::parse(&long_name).expect_err("too long").contains("255"));
        let longest = [vec!["a".repeat(63); 3], vec!["a".repeat(61)]].concat().join(".");
        assert!(NameSuffix::parse(&longest).is_ok());
    }

    #[test]
    fn empty_lists_and_unknown_types_are_refused() {
        let err = Matcher::from_params(Params {
            name_suffix: Some(vec![]),
            qtype: None,
        })
        .expect_err("empty name_suffix");
        assert!(err.starts_with("params.name_suffix: the list is empty"), "{err}");
        let err = Matcher::from_params(Params {
            name_suffix: None,
            qtype: Some(vec![]),
        })
        .expect_err("empty qtype");
        assert!(err.starts_with("params.qtype: the list is empty"), "{err}");
        let err = Matcher::from_params(Params {
            name_suffix: None,
            qtype: Some(vec!["A".into(), "AAA".into()]),
        })
        .expect_err("unknown type");
        assert!(err.starts_with("params.qtype: unknown type `AAA`"), "{err}");
    }
}
