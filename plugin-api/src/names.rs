//! Host-name patterns for params such as `sni = ["a.example", "*.a.example"]`: exact names and
//! `*.` wildcards covering exactly one label (the certificate rule), validated with messages that say
//! what is wrong, and compared case-insensitively without a trailing dot.

/// One validated host-name pattern (`www.example.com` or `*.example.com`), lowercase, without a
/// trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamePattern {
    /// Matches this name only.
    Exact(String),
    /// `*.<suffix>`: matches one label followed by `.<suffix>`; holds the suffix.
    Wildcard(String),
}

impl NamePattern {
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
            return Err("`*` alone would match any name: omit the param to accept every name".into());
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
            NamePattern::Wildcard(rest.to_owned())
        } else {
            NamePattern::Exact(rest.to_owned())
        })
    }

    /// Whether `host` (already passed through [`normalize_host`]) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            NamePattern::Exact(name) => host == name,
            NamePattern::Wildcard(suffix) => host
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

/// A host name as compared and reported: lowercase, without a trailing dot.
pub fn normalize_host(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    match lower.strip_suffix('.') {
        Some(stripped) => stripped.to_owned(),
        None => lower,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_one_label_wildcards() {
        let exact = NamePattern::parse("WWW.Example.com.").unwrap();
        assert!(exact.matches(&normalize_host("www.example.COM.")));
        let wild = NamePattern::parse("*.example.com").unwrap();
        assert!(wild.matches("a.example.com"));
        assert!(!wild.matches("example.com"));
        assert!(!wild.matches("a.b.example.com"));
    }

    #[test]
    fn bad_patterns_say_why() {
        assert!(NamePattern::parse("*").unwrap_err().contains("any name"));
        assert!(NamePattern::parse("a.*.com").unwrap_err().contains("leftmost label"));
        assert!(NamePattern::parse("bücher.de").unwrap_err().contains("xn--"));
        assert!(NamePattern::parse("a..b").unwrap_err().contains("empty label"));
    }
}
