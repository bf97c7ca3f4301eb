//! Metrics: the process's counters as atomics, rendered in the Prometheus text exposition format
//! 0.0.4 at `GET /metrics` on the admin endpoint ([`render`]).
//!
//! The hot path touches only atomics: a connection finds its (listener, backend) counters in a
//! map read through an atomic pointer (written once per new backend name, on first use) and
//! allocates nothing for metrics. Gauges that exist elsewhere (live connections per backend, UDP
//! flows, limit counts) are read from their owners when rendering. Label values are listener,
//! backend and plugin names from the configuration and the plugin folder, so label sets stay
//! bounded.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use crate::plugins::LoadedPlugin;
use crate::routing::router::Decision;
use crate::tcp::error::Blame;
use crate::tcp::preview::Outcome as Preview;
use crate::tcp::relay::Transferred;

pub(crate) mod render;

pub(crate) use render::render;

/// Upper bounds (seconds) of the detection latency histogram's buckets (`+Inf` follows).
pub(crate) const DETECTION_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// How a TCP connection ended (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnOutcome {
    /// Routed, relayed or served, and ended without error.
    Closed,
    /// Routed, then the client's socket failed (reset, read or write error).
    ClientError,
    /// Routed, then the target failed (unreachable, connect timeout, reset, read or write error).
    UpstreamError,
    /// Routed, then a plugin hook (`open`, a session's `on_data` / `on_eof`) returned an error.
    PluginError,
    /// Routed to a backend the configuration cannot forward (no target).
    ConfigError,
    /// No backend matched; closed.
    NoMatch,
    /// The client sent nothing within the probe timeout and no `on_timeout` backend is set.
    Timeout,
    /// The client closed or failed before a backend was chosen.
    Aborted,
    /// Refused by `max_connections_per_ip` or `max_previews`; closed at once.
    RefusedLimit,
    /// Routed, then closed by pmmux after no byte moved for the idle (or half-closed) timeout.
    IdleTimeout,
}

impl ConnOutcome {
    /// The outcome of a routed connection that failed, by who is to blame.
    pub(crate) fn failed(blame: Blame) -> ConnOutcome {
        match blame {
            Blame::Client => ConnOutcome::ClientError,
            Blame::Upstream => ConnOutcome::UpstreamError,
            Blame::Plugin => ConnOutcome::PluginError,
            Blame::Config => ConnOutcome::ConfigError,
        }
    }

    /// Every outcome, in label order.
    pub const ALL: [ConnOutcome; 10] = [
        ConnOutcome::Closed,
        ConnOutcome::ClientError,
        ConnOutcome::UpstreamError,
        ConnOutcome::PluginError,
        ConnOutcome::ConfigError,
        ConnOutcome::NoMatch,
        ConnOutcome::Timeout,
        ConnOutcome::Aborted,
        ConnOutcome::RefusedLimit,
        ConnOutcome::IdleTimeout,
    ];

    /// The `outcome` label.
    pub fn label(self) -> &'static str {
        match self {
            ConnOutcome::Closed => "closed",
            ConnOutcome::ClientError => "client_error",
            ConnOutcome::UpstreamError => "upstream_error",
            ConnOutcome::PluginError => "plugin_error",
            ConnOutcome::ConfigError => "config_error",
            ConnOutcome::NoMatch => "no_match",
            ConnOutcome::Timeout => "timeout",
            ConnOutcome::Aborted => "aborted",
            ConnOutcome::RefusedLimit => "refused_limit",
            ConnOutcome::IdleTimeout => "idle_timeout",
        }
    }
}

/// A fixed-bucket histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; DETECTION_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = DETECTION_BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(DETECTION_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket (the last is `+Inf`), sum in seconds, count.
    pub fn snapshot(&self) -> (Vec<u64>, f64, u64) {
        let mut total = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                total += b.load(Ordering::Relaxed);
                total
            })
            .collect();
        // The count is the +Inf bucket, so the two always agree in one rendering.
        (cumulative, self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9, total)
    }
}

/// Connections of one (listener, backend) pair, by outcome.
#[derive(Debug, Default)]
pub struct Outcomes([AtomicU64; ConnOutcome::ALL.len()]);

impl Outcomes {
    /// Counts one.
    pub fn add(&self, outcome: ConnOutcome) {
        self.0[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The count of `outcome`.
    pub fn get(&self, outcome: ConnOutcome) -> u64 {
        self.0[outcome as usize].load(Ordering::Relaxed)
    }
}

/// Bytes relayed or served for one backend.
#[derive(Debug, Default)]
pub struct Bytes {
    /// Client to upstream (including the replayed preview).
    pub up: AtomicU64,
    /// Upstream to client.
    pub down: AtomicU64,
}

/// A map from name to counters, read without locking, written when a new name first appears.
#[derive(Debug, Default)]
pub struct ByName<T>(ArcSwap<HashMap<Arc<str>, Arc<T>>>);

impl<T: Default> ByName<T> {
    /// The counters of `name`, made on first use.
    pub fn get(&self, name: &str) -> Arc<T> {
        if let Some(c) = self.0.load().get(name) {
            return Arc::clone(c);
        }
        let mut made = None;
        self.0.rcu(|map| {
            let mut map = HashMap::clone(map);
            let c = map.entry(Arc::from(name)).or_insert_with(Arc::default);
            made = Some(Arc::clone(c));
            map
        });
        made.unwrap_or_default()
    }

    /// Every name and its counters, sorted by name.
    pub fn sorted(&self) -> Vec<(Arc<str>, Arc<T>)> {
        let mut all: Vec<_> = self
            .0
            .load()
            .iter()
            .map(|(k, v)| (Arc::clone(k), Arc::clone(v)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// The process-wide counters.
#[derive(Debug)]
pub struct Metrics {
    /// Process start, seconds since the Unix epoch.
    pub start_time: f64,
    /// Accept to routing decision.
    pub detection: Histogram,
    /// Clients that sent nothing within the probe timeout (with or without `on_timeout`).
    pub preview_timeouts: AtomicU64,
    /// Bytes by backend name.
    pub bytes: ByName<Bytes>,
    /// Configuration reloads applied.
    pub config_reloads: AtomicU64,
    /// Configuration reloads refused (the running configuration stayed).
    pub config_reload_failures: AtomicU64,
    /// Registry rebuilds after the plugin folder changed.
    pub plugin_reloads: AtomicU64,
    /// Plugin files refused (not loaded) by a reconcile.
    pub plugin_reload_failures: AtomicU64,
    /// Every version seen in routing and not yet unmapped, by plugin name.
    plugin_loads: Mutex<BTreeMap<String, BTreeMap<u64, Weak<LoadedPlugin>>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            start_time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            detection: Histogram::default(),
            preview_timeouts: AtomicU64::new(0),
            bytes: ByName::default(),
            config_reloads: AtomicU64::new(0),
            config_reload_failures: AtomicU64::new(0),
            plugin_reloads: AtomicU64::new(0),
            plugin_reload_failures: AtomicU64::new(0),
            plugin_loads: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    /// Notes the plugin versions of a new registry (weakly: a version unmapped once drained is
    /// no longer counted).
    pub fn saw_plugins(&self, plugins: &[Arc<LoadedPlugin>]) {
        let mut loads = self.plugin_loads.lock().unwrap_or_else(|p| p.into_inner());
        for p in plugins {
            loads
                .entry(p.name.clone())
                .or_default()
                .insert(p.load_id, Arc::downgrade(p));
        }
    }

    /// Versions mapped now per plugin name (current and old), for the plugins seen in routing.
    pub fn versions_mapped(&self) -> Vec<(String, usize)> {
        let mut loads = self.plugin_loads.lock().unwrap_or_else(|p| p.into_inner());
        for versions in loads.values_mut() {
            versions.retain(|_, v| v.strong_count() > 0);
        }
        loads.iter().map(|(k, v)| (k.clone(), v.len())).collect()
    }

    /// Counts an increment of `counter`.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One TCP listener's counters.
#[derive(Debug)]
pub struct ListenerMetrics {
    /// The process-wide counters.
    pub global: Arc<Metrics>,
    /// Outcomes by backend name (`""` when no backend was chosen).
    pub outcomes: ByName<Outcomes>,
    /// Accept errors (EMFILE, ENFILE, ENOBUFS, ENOMEM, ...), each one backed off from.
    pub accept_errors: AtomicU64,
}

impl ListenerMetrics {
    /// A listener's counters under `global`.
    pub fn new(global: Arc<Metrics>) -> ListenerMetrics {
        ListenerMetrics {
            global,
            outcomes: ByName::default(),
            accept_errors: AtomicU64::new(0),
        }
    }

    /// Counts a connection that ended without a backend.
    pub fn unrouted(&self, outcome: ConnOutcome) {
        self.outcomes.get("").add(outcome);
    }

    /// Records how a preview ended, `elapsed` after accept: detection latency for a decision,
    /// the timeout counter, and the outcome of a connection that ends here (no backend).
    /// `on_timeout` says whether a silent client goes to a backend.
    pub fn previewed(&self, preview: &std::io::Result<Preview>, elapsed: Duration, on_timeout: bool) {
        match preview {
            Ok(Preview::Routed(decision)) => {
                self.global.detection.observe(elapsed);
                if !matches!(decision, Decision::Route { .. }) {
                    self.unrouted(ConnOutcome::NoMatch);
                }
            }
            Ok(Preview::Silent) => {
                Metrics::inc(&self.global.preview_timeouts);
                if !on_timeout {
                    self.unrouted(ConnOutcome::Timeout);
                }
            }
            Ok(Preview::Closed) | Err(_) => self.unrouted(ConnOutcome::Aborted),
        }
    }

    /// Records a routed connection's end: `Some(bytes)` when it closed cleanly.
    pub(crate) fn finished(&self, backend: &str, result: Result<&Transferred, Blame>) {
        let outcome = match result {
            Ok(t) => {
                let bytes = self.global.bytes.get(backend);
                bytes.up.fetch_add(t.up, Ordering::Relaxed);
                bytes.down.fetch_add(t.down, Ordering::Relaxed);
                if t.cut.is_some() {
                    ConnOutcome::IdleTimeout
                } else {
                    ConnOutcome::Closed
                }
            }
            Err(blame) => ConnOutcome::failed(blame),
        };
        self.outcomes.get(backend).add(outcome);
    }
}

#[cfg(test)]
mod tests;
