//! What is loaded and serving now, as one serializable snapshot: plugins with their versions, how
//! many library versions are mapped (old ones stay mapped while connections still use them, and
//! are unmapped once drained),
//! listeners, and backends with their live connection counts. Served by [`crate::ops::admin`] and printed
//! by `pmmux status`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::ops::limits::Limits;
use crate::ops::metrics::Metrics;
use crate::routing::registry::Registry;
use crate::tcp::listener::ListenerSet;

pub(crate) mod html;

/// The status document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// Process id.
    pub pid: u32,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Plugins in routing now.
    pub plugins: Vec<PluginStatus>,
    /// Library versions mapped into the process now (current and old).
    pub mapped_versions: u64,
    /// Mapped versions that no longer take new connections (still used, or kept: see below).
    pub old_versions_mapped: u64,
    /// Versions unmapped since start (drained: nothing used them any more).
    #[serde(default)]
    pub unmapped_versions: u64,
    /// Versions closed that stay mapped because the plugin registered thread-local destructors
    /// (glibc unmaps them when those threads end); 0 for well-behaved plugins.
    #[serde(default)]
    pub kept_mapped_versions: u64,
    /// Listening sockets.
    pub listeners: Vec<ListenerStatus>,
    /// UDP listeners' flows and counters.
    pub udp: Vec<UdpListenerStatus>,
    /// Backends in routing now, in the order they are asked.
    pub backends: Vec<BackendStatus>,
    /// Process-wide limits and what they count now.
    #[serde(default)]
    pub limits: LimitsStatus,
    /// Binary upgrades asked of this process (SIGUSR2) and how they went.
    #[serde(default)]
    pub upgrade: crate::control::upgrade::trigger::UpgradeStatus,
    /// NAT port mapping: the gateway, the external address and each mapping's state.
    #[serde(default)]
    pub port_mapping: crate::portmap::PortMapStatus,
}

/// The process-wide limits (`[limits]`) and their counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LimitsStatus {
    /// `[limits] max_connections`, if set.
    pub max_connections: Option<usize>,
    /// `[limits] max_previews`, if set.
    pub max_previews: Option<usize>,
    /// TCP connections open now in the process.
    pub connections: usize,
    /// Connections previewing (not yet routed) now.
    pub previews: usize,
}

/// One loaded plugin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PluginStatus {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// File in the plugin folder.
    pub file: String,
    /// Protocols provided.
    pub protocols: Vec<String>,
    /// plugin-api version it was built against.
    pub plugin_api: String,
    /// ABI revision it was built with.
    pub abi_revision: u32,
}

/// One listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ListenerStatus {
    /// Name.
    pub name: String,
    /// Bound address.
    pub address: String,
    /// `tcp` or `udp`.
    pub transport: String,
    /// TCP connections open now (0 for UDP; see `udp` for flows).
    #[serde(default)]
    pub connections: usize,
    /// The listener's `max_connections`, if set.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// The listener's `max_connections_per_ip`, if set.
    #[serde(default)]
    pub max_connections_per_ip: Option<usize>,
    /// Client addresses with connections now (counted only under `max_connections_per_ip`).
    #[serde(default)]
    pub client_ips: usize,
}

/// One UDP listener's flows and counters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UdpListenerStatus {
    /// Listener name.
    pub name: String,
    /// Bound address.
    pub address: String,
    /// Flows alive now.
    pub flows: u64,
    /// Datagrams received from clients.
    pub datagrams: u64,
    /// Datagrams no backend wanted (dropped).
    pub unmatched: u64,
    /// New clients refused because the flow table was full.
    pub rejected: u64,
    /// Flows ended by idle timeout.
    pub expired: u64,
    /// Clients whose datagrams are held now while detection is undecided.
    #[serde(default)]
    pub pending: u64,
    /// Datagrams of new undecided clients dropped because `max_udp_pending` clients were pending.
    #[serde(default)]
    pub pending_rejected: u64,
}

/// One backend.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackendStatus {
    /// Name.
    pub name: String,
    /// Protocol.
    pub protocol: String,
    /// `name@version` of its plugin, or `builtin`.
    pub plugin: String,
    /// Tier.
    pub priority: String,
    /// Target, if any.
    pub target: Option<String>,
    /// Connections open now.
    pub live: usize,
    /// Connections routed since start.
    pub routed: u64,
    /// Plugin errors since start.
    pub plugin_errors: u64,
    /// False when disabled after repeated plugin errors.
    pub enabled: bool,
    /// Health-check state (`unchecked` when the backend has no health checks).
    #[serde(default)]
    pub health: crate::routing::health::HealthReport,
}

/// Where the status comes from.
#[derive(Clone)]
pub struct StatusSource {
    /// The routing snapshot.
    pub registry: Arc<ArcSwap<Registry>>,
    /// The listeners.
    pub listeners: Arc<Mutex<ListenerSet>>,
    /// The plugin loader's mapped / unmapped counts.
    pub plugins: Arc<crate::plugins::loader::Gauges>,
    /// Process start.
    pub started: Instant,
    /// The counters behind `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The process-wide limits.
    pub limits: Arc<Limits>,
    /// The NAT port mapper (`None` outside a running server).
    pub portmap: Option<crate::portmap::PortMapper>,
}

impl StatusSource {
    /// Takes a snapshot.
    pub fn snapshot(&self) -> Status {
        let registry = self.registry.load_full();
        let mapped = self.plugins.mapped.load(Ordering::Relaxed);
        let (listeners, udp) = {
            let set = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
            let tcp = set.tcp_ops();
            let listeners = set
                .bound()
                .into_iter()
                .map(|(name, a, transport)| {
                    let mut l = ListenerStatus {
                        name,
                        address: a.to_string(),
                        transport: transport.into(),
                        connections: 0,
                        max_connections: None,
                        max_connections_per_ip: None,
                        client_ips: 0,
                    };
                    if let Some((_, limits, _)) = tcp.iter().find(|(n, ..)| transport == "tcp" && *n == l.name) {
                        l.connections = limits.connections.count();
                        l.max_connections = limits.connections.max();
                        l.max_connections_per_ip = limits.per_ip.max();
                        l.client_ips = limits.per_ip.len();
                    }
                    l
                })
                .collect();
            let udp = set
                .udp_stats()
                .into_iter()
                .map(|(name, a, st)| UdpListenerStatus {
                    name,
                    address: a.to_string(),
                    flows: st.flows.load(Ordering::Relaxed),
                    datagrams: st.datagrams.load(Ordering::Relaxed),
                    unmatched: st.unmatched.load(Ordering::Relaxed),
                    rejected: st.rejected.load(Ordering::Relaxed),
                    expired: st.expired.load(Ordering::Relaxed),
                    pending: st.pending.load(Ordering::Relaxed),
                    pending_rejected: st.pending_rejected.load(Ordering::Relaxed),
                })
                .collect();
            (listeners, udp)
        };
        Status {
            pid: std::process::id(),
            uptime_s: self.started.elapsed().as_secs(),
            upgrade: crate::control::upgrade::trigger::status(),
            plugins: registry
                .plugins
                .iter()
                .map(|p| PluginStatus {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    file: p.file.display().to_string(),
                    protocols: p.protocols.clone(),
                    plugin_api: p.api_version.clone(),
                    abi_revision: p.abi_version,
                })
                .collect(),
            mapped_versions: mapped,
            old_versions_mapped: mapped.saturating_sub(registry.plugins.len() as u64),
            unmapped_versions: self.plugins.unmapped.load(Ordering::Relaxed),
            kept_mapped_versions: self.plugins.kept_mapped.load(Ordering::Relaxed),
            listeners,
            udp,
            backends: registry
                .backends
                .iter()
                .map(|b| BackendStatus {
                    name: b.name().to_owned(),
                    protocol: b.config.protocol.clone(),
                    plugin: b.plugin_label(),
                    priority: b.priority().to_string(),
                    target: b.config.target.clone(),
                    live: b.stats.live.load(Ordering::Relaxed),
                    routed: b.stats.routed.load(Ordering::Relaxed),
                    plugin_errors: b.stats.plugin_errors.load(Ordering::Relaxed),
                    enabled: b.is_enabled(),
                    health: b.stats.health.report(),
                })
                .collect(),
            limits: LimitsStatus {
                max_connections: self.limits.connections.max(),
                max_previews: self.limits.previews.max(),
                connections: self.limits.connections.count(),
                previews: self.limits.previews.count(),
            },
            port_mapping: self.portmap.as_ref().map(|p| p.status()).unwrap_or_default(),
        }
    }
}

impl Status {
    /// A human-readable rendering, for `pmmux status`.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "pmmux pid {} up {}s; {} plugin version(s) mapped, {} old; {} unmapped after draining{}\n\nplugins:\n",
            self.pid,
            self.uptime_s,
            self.mapped_versions,
            self.old_versions_mapped,
            self.unmapped_versions,
            if self.kept_mapped_versions > 0 {
                format!(
                    " ({} closed but kept mapped by thread-local destructors)",
                    self.kept_mapped_versions
                )
            } else {
                String::new()
            }
        );
        for p in &self.plugins {
            out += &format!(
                "  {:<16} {:<10} {}  [{}]\n",
                p.name,
                p.version,
                p.file,
                p.protocols.join(", ")
            );
        }
        out += "\nlisteners:\n";
        for l in &self.listeners {
            out += &format!("  {:<24} {} {}", l.name, l.transport, l.address);
            if l.transport == "tcp" {
                out += &format!("  connections {}", l.connections);
            }
            out += "\n";
        }
        for u in &self.udp {
            out += &format!(
                "  {:<24} udp flows {} datagrams {} unmatched {} rejected {} expired {} pending {} pending_rejected {}\n",
                u.name, u.flows, u.datagrams, u.unmatched, u.rejected, u.expired, u.pending, u.pending_rejected
            );
        }
        out += &crate::portmap::render::text(&self.port_mapping);
        out += "\nbackends:\n";
        for b in &self.backends {
            out += &format!(
                "  {:<16} {:<14} {:<22} {:<9} live {:<5} routed {:<8} errors {}{}{}\n",
                b.name,
                b.protocol,
                b.plugin,
                b.priority,
                b.live,
                b.routed,
                b.plugin_errors,
                if b.enabled { "" } else { "  DISABLED" },
                if b.health.state == "down" { "  UNHEALTHY" } else { "" }
            );
        }
        out
    }
}
