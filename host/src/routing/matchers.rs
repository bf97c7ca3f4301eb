//! Host-side matchers (`[backend.match]`): client and local address CIDRs and port ranges, checked
//! before a plugin is asked. A list means any-of; an entry starting with `!` excludes. Property
//! regexes ([`property`]) are checked on the properties a backend's detection returns with its match.

mod property;

use std::net::{IpAddr, SocketAddr};
use std::ops::{Range, RangeInclusive};

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

/// `[backend.match]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchersConfig {
    remote_ip: Option<Spanned<OneOrMany<String>>>,
    local_ip: Option<Spanned<OneOrMany<String>>>,
    remote_port: Option<Spanned<OneOrMany<PortItem>>>,
    local_port: Option<Spanned<OneOrMany<PortItem>>>,
    property: Option<property::PropertyConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(x) => std::slice::from_ref(x),
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PortItem {
    Number(i64),
    Text(String),
}

/// A set of values with exclusions: matches when some include matches (or there are none) and no
/// exclude matches.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Set<T> {
    include: Vec<T>,
    exclude: Vec<T>,
}

impl<T> Set<T> {
    fn matches(&self, test: impl Fn(&T) -> bool) -> bool {
        (self.include.is_empty() || self.include.iter().any(&test)) && !self.exclude.iter().any(test)
    }
}

/// Compiled matchers for one backend; the default matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matchers {
    remote_ip: Option<Set<IpNet>>,
    local_ip: Option<Set<IpNet>>,
    remote_port: Option<Set<RangeInclusive<u16>>>,
    local_port: Option<Set<RangeInclusive<u16>>>,
    property: Vec<property::PropertyMatcher>,
}

type SpannedError = (Option<Range<usize>>, String);

impl Matchers {
    /// Compiles the configuration, or says which entry is wrong and where.
    pub fn from_config(c: &MatchersConfig) -> Result<Matchers, SpannedError> {
        Ok(Matchers {
            remote_ip: compile(&c.remote_ip, "remote_ip", parse_net)?,
            local_ip: compile(&c.local_ip, "local_ip", parse_net)?,
            remote_port: compile(&c.remote_port, "remote_port", parse_ports)?,
            local_port: compile(&c.local_port, "local_port", parse_ports)?,
            property: property::compile(&c.property)?,
        })
    }

    /// Whether a connection from `peer` to `local` passes every configured matcher.
    pub fn matches(&self, peer: SocketAddr, local: SocketAddr) -> bool {
        let ip_in = |set: &Option<Set<IpNet>>, ip: IpAddr| {
            let ip = ip.to_canonical();
            set.as_ref().is_none_or(|s| s.matches(|net| net.contains(&ip)))
        };
        let port_in = |set: &Option<Set<RangeInclusive<u16>>>, port: u16| {
            set.as_ref().is_none_or(|s| s.matches(|r| r.contains(&port)))
        };
        ip_in(&self.remote_ip, peer.ip())
            && ip_in(&self.local_ip, local.ip())
            && port_in(&self.remote_port, peer.port())
            && port_in(&self.local_port, local.port())
    }

    /// Whether the properties a backend's detection returned pass its `property` matchers.
    pub fn matches_properties(&self, properties: &[pmmux_plugin_api::Property]) -> bool {
        self.property.iter().all(|m| m.matches(properties))
    }

    /// True when no matcher is configured.
    pub fn is_empty(&self) -> bool {
        *self == Matchers::default()
    }
}

fn compile<I, T>(
    field: &Option<Spanned<OneOrMany<I>>>,
    what: &str,
    parse: impl Fn(&I) -> Result<(bool, T), String>,
) -> Result<Option<Set<T>>, SpannedError> {
    let Some(field) = field else { return Ok(None) };
    let items = field.get_ref().as_slice();
    if items.is_empty() {
        return Err((Some(field.span()), format!("match.{what} is an empty list")));
    }
    let mut set = Set {
        include: Vec::new(),
        exclude: Vec::new(),
    };
    for item in items {
        let (negated, value) = parse(item).map_err(|e| (Some(field.span()), format!("match.{what}: {e}")))?;
        if negated { &mut set.exclude } else { &mut set.include }.push(value);
    }
    Ok(Some(set))
}

fn split_negation(s: &str) -> (bool, &str) {
    match s.trim().strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, s.trim()),
    }
}

fn parse_net(item: &String) -> Result<(bool, IpNet), String> {
    let (negated, text) = split_negation(item);
    let net = text
        .parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{item}` is not an IP address or CIDR"))?;
    Ok((negated, net.trunc()))
}

fn parse_ports(item: &PortItem) -> Result<(bool, RangeInclusive<u16>), String> {
    let port = |n: i64| u16::try_from(n).map_err(|_| format!("port {n} is out of range 0-65535"));
    match item {
        PortItem::Number(n) => port(*n).map(|p| (false, p..=p)),
        PortItem::Text(t) => {
            let (negated, text) = split_negation(t);
            let bad = || format!("`{t}` is not a port or a range like \"9000-9100\"");
            let num = |s: &str| s.trim().parse::<i64>().map_err(|_| bad()).and_then(port);
            let range = match text.split_once('-') {
                Some((lo, hi)) => num(lo)?..=num(hi)?,
                None => {
                    let p = num(text)?;
                    p..=p
                }
            };
            if range.is_empty() {
                return Err(format!("`{t}`: range starts after it ends"));
            }
            Ok((negated, range))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matchers(toml_text: &str) -> Result<Matchers, String> {
        let c: MatchersConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        Matchers::from_config(&c).map_err(|(_, m)| m)
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn empty_matches_everything() {
        let m = matchers("").expect("valid");
        assert!(m.is_empty());
        assert!(m.matches(addr("10.0.0.1:1"), addr("[::1]:2")));
    }

    #[test]
    fn cidr_with_exclusion() {
        let m = matchers(r#"remote_ip = ["127.0.0.0/8", "!127.0.0.2/32"]"#).expect("valid");
        let local = addr("127.0.0.1:8443");
        assert!(m.matches(addr("127.0.0.1:5000"), local));
        assert!(!m.matches(addr("127.0.0.2:5000"), local));
        assert!(!m.matches(addr("10.0.0.1:5000"), local));
        // An IPv4 client seen on a dual-stack socket.
        assert!(m.matches(addr("[::ffff:127.0.0.9]:5000"), local));
    }

    #[test]
    fn only_exclusions_match_the_rest() {
        let m = matchers(r#"remote_ip = "!10.0.0.0/8""#).expect("valid");
        assert!(m.matches(addr("192.0.2.1:1"), addr("127.0.0.1:1")));
        assert!(!m.matches(addr("10.1.2.3:1"), addr("127.0.0.1:1")));
    }

    #[test]
    fn ports_numbers_ranges_and_negation() {
        let m = matchers(r#"local_port = [8443, "9000-9100", "!9050"]"#).expect("valid");
        let peer = addr("127.0.0.1:1");
        assert!(m.matches(peer, addr("127.0.0.1:8443")));
        assert!(m.matches(peer, addr("127.0.0.1:9000")));
        assert!(m.matches(peer, addr("127.0.0.1:9100")));
        assert!(!m.matches(peer, addr("127.0.0.1:9050")));
        assert!(!m.matches(peer, addr("127.0.0.1:9101")));
        let m = matchers("remote_port = 22").expect("valid");
        assert!(m.matches(addr("127.0.0.1:22"), addr("127.0.0.1:1")));
        assert!(!m.matches(addr("127.0.0.1:23"), addr("127.0.0.1:1")));
    }

    #[test]
    fn ipv6_local_ip() {
        let m = matchers(r#"local_ip = "::1""#).expect("valid");
        assert!(m.matches(addr("[::1]:1"), addr("[::1]:2")));
        assert!(!m.matches(addr("127.0.0.1:1"), addr("127.0.0.1:2")));
    }

    #[test]
    fn errors_name_the_entry() {
        assert!(matchers(r#"remote_ip = ["300.1.1.1"]"#)
            .unwrap_err()
            .contains("`300.1.1.1`"));
        assert!(matchers("local_port = 70000").unwrap_err().contains("out of range"));
        assert!(matchers(r#"local_port = "9-1""#).unwrap_err().contains("starts after"));
        assert!(matchers("remote_port = []").unwrap_err().contains("empty list"));
        assert!(matchers(r#"remote_host = "x""#).is_err());
    }
}
