//! Drives one UDP listener: receives datagrams, feeds the flow table ([`super::flows`]), asks the
//! backends about a new client's datagrams (holding them in the pending table
//! ([`super::pending`]) while detection is undecided: [`detect`]), and carries out what the backend
//! decides — forward on the flow's own upstream socket (whose replies go back to the client from the
//! listening socket), reply, or drop. One task owns both tables; each forwarded flow has one small
//! task reading its upstream's replies. Expiry runs on the tables' timer, not on the next packet.
//!
//! Both directions are batched ([`super::batch`]): the listener takes up to a batch of datagrams
//! per receive and routes each on its own; the datagrams one batch forwards to a flow's upstream
//! leave in one send (GSO) before the driver waits again. A reply reader does the same with what
//! its upstream sends back.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod detect;
mod handover;

pub use handover::UdpHandover;

use abi_stable::std_types::{ROption, RResult, RSlice, RVec};
use arc_swap::ArcSwap;
use pmmux_plugin_api::ffi::UdpAction;
use pmmux_plugin_api::{ConnInfo, Property, UdpRouting};
use tokio::net::{lookup_host, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::batch::{Batcher, RecvBatch, SendBatch, Sent};
use super::flows::{FlowId, FlowTable, Input, Output};
use super::pending::{PendingLimits, PendingTable, MAX_HELD_DATAGRAMS};
use super::writer;
use crate::config::Strategy;
use crate::ops::access_log::{self, Outcome, Record, Transport};
use crate::routing::registry::{Backend, BackendKind, Registry};
use crate::routing::router::Router;

/// Largest UDP payload over IPv4 (65,535 − 8 − 20); the receive buffer holds any datagram whole.
pub(crate) const MAX_DATAGRAM: usize = 65_507;
/// How often, at most, a flow's reply reader reports activity to the table.
const ACTIVITY_REPORT: Duration = Duration::from_millis(500);
/// Least time between two "flow table full" / "dropped" log lines of one listener.
const LOG_EVERY: Duration = Duration::from_secs(5);

thread_local! {
    /// Reply buffers shared by the reply readers of one worker thread: flows hold no buffer.
    static REPLY_BUF: RefCell<(RecvBatch, SendBatch)> = RefCell::new((RecvBatch::new(), SendBatch::new()));
}

/// Counters of one UDP listener.
#[derive(Debug, Default)]
pub struct UdpStats {
    /// Flows alive now.
    pub flows: AtomicU64,
    /// Datagrams received from clients.
    pub datagrams: AtomicU64,
    /// Datagrams dropped because no backend wanted them (garbage, unknown protocols).
    pub unmatched: AtomicU64,
    /// New clients refused because the flow table was full.
    pub rejected: AtomicU64,
    /// Flows ended by their idle timeout.
    pub expired: AtomicU64,
    /// Flows created.
    pub created: AtomicU64,
    /// Clients whose datagrams are held now while detection is undecided.
    pub pending: AtomicU64,
    /// Datagrams of new undecided clients dropped because `max_udp_pending` clients were pending.
    pub pending_rejected: AtomicU64,
}

/// What the driver of one UDP listener shares with the rest of the host.
pub(crate) struct UdpContext {
    /// The listener's name.
    pub name: Arc<str>,
    /// The routing snapshot.
    pub registry: Arc<ArcSwap<Registry>>,
    /// The listener's own strategy, if any.
    pub strategy: Option<Strategy>,
    /// The listener's turn counter for `round-robin`, `weighted` and `random`.
    pub turns: Arc<std::sync::atomic::AtomicU64>,
    /// Counters.
    pub stats: Arc<UdpStats>,
}

/// What a flow is keyed by: the client, and a lane. Lane 0 is the client's one session flow (QUIC,
/// WireGuard...: every later datagram goes there without detection); a per-message backend's
/// flow with that client has the backend's [`Backend::uid`] as lane, so a client whose messages go
/// to several backends has one flow (one upstream socket, replies relayed back) with each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FlowKey {
    client: SocketAddr,
    lane: u64,
}

impl FlowKey {
    fn session(client: SocketAddr) -> FlowKey {
        FlowKey { client, lane: 0 }
    }

    /// The key of `client`'s flow to `backend`: its session flow, or for a per-message backend
    /// the flow of that pair.
    fn of(client: SocketAddr, backend: &Backend) -> FlowKey {
        let lane = if backend.udp_routing == UdpRouting::PerMessage {
            backend.uid
        } else {
            0
        };
        FlowKey { client, lane }
    }
}

/// One client's flow: the backend chosen for it (pinned: a plugin replaced later does not change
/// it) and, once it forwards, the upstream socket and its reply reader.
struct Flow {
    backend: Arc<Backend>,
    /// What the backend's detection reported for this client, handed to every `handle_message`.
    properties: RVec<Property>,
    upstream: Option<Upstream>,
    /// When it was created, for its access record.
    started: Instant,
    /// Bytes and datagrams from the client.
    up: (u64, u64),
    /// Bytes and datagrams back to the client (counted by the reply reader).
    down: Arc<[AtomicU64; 2]>,
}

impl Flow {
    /// A flow counts as one live (and one routed) connection of its backend while it exists.
    fn new(backend: Arc<Backend>, properties: RVec<Property>) -> Flow {
        backend.stats.live.fetch_add(1, Ordering::Relaxed);
        backend.stats.routed.fetch_add(1, Ordering::Relaxed);
        Flow {
            backend,
            properties,
            upstream: None,
            started: Instant::now(),
            up: (0, 0),
            down: Arc::default(),
        }
    }

    /// Hands the ended flow's access record over.
    fn record(mut self, client: SocketAddr, listener: &Arc<str>, outcome: Outcome) {
        let properties = std::mem::take(&mut self.properties).into_vec();
        let down = (
            self.down[0].load(Ordering::Relaxed),
            self.down[1].load(Ordering::Relaxed),
        );
        access_log::record(Record {
            ended: std::time::SystemTime::now(),
            transport: Transport::Udp,
            client: access_log::Client::Ip(client),
            via: None,
            listener: Arc::clone(listener),
            backend: Some(Arc::clone(&self.backend)),
            properties,
            bytes_up: self.up.0,
            bytes_down: down.0,
            datagrams: Some((self.up.1, down.1)),
            duration: self.started.elapsed(),
            outcome,
        });
    }
}

impl Flow {
    /// The flow ended: a plugin's client writer no longer reaches its client through it.
    fn forget_writer(&self, client: SocketAddr) {
        if matches!(self.backend.kind, BackendKind::Plugin(_)) {
            writer::forget(client);
        }
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.backend.stats.live.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Upstream {
    socket: Arc<UdpSocket>,
    /// The target it is connected to (batched sends name it).
    peer: SocketAddr,
    reader: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Rate limit for one kind of log line.
struct Every(Option<Instant>);

impl Every {
    fn due(&mut self, now: Instant) -> bool {
        let due = self.0.is_none_or(|last| now.duration_since(last) >= LOG_EVERY);
        if due {
            self.0 = Some(now);
        }
        due
    }
}

/// The driver's state.
struct Driver {
    socket: Arc<UdpSocket>,
    /// What the kernel supports for batching, shared with the reply readers.
    batcher: Arc<Batcher>,
    /// Datagrams this batch forwards, sent before the driver waits again.
    tx: SendBatch,
    local: SocketAddr,
    ctx: Arc<UdpContext>,
    flows: FlowTable<Flow, FlowKey>,
    out: Vec<Output<Flow, FlowKey>>,
    activity: mpsc::Sender<FlowId>,
    full_log: Every,
    unmatched_log: Every,
    /// Clients whose detection is undecided, with their datagrams.
    pending: PendingTable<Router>,
    pending_log: Every,
}

/// Serves `socket` until `stop` turns true (or, after handing over to a new process, until its
/// last flow ends).
pub(crate) async fn serve(
    socket: Arc<UdpSocket>,
    ctx: Arc<UdpContext>,
    mut stop: watch::Receiver<bool>,
    handover: UdpHandover,
) {
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(e) => return tracing::error!(listener = %ctx.name, error = %e, "UDP listener has no address"),
    };
    let (max_flows, limits) = {
        let routing = &ctx.registry.load().routing;
        let limits = PendingLimits {
            max_clients: routing.max_udp_pending,
            max_datagrams: MAX_HELD_DATAGRAMS,
            max_bytes: routing.preview_limit,
            timeout: routing.probe_timeout,
        };
        (routing.max_udp_flows, limits)
    };
    let (activity, mut activity_rx) = mpsc::channel(4096);
    let batcher = Arc::new(Batcher::new(&socket));
    tracing::debug!(listener = %ctx.name, gso = batcher.gso(), gro = batcher.gro(), "UDP batching");
    let mut d = Driver {
        socket: Arc::clone(&socket),
        batcher: Arc::clone(&batcher),
        tx: SendBatch::new(),
        local,
        ctx,
        flows: FlowTable::new(max_flows),
        out: Vec::new(),
        activity,
        full_log: Every(None),
        unmatched_log: Every(None),
        pending: PendingTable::new(limits),
        pending_log: Every(None),
    };
    let mut rx = RecvBatch::new();
    let mut link = handover::Link::new(handover);
    let timer = tokio::time::sleep_until(far_future());
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    loop {
        // One timer for the listener, moved only when the tables' next deadline moves (a new timer
        // per datagram would register and cancel one each time).
        let deadline = match (d.flows.next_deadline(), d.pending.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if deadline != armed {
            armed = deadline;
            timer
                .as_mut()
                .reset(deadline.map_or_else(far_future, tokio::time::Instant::from_std));
        }
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            Some(flow) = activity_rx.recv() => {
                let now = Instant::now();
                d.apply(Input::UpstreamActivity { flow, now }, now);
            }
            _ = &mut timer, if armed.is_some() => {
                armed = None;
                let now = Instant::now();
                d.apply(Input::Tick { now }, now);
                d.expire_pending(now).await;
            }
            event = link.next(), if link.active() => {
                if !d.on_link(event, &mut link).await {
                    break;
                }
            }
            received = batcher.recv(&socket, &mut rx), if link.reads_listening_socket() => match received {
                Ok(()) => {
                    for (client, datagram) in rx.iter() {
                        if !link.pass_to_old(client, datagram) {
                            d.datagram(datagram, client).await;
                        }
                    }
                }
                // ICMP errors and the like: nothing a listening socket must act on.
                Err(e) => tracing::debug!(listener = %d.ctx.name, error = %e, "UDP receive error"),
            },
        }
        // What this round forwarded leaves now, before the driver waits again.
        d.flush();
        if link.drained(&d) {
            break;
        }
    }
    tracing::info!(listener = %d.ctx.name, flows = d.flows.len(), pending = d.pending.len(), "UDP listener stopped; its flows end");
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600)
}

impl Driver {
    /// Feeds the table, settles what it says about ended flows (expired, refused), and
    /// returns the one action it asks for, if any (forward, detect, created, already there).
    fn apply(&mut self, input: Input<Flow, FlowKey>, now: Instant) -> Option<Output<Flow, FlowKey>> {
        self.flows.handle(input, &mut self.out);
        let mut outputs = std::mem::take(&mut self.out);
        let mut action = None;
        for output in outputs.drain(..) {
            match output {
                Output::Expired { client, state, .. } => {
                    self.ctx.stats.expired.fetch_add(1, Ordering::Relaxed);
                    let client = client.client;
                    state.forget_writer(client);
                    tracing::debug!(listener = %self.ctx.name, %client, backend = state.backend.name(), "UDP flow expired");
                    state.record(client, &self.ctx.name, Outcome::Expired);
                }
                Output::Rejected { .. } => {
                    self.ctx.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    if self.full_log.due(now) {
                        tracing::warn!(listener = %self.ctx.name, max_udp_flows = self.flows.max_flows(), rejected_total = self.ctx.stats.rejected.load(Ordering::Relaxed), "UDP flow table full; new clients are dropped until flows expire");
                    }
                }
                other => action = Some(other),
            }
        }
        self.out = outputs;
        self.ctx.stats.flows.store(self.flows.len() as u64, Ordering::Relaxed);
        action
    }

    async fn datagram(&mut self, message: &[u8], client: SocketAddr) {
        self.ctx.stats.datagrams.fetch_add(1, Ordering::Relaxed);
        if crate::routing::offenders::is_refused(client.ip()) {
            // Its datagrams kept making plugins fail: dropped unread for a while.
            self.ctx.stats.unmatched.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = Instant::now();
        // Clients whose probe timeout passed are decided first, so a flow they get is used below.
        self.expire_pending(now).await;
        let key = FlowKey::session(client);
        match self.apply(Input::ClientDatagram { client: key, now }, now) {
            Some(Output::Forward { flow }) => self.deliver(flow, message, client).await,
            Some(Output::NeedsDetection { .. }) => self.undecided(message, client, now).await,
            _ => {}
        }
    }

    /// Carries out the flow's backend decision for one datagram.
    async fn deliver(&mut self, id: FlowId, message: &[u8], client: SocketAddr) {
        let Some(flow) = self.flows.get_mut(id) else { return };
        flow.up.0 += message.len() as u64;
        flow.up.1 += 1;
        let backend = Arc::clone(&flow.backend);
        let action = match &backend.kind {
            BackendKind::Pass => UdpAction::Forward(ROption::RNone),
            BackendKind::Noop => UdpAction::Drop,
            BackendKind::Plugin(object) => {
                let conn = ConnInfo {
                    peer: client.into(),
                    local: self.local.into(),
                    listener: abi_stable::std_types::RStr::from_str(&self.ctx.name),
                    properties: RSlice::from_slice(&flow.properties),
                };
                match object.handle_message(&conn, RSlice::from_slice(message)) {
                    RResult::ROk(action) => {
                        backend.plugin_ok();
                        action
                    }
                    RResult::RErr(e) => {
                        backend.plugin_error("handle_message", e.as_str(), Some(client));
                        UdpAction::Drop
                    }
                }
            }
        };
        match action {
            UdpAction::Forward(target) => {
                // Borrowed: a datagram allocates nothing on its way.
                let chosen = target.into_option();
                let Some(target) = chosen.as_deref().or(backend.config.target.as_deref()) else {
                    return tracing::warn!(
                        backend = backend.name(),
                        "UDP backend has no target to forward to; dropped"
                    );
                };
                if let Err(e) = self.forward(id, target, message, client).await {
                    tracing::debug!(backend = backend.name(), %target, error = %e, "UDP forward failed");
                }
            }
            UdpAction::Reply(bytes) => {
                let _ = writer::send_now(&self.socket, &bytes, client);
            }
            UdpAction::Consumed | UdpAction::Drop => {}
        }
    }

    /// Queues the datagram on the flow's upstream socket (sent with the batch's others to it),
    /// opening the socket (and its reply reader) on first use.
    async fn forward(&mut self, id: FlowId, target: &str, message: &[u8], client: SocketAddr) -> io::Result<()> {
        let Some(flow) = self.flows.get(id) else { return Ok(()) };
        if flow.upstream.is_none() {
            // A transparent backend's flow leaves from the client's own address and port.
            let source = flow
                .backend
                .config
                .transparent
                .then(|| crate::ops::transparent::source_of(client));
            let (upstream, peer) = open_upstream(target, source).await?;
            self.batcher.enable_gro(&upstream);
            let down = Arc::clone(&flow.down);
            let reader = tokio::spawn(relay_replies(
                Arc::clone(&upstream),
                Arc::clone(&self.socket),
                Arc::clone(&self.batcher),
                client,
                id,
                self.activity.clone(),
                down,
            ));
            if let Some(flow) = self.flows.get_mut(id) {
                flow.upstream = Some(Upstream {
                    socket: upstream,
                    peer,
                    reader,
                });
            }
        }
        let Some(upstream) = self.flows.get(id).and_then(|f| f.upstream.as_ref()) else {
            return Ok(());
        };
        // Non-blocking, as UDP: a full socket buffer drops the datagrams rather than stall the listener.
        self.tx
            .push(&self.batcher, &upstream.socket, upstream.peer, message)
            .map(drop)
    }

    /// Sends the datagrams queued for upstreams.
    fn flush(&mut self) {
        if let Err(e) = self.tx.flush(&self.batcher) {
            tracing::debug!(listener = %self.ctx.name, error = %e, "UDP forward failed");
        }
    }
}

/// A connected socket towards `target`, bound to an ephemeral port of the same address family, or
/// with `source` (a transparent backend) to the client's address and port; and the address it
/// is connected to.
async fn open_upstream(target: &str, source: Option<SocketAddr>) -> io::Result<(Arc<UdpSocket>, SocketAddr)> {
    use crate::ops::transparent;
    let fits = |a: &SocketAddr| source.is_none_or(|from| transparent::same_family(from, *a));
    let addr = match target.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => lookup_host(target)
            .await?
            .find(fits)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "target resolves to no address"))?,
    };
    if let Some(from) = source {
        if !fits(&addr) {
            let msg = format!("transparent: {target} has no address of the client's family ({from})");
            return Err(io::Error::new(io::ErrorKind::NotFound, msg));
        }
        return transparent::udp_socket(from, addr).await.map(|s| (Arc::new(s), addr));
    }
    let bind: SocketAddr = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .map_err(io::Error::other)?;
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(addr).await?;
    Ok((Arc::new(socket), addr))
}

/// Sends every datagram the upstream sends back to `client` from the listening socket, a batch
/// at a time, and tells the table (at most every [`ACTIVITY_REPORT`]) that the flow is alive.
/// Holds no buffer of its own.
async fn relay_replies(
    upstream: Arc<UdpSocket>,
    listening: Arc<UdpSocket>,
    batcher: Arc<Batcher>,
    client: SocketAddr,
    flow: FlowId,
    activity: mpsc::Sender<FlowId>,
    down: Arc<[AtomicU64; 2]>,
) {
    let mut reported = Instant::now();
    loop {
        if upstream.readable().await.is_err() {
            return;
        }
        let got = REPLY_BUF.with(|bufs| {
            let (rx, tx) = &mut *bufs.borrow_mut();
            // Spurious wake-up, or an ICMP error from the upstream (port unreachable): go on.
            if batcher.try_recv(&upstream, rx).is_err() {
                return false;
            }
            // Sends that fail (a full send buffer) drop their datagrams, as the network would;
            // the flow counts what was sent.
            let mut sent = Sent::default();
            for (_, datagram) in rx.iter() {
                sent += tx.push(&batcher, &listening, client, datagram).unwrap_or_default();
            }
            sent += tx.flush(&batcher).unwrap_or_default();
            down[0].fetch_add(sent.bytes, Ordering::Relaxed);
            down[1].fetch_add(sent.datagrams, Ordering::Relaxed);
            true
        });
        if got && reported.elapsed() >= ACTIVITY_REPORT {
            reported = Instant::now();
            let _ = activity.try_send(flow);
        }
    }
}
