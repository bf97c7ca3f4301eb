//! Property matchers (`[backend.match] property`): regexes over the properties a backend's own
//! detection returns with its match (`tls.sni`, `http.host`, ...), compiled once at config load.
//!
//! Each listed property must pass. A property passes when its value matches some include regex
//! (or there is none) and no exclude regex (`!` prefix). An absent property fails when the entry
//! has an include and passes when it has only excludes.

use std::collections::BTreeMap;

use pmmux_plugin_api::Property;
use regex::Regex;
use toml::Spanned;

use super::{OneOrMany, Set, SpannedError};

/// `property = { "tls.sni" = "^a\\.", "http.host" = ["x", "!^internal\\."] }` as written.
pub(super) type PropertyConfig = Spanned<BTreeMap<String, Spanned<OneOrMany<String>>>>;

/// A compiled regex that remembers its text (compared by text).
#[derive(Debug, Clone)]
pub(super) struct Pattern {
    text: String,
    regex: Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Pattern {}

/// The regexes for one property key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PropertyMatcher {
    key: String,
    set: Set<Pattern>,
}

impl PropertyMatcher {
    /// Whether `properties` pass this matcher (see the module documentation for absent keys).
    pub(super) fn matches(&self, properties: &[Property]) -> bool {
        match properties.iter().find(|p| p.key.as_str() == self.key) {
            Some(p) => self.set.matches(|pat| pat.regex.is_match(p.value.as_str())),
            None => self.set.include.is_empty(),
        }
    }
}

/// Compiles every entry; a bad regex is reported at its entry with the regex engine's message.
pub(super) fn compile(field: &Option<PropertyConfig>) -> Result<Vec<PropertyMatcher>, SpannedError> {
    let Some(field) = field else { return Ok(Vec::new()) };
    if field.get_ref().is_empty() {
        return Err((Some(field.span()), "match.property is an empty table".into()));
    }
    let mut out = Vec::new();
    for (key, items) in field.get_ref() {
        let at = || Some(items.span());
        let list = items.get_ref().as_slice();
        if list.is_empty() {
            return Err((at(), format!("match.property.\"{key}\" is an empty list")));
        }
        let mut set = Set {
            include: Vec::new(),
            exclude: Vec::new(),
        };
        for item in list {
            let (negated, text) = match item.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, item.as_str()),
            };
            let regex = Regex::new(text).map_err(|e| {
                // The engine's message draws a caret under the pattern; its last line says what.
                let e = e.to_string();
                let why = e.lines().last().unwrap_or_default().trim_start_matches("error: ");
                (at(), format!("match.property.\"{key}\": bad regex `{text}`: {why}"))
            })?;
            let pattern = Pattern {
                text: text.to_owned(),
                regex,
            };
            if negated { &mut set.exclude } else { &mut set.include }.push(pattern);
        }
        out.push(PropertyMatcher { key: key.clone(), set });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::{Matchers, MatchersConfig};
    use pmmux_plugin_api::Property;

    fn matchers(toml_text: &str) -> Result<Matchers, String> {
        let c: MatchersConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        Matchers::from_config(&c).map_err(|(_, m)| m)
    }

    fn props(pairs: &[(&str, &str)]) -> Vec<Property> {
        pairs.iter().map(|(k, v)| Property::new(*k, *v)).collect()
    }

    #[test]
    fn include_regex_on_one_property() {
        let m = matchers(r#"property = { "tls.sni" = "^a\\." }"#).expect("valid");
        assert!(!m.is_empty());
        assert!(m.matches_properties(&props(&[("tls.sni", "a.example")])));
        assert!(!m.matches_properties(&props(&[("tls.sni", "b.example")])));
        // Absent property: fails an include.
        assert!(!m.matches_properties(&props(&[("tls.alpn", "h2")])));
        assert!(!m.matches_properties(&[]));
    }

    #[test]
    fn list_with_negation_and_all_keys_must_pass() {
        let m = matchers(r#"property = { "http.host" = ["example", "!^internal\\."], "http.method" = "^GET$" }"#)
            .expect("valid");
        let ok = props(&[("http.host", "www.example"), ("http.method", "GET")]);
        assert!(m.matches_properties(&ok));
        let internal = props(&[("http.host", "internal.example"), ("http.method", "GET")]);
        assert!(!m.matches_properties(&internal));
        let post = props(&[("http.host", "www.example"), ("http.method", "POST")]);
        assert!(!m.matches_properties(&post));
    }

    #[test]
    fn only_excludes_pass_an_absent_property() {
        let m = matchers(r#"property = { "tls.sni" = "!^internal\\." }"#).expect("valid");
        assert!(m.matches_properties(&[]));
        assert!(m.matches_properties(&props(&[("tls.sni", "a.example")])));
        assert!(!m.matches_properties(&props(&[("tls.sni", "internal.example")])));
    }

    #[test]
    fn address_matchers_ignore_properties_and_vice_versa() {
        let m = matchers(r#"remote_ip = "127.0.0.1""#).expect("valid");
        assert!(m.matches_properties(&[]));
    }

    #[test]
    fn bad_regexes_and_empty_entries_are_errors() {
        let e = matchers(r#"property = { "tls.sni" = "(" }"#).unwrap_err();
        assert!(e.contains("bad regex `(`"), "{e}");
        let e = matchers(r#"property = { "tls.sni" = [] }"#).unwrap_err();
        assert!(e.contains("empty list"), "{e}");
        let e = matchers("property = {}").unwrap_err();
        assert!(e.contains("empty table"), "{e}");
    }

    #[test]
    fn bad_regex_is_located_at_its_entry_in_the_config() {
        let text = "[[listener]]\naddress = \"127.0.0.1:1\"\n[[backend]]\nname = \"b\"\nprotocol = \"pass\"\ntarget = \"127.0.0.1:2\"\n[backend.match]\nproperty = { \"tls.sni\" = \"a(\" }\n";
        let e = crate::config::parse(std::path::Path::new("/t.toml"), text).unwrap_err();
        let issue = &e.issues[0];
        assert_eq!((issue.line, issue.column), (8, 26), "{e}");
        assert!(issue.message.contains("backend `b`"), "{e}");
        assert!(issue.message.ends_with("unclosed group"), "{e}");
    }
}
