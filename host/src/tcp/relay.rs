//! The relay: connects to a backend's target within the connect timeout, replays the previewed bytes
//! and copies both ways with half-close, counting bytes in each direction.
//!
//! A relayed connection is bounded in time by what it does, not by how long it lasts: it is cut
//! when no byte moved either way for its idle timeout ([`Timeouts::idle`]), or, once one side has
//! finished sending, for the shorter half-closed timeout. Both sockets carry TCP keepalive
//! ([`keepalive`]), so a peer that vanished without a FIN is found by the kernel even while the
//! other side waits quietly: the client's from its listener, the upstream's armed by the watchdog
//! once the relay has lasted [`KEEPALIVE_ARM`] (the first probe is due only after
//! [`KEEPALIVE_IDLE`], so a short connection skips four system calls that could not matter).
//!
//! Each direction's buffer starts small and doubles whenever a read fills it, up to
//! [`MAX_RELAY_BUFFER`]: an interactive or idle connection holds a few KiB, a bulk one reaches full
//! size after a handful of reads. The client's direction reuses the preview's buffer once it is
//! replayed. Buffers are never zero-filled (reads go into spare capacity).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use std::os::fd::{FromRawFd, IntoRawFd};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{lookup_host, TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};

/// Time without traffic after which the kernel sends the first keepalive probe.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Time between keepalive probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Probes unanswered after which the kernel declares the peer dead (so about 2 minutes in all).
pub const KEEPALIVE_PROBES: u32 = 6;
/// How long a relay runs before its upstream socket gets keepalive: well under
/// [`KEEPALIVE_IDLE`], so the first probe comes at most this much later than it would otherwise.
pub const KEEPALIVE_ARM: Duration = Duration::from_secs(1);

/// The keepalive every client and upstream socket carries.
pub fn keepalive() -> socket2::TcpKeepalive {
    let k = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL);
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "freebsd"
    ))]
    let k = k.with_retries(KEEPALIVE_PROBES);
    k
}

/// How long a relayed or served connection may stay without traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// No byte either way for this long: the connection is closed.
    pub idle: Duration,
    /// Once one side has finished sending (half-closed), no byte for this long: closed.
    pub half_closed: Duration,
}

/// Why pmmux cut a connection that had not ended by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// No byte either way for the idle timeout.
    Idle,
    /// Half-closed, and no byte for the half-closed timeout.
    HalfClosed,
}

impl Cut {
    /// The reason, as logged.
    pub fn reason(self) -> &'static str {
        match self {
            Cut::Idle => "idle timeout",
            Cut::HalfClosed => "half-closed timeout",
        }
    }
}

use crate::ops::transparent;
use crate::tcp::error::{Op, Peer, SideError};
use crate::tcp::stream::{ReadHalf, Stream, WriteHalf};

/// First buffer size per direction.
pub(crate) const MIN_RELAY_BUFFER: usize = 4 * 1024;
/// Largest buffer per direction: enough for loopback line rate.
pub(crate) const MAX_RELAY_BUFFER: usize = 128 * 1024;

/// Which side of a relay failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RelayError {
    /// The target could not be resolved.
    #[error("upstream {target}: cannot resolve: {source}")]
    Resolve {
        /// The target.
        target: String,
        /// Why.
        source: io::Error,
    },
    /// No address of the target accepted the connection.
    #[error("upstream {target}: connect failed: {source}")]
    Connect {
        /// The target.
        target: String,
        /// The last error.
        source: io::Error,
    },
    /// The target did not accept within the connect timeout.
    #[error("upstream {target}: connect timed out after {ms} ms")]
    ConnectTimeout {
        /// The target.
        target: String,
        /// The timeout.
        ms: u128,
    },
    /// Writing the previewed bytes to the target failed.
    #[error("upstream {target}: replaying the preview failed: {source}")]
    Replay {
        /// The target.
        target: String,
        /// Why.
        source: io::Error,
    },
    /// The relay ended with an I/O error on one side.
    #[error(transparent)]
    Io(SideError),
}

/// Bytes moved by a finished relay.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Transferred {
    /// Client to upstream, including the replayed preview.
    pub up: u64,
    /// Upstream to client.
    pub down: u64,
    /// Set when pmmux cut the connection for inactivity.
    pub cut: Option<Cut>,
}

/// Traffic of one relay, shared by its two directions and its watchdog.
struct Activity {
    start: Instant,
    /// Milliseconds from `start` to the last byte read either way.
    last_ms: AtomicU64,
    up: AtomicU64,
    down: AtomicU64,
    /// One direction reached its end (the connection is half-closed).
    one_done: AtomicBool,
}

impl Activity {
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Connects to `target` (`host:port`), trying each resolved address until the timeout, and sends
/// `first` (the previewed bytes) as soon as the connection takes them; from `source` when given:
/// the client's address and port, for a transparent backend (only the target's addresses of the
/// client's family are tried, and `first` waits for the relay). Returns the stream, set up with
/// TCP_NODELAY (keepalive comes later: [`KEEPALIVE_ARM`]), and how many bytes of `first` it sent.
///
/// On loopback and fast networks the handshake is done by the time `connect` returns, so the bytes
/// are sent at once: no wait for writability and no `SO_ERROR` query (tokio's connect does both),
/// two system calls and a reactor round trip less per connection. A refused connection fails that
/// send and counts as a connect failure (failover applies), as it would have otherwise.
pub(crate) async fn connect_from(
    target: &str,
    connect_timeout: Duration,
    source: Option<SocketAddr>,
    first: &[u8],
) -> Result<(TcpStream, usize), RelayError> {
    let attempt = async {
        let addrs = lookup_host(target).await.map_err(|source| RelayError::Resolve {
            target: target.to_owned(),
            source,
        })?;
        // The error is built only when every address failed (an io::Error with a message costs
        // three allocations, which every connection would pay).
        let mut last = None;
        for addr in addrs {
            let connected = match source {
                None => connect_one(addr, first).await,
                Some(from) if !transparent::same_family(from, addr) => continue,
                Some(from) => match transparent::tcp_socket(from).await {
                    Ok(socket) => socket.connect(addr).await.map(|s| {
                        let _ = s.set_nodelay(true);
                        (s, 0)
                    }),
                    Err(e) => Err(io::Error::new(
                        e.kind(),
                        format!("transparent: cannot bind the client's address {from}: {e}"),
                    )),
                },
            };
            match connected {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(RelayError::Connect {
            target: target.to_owned(),
            source: last.unwrap_or_else(|| match source {
                Some(from) => io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("transparent: no address of the client's family ({from})"),
                ),
                None => io::Error::new(io::ErrorKind::NotFound, "no address"),
            }),
        })
    };
    match timeout(connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(RelayError::ConnectTimeout {
            target: target.to_owned(),
            ms: connect_timeout.as_millis(),
        }),
    }
}

/// One address: a non-blocking connect with TCP_NODELAY set before it, then `first` sent at once
/// when the connection is already up, else after it is.
async fn connect_one(addr: SocketAddr, first: &[u8]) -> io::Result<(TcpStream, usize)> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Relayed bytes are forwarded as they come, never held for batching.
    socket.set_nodelay(true)?;
    let sock = socket2::SockRef::from(&socket);
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let sent = if first.is_empty() {
        Err(io::ErrorKind::WouldBlock.into())
    } else {
        sock.send(first)
    };
    // SAFETY: the descriptor comes from `into_raw_fd`, which gives up its ownership.
    let std = unsafe { std::net::TcpStream::from_raw_fd(socket.into_raw_fd()) };
    let stream = TcpStream::from_std(std)?;
    match sent {
        Ok(n) => Ok((stream, n)),
        // Still connecting (or a full buffer): wait until it is writable, then ask how it went.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            stream.writable().await?;
            match stream.take_error()? {
                Some(e) => Err(e),
                None => Ok((stream, 0)),
            }
        }
        Err(e) => Err(e),
    }
}

/// Replays what is left of `preview` (after the first `sent` bytes) to `upstream`, then relays
/// until both directions are closed, or until the connection has been quiet for longer than
/// `timeouts` allow (then `cut` says which). Once replayed, the preview's buffer becomes the
/// client-to-upstream relay buffer (`preview` is left empty): no second buffer for that direction,
/// and no preview held for the connection's whole life.
pub(crate) async fn relay(
    client: &mut Stream,
    upstream: &mut Stream,
    preview: &mut Vec<u8>,
    sent: usize,
    target: &str,
    timeouts: Timeouts,
) -> Result<Transferred, RelayError> {
    // The client socket inherited TCP_NODELAY and keepalive from its listener, a TCP upstream got
    // TCP_NODELAY in `connect_from` and gets keepalive from the watchdog.
    let keepalive_on = match &*upstream {
        Stream::Tcp(s) => Some(std::os::fd::AsRawFd::as_raw_fd(s)),
        Stream::Unix(_) => None,
    };
    upstream
        .write_all(&preview[sent.min(preview.len())..])
        .await
        .map_err(|source| RelayError::Replay {
            target: target.to_owned(),
            source,
        })?;
    let replayed = preview.len() as u64;
    let mut up_buf = std::mem::take(preview);
    up_buf.clear();
    up_buf.reserve_exact(MIN_RELAY_BUFFER);
    let (client_read, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    let activity = Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
        up: AtomicU64::new(0),
        down: AtomicU64::new(0),
        one_done: AtomicBool::new(false),
    };
    let copy = async {
        tokio::try_join!(
            copy_half(
                client_read,
                upstream_write,
                up_buf,
                Peer::Client,
                &activity,
                &activity.up
            ),
            copy_half(
                upstream_read,
                client_write,
                Vec::with_capacity(MIN_RELAY_BUFFER),
                Peer::Upstream,
                &activity,
                &activity.down
            )
        )
    };
    let cut = tokio::select! {
        done = copy => {
            done.map_err(RelayError::Io)?;
            None
        }
        cut = watchdog(&activity, timeouts, keepalive_on) => Some(cut),
    };
    Ok(Transferred {
        up: activity.up.load(Ordering::Relaxed) + replayed,
        down: activity.down.load(Ordering::Relaxed),
        cut,
    })
}

/// Returns once the relay has been quiet for longer than its timeouts allow. Sleeps until the
/// deadline the last activity gives, and never longer than the half-closed timeout, so a relay that
/// becomes half-closed meanwhile is held to the shorter bound. A relay that lasts [`KEEPALIVE_ARM`]
/// gets keepalive on its TCP upstream socket (`keepalive_on`, a descriptor the caller keeps open for
/// as long as this runs).
async fn watchdog(activity: &Activity, timeouts: Timeouts, mut keepalive_on: Option<std::os::fd::RawFd>) -> Cut {
    let half_closed = timeouts.half_closed.min(timeouts.idle);
    let arm_at = activity.start + KEEPALIVE_ARM;
    loop {
        let (limit, cut) = if activity.one_done.load(Ordering::Relaxed) {
            (half_closed, Cut::HalfClosed)
        } else {
            (timeouts.idle, Cut::Idle)
        };
        let deadline = activity.last() + limit;
        let now = Instant::now();
        if deadline <= now {
            return cut;
        }
        if let Some(fd) = keepalive_on.filter(|_| now >= arm_at) {
            keepalive_on = None;
            // SAFETY: the upstream stream outlives this future (both live in `relay`'s frame, and
            // the select that polls this future ends before `relay` returns).
            let socket = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            // A vanished backend is found by the kernel even while the client waits quietly.
            let _ = socket2::SockRef::from(&socket).set_tcp_keepalive(&keepalive());
        }
        let mut wake = deadline.min(now + half_closed);
        if keepalive_on.is_some() {
            wake = wake.min(arm_at);
        }
        tokio::time::sleep_until(wake).await;
    }
}

/// Copies until `from` reaches end of file, then shuts `to` down for writing (half-close), so the
/// other direction goes on until its own end. The direction that ends last skips the shutdown: both
/// sockets are closed right after, and a close sends the same FIN (its receive side was read to the
/// end, so no RST) — one system call less per connection. When the end arrived with the last bytes
/// (a response and its FIN together), they leave in one packet ([`WriteHalf::try_write_more`]).
/// Every read and write marks the relay active and publishes the direction's byte count. An error
/// names the end that failed: `reader` for a read, the other end for a write.
async fn copy_half(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    mut buf: Vec<u8>,
    reader: Peer,
    activity: &Activity,
    moved: &AtomicU64,
) -> Result<(), SideError> {
    let writer = reader.other();
    let mut total = 0u64;
    loop {
        buf.clear();
        let n = from.read_buf(&mut buf).await.map_err(SideError::on(reader, Op::Read))?;
        activity.touch();
        let (ended, failed) = if n == 0 {
            (true, None)
        } else {
            peek_end(&from, &mut buf)
        };
        // The direction that ends first shuts its writer down (half-close); the other one leaves
        // the FIN to the close that follows.
        let shuts_down = ended && !activity.one_done.swap(true, Ordering::Relaxed);
        if !buf.is_empty() {
            let sent = if shuts_down {
                match to.try_write_more(&buf) {
                    Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(SideError::on(writer, Op::Write)(e)),
                    taken => taken.unwrap_or(0),
                }
            } else {
                0
            };
            to.write_all(&buf[sent..])
                .await
                .map_err(SideError::on(writer, Op::Write))?;
            activity.touch();
            total += buf.len() as u64;
            moved.store(total, Ordering::Relaxed);
        }
        if let Some(e) = failed {
            return Err(SideError::on(reader, Op::Read)(e));
        }
        if ended {
            if shuts_down {
                to.shutdown().await.map_err(SideError::on(writer, Op::Write))?;
            }
            return Ok(());
        }
        if n == buf.capacity() && buf.capacity() < MAX_RELAY_BUFFER {
            buf.reserve_exact(buf.capacity());
        }
    }
}

/// After a short read into `buf`: whether `from` has reached its end already, and a read error
/// to report once `buf` is forwarded. Costs no system call unless the socket was reported closed
/// or readable again ([`ReadHalf::try_read_buf`]); bytes read meanwhile are appended to `buf`.
fn peek_end(from: &ReadHalf<'_>, buf: &mut Vec<u8>) -> (bool, Option<io::Error>) {
    if buf.len() == buf.capacity() {
        return (false, None);
    }
    match from.try_read_buf(buf) {
        Ok(0) => (true, None),
        Ok(_) => (false, None),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => (false, None),
        Err(e) => (false, Some(e)),
    }
}
