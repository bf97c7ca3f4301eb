//! TCP listeners: bind each configured address and accept until shutdown. Accept never waits on a
//! client (each connection runs in its own task), and accept errors such as EMFILE back off instead
//! of spinning.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::config::ListenerConfig;
use crate::connection::{self, ListenerContext};

/// Pending-connection queue length asked of the kernel.
const BACKLOG: u32 = 4096;

/// Binds a TCP listener for `cfg` (SO_REUSEADDR, so a restart does not wait for TIME_WAIT).
pub fn bind_tcp(cfg: &ListenerConfig) -> io::Result<TcpListener> {
    let socket = if cfg.address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(cfg.address)?;
    socket.listen(BACKLOG)
}

/// Accepts connections until `shutdown` turns true; each connection is spawned on `tracker`.
pub async fn accept_loop(
    listener: TcpListener,
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
