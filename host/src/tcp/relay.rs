//! The relay: connects to a backend's target within the connect timeout, replays the previewed bytes
//! and copies both ways with half-close, counting bytes in each direction.
//!
//! Each direction's buffer starts small and doubles whenever a read fills it, up to
//! [`MAX_RELAY_BUFFER`]: an interactive or idle connection holds a few KiB, a bulk one reaches full
//! size after a handful of reads. Buffers are never zero-filled (reads go into spare capacity).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{lookup_host, TcpStream};
use tokio::time::timeout;

use crate::tcp::error::{Op, Peer, SideError};

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
}

/// Connects to `target` (`host:port`), trying each resolved address until the timeout.
pub(crate) async fn connect(target: &str, connect_timeout: Duration) -> Result<TcpStream, RelayError> {
    let attempt = async {
        let addrs = lookup_host(target).await.map_err(|source| RelayError::Resolve {
            target: target.to_owned(),
            source,
        })?;
        // The error is built only when every address failed (an io::Error with a message costs
        // three allocations, which every connection would pay).
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(RelayError::Connect {
            target: target.to_owned(),
            source: last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")),
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

/// Replays `preview` to `upstream`, then relays until both directions are closed.
pub(crate) async fn relay(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    preview: &[u8],
    target: &str,
) -> Result<Transferred, RelayError> {
    // The client socket inherited TCP_NODELAY from its listener.
    let _ = upstream.set_nodelay(true);
    upstream.write_all(preview).await.map_err(|source| RelayError::Replay {
        target: target.to_owned(),
        source,
    })?;
    let (client_read, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    let one_done = AtomicBool::new(false);
    let (up, down) = tokio::try_join!(
        copy_half(client_read, upstream_write, Peer::Client, &one_done),
        copy_half(upstream_read, client_write, Peer::Upstream, &one_done)
    )
    .map_err(RelayError::Io)?;
    Ok(Transferred {
        up: up + preview.len() as u64,
        down,
    })
}

/// Copies until `from` reaches end of file, then shuts `to` down for writing (half-close), so the
/// other direction goes on until its own end. The direction that ends last skips the shutdown: both
/// sockets are closed right after, and a close sends the same FIN (its receive side was read to the
/// end, so no RST) — one system call less per connection. An error names the end that failed:
/// `reader` for a read, the other end for a write.
async fn copy_half(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    reader: Peer,
    one_done: &AtomicBool,
) -> Result<u64, SideError> {
    let writer = reader.other();
    let mut buf: Vec<u8> = Vec::with_capacity(MIN_RELAY_BUFFER);
    let mut total = 0u64;
    loop {
        buf.clear();
        let n = from.read_buf(&mut buf).await.map_err(SideError::on(reader, Op::Read))?;
        if n == 0 {
            if !one_done.swap(true, Ordering::Relaxed) {
                to.shutdown().await.map_err(SideError::on(writer, Op::Write))?;
            }
            return Ok(total);
        }
        to.write_all(&buf).await.map_err(SideError::on(writer, Op::Write))?;
        total += n as u64;
        if n == buf.capacity() && buf.capacity() < MAX_RELAY_BUFFER {
            buf.reserve_exact(buf.capacity());
        }
    }
}
