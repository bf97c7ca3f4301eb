//! Validation: the raw TOML tables checked and turned into the typed [`Config`], every problem
//! reported with its span (the caller maps spans to the file's lines and columns).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::raw::{self, RawAdmin, RawBackend, RawConfig, RawListener};
use super::{listen, BackendConfig, Config, ListenerConfig, Place, Reload, Routing, MAX_PREVIEW_LIMIT};
use crate::routing::matchers::Matchers;

pub(super) type Report<'a> = dyn FnMut(Option<Range<usize>>, String) + 'a;
/// The place in the file of a span of the expanded text; with `true`, the span is a backend's
/// `name` and the place is that of its `[[backend]]` header.
pub(super) type Locate<'a> = dyn Fn(Range<usize>, bool) -> Place + 'a;

pub(super) fn validate(path: &Path, raw: RawConfig, report: &mut Report<'_>, locate: &Locate<'_>) -> Config {
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
    // Without an `on_timeout` backend a client that sends nothing is never routed: the kernel may
    // hold each connection until its first bytes (see `ListenerConfig::defer_accept`).
    let silent_routed = raw.routing.on_timeout.is_some();
    for l in raw.listeners {
        listeners.extend(listener(l, &mut seen_addr, silent_routed, report));
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
        backends.push(backend(b, &mut names, &protocol_health, report, locate));
    }
    if let Some(t) = &r.on_timeout {
        if !names.contains(t.get_ref()) {
            report(
                Some(t.span()),
                format!("routing.on_timeout names `{}`, which is not a backend", t.get_ref()),
            );
        }
    }

    let admin = admin(raw.admin, report);
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

/// One `[[listener]]`; `None` when it cannot serve (a bad address or no known transport).
fn listener(
    l: RawListener,
    seen_addr: &mut HashSet<(listen::ListenAddr, &'static str)>,
    silent_routed: bool,
    report: &mut Report<'_>,
) -> Option<ListenerConfig> {
    let span = Some(l.address.span());
    let address = match listen::ListenAddr::parse(l.address.get_ref()) {
        Ok(a) => a,
        Err(why) => {
            report(span, format!("listener address `{}` {why}", l.address.get_ref()));
            return None;
        }
    };
    let (tcp, udp) = transports(&l.transport, report)?;
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
    Some(ListenerConfig {
        name,
        address,
        unix,
        tcp,
        udp,
        strategy: l.strategy,
        accept_proxy_protocol,
        reuse_port: l.reuse_port,
        defer_accept: l.defer_accept.unwrap_or(!silent_routed),
        limits,
        public_port,
        listen,
    })
}

/// A listener's `transport`: whether it takes TCP and UDP; `None` when it names only unknown ones.
fn transports(transport: &Spanned<Vec<String>>, report: &mut Report<'_>) -> Option<(bool, bool)> {
    let (mut tcp, mut udp) = (false, false);
    for t in transport.get_ref() {
        match t.as_str() {
            "tcp" => tcp = true,
            "udp" => udp = true,
            other => report(
                Some(transport.span()),
                format!("unknown transport `{other}` (expected \"tcp\" or \"udp\")"),
            ),
        }
    }
    if transport.get_ref().is_empty() {
        report(
            Some(transport.span()),
            "transport must name \"tcp\" and/or \"udp\"".into(),
        );
    } else if !tcp && !udp {
        return None;
    }
    Some((tcp, udp))
}

/// One `[[backend]]`; `names` collects the names so far (a second use is reported).
fn backend(
    b: RawBackend,
    names: &mut HashSet<String>,
    protocol_health: &BTreeMap<String, crate::routing::health::config::HealthSettings>,
    report: &mut Report<'_>,
    locate: &Locate<'_>,
) -> BackendConfig {
    let (name, protocol) = (b.name.get_ref().clone(), b.protocol.get_ref().clone());
    check_identity(&b, names, report);
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
        let why =
            crate::ops::transparent::refused(transparent, &protocol, b.target.as_ref().map(|t| t.get_ref().as_str()))?;
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
    BackendConfig {
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
    }
}

/// A backend's name (not empty, not used before), protocol (not empty) and target (well formed;
/// present for `pass`).
fn check_identity(b: &RawBackend, names: &mut HashSet<String>, report: &mut Report<'_>) {
    let (name, protocol) = (b.name.get_ref(), b.protocol.get_ref());
    if name.is_empty() {
        report(Some(b.name.span()), "backend name must not be empty".into());
    } else if !names.insert(name.clone()) {
        report(Some(b.name.span()), format!("backend name `{name}` is used twice"));
    }
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
}

/// `[admin]`: a loopback address unless `allow_remote`.
fn admin(admin: Option<RawAdmin>, report: &mut Report<'_>) -> Option<SocketAddr> {
    admin.and_then(|a| match a.address.get_ref().parse::<SocketAddr>() {
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
    })
}
