//! TCP listeners: bind each configured address and accept until told to stop. Accept never waits on
//! a client (each connection runs in its own task), and accept errors such as EMFILE back off instead
//! of spinning. [`ListenerSet`] adds, removes and re-configures listeners at run time; stopping a
//! listener never touches the connections it accepted.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpSocket};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::config::ListenerConfig;
use crate::connection::{self, ListenerContext};
use crate::registry::Registry;

/// A listener accepting right now.
struct Running {
    config: ListenerConfig,
    socket: Arc<TcpListener>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Every TCP listener of the process, keyed by address.
pub struct ListenerSet {
    runtime: Handle,
    registry: Arc<ArcSwap<Registry>>,
    tracker: TaskTracker,
    running: BTreeMap<SocketAddr, Running>,
}

impl ListenerSet {
    /// An empty set whose connections route through `registry` and are tracked by `tracker`.
    pub fn new(runtime: Handle, registry: Arc<ArcSwap<Registry>>, tracker: TaskTracker) -> ListenerSet {
        ListenerSet {
            runtime,
            registry,
            tracker,
            running: BTreeMap::new(),
        }
    }

    /// Binds `cfg` and starts accepting on it.
    pub fn add(&mut self, cfg: &ListenerConfig) -> io::Result<SocketAddr> {
        let socket = {
            let _in_runtime = self.runtime.enter();
            Arc::new(bind_tcp(cfg)?)
        };
        let bound = socket.local_addr()?;
        tracing::info!(listener = %cfg.name, address = %bound, transport = "tcp", "listening");
        self.start(cfg.clone(), socket);
        Ok(bound)
    }

    fn start(&mut self, config: ListenerConfig, socket: Arc<TcpListener>) {
        let local = socket.local_addr().ok().filter(|a| !a.ip().is_unspecified());
        let ctx = Arc::new(ListenerContext {
            name: Arc::from(config.name.as_str()),
            registry: Arc::clone(&self.registry),
            strategy: config.strategy,
            local,
        });
        let (stop, stopped) = watch::channel(false);
        let task = self
            .runtime
            .spawn(accept_loop(Arc::clone(&socket), ctx, stopped, self.tracker.clone()));
        self.running.insert(
            config.address,
            Running {
                config,
                socket,
                stop,
                task,
            },
        );
    }

    /// Stops accepting on `address`; its open connections go on. Returns whether it was listening.
    pub fn remove(&mut self, address: SocketAddr) -> bool {
        match self.running.remove(&address) {
            Some(r) => {
                let _ = r.stop.send(true);
                true
            }
            None => false,
        }
    }

    /// Applies a new name or strategy to a running listener without closing its socket.
    pub fn reconfigure(&mut self, cfg: &ListenerConfig) {
        if let Some(r) = self.running.remove(&cfg.address) {
            let _ = r.stop.send(true);
            r.task.abort();
            self.start(cfg.clone(), r.socket);
        }
    }

    /// The bound address of each listener (the configured one may have port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.running
            .values()
            .filter_map(|r| r.socket.local_addr().ok())
            .collect()
    }

    /// Name and bound address of each running listener.
    pub fn bound(&self) -> Vec<(String, SocketAddr)> {
        self.running
            .values()
            .filter_map(|r| Some((r.config.name.clone(), r.socket.local_addr().ok()?)))
            .collect()
    }

    /// Tells every listener to stop; await the returned tasks to know they have.
    pub fn stop_all(&mut self) -> Vec<JoinHandle<()>> {
        let running = std::mem::take(&mut self.running);
        running
            .into_values()
            .map(|r| {
                let _ = r.stop.send(true);
                r.task
            })
            .collect()
    }
}

/// Pending-connection queue length asked of the kernel.
const BACKLOG: u32 = 4096;

/// Binds a TCP listener for `cfg` (SO_REUSEADDR, so a restart does not wait for TIME_WAIT).
/// TCP_NODELAY is set on the listening socket: accepted sockets inherit it on Linux, which saves a
/// system call per connection (relayed bytes are forwarded as they come, never held for batching).
pub fn bind_tcp(cfg: &ListenerConfig) -> io::Result<TcpListener> {
    let socket = if cfg.address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(cfg.address)?;
    socket.listen(BACKLOG)
}

/// Accepts connections until `shutdown` turns true; each connection is spawned on `tracker`.
pub async fn accept_loop(
    listener: Arc<TcpListener>,
    ctx: Arc<ListenerContext>,
    mut shutdown: watch::Receiver<bool>,
    tracker: TaskTracker,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                tracker.spawn(connection::handle(stream, peer, Arc::clone(&ctx)));
            }
            Err(e) if is_per_connection(&e) => tracing::debug!(error = %e, "accept: connection aborted"),
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS: out of a resource; wait for connections to end.
                tracing::warn!(listener = %ctx.name, error = %e, backoff_ms = backoff.as_millis(), "accept failed; backing off");
                tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    tracing::info!(listener = %ctx.name, "stopped accepting");
}

fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    )
}
