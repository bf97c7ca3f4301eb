//! Listeners: binds each configured address (TCP and/or UDP) and serves it until told to stop. TCP
//! accept never waits on a client (each connection runs in its own task), and accept errors such as
//! EMFILE back off instead of spinning; a UDP socket is served by its driver ([`crate::udp::driver`]).
//! [`ListenerSet`] adds, removes and re-configures listeners at run time; stopping a listener never
//! touches the connections it accepted.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

mod backoff;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpSocket, UdpSocket, UnixListener};
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::config::listen::ListenAddr;
use crate::config::ListenerConfig;
use crate::control::upgrade::inherit;
use crate::control::upgrade::parent::Offer;
use crate::control::upgrade::tunnel::Tunnel;
use crate::control::upgrade::Kind;
use crate::ops::limits::{Limits, ListenerLimits};
use crate::ops::metrics::{ConnOutcome, ListenerMetrics, Metrics};
use crate::routing::registry::Registry;
use crate::tcp::connection::{self, ListenerContext};
use crate::tcp::stream::{Client, Stream, UNIX_PLACEHOLDER};
use crate::tcp::unix::SocketFile;
use crate::udp::driver::{self, UdpContext, UdpHandover, UdpStats};
use backoff::AcceptBackoff;

/// Pending-connection queue length asked of the kernel.
const BACKLOG: u32 = 4096;

/// A listening socket of either transport.
#[derive(Clone)]
enum Socket {
    Tcp(Arc<TcpListener>),
    Udp(Arc<UdpSocket>, Arc<UdpStats>),
    /// A Unix stream socket (transport "tcp": it carries what a TCP listener does), with its file.
    Unix(Arc<UnixListener>, Arc<SocketFile>),
}

impl Socket {
    fn local_addr(&self) -> io::Result<ListenAddr> {
        match self {
            Socket::Tcp(s) => s.local_addr().map(ListenAddr::Ip),
            Socket::Udp(s, _) => s.local_addr().map(ListenAddr::Ip),
            Socket::Unix(s, _) => s
                .local_addr()?
                .as_pathname()
                .map(|p| ListenAddr::Unix(p.to_owned()))
                .ok_or_else(|| io::Error::other("a Unix listener without a path")),
        }
    }

    fn transport(&self) -> &'static str {
        match self {
            Socket::Tcp(_) | Socket::Unix(..) => "tcp",
            Socket::Udp(..) => "udp",
        }
    }

    /// The socket as connections are accepted from it (`None` for UDP).
    fn acceptor(&self) -> Option<Acceptor> {
        match self {
            Socket::Tcp(s) => Some(Acceptor::Tcp(Arc::clone(s))),
            Socket::Unix(s, _) => Some(Acceptor::Unix(Arc::clone(s))),
            Socket::Udp(..) => None,
        }
    }
}

/// A socket connections are accepted from.
pub(crate) enum Acceptor {
    /// TCP.
    Tcp(Arc<TcpListener>),
    /// A Unix stream socket.
    Unix(Arc<UnixListener>),
}

impl Acceptor {
    async fn accept(&self) -> io::Result<(Stream, Client)> {
        match self {
            Acceptor::Tcp(l) => l.accept().await.map(|(s, peer)| (Stream::Tcp(s), Client::Ip(peer))),
            Acceptor::Unix(l) => l.accept().await.map(|(s, peer)| (Stream::Unix(s), Client::unix(&peer))),
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
    /// UDP: hands the driver its flow tunnel when an upgraded process takes over.
    to_new: Option<oneshot::Sender<OwnedFd>>,
}

/// A listener's limits and counters, kept across a re-configuration.
#[derive(Clone)]
struct ListenerOps {
    limits: Arc<ListenerLimits>,
    metrics: Arc<ListenerMetrics>,
    /// Turns taken by `round-robin` / `weighted` / `random` (kept across reconfiguration).
    turns: Arc<std::sync::atomic::AtomicU64>,
}

/// Every listener of the process, keyed by configured address and transport.
pub struct ListenerSet {
    runtime: Handle,
    registry: Arc<ArcSwap<Registry>>,
    tracker: TaskTracker,
    running: BTreeMap<(ListenAddr, &'static str), Running>,
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
            turns: Arc::default(),
        }
    }

    /// Binds `cfg` (TCP and/or UDP) and starts serving it. With both transports and port 0, UDP
    /// binds the port TCP got. A socket inherited for the configured address (from the process
    /// this one upgrades, or from systemd: [`crate::control::upgrade::inherit`]) is used instead of binding.
    pub fn add(&mut self, cfg: &ListenerConfig) -> io::Result<ListenAddr> {
        let _in_runtime = self.runtime.enter();
        let mut bound = match &cfg.address {
            ListenAddr::Ip(a) => *a,
            ListenAddr::Unix(path) => return self.add_unix(cfg, path),
        };
        if cfg.tcp {
            let listener = match inherit::take_tcp(&cfg.address) {
                Some(fd) => adopt_tcp(fd)?,
                None => bind_tcp(cfg)?,
            };
            let socket = Socket::Tcp(Arc::new(listener));
            bound = socket.local_addr()?.ip().unwrap_or(bound);
            let ops = self.new_ops(cfg);
            self.start(cfg.clone(), socket, ops, UdpHandover::default());
        }
        if cfg.udp {
            let mut handover = UdpHandover::default();
            let udp = match inherit::take_udp(&cfg.address) {
                Some((fd, tunnel)) => tunnel.map(Tunnel::new).transpose().map(|t| {
                    handover.from_old = t;
                    std::net::UdpSocket::from(fd)
                }),
                None => bind_udp(bound, cfg.reuse_port),
            }
            .and_then(|s| {
                s.set_nonblocking(true)?;
                UdpSocket::from_std(s)
            });
            let socket = match udp {
                Ok(s) => Socket::Udp(Arc::new(s), Arc::default()),
                Err(e) => {
                    self.remove(&cfg.address);
                    return Err(e);
                }
            };
            bound = socket.local_addr()?.ip().unwrap_or(bound);
            let ops = self.new_ops(cfg);
            self.start(cfg.clone(), socket, ops, handover);
        }
        Ok(ListenAddr::Ip(bound))
    }

    /// [`ListenerSet::add`] for a Unix listener: the socket handed over by the process this one
    /// upgrades (whose file this process removes when it closes), or one systemd made (left to
    /// systemd), else a new one bound at `path` ([`crate::tcp::unix::bind`]).
    fn add_unix(&mut self, cfg: &ListenerConfig, path: &std::path::Path) -> io::Result<ListenAddr> {
        let (listener, file) = match inherit::take_tcp_from(&cfg.address) {
            Some((fd, source)) => {
                let std = std::os::unix::net::UnixListener::from(fd);
                std.set_nonblocking(true)?;
                crate::tcp::unix::apply(path, &cfg.unix)?;
                (std, SocketFile::at(path, source == inherit::Source::Upgrade))
            }
            None => crate::tcp::unix::bind(path, &cfg.unix, BACKLOG as i32)?,
        };
        let socket = Socket::Unix(Arc::new(UnixListener::from_std(listener)?), Arc::new(file));
        let ops = self.new_ops(cfg);
        self.start(cfg.clone(), socket, ops, UdpHandover::default());
        Ok(cfg.address.clone())
    }

    fn start(&mut self, config: ListenerConfig, socket: Socket, ops: ListenerOps, mut handover: UdpHandover) {
        let name: Arc<str> = Arc::from(config.name.as_str());
        if let Ok(addr) = socket.local_addr() {
            tracing::info!(listener = %name, address = %addr, transport = socket.transport(), "listening");
        }
        let (stop, stopped) = watch::channel(false);
        let registry = Arc::clone(&self.registry);
        let mut to_new = None;
        let task = match (&socket, socket.acceptor()) {
            (_, Some(acceptor)) => {
                if let Acceptor::Tcp(tcp) = &acceptor {
                    // Applied at every (re)start: a reload that sets or clears `on_timeout` turns it.
                    if let Err(e) = set_defer_accept(tcp, config.defer_accept) {
                        tracing::warn!(listener = %config.name, error = %e, "cannot set TCP_DEFER_ACCEPT; connections are accepted before their first bytes");
                    }
                }
                let local = match &acceptor {
                    Acceptor::Tcp(tcp) => tcp.local_addr().ok().filter(|a| !a.ip().is_unspecified()),
                    Acceptor::Unix(_) => Some(UNIX_PLACEHOLDER),
                };
                let ctx = ListenerContext {
                    name,
                    registry,
                    strategy: config.strategy,
                    turns: Arc::clone(&ops.turns),
                    local,
                    accept_proxy_protocol: Arc::from(config.accept_proxy_protocol.clone()),
                    trusted_peers: Arc::from(config.unix.trusted.clone()),
                    metrics: Arc::clone(&ops.metrics),
                };
                self.runtime.spawn(accept_loop(
                    acceptor,
                    Arc::new(ctx),
                    Arc::clone(&ops.limits),
                    stopped,
                    self.tracker.clone(),
                ))
            }
            (Socket::Udp(udp, stats), _) => {
                let ctx = UdpContext {
                    name,
                    registry,
                    strategy: config.strategy,
                    turns: Arc::clone(&ops.turns),
                    stats: Arc::clone(stats),
                };
                let (tx, rx) = oneshot::channel();
                handover.to_new = Some(rx);
                to_new = Some(tx);
                self.runtime
                    .spawn(driver::serve(Arc::clone(udp), Arc::new(ctx), stopped, handover))
            }
            (Socket::Tcp(_) | Socket::Unix(..), None) => unreachable!("stream sockets have an acceptor"),
        };
        self.running.insert(
            (config.address.clone(), socket.transport()),
            Running {
                config,
                socket,
                stop,
                task,
                ops,
                to_new,
            },
        );
    }

    fn keys_of(&self, address: &ListenAddr) -> Vec<(ListenAddr, &'static str)> {
        self.running.keys().filter(|(a, _)| a == address).cloned().collect()
    }

    /// Stops listening on `address` (every transport; a Unix socket's file is removed); open
    /// connections go on. Returns whether it was listening.
    pub fn remove(&mut self, address: &ListenAddr) -> bool {
        let keys = self.keys_of(address);
        for key in &keys {
            if let Some(r) = self.running.remove(key) {
                let _ = r.stop.send(true);
                r.socket.remove_file();
            }
        }
        !keys.is_empty()
    }

    /// Applies a new name or strategy to a running listener without closing its sockets.
    pub fn reconfigure(&mut self, cfg: &ListenerConfig) {
        for key in self.keys_of(&cfg.address) {
            if let Some(r) = self.running.remove(&key) {
                let _ = r.stop.send(true);
                r.task.abort();
                r.ops.limits.configure(&cfg.limits);
                if let Some(path) = cfg.address.unix() {
                    if let Err(e) = crate::tcp::unix::apply(path, &cfg.unix) {
                        tracing::error!(listener = %cfg.name, address = %cfg.address, error = %e, "socket file mode or owner not changed");
                    }
                }
                self.start(cfg.clone(), r.socket, r.ops, UdpHandover::default());
            }
        }
    }

    /// The bound address of each listening socket (the configured one may have port 0).
    pub fn local_addrs(&self) -> Vec<ListenAddr> {
        self.running
            .values()
            .filter_map(|r| r.socket.local_addr().ok())
            .collect()
    }

    /// Name, bound address and transport of each listening socket.
    pub fn bound(&self) -> Vec<(String, ListenAddr, &'static str)> {
        self.running
            .values()
            .filter_map(|r| Some((r.config.name.clone(), r.socket.local_addr().ok()?, r.socket.transport())))
            .collect()
    }

    /// Each listening socket's configured address, transport and bound address (they differ in
    /// the port when the configured one is 0).
    pub fn bound_by_config(&self) -> Vec<(ListenAddr, &'static str, ListenAddr)> {
        self.running
            .iter()
            .filter_map(|((configured, transport), r)| {
                Some((configured.clone(), *transport, r.socket.local_addr().ok()?))
            })
            .collect()
    }

    /// Counters of each UDP listener, with its name and bound address.
    pub fn udp_stats(&self) -> Vec<(String, SocketAddr, Arc<UdpStats>)> {
        self.running
            .values()
            .filter_map(|r| match &r.socket {
                Socket::Udp(s, stats) => Some((r.config.name.clone(), s.local_addr().ok()?, Arc::clone(stats))),
                Socket::Tcp(_) | Socket::Unix(..) => None,
            })
            .collect()
    }

    /// Name, limits and counters of each TCP listener.
    pub fn tcp_ops(&self) -> Vec<(String, Arc<ListenerLimits>, Arc<ListenerMetrics>)> {
        self.running
            .values()
            .filter(|r| matches!(r.socket, Socket::Tcp(_) | Socket::Unix(..)))
            .map(|r| {
                (
                    r.config.name.clone(),
                    Arc::clone(&r.ops.limits),
                    Arc::clone(&r.ops.metrics),
                )
            })
            .collect()
    }

    /// Tells every listener to stop (and removes the files of Unix sockets this process made);
    /// await the returned tasks to know they have.
    pub fn stop_all(&mut self) -> Vec<JoinHandle<()>> {
        let running = std::mem::take(&mut self.running);
        running
            .into_values()
            .map(|r| {
                let _ = r.stop.send(true);
                r.socket.remove_file();
                r.task
            })
            .collect()
    }

    /// Duplicates of every listening socket, with the configured address, for a new process.
    pub fn offers(&self) -> io::Result<Vec<Offer>> {
        self.running
            .values()
            .map(|r| {
                let (kind, sock) = match &r.socket {
                    Socket::Tcp(s) => (Kind::Tcp, socket2::SockRef::from(&**s).try_clone()?),
                    Socket::Udp(s, _) => (Kind::Udp, socket2::SockRef::from(&**s).try_clone()?),
                    Socket::Unix(s, _) => (Kind::Tcp, socket2::SockRef::from(&**s).try_clone()?),
                };
                Ok(Offer {
                    kind,
                    address: r.config.address.clone(),
                    fd: sock.into(),
                })
            })
            .collect()
    }

    /// A new process has taken over: TCP and Unix listeners stop accepting (their sockets, and a
    /// Unix socket's file, live on in the new process) and UDP drivers get their flow tunnels (`tunnels`, by configured address) and
    /// serve their remaining flows through them. Returns the TCP accept tasks, and each UDP
    /// driver's task with its stop switch (for the drain timeout).
    pub fn hand_over(
        &mut self,
        mut tunnels: std::collections::HashMap<ListenAddr, OwnedFd>,
    ) -> (Vec<JoinHandle<()>>, Vec<DrainingUdp>) {
        let (mut tcp, mut udp) = (Vec::new(), Vec::new());
        for (_, r) in std::mem::take(&mut self.running) {
            match (r.to_new, tunnels.remove(&r.config.address)) {
                (Some(to_new), Some(tunnel)) if matches!(r.socket, Socket::Udp(..)) => {
                    if to_new.send(tunnel).is_err() {
                        let _ = r.stop.send(true);
                    }
                    udp.push((r.stop, r.task));
                }
                _ => {
                    let _ = r.stop.send(true);
                    tcp.push(r.task);
                }
            }
        }
        (tcp, udp)
    }
}

impl Socket {
    /// Removes a Unix socket's file (when this process owns it); nothing for other sockets.
    fn remove_file(&self) {
        if let Socket::Unix(_, file) = self {
            file.remove();
        }
    }
}

/// A UDP driver serving its last flows after a takeover, with the switch that stops it.
pub type DrainingUdp = (watch::Sender<bool>, JoinHandle<()>);

/// Adopts an inherited listening socket (non-blocking; TCP_NODELAY as [`bind_tcp`] sets it).
fn adopt_tcp(fd: OwnedFd) -> io::Result<TcpListener> {
    let socket = socket2::Socket::from(fd);
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    TcpListener::from_std(socket.into())
}

/// Binds a TCP listener for `cfg` (SO_REUSEADDR, so a restart does not wait for TIME_WAIT).
/// TCP_NODELAY is set on the listening socket: accepted sockets inherit it on Linux, which saves a
/// system call per connection (relayed bytes are forwarded as they come, never held for batching).
/// TCP keepalive ([`crate::tcp::relay::keepalive`]) is set there too, and inherited the same way.
pub(crate) fn bind_tcp(cfg: &ListenerConfig) -> io::Result<TcpListener> {
    let address = cfg.address.ip().ok_or_else(|| io::Error::other("not an IP listener"))?;
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(cfg.reuse_port)?;
    socket.set_nodelay(true)?;
    socket2::SockRef::from(&socket).set_tcp_keepalive(&crate::tcp::relay::keepalive())?;
    socket.bind(address)?;
    socket.listen(BACKLOG)
}

/// How long the kernel holds a connection whose client has not sent yet (TCP_DEFER_ACCEPT): past
/// it, the connection is handed over anyway and the probe timeout applies as usual.
const DEFER_ACCEPT_SECS: libc::c_int = 1;

/// Sets (or clears) TCP_DEFER_ACCEPT on a listening socket; a no-op where the option is Linux-only.
fn set_defer_accept(listener: &TcpListener, on: bool) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::fd::AsRawFd;
        let secs: libc::c_int = if on { DEFER_ACCEPT_SECS } else { 0 };
        // SAFETY: a valid socket descriptor, and a pointer to a c_int with its exact size.
        let rc = unsafe {
            libc::setsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                std::ptr::addr_of!(secs).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (listener, on);
    Ok(())
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
    listener: Acceptor,
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
                match limits.admit(slot, peer.routing_addr().ip()) {
                    Ok(admitted) => {
                        tracker.spawn(connection::handle(stream, peer, Arc::clone(&ctx), admitted));
                    }
                    Err(kind) => {
                        // Closed at once, nothing read: a FIN for a client that has sent nothing yet.
                        drop(stream);
                        limits.refused(kind, &ctx.name, &peer);
                        ctx.metrics.unrouted(ConnOutcome::RefusedLimit);
                        let outcome = crate::ops::access_log::Outcome::RefusedLimit;
                        crate::ops::access_log::record(crate::ops::access_log::Record::unrouted(
                            peer, &ctx.name, outcome,
                        ));
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
