//! The configuration file: TOML read with serde (`deny_unknown_fields`), then validated into the
//! typed [`Config`] the rest of the host uses. Every error carries the file, line and column.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::routing::matchers::Matchers;

mod env;
pub mod listen;
pub mod quick_start;
mod raw;
mod validate;

use raw::*;
pub use validate::check_target;
use validate::validate;

/// Default bytes kept while detecting.
pub const DEFAULT_PREVIEW_LIMIT: usize = 16 * 1024;
/// Largest preview a user may configure: previews are held per connection before routing.
pub const MAX_PREVIEW_LIMIT: usize = 1024 * 1024;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Folder holding plugin libraries (relative paths resolved against the config file's folder).
    pub plugin_dir: PathBuf,
    /// Only libraries whose file name starts with this are plugins (`None`: every library). Set
    /// by the quick start when it reads a cargo target folder; a file cannot set it.
    pub plugin_prefix: Option<String>,
    /// Listening sockets.
    pub listeners: Vec<ListenerConfig>,
    /// How connections are routed.
    pub routing: Routing,
    /// Backends, in the order they are asked.
    pub backends: Vec<BackendConfig>,
    /// How plugin and configuration changes are picked up.
    pub reload: Reload,
    /// The local status endpoint, off unless configured.
    pub admin: Option<SocketAddr>,
    /// Process-wide limits (`[limits]`).
    pub limits: crate::ops::limits::GlobalLimitsConfig,
    /// Where connection and flow records go (`[access_log]`), off unless configured.
    pub access_log: Option<crate::ops::access_log::AccessLogConfig>,
    /// How to reach the NAT gateway (`[port_mapping]`), for listeners with a `public_port`.
    pub port_mapping: crate::portmap::PortMappingConfig,
}

/// The `[reload]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Reload {
    /// After the last change seen in the plugin folder (or to the config file), wait this long
    /// for writes to settle before reconciling.
    pub quiet_period: Duration,
    /// Rescan the plugin folder this often even without events (heals a missed event).
    pub rescan_interval: Duration,
    /// Whether a change to the configuration file reloads it (SIGHUP always does).
    pub watch_config: bool,
}

/// One `[[listener]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    /// Name used in logs and handed to plugins (its address when not set).
    pub name: String,
    /// Where to listen: an IP address and port, or a Unix socket path.
    pub address: listen::ListenAddr,
    /// A Unix listener's socket file mode, owner and group, and the peers it trusts to send a
    /// PROXY header (default for an IP listener).
    pub unix: listen::UnixOptions,
    /// Whether to listen on TCP.
    pub tcp: bool,
    /// Whether to listen on UDP.
    pub udp: bool,
    /// Strategy for this listener (overrides `routing.strategy`).
    pub strategy: Option<Strategy>,
    /// Sources trusted to open their TCP connections with a PROXY header (`accept_proxy_protocol`);
    /// empty: no source is, and no connection's bytes are read as one.
    pub accept_proxy_protocol: Vec<ipnet::IpNet>,
    /// SO_REUSEPORT: several processes (each setting it) share the address; the kernel spreads
    /// new connections and UDP clients over them.
    pub reuse_port: bool,
    /// TCP_DEFER_ACCEPT (`defer_accept`; by default on unless `[routing] on_timeout` is set): the
    /// kernel hands a TCP connection over only once its first bytes arrived (or, for a client that
    /// stays silent, after about a second), so the preview reads them at once instead of waiting
    /// for them: one wake-up and one readiness round trip less per connection. Off for
    /// server-speaks-first services (`on_timeout`), whose clients wait for a greeting.
    pub defer_accept: bool,
    /// Limits of this listener (`max_connections`, `max_connections_per_ip`).
    pub limits: crate::ops::limits::ListenerLimitsConfig,
    /// The public port to ask the NAT gateway to forward here (`public_port`); `None`: no mapping.
    pub public_port: Option<crate::portmap::PublicPort>,
    /// Whether to listen at all (`listen = false`: map the port only, for another local service).
    pub listen: bool,
}

/// How a backend is picked among those that match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The first matching backend in configuration order (within the best tier).
    #[default]
    FirstAvailable,
    /// The matching backend with the fewest live connections (within the best tier).
    LeastRequests,
    /// The matching backends in turn, per listener.
    RoundRobin,
    /// In turn, each backend `weight` times per cycle, interleaved.
    Weighted,
    /// Drawn at random, in proportion to `weight`.
    Random,
    /// By the client's IP address, consistently (rendezvous hashing, weighted).
    SourceHash,
}

/// Priority tiers: a lower tier serves only when no backend of a higher tier matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Default, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Priority {
    /// Last resort.
    Fallback,
    /// Used when no normal or vip backend matches.
    Standby,
    /// The default tier.
    #[default]
    Normal,
    /// Preferred over every other tier.
    Vip,
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Priority::Fallback => "fallback",
            Priority::Standby => "standby",
            Priority::Normal => "normal",
            Priority::Vip => "vip",
        })
    }
}

/// The `[routing]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    /// Default strategy.
    pub strategy: Strategy,
    /// How long to wait for the bytes that decide a connection.
    pub probe_timeout: Duration,
    /// Most bytes kept while detecting.
    pub preview_limit: usize,
    /// Backend for clients that send nothing within `probe_timeout`.
    pub on_timeout: Option<String>,
    /// How long a forward may take to connect to its target.
    pub connect_timeout: Duration,
    /// On shutdown, how long open connections may take to finish.
    pub drain_timeout: Duration,
    /// Most UDP flows (clients with a remembered backend) per UDP listener.
    pub max_udp_flows: usize,
    /// Most other backends one client connection tries when connecting to its backend fails.
    pub max_failovers: u32,
    /// Most UDP clients whose datagrams are held while detection is undecided, per UDP listener.
    pub max_udp_pending: usize,
    /// A routed TCP connection with no byte either way for this long is closed (per backend
    /// `idle_timeout_ms` overrides it).
    pub idle_timeout: Duration,
    /// A routed TCP connection one side of which has finished sending is closed after this long
    /// without a byte.
    pub half_closed_timeout: Duration,
}

/// `[routing] idle_timeout_ms` by default: one hour, longer than an interactive session is quiet
/// (an SSH login left open over lunch), short enough that connections whose peers vanished without
/// a FIN (keepalive finds most of them sooner) do not pile up for weeks.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 3_600_000;
/// `[routing] half_closed_timeout_ms` by default: a minute without a byte once one side finished.
pub const DEFAULT_HALF_CLOSED_TIMEOUT_MS: u64 = 60_000;

/// Where something is written in the configuration file, for messages (line 0: nowhere, as for
/// a quick start's `-b`). Every place equals every other: a backend moved in the file, or below a
/// new comment, is the same backend and is not rebuilt by a reload.
#[derive(Debug, Clone, Copy, Default, Eq)]
pub struct Place {
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl PartialEq for Place {
    fn eq(&self, _other: &Place) -> bool {
        true
    }
}

impl Place {
    /// `file:line:column`, or the file alone when the place is unknown.
    pub fn in_file(&self, file: &Path) -> String {
        if self.line == 0 {
            file.display().to_string()
        } else {
            format!("{}:{}:{}", file.display(), self.line, self.column)
        }
    }
}

/// One `[[backend]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// Where its `[[backend]]` table begins in the file.
    pub place: Place,
    /// Where its `[backend.params]` table is (the backend's place when it has none).
    pub params_place: Place,
    /// Unique name.
    pub name: String,
    /// Protocol: built-in `pass` / `noop`, or one a loaded plugin provides.
    pub protocol: String,
    /// Where `forward` goes, as `host:port`.
    pub target: Option<String>,
    /// Tier.
    pub priority: Priority,
    /// Its share under the `weighted`, `random` and `source-hash` strategies (1..=256).
    pub weight: u32,
    /// Host-side matchers, checked before the plugin is asked.
    pub matchers: Matchers,
    /// `[backend.params]`, as TOML text for the plugin.
    pub params_toml: String,
    /// A UDP flow to this backend ends after this long without a datagram either way.
    pub udp_idle_timeout: Duration,
    /// Overrides `[routing] idle_timeout_ms` for TCP connections routed to this backend.
    pub idle_timeout: Option<Duration>,
    /// `udp_routing`: overrides what the plugin declares (per message or per flow).
    pub udp_routing: Option<pmmux_plugin_api::UdpRouting>,
    /// The PROXY header sent to the target before the client's bytes (`proxy_protocol`); such a
    /// backend takes TCP connections only.
    pub proxy_protocol: Option<crate::proxy_protocol::Version>,
    /// `transparent`: the upstream TCP connection and UDP flow leave from the client's own
    /// address and port (IP_TRANSPARENT; see [`crate::ops::transparent`]).
    pub transparent: bool,
    /// Health checks (its `[backend.health]`, else its protocol's `[health.<protocol>]`); `None`:
    /// not checked.
    pub health: Option<crate::routing::health::config::HealthSettings>,
}

impl BackendConfig {
    /// Whether its target is a Unix socket (a stream: such a backend takes TCP connections only).
    pub fn target_is_unix(&self) -> bool {
        self.target.as_deref().is_some_and(listen::is_unix_target)
    }
}

/// Every problem found in one configuration file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// Each problem, in file order.
    pub issues: Vec<ConfigIssue>,
}

/// One problem, at a line and column when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// 1-based line, 0 when the problem has no single place.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            if issue.line > 0 {
                write!(
                    f,
                    "{}:{}:{}: {}",
                    self.path.display(),
                    issue.line,
                    issue.column,
                    issue.message
                )?;
            } else {
                write!(f, "{}: {}", self.path.display(), issue.message)?;
            }
        }
        Ok(())
    }
}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_owned(),
        issues: vec![ConfigIssue {
            line: 0,
            column: 0,
            message: format!("cannot read: {e}"),
        }],
    })?;
    parse(path, &text)
}

/// Parses and validates configuration text; `path` names it in errors and anchors `plugin_dir`.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    match parse_all(path, text) {
        (Some(config), issues) if issues.is_empty() => Ok(config),
        (_, issues) => Err(ConfigError {
            path: path.to_owned(),
            issues,
        }),
    }
}

/// Reads a file as [`parse_all`] does.
pub fn load_all(path: &Path) -> (Option<Config>, Vec<ConfigIssue>) {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_all(path, &text),
        Err(e) => (
            None,
            vec![ConfigIssue {
                line: 0,
                column: 0,
                message: format!("cannot read: {e}"),
            }],
        ),
    }
}

/// Parses and validates as far as the text allows, for listing every problem at once: the
/// configuration as validated (`None` only when the TOML itself cannot be read) and every issue,
/// in file order. A `{{env:NAME}}` that cannot be expanded is reported and left in place; other
/// problems on its line (an address that is not IP:PORT because it is a placeholder) are its
/// consequences and not repeated.
pub(crate) fn parse_all(path: &Path, text: &str) -> (Option<Config>, Vec<ConfigIssue>) {
    let (expanded, env_errors) = env::expand_all(text, |name| std::env::var(name).ok());
    let mut issues: Vec<ConfigIssue> = env_errors
        .into_iter()
        .map(|e| {
            let (line, column) = line_col(text, e.offset);
            ConfigIssue {
                line,
                column,
                message: e.message,
            }
        })
        .collect();
    let env_lines: HashSet<usize> = issues.iter().map(|i| i.line).collect();
    let place = |span: Range<usize>| {
        let (line, column) = line_col(text, expanded.original_offset(span.start));
        Place { line, column }
    };
    let locate = |span: Option<Range<usize>>, message: String| {
        let Place { line, column } = span.map(place).unwrap_or_default();
        ConfigIssue { line, column, message }
    };
    let push = |issue: ConfigIssue, issues: &mut Vec<ConfigIssue>| {
        if issue.line == 0 || !env_lines.contains(&issue.line) {
            issues.push(issue);
        }
    };
    let config = match toml::from_str::<RawConfig>(&expanded.text) {
        Ok(raw) => {
            let mut found = Vec::new();
            let config = validate(
                path,
                raw,
                &mut |span, msg| found.push(locate(span, msg)),
                &|span, header| {
                    if header {
                        backend_place(text, place(span))
                    } else {
                        place(span)
                    }
                },
            );
            for issue in found {
                push(issue, &mut issues);
            }
            Some(config)
        }
        Err(e) => {
            push(locate(e.span(), e.message().to_owned()), &mut issues);
            None
        }
    };
    issues.sort_by_key(|i| (i.line, i.column));
    (config, issues)
}

/// The place of the `[[backend]]` header above `name` (the place of its `name` key), or that
/// place itself when the header is not found (an inline table).
fn backend_place(text: &str, name: Place) -> Place {
    let upto: usize = text
        .split_inclusive('\n')
        .take(name.line.saturating_sub(1))
        .map(str::len)
        .sum();
    match text[..upto].rfind("[[backend]]") {
        Some(at) => {
            let (line, column) = line_col(text, at);
            Place { line, column }
        }
        None => name,
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests;
