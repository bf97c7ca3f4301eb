//! The service: loads plugins and builds the first registry, binds the listeners (or takes inherited
//! sockets), starts the reloader (file watching, SIGHUP), the admin endpoint and the upgrade trigger
//! (SIGUSR2), runs until the shutdown signal or until a new process has taken over, then stops
//! accepting and drains open connections (and, after a takeover, UDP flows) up to the drain timeout.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ListenerConfig};
use crate::control::reload::Reloader;
use crate::control::upgrade::trigger::AdminSocket;
use crate::control::watcher::Signal;
use crate::ops::admin;
use crate::ops::status::StatusSource;
use crate::plugins::Loader;
use crate::portmap::driver::Bound;
use crate::portmap::{PortMapper, Transport};
use crate::routing::registry::Registry;
use crate::tcp::listener::ListenerSet;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The shadow folder for plugin copies could not be made.
    #[error("cannot create the plugin shadow folder: {0}")]
    Shadow(io::Error),
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {error}")]
    Bind {
        /// The address.
        address: crate::config::listen::ListenAddr,
        /// Why: part of the message, not a `source`, so the binary's `{:#}` does not print it twice.
        error: io::Error,
    },
    /// The access log file could not be opened.
    #[error("{0}")]
    AccessLog(io::Error),
}

/// A bound, ready service.
pub struct Server {
    drain_timeout: Duration,
    tracker: TaskTracker,
    listeners: Arc<Mutex<ListenerSet>>,
    reloader: Reloader,
    signals: (mpsc::Sender<Signal>, mpsc::Receiver<Signal>),
    /// Installed in [`Server::bind`], before `READY=1`: until then SIGHUP would kill the process.
    sighup: std::io::Result<tokio::signal::unix::Signal>,
    admin: Option<TcpListener>,
    /// The admin endpoint's configured address (offered under it at an upgrade).
    admin_addr: Option<SocketAddr>,
    /// SIGUSR2, subscribed before any listener is bound.
    usr2: Option<tokio::signal::unix::Signal>,
    status: StatusSource,
    portmap: PortMapper,
}

/// How long removing the mappings from the gateway may delay the stop.
const UNMAP_TIMEOUT: Duration = Duration::from_secs(5);

/// The sockets of `configs` that ask for a public port, with the ports they are bound to (a
/// `listen = false` listener: its configured address).
pub(crate) fn mapped_sockets(configs: &[ListenerConfig], set: &ListenerSet) -> Vec<Bound> {
    let bound = set.bound_by_config();
    let mut out = Vec::new();
    for lc in configs {
        let Some(public) = lc.public_port else { continue };
        for (on, transport) in [(lc.tcp, Transport::Tcp), (lc.udp, Transport::Udp)] {
            let address = if lc.listen {
                bound
                    .iter()
                    .find(|(configured, t, _)| *configured == lc.address && *t == transport.label())
                    .and_then(|(_, _, at)| at.ip())
            } else {
                lc.address.ip()
            };
            if let (true, Some(address)) = (on, address) {
                out.push(Bound {
                    listener: lc.name.clone(),
                    address,
                    transport,
                    public,
                });
            }
        }
    }
    out
}

impl Server {
    /// Loads the plugins and binds every listener (call inside the runtime). Plugin and backend
    /// problems are logged and leave the rest serving; a listener that cannot bind is an error.
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        let usr2 = crate::control::upgrade::trigger::sigusr2();
        let loader = Loader::new().map_err(StartError::Shadow)?;
        let registry = Arc::new(ArcSwap::from_pointee(Registry::empty(&config)));
        let tracker = TaskTracker::new();
        let limits = Arc::new(crate::ops::limits::Limits::new(&config.limits));
        let metrics = Arc::new(crate::ops::metrics::Metrics::default());
        let listeners = Arc::new(Mutex::new(ListenerSet::new(
            Handle::current(),
            Arc::clone(&registry),
            tracker.clone(),
            Arc::clone(&limits),
            Arc::clone(&metrics),
        )));
        crate::ops::access_log::configure(config.access_log.as_ref()).map_err(StartError::AccessLog)?;
        let signals = mpsc::channel();
        let portmap = PortMapper::start(config.port_mapping.clone());
        let sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        let (drain_timeout, admin_addr, listener_configs) =
            (config.routing.drain_timeout, config.admin, config.listeners.clone());
        let configured: Vec<String> = config.backends.iter().map(|b| b.name.clone()).collect();
        let plugin_dir = config.plugin_dir.clone();
        let reloader = Reloader::start(
            config,
            loader,
            Arc::clone(&listeners),
            Arc::clone(&registry),
            signals.0.clone(),
            portmap.clone(),
        );
        {
            let mut set = lock(&listeners);
            for lc in listener_configs.iter().filter(|l| l.listen) {
                set.add(lc).map_err(|error| StartError::Bind {
                    address: lc.address.clone(),
                    error,
                })?;
            }
            portmap.set_bound(&mapped_sockets(&listener_configs, &set));
        }
        let admin = match admin_addr {
            Some(address) => Some(match crate::control::upgrade::inherit::take_admin(address) {
                Some(fd) => adopt_admin(fd).map_err(|error| StartError::Bind {
                    address: address.into(),
                    error,
                })?,
                None => TcpListener::bind(address).await.map_err(|error| StartError::Bind {
                    address: address.into(),
                    error,
                })?,
            }),
            None => None,
        };
        crate::control::upgrade::inherit::close_unused();
        if let Some(a) = admin.as_ref().and_then(|a| a.local_addr().ok()) {
            tracing::info!(address = %a, "admin endpoint listening: GET /metrics, /status, /status.txt, /status.html");
        }
        log_summary(&lock(&listeners).bound(), &registry.load(), &configured, &plugin_dir);
        let status = StatusSource {
            registry,
            listeners: Arc::clone(&listeners),
            plugins: reloader.plugin_gauges(),
            started: Instant::now(),
            metrics,
            limits,
            portmap: Some(portmap.clone()),
        };
        Ok(Server {
            drain_timeout,
            tracker,
            listeners,
            reloader,
            signals,
            sighup,
            admin,
            admin_addr,
            usr2,
            status,
            portmap,
        })
    }

    /// The addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> Vec<crate::config::listen::ListenAddr> {
        lock(&self.listeners).local_addrs()
    }

    /// The folder the plugin loader writes its shadow copies to (it must stay writable after a
    /// privilege drop).
    pub fn shadow_dir(&self) -> &std::path::Path {
        self.reloader.shadow_dir()
    }

    /// A handle for reading the status while the server runs.
    pub fn status(&self) -> StatusSource {
        self.status.clone()
    }

    /// Serves until `shutdown` completes, then drains.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            drain_timeout,
            tracker,
            listeners,
            reloader,
            signals,
            sighup,
            admin,
            admin_addr,
            usr2,
            status,
            portmap,
        } = self;
        let (signal_tx, signal_rx) = signals;
        let reload_thread = std::thread::Builder::new()
            .name("pmmux-reload".into())
            .spawn(move || reloader.run(signal_rx));
        if let Err(e) = &reload_thread {
            tracing::error!(error = %e, "cannot start the reload thread; plugins and configuration stay as loaded");
        }
        let hup = tokio::spawn(forward_sighup(sighup, signal_tx.clone()));
        let usr1 = tokio::spawn(reopen_on_sigusr1());
        let health = tokio::spawn(crate::routing::health::checker::supervise(Arc::clone(&status.registry)));
        let (admin_stop, admin_stopped) = watch::channel(false);
        let admin_socket = admin.as_ref().and_then(|l| {
            Some(AdminSocket {
                address: admin_addr?,
                fd: l.as_raw_fd(),
            })
        });
        let admin_task = admin.map(|l| tokio::spawn(admin::serve(l, status, admin_stopped)));
        let mut upgrade = tokio::spawn(crate::control::upgrade::trigger::on_sigusr2(
            usr2,
            Arc::clone(&listeners),
            admin_socket,
        ));

        let watchdog = tokio::spawn(crate::ops::systemd::watchdog());
        let mut handed = tokio::select! {
            _ = shutdown => None,
            h = &mut upgrade => h.ok(),
        };
        upgrade.abort();
        match &handed {
            Some(h) => crate::ops::systemd::main_pid(h.new_pid),
            None => crate::ops::systemd::stopping(),
        }
        watchdog.abort();
        let _ = signal_tx.send(Signal::Shutdown);
        hup.abort();
        usr1.abort();
        health.abort();
        let _ = admin_stop.send(true);
        let (accept_tasks, udp_tasks) = match &mut handed {
            Some(h) => lock(&listeners).hand_over(std::mem::take(&mut h.tunnels)),
            None => (lock(&listeners).stop_all(), Vec::new()),
        };
        for task in accept_tasks {
            let _ = task.await;
        }
        // The gateway stops forwarding before the drain: new clients get a refusal from it, not
        // from a closed socket here.
        portmap.shutdown(UNMAP_TIMEOUT).await;
        if let Some(t) = admin_task {
            let _ = t.await;
        }
        // Every listening socket of this process is closed now; they live on in the new one.
        if let Some(h) = &handed {
            h.confirm();
        }
        tracker.close();
        tracing::info!(
            open = tracker.len(),
            udp_listeners_with_flows = udp_tasks.len(),
            drain_timeout_ms = drain_timeout.as_millis(),
            "shutting down: draining open connections"
        );
        let (udp_stops, mut udp_tasks): (Vec<_>, Vec<_>) = udp_tasks.into_iter().unzip();
        let drained = async {
            tracker.wait().await;
            for task in &mut udp_tasks {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(drain_timeout, drained).await.is_err() {
            tracing::warn!(
                open = tracker.len(),
                "drain timeout reached; closing the remaining connections"
            );
            // UDP drivers end first, closing their tunnels: the new process takes their clients
            // at once instead of passing datagrams to a process about to exit.
            for stop in &udp_stops {
                let _ = stop.send(true);
            }
            for task in udp_tasks.iter_mut().filter(|t| !t.is_finished()) {
                let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
            }
        } else {
            tracing::info!("all connections finished");
        }
        if let Some(h) = &handed {
            tracing::info!(
                new_pid = h.new_pid,
                "upgrade: done; PID {} serves, this process exits",
                h.new_pid
            );
        }
        if let Ok(thread) = reload_thread {
            // The reloader finishes what it is doing (a plugin load takes milliseconds), then stops
            // and removes its shadow folder.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Adopts an inherited admin listening socket.
fn adopt_admin(fd: std::os::fd::OwnedFd) -> io::Result<TcpListener> {
    let listener = std::net::TcpListener::from(fd);
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// The one start-up line: where pmmux listens, the plugins it loaded, and how many of the
/// configured backends are in routing (each one that is not has had its own line saying why).
fn log_summary(
    bound: &[(String, crate::config::listen::ListenAddr, &'static str)],
    registry: &Registry,
    configured: &[String],
    plugin_dir: &Path,
) {
    let listening: Vec<String> = bound
        .iter()
        .map(|(_, a, t)| match a {
            crate::config::listen::ListenAddr::Unix(_) => a.to_string(),
            crate::config::listen::ListenAddr::Ip(_) => format!("{a}/{t}"),
        })
        .collect();
    let routed: Vec<&str> = registry.backends.iter().map(|b| b.name()).collect();
    let missing: Vec<&str> = configured
        .iter()
        .map(String::as_str)
        .filter(|n| !routed.contains(n))
        .collect();
    let plugins = match registry.plugins.len() {
        1 => "1 plugin".to_owned(),
        n => format!("{n} plugins"),
    };
    let summary = format!(
        "pmmux started: listening on {}; {plugins} from {}; {} of {} backends in routing",
        listening.join(", "),
        plugin_dir.display(),
        routed.len(),
        configured.len()
    );
    if configured.is_empty() {
        tracing::warn!("{summary}: no [[backend]] is configured, so every connection is closed");
    } else if missing.is_empty() {
        tracing::info!("{summary} ({})", routed.join(", "));
    } else if routed.is_empty() {
        tracing::warn!("{summary}: every connection is closed until a backend is; why each one is out is logged above");
    } else {
        tracing::warn!(
            "{summary} ({}); out of routing: {} (why is logged above)",
            routed.join(", "),
            missing.join(", ")
        );
    }
}

fn lock(listeners: &Mutex<ListenerSet>) -> MutexGuard<'_, ListenerSet> {
    listeners.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// SIGUSR1 reopens the access log (logrotate moved it away).
async fn reopen_on_sigusr1() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut usr1 = match signal(SignalKind::user_defined1()) {
        Ok(s) => s,
        Err(e) => {
            return tracing::warn!(error = %e, "cannot install the SIGUSR1 handler; the access log is not reopened on SIGUSR1")
        }
    };
    while usr1.recv().await.is_some() {
        tracing::info!("SIGUSR1: reopening the access log");
        crate::ops::access_log::reopen();
    }
}

/// SIGHUP reloads the configuration.
async fn forward_sighup(hup: std::io::Result<tokio::signal::unix::Signal>, signals: mpsc::Sender<Signal>) {
    let mut hup = match hup {
        Ok(s) => s,
        Err(e) => {
            return tracing::warn!(error = %e, "cannot install the SIGHUP handler; config reload on SIGHUP is off")
        }
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the configuration");
        if signals.send(Signal::Reload).is_err() {
            return;
        }
    }
}
