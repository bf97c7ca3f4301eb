//! The relay: connects to a backend's target within the connect timeout, replays the previewed bytes
//! and copies both ways with half-close, counting bytes in each direction.

use std::io;
use std::time::Duration;

use tokio::io::{copy_bidirectional_with_sizes, AsyncWriteExt};
use tokio::net::{lookup_host, TcpStream};
use tokio::time::timeout;

/// Buffer per direction: large enough for loopback line rate, small enough for many connections.
pub const RELAY_BUFFER: usize = 64 * 1024;

/// Which side of a relay failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
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
    /// The relay ended with an I/O error on either side.
    #[error("relay error: {0}")]
    Io(io::Error),
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
pub async fn connect(target: &str, connect_timeout: Duration) -> Result<TcpStream, RelayError> {
    let attempt = async {
        let addrs = lookup_host(target).await.map_err(|source| RelayError::Resolve {
            target: target.to_owned(),
            source,
        })?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(RelayError::Connect {
            target: target.to_owned(),
            source: last,
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
pub async fn relay(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    preview: &[u8],
    target: &str,
) -> Result<Transferred, RelayError> {
    let _ = upstream.set_nodelay(true);
    let _ = client.set_nodelay(true);
    upstream.write_all(preview).await.map_err(|source| RelayError::Replay {
        target: target.to_owned(),
        source,
    })?;
    let (up, down) = copy_bidirectional_with_sizes(client, upstream, RELAY_BUFFER, RELAY_BUFFER)
        .await
        .map_err(RelayError::Io)?;
    Ok(Transferred {
        up: up + preview.len() as u64,
        down,
    })
}
