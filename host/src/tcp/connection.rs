//! One TCP connection from accept to close: preview and route, then forward or serve, inside one
//! `tracing` span (peer, listener, backend, plugin) that ends with one close line.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use abi_stable::std_types::{ROption, RResult, RSlice, RVec};
use arc_swap::ArcSwap;
use pmmux_plugin_api::ffi::TcpAction;
use pmmux_plugin_api::Property;
use tokio::io::AsyncReadExt;
use tracing::{field::Empty, Instrument};

use crate::config::Strategy;
use crate::ops::access_log::{self, Record, Transport};
use crate::ops::limits::Admitted;
use crate::ops::metrics::ListenerMetrics;
use crate::proxy_protocol;
use crate::routing::registry::{Backend, BackendKind, Registry};
use crate::routing::router::{Decision, Router};
use crate::tcp::error::{ConnError, Op, Peer, SideError};
use crate::tcp::preview::{self, Outcome};
use crate::tcp::relay::{self, Transferred};
use crate::tcp::session;
use crate::tcp::stream::{Client, Stream, UNIX_PLACEHOLDER};

/// What every connection of one listener shares.
pub(crate) struct ListenerContext {
    /// The listener's name.
    pub name: Arc<str>,
    /// The current routing snapshot.
    pub registry: Arc<ArcSwap<Registry>>,
    /// The listener's own strategy, if it overrides `routing.strategy`.
    pub strategy: Option<Strategy>,
    /// The listener's turn counter for `round-robin`, `weighted` and `random`.
    pub turns: Arc<std::sync::atomic::AtomicU64>,
    /// The local address of every connection, when the listener is bound to one IP address (saves
    /// a `getsockname` per connection); `None` for wildcard listeners. A Unix listener's is
    /// [`UNIX_PLACEHOLDER`].
    pub local: Option<SocketAddr>,
    /// Sources whose connections start with a PROXY header (`accept_proxy_protocol`).
    pub accept_proxy_protocol: Arc<[ipnet::IpNet]>,
    /// On a Unix listener, the peers whose connections start with a PROXY header.
    pub trusted_peers: Arc<[crate::config::listen::PeerTrust]>,
    /// The listener's counters.
    pub metrics: Arc<ListenerMetrics>,
}

/// Handles one accepted connection to the end; `admitted` (its limit slots) is held until then.
/// The connection's span is at debug level: at info, the one line a connection writes is built
/// from its access record on the log's writer thread, at no formatting cost here.
pub(crate) async fn handle(stream: Stream, peer: Client, ctx: Arc<ListenerContext>, admitted: Admitted) {
    let trusted = match (&peer, &stream) {
        (Client::Ip(a), _) => proxy_protocol::io::is_trusted(&ctx.accept_proxy_protocol, *a),
        (Client::Unix(_), Stream::Unix(s)) => proxy_protocol::io::is_trusted_peer(&ctx.trusted_peers, s),
        (Client::Unix(_), Stream::Tcp(_)) => false,
    };
    let span = if trusted {
        // `peer` becomes the client the PROXY header names; `via` is the front that sent it.
        tracing::debug_span!("conn", peer = Empty, via = %peer, listener = %ctx.name, backend = Empty, plugin = Empty)
    } else {
        tracing::debug_span!("conn", %peer, listener = %ctx.name, backend = Empty, plugin = Empty)
    };
    let started = Instant::now();
    let mut end = End {
        client: peer.clone(),
        via: trusted.then(|| peer.clone()),
        backend: None,
        properties: RVec::new(),
        transferred: Transferred::default(),
        outcome: access_log::Outcome::Aborted,
    };
    handle_inner(stream, peer, trusted, &ctx, admitted, &mut end)
        .instrument(span)
        .await;
    access_log::record(Record {
        ended: std::time::SystemTime::now(),
        transport: Transport::Tcp,
        client: end.client,
        via: end.via,
        listener: Arc::clone(&ctx.name),
        backend: end.backend,
        properties: end.properties.into_vec(),
        bytes_up: end.transferred.up,
        bytes_down: end.transferred.down,
        datagrams: None,
        duration: started.elapsed(),
        outcome: end.outcome,
    });
}

/// What the access record of a connection says, filled in as the connection goes.
struct End {
    client: Client,
    via: Option<Client>,
    backend: Option<Arc<Backend>>,
    properties: RVec<Property>,
    transferred: Transferred,
    outcome: access_log::Outcome,
}

impl End {
    fn backend_name(&self) -> &str {
        self.backend.as_deref().map_or("-", Backend::name)
    }
}

async fn handle_inner(
    mut stream: Stream,
    peer: Client,
    trusted: bool,
    ctx: &ListenerContext,
    mut admitted: Admitted,
    end: &mut End,
) {
    let started = Instant::now();
    let real_local = match &stream {
        Stream::Tcp(s) => ctx.local.map_or_else(|| s.local_addr(), Ok),
        Stream::Unix(_) => Ok(UNIX_PLACEHOLDER),
    };
    let mut local = match real_local {
        Ok(a) => a,
        Err(e) => {
            ctx.metrics.unrouted(crate::ops::metrics::ConnOutcome::Aborted);
            return tracing::debug!(error = %e, "connection gone before routing");
        }
    };
    let registry = ctx.registry.load_full();
    let strategy = ctx.strategy.unwrap_or(registry.routing.strategy);
    let mut preview = Vec::new();
    let peer = if trusted {
        match accept_proxy_header(&stream, peer, &registry, &ctx.name).await {
            Ok((client, dest, rest)) => {
                end.client = client.clone();
                preview = rest;
                // A Unix listener has no IP address of its own: the one the front names stands in.
                if let (Some(dest), Stream::Unix(_)) = (dest, &stream) {
                    local = dest;
                }
                client
            }
            Err(outcome) => {
                end.outcome = outcome;
                return close_gracefully(stream).await;
            }
        }
    } else {
        peer
    };
    if !peer.is_unix() && crate::routing::offenders::is_refused(peer.routing_addr().ip()) {
        ctx.metrics.unrouted(crate::ops::metrics::ConnOutcome::RefusedLimit);
        tracing::debug!("client refused for a while after repeated plugin errors; closed");
        end.outcome = access_log::Outcome::RefusedLimit;
        return close_gracefully(stream).await;
    }
    let mut router = Router::new(
        Arc::clone(&registry),
        strategy,
        Arc::clone(&ctx.name),
        peer.routing_addr(),
        local,
    )
    .with_turns(Arc::clone(&ctx.turns))
    .with_unix_client(peer.is_unix());
    let previewed = preview::run(&mut stream, &mut router, &mut preview).await;
    admitted.preview_done();
    ctx.metrics
        .previewed(&previewed, started.elapsed(), registry.on_timeout.is_some());
    let routed = match choose(previewed, &registry, &router, (&end.client, &ctx.name), preview.len()) {
        Ok(routed) => routed,
        Err(outcome) => {
            if outcome == access_log::Outcome::NoMatch {
                end.transferred.up = preview.len() as u64;
            }
            end.outcome = outcome;
            return close_gracefully(stream).await;
        }
    };
    let result = relay_with_failover(&mut stream, &mut router, &mut preview, routed, ctx, end).await;
    // The `connection closed` line (with its reason when pmmux cut the connection) is built from
    // the access record on the log's writer thread; a failure is logged here, at warn.
    match result {
        Ok(t) => {
            end.outcome = match t.cut {
                None => access_log::Outcome::Closed,
                Some(cut) => access_log::Outcome::Cut(cut),
            };
            end.transferred = t;
        }
        Err(e) => {
            let side = e.blame().label();
            let ms = Millis(started.elapsed());
            tracing::warn!(peer = %end.client, listener = %ctx.name, backend = end.backend_name(), error = %e, side, ms = %ms, "connection failed");
            end.outcome = access_log::Outcome::Failed {
                side,
                error: e.to_string(),
            };
            close_gracefully(stream).await;
        }
    }
}

/// Reads the PROXY header a trusted front sends first: the client it names, the IP address that
/// client reached if named, and the bytes after the header, or the outcome to record (logged) when
/// the header is refused.
async fn accept_proxy_header(
    stream: &Stream,
    front: Client,
    registry: &Registry,
    listener: &str,
) -> Result<(Client, Option<SocketAddr>, Vec<u8>), access_log::Outcome> {
    // Boxed: the header read's state stays out of every connection's task.
    let read = Box::pin(proxy_protocol::io::read_header(stream, registry.routing.probe_timeout)).await;
    let span = tracing::Span::current();
    match read {
        Ok(accepted) => {
            let client = accepted.client(front);
            span.record("peer", tracing::field::display(&client));
            let dest = accepted.header.dest.filter(|_| matches!(client, Client::Ip(_)));
            Ok((client, dest, accepted.rest))
        }
        Err(e) => {
            span.record("peer", tracing::field::display(&front));
            tracing::info!(peer = %front, listener, error = %e, "PROXY header refused; closed");
            Err(access_log::Outcome::ProxyHeaderRefused(e.to_string()))
        }
    }
}

/// The backend a previewed connection goes to first.
struct Routed {
    /// Its index in the registry.
    index: usize,
    /// The properties its detection returned.
    properties: RVec<Property>,
    /// Routed by the probe timeout (`on_timeout`): there is no ranking to fail over in.
    silent: bool,
}

/// Turns the preview's outcome into the backend to use, or the outcome to record (logged) when
/// the connection is to be closed. The lines at info name the peer and listener: the
/// connection's span is at debug.
fn choose(
    previewed: std::io::Result<Outcome>,
    registry: &Registry,
    router: &Router,
    (peer, listener): (&Client, &str),
    preview_len: usize,
) -> Result<Routed, access_log::Outcome> {
    match previewed {
        Err(e) => {
            tracing::debug!(error = %e, side = "client", "client error while previewing");
            Err(access_log::Outcome::ClientError(e.to_string()))
        }
        Ok(Outcome::Closed) => {
            tracing::debug!("client closed before sending anything");
            Err(access_log::Outcome::ClientClosed)
        }
        Ok(Outcome::Silent) => match registry.on_timeout {
            Some(index) if registry.backends[index].stats.health.is_up() => Ok(Routed {
                index,
                properties: RVec::new(),
                silent: true,
            }),
            _ => {
                tracing::info!(
                    %peer, listener, timeout_ms = registry.routing.probe_timeout.as_millis(),
                    "client sent nothing within the probe timeout and no healthy on_timeout backend is set; closed"
                );
                Err(access_log::Outcome::Silent)
            }
        },
        Ok(Outcome::Routed(Decision::Route { index, properties })) => Ok(Routed {
            index,
            properties,
            silent: false,
        }),
        Ok(Outcome::Routed(_)) => {
            if registry.backends.is_empty() {
                tracing::info!(%peer, listener, "no backend is in routing (no plugin loaded for any configured backend?); closed");
            } else {
                tracing::info!(%peer, listener, asked = ?router.asked(), preview_bytes = preview_len, "no backend matched; closed");
            }
            Err(access_log::Outcome::NoMatch)
        }
    }
}

/// Dispatches to the routed backend; when connecting to its target fails, to the next one the
/// router ranks (up to `max_failovers`). Counts the outcome on the backend that ended it, and
/// notes that backend and its properties in `end`.
async fn relay_with_failover(
    stream: &mut Stream,
    router: &mut Router,
    preview: &mut Vec<u8>,
    routed: Routed,
    ctx: &ListenerContext,
    end: &mut End,
) -> Result<Transferred, ConnError> {
    let registry = Arc::clone(router.registry());
    let Routed {
        mut index,
        mut properties,
        silent,
    } = routed;
    let mut failovers = 0;
    loop {
        let backend = Arc::clone(&registry.backends[index]);
        let span = tracing::Span::current();
        if !span.is_disabled() {
            span.record("backend", backend.name());
            span.record("plugin", backend.plugin_label().as_str());
        }
        if !properties.is_empty() {
            tracing::debug!(properties = %show(&properties), "routed");
        }
        let live = LiveGuard::new(&backend);
        // Boxed: a connection still previewing (most of them, under attack) does not carry the
        // relay's and session's state in its task.
        let result = Box::pin(dispatch(stream, router, &backend, &properties, preview)).await;
        // Not live any more once the close is logged (least-requests reads this count).
        drop(live);
        // Boxed, and only built after a failed connect: most connections never fail over.
        let next = match crate::tcp::failover::connect_failure(&result) {
            Some(e) => {
                let next = crate::tcp::failover::next(stream, router, &backend, e, preview, failovers, silent);
                Box::pin(next).await
            }
            None => None,
        };
        match next {
            Some((i, p)) => (index, properties, failovers) = (i, p, failovers + 1),
            None => {
                ctx.metrics
                    .finished(backend.name(), result.as_ref().map_err(ConnError::blame));
                end.backend = Some(backend);
                end.properties = properties;
                return result;
            }
        }
    }
}

/// A duration shown in milliseconds with three decimals (`12.345`), formatted only when logged.
struct Millis(std::time::Duration);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::new();
        crate::ops::access_log::write_ms(&mut s, self.0)?;
        f.write_str(&s)
    }
}

/// How much a refused client may still send while pmmux closes on it.
const LINGER_BYTES: usize = 64 * 1024;
/// How long pmmux waits for it.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// Closes a connection pmmux refuses with a FIN rather than a reset: closing a socket with unread
/// bytes makes the kernel send RST, so read and drop what the client still sends, bounded in bytes
/// and time.
async fn close_gracefully(mut stream: Stream) {
    use tokio::io::AsyncWriteExt;
    let _ = stream.shutdown().await;
    let drain = async {
        // On the heap: a buffer here would sit in every connection's task.
        let mut buf = vec![0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

async fn dispatch(
    stream: &mut Stream,
    router: &Router,
    backend: &Backend,
    properties: &[Property],
    preview: &mut Vec<u8>,
) -> Result<Transferred, ConnError> {
    let timeouts = timeouts(router, backend);
    let target = match &backend.kind {
        BackendKind::Pass => backend.config.target.clone(),
        BackendKind::Noop => return discard(stream, preview.len() as u64, timeouts.idle).await,
        BackendKind::Plugin(object) => {
            let conn = router.conn_info(properties);
            match object.open_tcp(&conn, RSlice::from_slice(preview)) {
                RResult::ROk(TcpAction::Forward(ROption::RSome(t))) => Some(t.into()),
                RResult::ROk(TcpAction::Forward(ROption::RNone)) => backend.config.target.clone(),
                RResult::ROk(TcpAction::Serve(session)) => {
                    return session::serve(stream, session, preview, timeouts.idle)
                        .await
                        .inspect_err(|e| {
                            if let ConnError::Plugin { hook, message } = e {
                                backend.plugin_error(hook, message, Some(router.peer()));
                            }
                        })
                }
                RResult::RErr(e) => {
                    backend.plugin_error("open", e.as_str(), Some(router.peer()));
                    return Err(ConnError::Plugin {
                        hook: "open",
                        message: e.into(),
                    });
                }
            }
        }
    };
    let target = target.ok_or(ConnError::NoTarget)?;
    let timeout = router.registry().routing.connect_timeout;
    // A client that came over a Unix socket has no address to send from: a plain connection.
    let source = (backend.config.transparent && !router.unix_client())
        .then(|| crate::ops::transparent::source_of(router.peer()));
    // A PROXY header goes before the preview: nothing is sent with the connect then.
    let first = if backend.config.proxy_protocol.is_some() {
        &[][..]
    } else {
        preview.as_slice()
    };
    let (mut upstream, sent) = Stream::connect_from(&target, timeout, source, first).await?;
    if let Some(version) = backend.config.proxy_protocol {
        let conn = router.conn_info(properties);
        proxy_protocol::io::send_header(&mut upstream, version, &conn, router.unix_client())
            .await
            .map_err(|source| ConnError::ProxyHeader {
                target: target.clone(),
                source,
            })?;
    }
    Ok(relay::relay(stream, &mut upstream, preview, sent, &target, timeouts).await?)
}

/// The backend's `idle_timeout_ms`, else `[routing] idle_timeout_ms`; `[routing] half_closed_timeout_ms`.
fn timeouts(router: &Router, backend: &Backend) -> relay::Timeouts {
    let routing = &router.registry().routing;
    relay::Timeouts {
        idle: backend.config.idle_timeout.unwrap_or(routing.idle_timeout),
        half_closed: routing.half_closed_timeout,
    }
}

/// The built-in `noop`: read and drop everything until the client closes or is idle for `idle`.
async fn discard(stream: &mut Stream, already: u64, idle: std::time::Duration) -> Result<Transferred, ConnError> {
    let mut buf = [0u8; 4096];
    let mut up = already;
    loop {
        let Ok(read) = tokio::time::timeout(idle, stream.read(&mut buf)).await else {
            let cut = Some(relay::Cut::Idle);
            return Ok(Transferred { up, down: 0, cut });
        };
        match read.map_err(SideError::on(Peer::Client, Op::Read))? {
            0 => return Ok(Transferred { up, down: 0, cut: None }),
            n => up += n as u64,
        }
    }
}

fn show(props: &[Property]) -> String {
    props
        .iter()
        .map(|p| format!("{}={}", p.key, p.value))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Counts a connection as live on its backend while it exists.
struct LiveGuard<'a>(&'a Backend);

impl<'a> LiveGuard<'a> {
    fn new(backend: &'a Backend) -> Self {
        backend.stats.live.fetch_add(1, Ordering::Relaxed);
        backend.stats.routed.fetch_add(1, Ordering::Relaxed);
        LiveGuard(backend)
    }
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.0.stats.live.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    /// Every accepted connection holds this future until it closes, most of them in the preview:
    /// a buffer or a relay state creeping into it multiplies by the connection count.
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let text = "[[listener]]\naddress = \"127.0.0.1:1\"\n";
        let config = crate::config::parse(std::path::Path::new("/t.toml"), text).unwrap();
        let registry = Arc::new(arc_swap::ArcSwap::from_pointee(
            crate::routing::registry::Registry::empty(&config),
        ));
        let ctx = Arc::new(super::ListenerContext {
            name: Arc::from("t"),
            registry,
            strategy: None,
            turns: Arc::default(),
            local: None,
            accept_proxy_protocol: Arc::from(Vec::new()),
            trusted_peers: Arc::from(Vec::new()),
            metrics: Arc::new(crate::ops::metrics::ListenerMetrics::new(Arc::default())),
        });
        let limits = Arc::new(crate::ops::limits::ListenerLimits::new(
            Arc::default(),
            &Default::default(),
        ));
        let admitted = limits.admit(limits.reserve().unwrap(), addr.ip()).unwrap();
        let task = super::handle(super::Stream::Tcp(client), super::Client::Ip(addr), ctx, admitted);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 2048, "the per-connection future grew to {size} bytes");
    }
}
