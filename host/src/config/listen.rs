//! Where a listener listens and a backend connects: an IP address and port, or a Unix-domain
//! stream socket written `unix:/path`; for a Unix listener, its socket file's mode, owner and
//! group and the peers trusted to open their connections with a PROXY header.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::raw::RawListener;

/// What an address or target starts with when it names a Unix-domain socket.
pub const UNIX_PREFIX: &str = "unix:";
/// Longest socket path: `sun_path` holds 108 bytes on Linux, the terminating NUL included.
pub const MAX_UNIX_PATH: usize = 107;

/// A listener's address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListenAddr {
    /// An IP address and port (TCP and/or UDP).
    Ip(SocketAddr),
    /// The path of a Unix-domain stream socket (TCP-like traffic only).
    Unix(PathBuf),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Ip(a) => a.fmt(f),
            ListenAddr::Unix(p) => write!(f, "{UNIX_PREFIX}{}", p.display()),
        }
    }
}

impl From<SocketAddr> for ListenAddr {
    fn from(a: SocketAddr) -> ListenAddr {
        ListenAddr::Ip(a)
    }
}

impl ListenAddr {
    /// Parses `IP:PORT` or `unix:/absolute/path`; the error completes "address `...` ".
    pub fn parse(text: &str) -> Result<ListenAddr, String> {
        if let Some(path) = unix_path(text) {
            return path.map(ListenAddr::Unix);
        }
        text.parse()
            .map(ListenAddr::Ip)
            .map_err(|_| "is not IP:PORT (IPv6 as [::1]:PORT) or unix:/PATH".into())
    }

    /// The IP address and port, for an IP listener.
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            ListenAddr::Ip(a) => Some(*a),
            ListenAddr::Unix(_) => None,
        }
    }

    /// The socket path, for a Unix listener.
    pub fn unix(&self) -> Option<&Path> {
        match self {
            ListenAddr::Ip(_) => None,
            ListenAddr::Unix(p) => Some(p),
        }
    }
}

/// `Some` when `text` is written `unix:...`: the path, or why it cannot be a socket path (the
/// message completes "address `...` "). Paths are absolute (a relative one would depend on the
/// directory pmmux was started from), fit `sun_path`, and hold no whitespace or control
/// character (pmmux names its sockets in a space-separated list when it hands them to an upgraded
/// process).
pub fn unix_path(text: &str) -> Option<Result<PathBuf, String>> {
    let path = text.strip_prefix(UNIX_PREFIX)?;
    Some(if !path.starts_with('/') {
        Err("is not unix:/ABSOLUTE/PATH (a Unix socket path must be absolute)".into())
    } else if path.len() > MAX_UNIX_PATH {
        Err(format!(
            "names a path of {} bytes; a Unix socket path holds at most {MAX_UNIX_PATH}",
            path.len()
        ))
    } else if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err("names a path with whitespace or a control character, which pmmux does not accept".into())
    } else if path.ends_with('/') {
        Err("names a folder, not a socket file".into())
    } else {
        Ok(PathBuf::from(path))
    })
}

/// Whether a backend target names a Unix socket.
pub fn is_unix_target(target: &str) -> bool {
    target.starts_with(UNIX_PREFIX)
}

/// What a Unix listener's socket file and PROXY trust are (all empty for an IP listener).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnixOptions {
    /// Permission bits set on the socket file (`mode`, octal); `None`: what the umask leaves.
    pub mode: Option<u32>,
    /// Owner set on the socket file (`owner`, a user name or uid).
    pub owner: Option<u32>,
    /// Group set on the socket file (`group`, a group name or gid).
    pub group: Option<u32>,
    /// Peers whose connections begin with a PROXY header (`accept_proxy_protocol`), told by the
    /// credentials the kernel reports for them (SO_PEERCRED).
    pub trusted: Vec<PeerTrust>,
}

/// One `accept_proxy_protocol` entry of a Unix listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerTrust {
    /// `"any"`: every peer that may open the socket file (its mode, owner and group decide who).
    Any,
    /// `"user:NAME"` or `"user:UID"`: peers running as this user.
    Uid(u32),
    /// `"group:NAME"` or `"group:GID"`: peers whose primary group is this one.
    Gid(u32),
}

impl PeerTrust {
    /// Whether a peer with these credentials is trusted.
    pub fn admits(&self, uid: u32, gid: u32) -> bool {
        match *self {
            PeerTrust::Any => true,
            PeerTrust::Uid(u) => u == uid,
            PeerTrust::Gid(g) => g == gid,
        }
    }
}

/// Parses an octal mode written as a string (`"0660"`, `"660"`).
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    let ok = (3..=4).contains(&digits.len()) && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(digits, 8) {
        Ok(m) if ok && m <= 0o777 => Ok(m),
        _ => Err(format!(
            "mode `{text}` is not octal permission bits such as \"0660\" (at most \"0777\")"
        )),
    }
}

/// Parses `accept_proxy_protocol` for a Unix listener; the error completes "accept_proxy_protocol ".
pub fn parse_trust(list: &[String]) -> Result<Vec<PeerTrust>, String> {
    if list.is_empty() {
        return Err("is an empty list: it trusts no peer; remove the key to accept no PROXY header".into());
    }
    list.iter()
        .map(|item| {
            if item == "any" {
                Ok(PeerTrust::Any)
            } else if let Some(user) = item.strip_prefix("user:") {
                crate::ops::privdrop::lookup_user(user)
                    .map(|(uid, _)| PeerTrust::Uid(uid))
                    .ok_or_else(|| format!("entry `{item}`: no user `{user}` on this system"))
            } else if let Some(group) = item.strip_prefix("group:") {
                crate::ops::privdrop::lookup_group(group)
                    .map(PeerTrust::Gid)
                    .ok_or_else(|| format!("entry `{item}`: no group `{group}` on this system"))
            } else {
                Err(format!(
                    "entry `{item}` is not \"any\", \"user:NAME\" or \"group:NAME\" (on a unix: listener the peer's \
                     credentials decide, not an IP network)"
                ))
            }
        })
        .collect()
}

/// Checks the Unix-only keys of listener `l` at `address` and returns its [`UnixOptions`];
/// `tcp`/`udp` are its transports. Problems go to `report` with their spans.
pub(super) fn options(
    l: &RawListener,
    name: &str,
    address: &ListenAddr,
    udp: bool,
    report: &mut dyn FnMut(Option<Range<usize>>, String),
) -> UnixOptions {
    let only_unix = [("mode", &l.mode), ("owner", &l.owner), ("group", &l.group)];
    if address.unix().is_none() {
        for (key, value) in only_unix {
            if let Some(v) = value {
                report(
                    Some(v.span()),
                    format!(
                        "listener `{name}`: {key} applies to unix: listeners only (it sets the socket file's {key})"
                    ),
                );
            }
        }
        return UnixOptions::default();
    }
    let mut refuse = |span: Range<usize>, why: &str| report(Some(span), format!("listener `{name}`: {why}"));
    if udp {
        refuse(
            l.transport.span(),
            "a unix: listener is a stream socket and takes \"tcp\" only (UDP over Unix datagram sockets is not supported)",
        );
    }
    if let Some(p) = &l.public_port {
        refuse(
            p.span(),
            "public_port needs an IP listener (a Unix socket has no port to map)",
        );
    }
    if !*l.listen.get_ref() {
        refuse(
            l.listen.span(),
            "listen = false needs an IP listener with a public_port",
        );
    }
    if l.reuse_port {
        refuse(l.address.span(), "reuse_port applies to IP listeners only");
    }
    if let Some(m) = &l.max_connections_per_ip {
        refuse(
            m.span(),
            "max_connections_per_ip applies to IP listeners only (Unix clients have no IP address)",
        );
    }
    let mut field = |value: &Option<Spanned<String>>, parse: &dyn Fn(&str) -> Result<u32, String>| {
        value.as_ref().and_then(|v| {
            parse(v.get_ref())
                .map_err(|why| report(Some(v.span()), format!("listener `{name}`: {why}")))
                .ok()
        })
    };
    let mode = field(&l.mode, &parse_mode);
    let owner = field(&l.owner, &|u| {
        crate::ops::privdrop::lookup_user(u)
            .map(|(uid, _)| uid)
            .ok_or_else(|| format!("owner `{u}` is not a user on this system (a name or a numeric uid)"))
    });
    let group = field(&l.group, &|g| {
        crate::ops::privdrop::lookup_group(g)
            .ok_or_else(|| format!("group `{g}` is not a group on this system (a name or a numeric gid)"))
    });
    let trusted = match &l.accept_proxy_protocol {
        None => Vec::new(),
        Some(list) => parse_trust(list.get_ref()).unwrap_or_else(|why| {
            report(
                Some(list.span()),
                format!("listener `{name}`: accept_proxy_protocol {why}"),
            );
            Vec::new()
        }),
    };
    UnixOptions {
        mode,
        owner,
        group,
        trusted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_and_unix_addresses() {
        assert_eq!(
            ListenAddr::parse("127.0.0.1:80").unwrap(),
            ListenAddr::Ip("127.0.0.1:80".parse().unwrap())
        );
        let unix = ListenAddr::parse("unix:/run/pmmux/a.sock").unwrap();
        assert_eq!(unix, ListenAddr::Unix("/run/pmmux/a.sock".into()));
        assert_eq!(unix.to_string(), "unix:/run/pmmux/a.sock");
        assert_eq!(ListenAddr::parse(&unix.to_string()).unwrap(), unix);
        for (bad, why) in [
            ("unix:run/a.sock", "must be absolute"),
            ("unix:", "must be absolute"),
            ("unix:/run/a b.sock", "whitespace"),
            ("unix:/run/", "folder"),
            ("localhost:80", "is not IP:PORT"),
        ] {
            let e = ListenAddr::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let longest = format!("unix:/{}", "a".repeat(MAX_UNIX_PATH - 1));
        assert!(ListenAddr::parse(&longest).is_ok());
        let e = ListenAddr::parse(&format!("{longest}a")).unwrap_err();
        assert!(e.contains("108 bytes; a Unix socket path holds at most 107"), "{e}");
    }

    #[test]
    fn parses_octal_modes_only() {
        assert_eq!(parse_mode("0660"), Ok(0o660));
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert_eq!(parse_mode("0o777"), Ok(0o777));
        for bad in ["", "66", "0668", "1777", "rw-rw----", "07777", "-660"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn trust_entries_name_peers_by_credentials() {
        let t = parse_trust(&["any".into(), "user:root".into(), "group:0".into(), "user:4242".into()]).unwrap();
        assert_eq!(
            t,
            [
                PeerTrust::Any,
                PeerTrust::Uid(0),
                PeerTrust::Gid(0),
                PeerTrust::Uid(4242)
            ]
        );
        assert!(PeerTrust::Uid(5).admits(5, 9) && !PeerTrust::Uid(5).admits(6, 5));
        assert!(PeerTrust::Gid(9).admits(5, 9) && !PeerTrust::Gid(9).admits(9, 5));
        assert!(parse_trust(&[]).unwrap_err().contains("empty"));
        assert!(parse_trust(&["10.0.0.0/8".into()])
            .unwrap_err()
            .contains("not an IP network"));
        assert!(parse_trust(&["user:no-such-user-pmmux".into()])
            .unwrap_err()
            .contains("no user `no-such-user-pmmux`"));
    }
}
