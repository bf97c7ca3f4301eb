//! Listeners: binds each configured address (TCP and/or UDP) and serves it until told to stop. TCP
//! accept never waits on a client (each connection runs in its own task), and accept errors such as
//! EMFILE back off instead of spinning; a UDP socket is served by its driver ([`crate::udp::driver`]).
//! [`ListenerSet`] adds, removes and re-configures listeners at run time; stopping a listener never
//! touches the connections it accepted.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

mod backoff;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpSocket, UdpSocket};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::config::ListenerConfig;
use crate::ops::limits::{Limits, ListenerLimits};
use crate::ops::metrics::{ConnOutcome, ListenerMetrics, Metrics};
use crate::routing::registry::Registry;
use crate::tcp::connection::{self, ListenerContext};
use crate::udp::driver::{self, UdpContext, UdpStats};
use backoff::AcceptBackoff;

/// Pending-connection queue length asked of the kernel.
const BACKLOG: u32 = 4096;

/// A listening socket of either transport.
#[derive(Clone)]
enum Socket {
    Tcp(Arc<TcpListener>),
    Udp(Arc<UdpSocket>, Arc<UdpStats>),
}

impl Socket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Socket::Tcp(s) => s.local_addr(),
            Socket::Udp(s, _) => s.local_addr(),
        }
    }

    fn transport(&self) -> &'static str {
        match self {
            Socket::Tcp(_) => "tcp",
            Socket::Udp(..) => "udp",
        }
    }
}

/// A listener serving right now.
struct Running {
    config: ListenerConfig,
    socket: Socket,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    ops: ListenerOps,
}

/// A listener's limits and counters, kept across a re-configuration.
#[derive(Clone)]
struct ListenerOps {
    limits: Arc<ListenerLimits>,
    metrics: Arc<ListenerMetrics>,
}

/// Every listener of the process, keyed by configured address and transport.
pub struct ListenerSet {
    runtime: Handle,
    registry: Arc<ArcSwap<Registry>>,
    tracker: TaskTracker,
    running: BTreeMap<(SocketAddr, &'static str), Running>,
    limits: Arc<Limits>,
    metrics: Arc<Metrics>,
}

impl ListenerSet {
    /// An empty set whose connections route through `registry` and are tracked by `tracker`.
    /// `limits` and `metrics` are the process-wide ones each listener's own hang under.
    pub fn new(
        runtime: Handle,
        registry: Arc<ArcSwap<Registry>>,
        tracker: TaskTracker,
        limits: Arc<Limits>,
        metrics: Arc<Metrics>,
    ) -> ListenerSet {
        ListenerSet {
            runtime,
            registry,
            tracker,
            running: BTreeMap::new(),
            limits,
            metrics,
        }
    }

    /// The process-wide limits (a configuration reload applies `[limits]` to them).
    pub fn limits(&self) -> &Arc<Limits> {
        &self.limits
    }

    /// The process-wide counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn new_ops(&self, cfg: &ListenerConfig) -> ListenerOps {
        ListenerOps {
            limits: Arc::new(ListenerLimits::new(Arc::clone(&self.limits), &cfg.limits)),
            metrics: Arc::new(ListenerMetrics::new(Arc::clone(&self.metrics))),
        }
    }

    /// Binds `cfg` (TCP and/or UDP) and starts serving it. With both transports and port 0, UDP
    /// binds the port TCP got.
    pub fn add(&mut self, cfg: &ListenerConfig) -> io::Result<SocketAddr> {
        let _in_runtime = self.runtime.enter();
        let mut bound = cfg.address;
        if cfg.tcp {
            let socket = Socket::Tcp(Arc::new(bind_tcp(cfg)?));
            bound = socket.local_addr()?;
            let ops = self.new_ops(cfg);
            self.start(cfg.clone(), socket, ops);
        }
        if cfg.udp {
            let udp = bind_udp(bound, cfg.reuse_port).and_then(|s| {
                s.set_nonblocking(true)?;
                UdpSocket::from_std(s)
            });
            let socket = match udp {
                Ok(s) => Socket::Udp(Arc::new(s), Arc::default()),
                Err(e) => {
                    self.remove(cfg.address);
                    return Err(e);
                }
            };
            bound = socket.local_addr()?;
            let ops = self.new_ops(cfg);
            self.start(cfg.clone(), socket, ops);
        }
        Ok(bound)
    }

    fn start(&mut self, config: ListenerConfig, socket: Socket, ops: ListenerOps) {
        let name: Arc<str> = Arc::from(config.name.as_str());
        if let Ok(addr) = socket.local_addr() {
            tracing::info!(listener = %name, address = %addr, transport = socket.transport(), "listening");
        }
        let (stop, stopped) = watch::channel(false);
        let registry = Arc::clone(&self.registry);
        let task = match &socket {
            Socket::Tcp(tcp) => {
                let local = tcp.local_addr().ok().filter(|a| !a.ip().is_unspecified());
                let ctx = ListenerContext {
                    name,
                    registry,
                    strategy: config.strategy,
                    local,
                    accept_proxy_protocol: Arc::from(config.accept_proxy_protocol.clone()),
                    metrics: Arc::clone(&ops.metrics),
                };
                self.runtime.spawn(accept_loop(
                    Arc::clone(tcp),
                    Arc::new(ctx),
                    Arc::clone(&ops.limits),
                    stopped,
                    self.tracker.clone(),
                ))
            }
            Socket::Udp(udp, stats) => {
                let ctx = UdpContext {
                    name,
                    registry,
                    strategy: config.strategy,
                    stats: Arc::clone(stats),
                };
                self.runtime
                    .spawn(driver::serve(Arc::clone(udp), Arc::new(ctx), stopped))
            }
        };
        self.running.insert(
            (config.address, socket.transport()),
            Running {
                config,
                socket,
                stop,
                task,
                ops,
            },
        );
    }

    fn keys_of(&self, address: SocketAddr) -> Vec<(SocketAddr, &'static str)> {
        self.running.keys().filter(|(a, _)| *a == address).copied().collect()
    }

    /// Stops listening on `address` (every transport); open connections go on. Returns whether it
    /// was listening.
    pub fn remove(&mut self, address: SocketAddr) -> bool {
        let keys = self.keys_of(address);
        for key in &keys {
            if let Some(r) = self.running.remove(key) {
                let _ = r.stop.send(true);
            }
        }
        !keys.is_empty()
    }

    /// Applies a new name or strategy to a running listener without closing its sockets.
    pub fn reconfigure(&mut self, cfg: &ListenerConfig) {
        for key in self.keys_of(cfg.address) {
            if let Some(r) = self.running.remove(&key) {
                let _ = r.stop.send(true);
                r.task.abort();
                r.ops.limits.configure(&cfg.limits);
                self.start(cfg.clone(), r.socket, r.ops);
            }
        }
    }

    /// The bound address of each listening socket (the configured one may have port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.running
            .values()
            .filter_map(|r| r.socket.local_addr().ok())
            .collect()
    }

    /// Name, bound address and transport of each listening socket.
    pub fn bound(&self) -> Vec<(String, SocketAddr, &'static str)> {
        self.running
            .values()
            .filter_map(|r| Some((r.config.name.clone(), r.socket.local_addr().ok()?, r.socket.transport())))
            .collect()
    }

    /// Each listening socket's configured address, transport and bound address (they differ in
    /// the port when the configured one is 0).
    pub fn bound_by_config(&self) -> Vec<(SocketAddr, &'static str, SocketAddr)> {
        self.running
            .iter()
            .filter_map(|((configured, transport), r)| Some((*configured, *transport, r.socket.local_addr().ok()?)))
            .collect()
    }

    /// Counters of each UDP listener, with its name and bound address.
    pub fn udp_stats(&self) -> Vec<(String, SocketAddr, Arc<UdpStats>)> {
        self.running
            .values()
            .filter_map(|r| match &r.socket {
                Socket::Udp(s, stats) => Some((r.config.name.clone(), s.local_addr().ok()?, Arc::clone(stats))),
                Socket::Tcp(_) => None,
            })
            .collect()
    }

    /// Name, limits and counters of each TCP listener.
    pub fn tcp_ops(&self) -> Vec<(String, Arc<ListenerLimits>, Arc<ListenerMetrics>)> {
        self.running
            .values()
            .filter(|r| matches!(r.socket, Socket::Tcp(_)))
            .map(|r| {
                (
                    r.config.name.clone(),
                    Arc::clone(&r.ops.limits),
                    Arc::clone(&r.ops.metrics),
                )
            })
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

/// Binds a TCP listener for `cfg` (SO_REUSEADDR, so a restart does not wait for TIME_WAIT).
/// TCP_NODELAY is set on the listening socket: accepted sockets inherit it on Linux, which saves a
/// system call per connection (relayed bytes are forwarded as they come, never held for batching).
pub(crate) fn bind_tcp(cfg: &ListenerConfig) -> io::Result<TcpListener> {
    let socket = if cfg.address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(cfg.reuse_port)?;
    socket.set_nodelay(true)?;
    socket.bind(cfg.address)?;
    socket.listen(BACKLOG)
}

/// Binds a UDP socket, with SO_REUSEPORT when asked (set before the bind, as the kernel needs).
fn bind_udp(address: SocketAddr, reuse_port: bool) -> io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.set_reuse_port(reuse_port)?;
    socket.bind(&address.into())?;
    Ok(socket.into())
}

/// Accepts connections until `shutdown` turns true; each connection is spawned on `tracker`.
/// A connection slot is taken before each accept (so a full `max_connections` stops accepting);
/// the per-IP and preview limits are checked after it. Accept errors back off (see
/// [`AcceptBackoff`]), logged once per episode.
pub(crate) async fn accept_loop(
    listener: Arc<TcpListener>,
    ctx: Arc<ListenerContext>,
    limits: Arc<ListenerLimits>,
    mut shutdown: watch::Receiver<bool>,
    tracker: TaskTracker,
) {
    let mut backoff = AcceptBackoff::default();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            _ = limits.wait_for_room(&ctx.name) => {}
        };
        let accepted = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let slot = match limits.reserve() {
                    Ok(slot) => slot,
                    Err(_) => tokio::select! {
                        biased;
                        _ = shutdown.wait_for(|stop| *stop) => break,
                        s = limits.wait_for_slot(&ctx.name) => s,
                    },
                };
                if let Some((errors, lasted)) = backoff.success(std::time::Instant::now()) {
                    tracing::info!(listener = %ctx.name, errors, ms = lasted.as_millis(), "accepting again after accept errors");
                }
                match limits.admit(slot, peer.ip()) {
                    Ok(admitted) => {
                        tracker.spawn(connection::handle(stream, peer, Arc::clone(&ctx), admitted));
                    }
                    Err(kind) => {
                        // Closed at once, nothing read: a FIN for a client that has sent nothing yet.
                        drop(stream);
                        limits.refused(kind, &ctx.name, peer);
                        ctx.metrics.unrouted(ConnOutcome::RefusedLimit);
                    }
                }
            }
            Err(e) if is_per_connection(&e) => tracing::debug!(error = %e, "accept: connection aborted"),
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS/ENOMEM: out of a resource; wait for connections to end.
                ctx.metrics
                    .accept_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let step = backoff.error(std::time::Instant::now());
                if step.first {
                    tracing::warn!(listener = %ctx.name, error = %e, "accept failed; backing off (growing delay up to 1 s) until it succeeds");
                }
                tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    _ = tokio::time::sleep(step.delay) => {}
                }
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
