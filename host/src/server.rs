//! The service: loads plugins, builds the registry, binds the listeners, runs until the shutdown
//! signal, then stops accepting and drains open connections up to the drain timeout.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::connection::ListenerContext;
use crate::listener;
use crate::plugin::Loader;
use crate::registry::{self, BuildIssue, Registry};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The shadow folder for plugin copies could not be made.
    #[error("cannot create the plugin shadow folder: {0}")]
    Shadow(io::Error),
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: io::Error,
    },
}

/// A bound, ready service.
pub struct Server {
    config: Config,
    registry: Arc<ArcSwap<Registry>>,
    listeners: Vec<(TcpListener, Arc<ListenerContext>)>,
    _loader: Loader,
}

/// Logs what went wrong while loading plugins or building backends.
pub fn log_issues(issues: &[BuildIssue]) {
    for issue in issues {
        match issue {
            BuildIssue::PluginRefused { file, reason } => tracing::error!(file = %file, reason = %reason, "plugin refused"),
            other => tracing::error!("{other}"),
        }
    }
}

impl Server {
    /// Loads the plugins and binds every listener. Plugin and backend problems are logged and
    /// leave the rest serving; a listener that cannot bind is an error.
    pub fn bind(config: Config) -> Result<Server, StartError> {
        let loader = Loader::new().map_err(StartError::Shadow)?;
        let (plugins, mut issues) = registry::load_dir(&loader, &config.plugin_dir);
        let (registry, build_issues) = Registry::build(&config, plugins, &HashMap::new());
        issues.extend(build_issues);
        log_issues(&issues);
        tracing::info!(plugins = registry.plugins.len(), backends = registry.backends.len(), configured = config.backends.len(), "registry ready");
        let registry = Arc::new(ArcSwap::from_pointee(registry));
        let mut listeners = Vec::new();
        for lc in config.listeners.iter().filter(|l| l.tcp) {
            let tcp = listener::bind_tcp(lc).map_err(|source| StartError::Bind { address: lc.address, source })?;
            let ctx = ListenerContext { name: Arc::from(lc.name.as_str()), registry: Arc::clone(&registry), strategy: lc.strategy };
            listeners.push((tcp, Arc::new(ctx)));
        }
        Ok(Server { config, registry, listeners, _loader: loader })
    }

    /// The addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter_map(|(l, _)| l.local_addr().ok()).collect()
    }

    /// The routing snapshot, swappable.
    pub fn registry(&self) -> &Arc<ArcSwap<Registry>> {
        &self.registry
    }

    /// Serves until `signal` completes, then drains.
    pub async fn run(self, signal: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let tracker = TaskTracker::new();
        let mut accept_tasks = Vec::new();
        for (tcp, ctx) in self.listeners {
            if let Ok(addr) = tcp.local_addr() {
                tracing::info!(listener = %ctx.name, address = %addr, transport = "tcp", "listening");
            }
            accept_tasks.push(tokio::spawn(listener::accept_loop(tcp, ctx, stop_rx.clone(), tracker.clone())));
        }
        signal.await;
        let _ = stop_tx.send(true);
        for task in accept_tasks {
            let _ = task.await;
        }
        tracker.close();
        let drain = self.config.routing.drain_timeout;
        tracing::info!(open = tracker.len(), drain_timeout_ms = drain.as_millis(), "shutting down: draining open connections");
        if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
            tracing::warn!(open = tracker.len(), "drain timeout reached; closing the remaining connections");
        } else {
            tracing::info!("all connections finished");
        }
    }
}
