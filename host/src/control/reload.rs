//! The reloader: one thread that owns everything that changes at run time — the configuration, the
//! plugin set, the listeners — and publishes each result as a new registry snapshot. Plugin folder
//! events are debounced by the quiet period, then the folder is reconciled; a configuration change is
//! parsed, validated, diffed and applied, or refused whole with every error logged. Connections
//! already open keep the snapshot they started with.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::config::{self, Config};
use crate::control::config_diff::diff;
use crate::control::watcher::{self, FsWatcher, Signal};
use crate::plugins::loader::FileStamp;
use crate::plugins::set::log_refusals;
use crate::plugins::{Loader, PluginSet};
use crate::routing::registry::{BuildIssue, Registry};
use crate::tcp::listener::ListenerSet;

/// The reason of the first rebuild.
const START_UP: &str = "start-up";

/// The state the reloader owns.
pub(crate) struct Reloader {
    config: Config,
    loader: Loader,
    plugins: PluginSet,
    registry: Arc<ArcSwap<Registry>>,
    listeners: Arc<Mutex<ListenerSet>>,
    signals: Sender<Signal>,
    watcher: Option<FsWatcher>,
    /// Build problems logged at the last rebuild (each is logged once, not at every swap).
    last_issues: Vec<BuildIssue>,
    /// Stamp of the configuration file at the last read (a metadata-only event, such as the
    /// access-time update our own read causes, does not re-read it).
    config_stamp: Option<FileStamp>,
    /// The NAT port mapper, told the mapped sockets after every listener change.
    portmap: crate::portmap::PortMapper,
}

/// Logs backend build problems, one line each: a missing protocol is a warning (a plugin may be
/// dropped in later), a refused or target-less configuration an error.
pub(crate) fn log_build_issues(issues: &[BuildIssue]) {
    for issue in issues {
        match issue {
            BuildIssue::MissingProtocol { .. } => tracing::warn!("{issue}"),
            BuildIssue::Refused { .. } | BuildIssue::NoTarget { .. } => tracing::error!("{issue}"),
        }
    }
}

impl Reloader {
    /// Loads the plugins and builds the first registry (before any listener accepts).
    pub(crate) fn start(
        config: Config,
        loader: Loader,
        listeners: Arc<Mutex<ListenerSet>>,
        registry: Arc<ArcSwap<Registry>>,
        signals: Sender<Signal>,
        portmap: crate::portmap::PortMapper,
    ) -> Reloader {
        let config_stamp = FileStamp::of(&config.path).ok();
        let plugins = PluginSet::with_prefix(config.plugin_prefix.clone());
        let mut r = Reloader {
            config,
            loader,
            plugins,
            registry,
            listeners,
            signals,
            watcher: None,
            last_issues: Vec::new(),
            config_stamp,
            portmap,
        };
        r.watch();
        let report = r.plugins.reconcile(&r.loader, &r.config.plugin_dir);
        log_refusals(&report.refused);
        r.listeners()
            .metrics()
            .plugin_reload_failures
            .fetch_add(report.refused.len() as u64, Ordering::Relaxed);
        r.rebuild(START_UP);
        r
    }

    fn watch(&mut self) {
        self.watcher = None;
        let config_file = self.config.reload.watch_config.then_some(self.config.path.as_path());
        match watcher::watch(&self.config.plugin_dir, config_file, self.signals.clone()) {
            Ok(w) => self.watcher = Some(w),
            Err(e) => tracing::warn!(error = %e, "not watching for changes; relying on the periodic rescan"),
        }
    }

    fn listeners(&self) -> MutexGuard<'_, ListenerSet> {
        self.listeners.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Builds a new snapshot from the current configuration and plugins, and swaps it in.
    fn rebuild(&mut self, why: &str) {
        let started = Instant::now();
        let previous = self.registry.load_full();
        let (registry, issues) = Registry::build(&self.config, self.plugins.plugins(), Some(&previous));
        let new: Vec<BuildIssue> = issues
            .iter()
            .filter(|i| !self.last_issues.contains(i))
            .cloned()
            .collect();
        log_build_issues(&new);
        self.last_issues = issues;
        let (plugins, backends) = (registry.plugins.len(), registry.backends.len());
        self.listeners().metrics().saw_plugins(&registry.plugins);
        self.registry.store(Arc::new(registry));
        let ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1e3);
        let configured = self.config.backends.len();
        if why == START_UP {
            // The start-up summary line says it (server.rs).
            tracing::debug!(why, plugins, backends, configured, ms = %ms, "registry swapped");
        } else {
            tracing::info!(why, plugins, backends, configured, ms = %ms, "registry swapped");
        }
    }

    /// Reconciles the plugin folder; returns whether to try again after the quiet period.
    fn reconcile_plugins(&mut self) -> bool {
        let report = self.plugins.reconcile(&self.loader, &self.config.plugin_dir);
        log_refusals(&report.refused);
        let metrics = Arc::clone(self.listeners().metrics());
        metrics
            .plugin_reload_failures
            .fetch_add(report.refused.len() as u64, Ordering::Relaxed);
        if report.changed() {
            crate::ops::metrics::Metrics::inc(&metrics.plugin_reloads);
            self.rebuild("plugins changed");
        }
        report.retry
    }

    /// Re-reads the configuration file if it changed since the last read (always with `force`);
    /// applies it, or keeps the running one and logs every error. Returns whether `[reload]`
    /// changed (the caller's rescan deadline follows the new interval).
    fn reload_config(&mut self, force: bool) -> bool {
        if self.config.path.as_os_str().is_empty() {
            // Built from -p / -b: there is no file to read; rescan the plugins instead.
            tracing::info!("configuration from the command line: nothing to reload; rescanning plugins");
            self.reconcile_plugins();
            return false;
        }
        let stamp = FileStamp::of(&self.config.path).ok();
        if !force && stamp.is_some() && stamp == self.config_stamp {
            return false;
        }
        self.config_stamp = stamp;
        let new = match config::load(&self.config.path) {
            Ok(c) => c,
            Err(e) => {
                for line in e.to_string().lines() {
                    tracing::error!("{line}");
                }
                tracing::error!(file = %self.config.path.display(), "configuration refused; the running configuration stays");
                crate::ops::metrics::Metrics::inc(&self.listeners().metrics().config_reload_failures);
                return false;
            }
        };
        if let Err(e) = crate::ops::transparent::check(&new) {
            tracing::error!(file = %self.config.path.display(), "{e}; configuration refused; the running configuration stays");
            crate::ops::metrics::Metrics::inc(&self.listeners().metrics().config_reload_failures);
            return false;
        }
        let d = diff(&self.config, &new);
        if d.is_empty() {
            tracing::debug!(file = %new.path.display(), "configuration unchanged");
            return false;
        }
        {
            let mut listeners = self.listeners();
            for l in &d.listeners_removed {
                listeners.remove(&l.address);
                tracing::info!(listener = %l.name, address = %l.address, "listener closed; its connections go on");
            }
            for l in d.listeners_added.iter().filter(|l| l.listen) {
                if let Err(e) = listeners.add(l) {
                    tracing::error!(listener = %l.name, address = %l.address, error = %e, "cannot listen; the rest of the configuration applies");
                }
            }
            for l in &d.listeners_changed {
                listeners.reconfigure(l);
            }
            listeners.limits().configure(&new.limits);
            self.portmap
                .set_bound(&crate::control::server::mapped_sockets(&new.listeners, &listeners));
            crate::ops::metrics::Metrics::inc(&listeners.metrics().config_reloads);
        }
        if let Err(e) = crate::ops::access_log::configure(new.access_log.as_ref()) {
            tracing::error!(error = %e, "cannot open the new access log; records are not written until it can be");
        }
        if d.admin_changed {
            let show = |a: Option<std::net::SocketAddr>| a.map_or_else(|| "off".to_owned(), |a| a.to_string());
            tracing::warn!(
                running = %show(self.config.admin),
                configured = %show(new.admin),
                "[admin] changed: the admin endpoint is bound at start, so this needs a restart; it stays as it is until then"
            );
        }
        if d.reload_changed {
            let r = &new.reload;
            tracing::info!(
                quiet_period_ms = r.quiet_period.as_millis(),
                rescan_interval_ms = r.rescan_interval.as_millis(),
                watch_config = r.watch_config,
                "[reload] applied"
            );
        }
        if d.port_mapping_changed {
            tracing::warn!("a change of [port_mapping] takes effect at the next start");
        }
        let rewatch = d.plugin_dir_changed || new.reload.watch_config != self.config.reload.watch_config;
        self.config = new;
        if rewatch {
            self.watch();
        }
        if d.plugin_dir_changed {
            let report = self.plugins.reconcile(&self.loader, &self.config.plugin_dir);
            log_refusals(&report.refused);
        }
        self.rebuild("configuration reloaded");
        tracing::info!(changes = %d.summary(), "configuration reloaded");
        d.reload_changed
    }

    /// Runs until [`Signal::Shutdown`] (or every sender is gone).
    pub(crate) fn run(mut self, signals: Receiver<Signal>) {
        let mut plugins_due: Option<Instant> = None;
        let mut config_due: Option<Instant> = None;
        let mut first_event: Option<Instant> = None;
        let mut next_rescan = Instant::now() + self.config.reload.rescan_interval;
        loop {
            let next = [plugins_due, config_due, Some(next_rescan)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(next_rescan);
            let quiet = self.config.reload.quiet_period;
            let received = signals.recv_timeout(next.saturating_duration_since(Instant::now()));
            // Taken after the wait: deadlines set from a time before it would already be past, and
            // the quiet period would be skipped (a `cp` then read half-written).
            let now = Instant::now();
            match received {
                Ok(Signal::PluginFolder) => {
                    // Wait for writes to settle, but never postpone past a few quiet periods.
                    let first = *first_event.get_or_insert(now);
                    plugins_due = Some((now + quiet).min(first + quiet * 4 + Duration::from_millis(100)));
                }
                Ok(Signal::ConfigFile) => config_due = Some(now + quiet),
                Ok(Signal::Rescan) => plugins_due = Some(now),
                Ok(Signal::Reload) => {
                    config_due = None;
                    crate::ops::systemd::reloading();
                    if self.reload_config(true) {
                        next_rescan = now + self.config.reload.rescan_interval;
                    }
                    crate::ops::systemd::ready("configuration reloaded");
                }
                Ok(Signal::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if config_due.is_some_and(|t| t <= now) {
                config_due = None;
                if self.reload_config(false) {
                    next_rescan = now + self.config.reload.rescan_interval;
                }
            }
            if plugins_due.is_some_and(|t| t <= now) || next_rescan <= now {
                if next_rescan <= now {
                    next_rescan = now + self.config.reload.rescan_interval;
                }
                first_event = None;
                plugins_due = self
                    .reconcile_plugins()
                    .then(|| Instant::now() + self.config.reload.quiet_period);
            }
        }
        tracing::debug!("reloader stopped");
    }

    /// Gauges of plugin library versions mapped into the process.
    pub(crate) fn plugin_gauges(&self) -> Arc<crate::plugins::loader::Gauges> {
        self.loader.gauges()
    }

    /// The folder holding the loader's shadow copies.
    pub(crate) fn shadow_dir(&self) -> &Path {
        self.loader.shadow_dir()
    }
}
