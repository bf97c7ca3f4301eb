//! The `host` and `path_prefix` request filters shared by `http` and `http-response`: parsing and
//! validating them from params, and matching them against a [`RequestInfo`].

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use crate::request::RequestInfo;

/// A params value given either as one string or as a list of strings (`host = "a"` or
/// `host = ["a", "b"]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StringOrList(pub Vec<String>);

impl<'de> Deserialize<'de> for StringOrList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrMany;
        impl<'de> Visitor<'de> for OneOrMany {
            type Value = StringOrList;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<StringOrList, E> {
                Ok(StringOrList(vec![value.to_owned()]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringOrList, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(StringOrList(items))
            }
        }
        deserializer.deserialize_any(OneOrMany)
    }
}

/// Port a `Host` without one stands for: this plugin sees plain-text HTTP.
const DEFAULT_PORT: u16 = 80;

/// One `host` pattern: `a.example`, `a.example:8080`, `*.example` (exactly one label),
/// `[::1]:8080`. Names compare case-insensitively and ignore one trailing dot on either side; a
/// pattern without a port matches any port, a pattern with one matches only that port (a `Host`
/// without a port counts as port 80).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// Lower-cased name without trailing dot; for a wildcard, the suffix after `*` (`.example`).
    name: String,
    wildcard: bool,
    port: Option<u16>,
}

impl HostPattern {
    /// Parses a pattern, saying what is wrong with it.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("host pattern `{pattern}`: {why}");
        let (name, port) = split_host_port(pattern)
            .ok_or_else(|| bad("expected `name`, `name:port`, `*.name`, `[ipv6]` or `[ipv6]:port`"))?;
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p != 0 => Some(p),
                _ => return Err(bad("the port must be a number from 1 to 65535")),
            },
        };
        let lower = name.to_ascii_lowercase();
        let lower = lower.strip_suffix('.').unwrap_or(&lower);
        let (wildcard, base) = match lower.strip_prefix("*.") {
            Some(base) => (true, base),
            None => (false, lower),
        };
        if base.contains('*') {
            return Err(bad("a wildcard must be the whole first label, as in `*.example`"));
        }
        if let Some(inner) = base.strip_prefix('[').and_then(|b| b.strip_suffix(']')) {
            let ipv6 = |b: u8| b.is_ascii_hexdigit() || b == b':' || b == b'.';
            if wildcard || inner.is_empty() || !inner.bytes().all(ipv6) {
                return Err(bad("invalid IPv6 address"));
            }
        } else {
            let name_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.';
            if base.split('.').any(str::is_empty) || !base.bytes().all(name_byte) {
                return Err(bad("a name is dot-separated labels of letters, digits, `-` and `_`"));
            }
        }
        let name = if wildcard { format!(".{base}") } else { base.to_owned() };
        Ok(HostPattern { name, wildcard, port })
    }

    /// Does this pattern match a host as sent (a `Host` value or a target's authority)?
    pub fn matches(&self, host: &str) -> bool {
        let Some((name, port)) = split_host_port(host) else {
            return false;
        };
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(p) => p,
                Err(_) => return false,
            },
        };
        if self.port.is_some_and(|want| want != port) {
            return false;
        }
        let name = name.strip_suffix('.').unwrap_or(name);
        if self.wildcard {
            // `*.example` matches `a.example`: one non-empty label before the suffix.
            name.len() > self.name.len()
                && name.is_char_boundary(name.len() - self.name.len())
                && name[name.len() - self.name.len()..].eq_ignore_ascii_case(&self.name)
                && !name[..name.len() - self.name.len()].contains('.')
        } else {
            name.eq_ignore_ascii_case(&self.name)
        }
    }
}

/// Splits `name[:port]` or `[v6][:port]` into name and port text; `None` when malformed (empty,
/// whitespace, an unbracketed IPv6 address, a port that is empty or not all digits).
fn split_host_port(host: &str) -> Option<(&str, Option<&str>)> {
    if host.is_empty() || host.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return None;
    }
    let (name, port) = if host.starts_with('[') {
        let close = host.find(']')?;
        let rest = &host[close + 1..];
        match rest.strip_prefix(':') {
            Some(port) => (&host[..=close], Some(port)),
            None if rest.is_empty() => (host, None),
            None => return None,
        }
    } else {
        match host.split_once(':') {
            Some((_, port)) if port.contains(':') => return None,
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if name.is_empty() {
        return None;
    }
    match port {
        Some(p) if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) => None,
        _ => Some((name, port)),
    }
}

/// The request filters of a backend: a request passes when its host matches one of the `host`
/// patterns (if any are given) and its path starts with one of the `path_prefix`es (if any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFilter {
    hosts: Vec<HostPattern>,
    path_prefixes: Vec<String>,
}

impl RequestFilter {
    /// Builds the filter from the `host` and `path_prefix` params; an empty list is an error (it
    /// would match nothing), as is a prefix that does not start with `/` (or is not `*`).
    pub fn new(host: Option<StringOrList>, path_prefix: Option<StringOrList>) -> Result<Self, String> {
        let hosts = match host {
            None => Vec::new(),
            Some(StringOrList(list)) if list.is_empty() => return Err("params.host must not be an empty list".into()),
            Some(StringOrList(list)) => list.iter().map(|h| HostPattern::parse(h)).collect::<Result<_, _>>()?,
        };
        let path_prefixes = match path_prefix {
            None => Vec::new(),
            Some(StringOrList(list)) if list.is_empty() => {
                return Err("params.path_prefix must not be an empty list".into())
            }
            Some(StringOrList(list)) => list,
        };
        for prefix in &path_prefixes {
            if !(prefix.starts_with('/') || prefix == "*") {
                return Err(format!("path_prefix `{prefix}` must start with `/`"));
            }
            if prefix.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
                return Err(format!("path_prefix `{prefix}` must not contain whitespace"));
            }
        }
        Ok(RequestFilter { hosts, path_prefixes })
    }

    /// Whether a `host` filter is configured (so a request naming no host cannot pass).
    pub fn has_host_filter(&self) -> bool {
        !self.hosts.is_empty()
    }

    /// Whether a `path_prefix` filter is configured.
    pub fn has_path_filter(&self) -> bool {
        !self.path_prefixes.is_empty()
    }

    /// Whether neither filter is configured (every request passes). Only such a filter can pass an
    /// HTTP/2 prior-knowledge connection, which names no host and no path (see [`crate::h2`]).
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.path_prefixes.is_empty()
    }

    /// Does a request with this host (as sent; `None` when it named none) pass the `host` filter?
    pub fn matches_host(&self, host: Option<&str>) -> bool {
        match host {
            _ if self.hosts.is_empty() => true,
            None => false,
            Some(host) => self.hosts.iter().any(|p| p.matches(host)),
        }
    }

    /// Does this path (and query, as sent) pass the `path_prefix` filter? Plain, case-sensitive
    /// prefix comparison without percent-decoding: `/api` also passes `/api2`; write `/api/` to
    /// restrict it to one segment.
    pub fn matches_path(&self, path: &str) -> bool {
        self.path_prefixes.is_empty() || self.path_prefixes.iter().any(|p| path.starts_with(p.as_str()))
    }

    /// Does the request pass both filters?
    pub fn matches(&self, request: &RequestInfo) -> bool {
        self.matches_host(request.host.as_deref()) && self.matches_path(request.path())
    }
}
