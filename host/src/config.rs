//! The configuration file: TOML read with serde (`deny_unknown_fields`), then validated into the
//! typed [`Config`] the rest of the host uses. Every error carries the file, line and column.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::routing::matchers::Matchers;

mod env;
pub mod listen;
pub mod quick_start;
mod raw;

use raw::*;

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

type Report<'a> = dyn FnMut(Option<Range<usize>>, String) + 'a;
/// The place in the file of a span of the expanded text; with `true`, the span is a backend's
/// `name` and the place is that of its `[[backend]]` header.
type Locate<'a> = dyn Fn(Range<usize>, bool) -> Place + 'a;

fn validate(path: &Path, raw: RawConfig, report: &mut Report<'_>, locate: &Locate<'_>) -> Config {
    let base = path.parent().map(Path::to_owned).unwrap_or_default();
    let plugin_dir = if raw.plugin_dir.is_absolute() {
        raw.plugin_dir
    } else {
        base.join(raw.plugin_dir)
    };

    if raw.listeners.is_empty() {
        report(
            None,
            "no [[listener]]: pmmux needs at least one address to listen on".into(),
        );
    }
    let mut listeners = Vec::new();
    let mut seen_addr = HashSet::new();
    for l in raw.listeners {
        let span = Some(l.address.span());
        let address = match listen::ListenAddr::parse(l.address.get_ref()) {
            Ok(a) => a,
            Err(why) => {
                report(span, format!("listener address `{}` {why}", l.address.get_ref()));
                continue;
            }
        };
        let (mut tcp, mut udp) = (false, false);
        for t in l.transport.get_ref() {
            match t.as_str() {
                "tcp" => tcp = true,
                "udp" => udp = true,
                other => report(
                    Some(l.transport.span()),
                    format!("unknown transport `{other}` (expected \"tcp\" or \"udp\")"),
                ),
            }
        }
        if !tcp && !udp && !l.transport.get_ref().is_empty() {
            continue;
        }
        if l.transport.get_ref().is_empty() {
            report(
                Some(l.transport.span()),
                "transport must name \"tcp\" and/or \"udp\"".into(),
            );
        }
        for (proto, on) in [("tcp", tcp), ("udp", udp)] {
            if on && !seen_addr.insert((address.clone(), proto)) {
                report(span.clone(), format!("two listeners on {address}/{proto}"));
            }
        }
        let name = l.name.clone().unwrap_or_else(|| address.to_string());
        let unix = listen::options(&l, &name, &address, udp, report);
        let accept_proxy_protocol = match &l.accept_proxy_protocol {
            None => Vec::new(),
            Some(_) if address.unix().is_some() => Vec::new(),
            Some(list) => crate::proxy_protocol::config::trusted_sources(list.get_ref(), tcp).unwrap_or_else(|e| {
                report(
                    Some(list.span()),
                    format!("listener `{name}`: accept_proxy_protocol {e}"),
                );
                Vec::new()
            }),
        };
        let limits = crate::ops::limits::ListenerLimitsConfig {
            max_connections: positive(l.max_connections, "listener max_connections", report),
            max_connections_per_ip: positive(l.max_connections_per_ip, "listener max_connections_per_ip", report),
        };
        let public_port = l.public_port.as_ref().and_then(|p| {
            crate::portmap::config::public_port(p.get_ref())
                .map_err(|e| report(Some(p.span()), format!("listener `{name}`: {e}")))
                .ok()
        });
        let listen = *l.listen.get_ref();
        if !listen && public_port.is_none() {
            report(
                Some(l.listen.span()),
                format!("listener `{name}`: listen = false needs a public_port (it only maps the port)"),
            );
        }
        if !listen && address.ip().is_some_and(|a| a.port() == 0) {
            report(
                span.clone(),
                format!("listener `{name}`: listen = false needs the local port the mapping forwards to (not 0)"),
            );
        }
        listeners.push(ListenerConfig {
            name,
            address,
            unix,
            tcp,
            udp,
            strategy: l.strategy,
            accept_proxy_protocol,
            reuse_port: l.reuse_port,
            limits,
            public_port,
            listen,
        });
    }

    let r = raw.routing;
    let preview_limit = *r.preview_limit.get_ref();
    if preview_limit == 0 || preview_limit > MAX_PREVIEW_LIMIT {
        report(
            Some(r.preview_limit.span()),
            format!("preview_limit must be 1..={MAX_PREVIEW_LIMIT} bytes"),
        );
    }
    if r.probe_timeout_ms == 0 {
        report(None, "routing.probe_timeout_ms must be above 0".into());
    }

    let protocol_health = crate::routing::health::config::per_protocol(&raw.health, report);
    let mut backends = Vec::new();
    let mut names = HashSet::new();
    for b in raw.backends {
        let name = b.name.get_ref().clone();
        if name.is_empty() {
            report(Some(b.name.span()), "backend name must not be empty".into());
        } else if !names.insert(name.clone()) {
            report(Some(b.name.span()), format!("backend name `{name}` is used twice"));
        }
        let protocol = b.protocol.get_ref().clone();
        if protocol.is_empty() {
            report(
                Some(b.protocol.span()),
                format!("backend `{name}`: protocol must not be empty"),
            );
        }
        if let Some(t) = &b.target {
            if let Err(why) = check_target(t.get_ref()) {
                report(
                    Some(t.span()),
                    format!("backend `{name}`: target `{}` {why}", t.get_ref()),
                );
            }
        } else if protocol == "pass" {
            report(
                Some(b.protocol.span()),
                format!("backend `{name}`: protocol `pass` needs a target"),
            );
        }
        let matchers = match Matchers::from_config(&b.matchers) {
            Ok(m) => m,
            Err((span, msg)) => {
                report(span, format!("backend `{name}`: {msg}"));
                Matchers::default()
            }
        };
        let max = crate::routing::strategy::MAX_WEIGHT;
        if !(1..=max).contains(b.weight.get_ref()) {
            let msg = format!("backend `{name}`: weight must be 1..={max}");
            report(Some(b.weight.span()), msg);
        }
        let place = locate(b.name.span(), true);
        let params_place = match &b.params {
            Some(p) => locate(p.span(), false),
            None => place,
        };
        let params_toml = b
            .params
            .as_ref()
            .map(|p| toml::to_string(p.get_ref()).unwrap_or_default())
            .unwrap_or_default();
        let transparent = b.transparent.as_ref().is_some_and(|t| *t.get_ref());
        if let Some(why) = b.transparent.as_ref().and_then(|t| {
            let why = crate::ops::transparent::refused(
                transparent,
                &protocol,
                b.target.as_ref().map(|t| t.get_ref().as_str()),
            )?;
            Some((t.span(), why))
        }) {
            report(Some(why.0), format!("backend `{name}`: transparent = true {}", why.1));
        }
        let health = crate::routing::health::config::for_backend(
            &name,
            b.health.as_ref(),
            protocol_health.get(&protocol),
            b.target.is_some(),
            report,
        );
        backends.push(BackendConfig {
            place,
            params_place,
            name,
            protocol,
            target: b.target.map(Spanned::into_inner),
            priority: b.priority,
            weight: b.weight.into_inner(),
            matchers,
            params_toml,
            udp_idle_timeout: Duration::from_millis(b.udp_idle_timeout_ms.max(1)),
            idle_timeout: b.idle_timeout_ms.map(|ms| Duration::from_millis(ms.max(1))),
            udp_routing: b.udp_routing.map(|r| match r {
                raw::UdpRoutingKey::Flow => pmmux_plugin_api::UdpRouting::Flow,
                raw::UdpRoutingKey::PerMessage => pmmux_plugin_api::UdpRouting::PerMessage,
            }),
            proxy_protocol: b.proxy_protocol,
            transparent,
            health,
        });
    }
    if let Some(t) = &r.on_timeout {
        if !names.contains(t.get_ref()) {
            report(
                Some(t.span()),
                format!("routing.on_timeout names `{}`, which is not a backend", t.get_ref()),
            );
        }
    }

    let admin = raw.admin.and_then(|a| match a.address.get_ref().parse::<SocketAddr>() {
        Ok(addr) if !addr.ip().is_loopback() && !a.allow_remote => {
            report(
                Some(a.address.span()),
                format!(
                    "admin address `{addr}` is not a loopback address; the admin endpoint has no authentication, \
                     so set `allow_remote = true` in [admin] to serve it beyond this machine"
                ),
            );
            None
        }
        Ok(addr) => Some(addr),
        Err(_) => {
            report(
                Some(a.address.span()),
                format!("admin address `{}` is not IP:PORT", a.address.get_ref()),
            );
            None
        }
    });
    // Relative to the configuration file's folder, as plugin_dir is.
    let access_log = raw.access_log.map(|a| crate::ops::access_log::AccessLogConfig {
        path: base.join(a.path),
        format: a.format,
    });
    if raw.reload.rescan_interval_ms < 100 {
        report(None, "reload.rescan_interval_ms must be at least 100".into());
    }

    let port_mapping = crate::portmap::config::validate(raw.port_mapping, report);
    Config {
        path: path.to_owned(),
        port_mapping,
        plugin_dir,
        plugin_prefix: None,
        listeners,
        routing: Routing {
            strategy: r.strategy,
            probe_timeout: Duration::from_millis(r.probe_timeout_ms),
            preview_limit,
            on_timeout: r.on_timeout.map(Spanned::into_inner),
            connect_timeout: Duration::from_millis(r.connect_timeout_ms.max(1)),
            drain_timeout: Duration::from_millis(r.drain_timeout_ms),
            max_udp_flows: r.max_udp_flows.max(1),
            max_failovers: r.max_failovers,
            idle_timeout: Duration::from_millis(r.idle_timeout_ms.max(1)),
            half_closed_timeout: Duration::from_millis(r.half_closed_timeout_ms.max(1)),
            max_udp_pending: r.max_udp_pending.max(1),
        },
        backends,
        reload: Reload {
            quiet_period: Duration::from_millis(raw.reload.quiet_period_ms),
            rescan_interval: Duration::from_millis(raw.reload.rescan_interval_ms.max(100)),
            watch_config: raw.reload.watch_config,
        },
        admin,
        limits: crate::ops::limits::GlobalLimitsConfig {
            max_connections: positive(raw.limits.max_connections, "limits.max_connections", report),
            max_previews: positive(raw.limits.max_previews, "limits.max_previews", report),
        },
        access_log,
    }
}

/// A limit, which must be at least 1 when given (leave it out for no limit).
fn positive(value: Option<Spanned<usize>>, key: &str, report: &mut Report<'_>) -> Option<usize> {
    let v = value?;
    if *v.get_ref() == 0 {
        report(
            Some(v.span()),
            format!("{key} must be at least 1 (leave it out for no limit)"),
        );
        return None;
    }
    Some(v.into_inner())
}

/// Checks a `host:port` target (host a name, an IPv4 address or a bracketed IPv6 address) or a
/// `unix:/path` one.
pub fn check_target(target: &str) -> Result<(), String> {
    if let Some(path) = listen::unix_path(target) {
        return path.map(drop);
    }
    if target.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = target.rsplit_once(':').ok_or("is not host:port or unix:/PATH")?;
    port.parse::<u16>().map_err(|_| "has no valid port")?;
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'));
    if name_ok {
        Ok(())
    } else {
        Err("is not host:port (IPv6 as [::1]:PORT) or unix:/PATH".into())
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
