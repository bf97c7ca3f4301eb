//! The preview: reads a new connection's first bytes, bounded in size (`preview_limit`) and time
//! (`probe_timeout`), re-asking the router as bytes arrive. The bytes are kept for replay upstream.
//! Nothing is allocated for a client that has sent nothing yet.

use std::io;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use crate::router::{Decision, Router};

/// Bytes read per step while previewing (the buffer grows by this much, up to the limit).
const CHUNK: usize = 4096;

/// How the preview ended.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// The router chose a backend.
    Routed(Decision),
    /// The client sent nothing within the probe timeout.
    Silent,
    /// The client closed before sending anything.
    Closed,
}

/// Reads into `buf` until the router decides; `buf` holds the previewed bytes afterwards.
pub async fn run(stream: &mut TcpStream, router: &mut Router, buf: &mut Vec<u8>) -> io::Result<Outcome> {
    let routing = &router.registry().routing;
    let (limit, deadline) = (routing.preview_limit, Instant::now() + routing.probe_timeout);
    // Backends that need no bytes (built-in pass, or matchers alone) decide before the client speaks.
    let mut decision = router.step(buf, false);
    loop {
        if decision != Decision::Wait {
            return Ok(Outcome::Routed(decision));
        }
        if buf.len() >= limit {
            return Ok(Outcome::Routed(router.step(buf, true)));
        }
        match timeout_at(deadline, stream.readable()).await {
            Err(_elapsed) if buf.is_empty() => return Ok(Outcome::Silent),
            Err(_elapsed) => return Ok(Outcome::Routed(router.step(buf, true))),
            Ok(ready) => ready?,
        }
        let old = buf.len();
        buf.resize((old + CHUNK).min(limit), 0);
        // Through `AsyncRead` rather than `try_read`: a short read there clears the socket's
        // readiness, so the relay's first read of the client waits for the next event instead of
        // failing with EAGAIN (one system call less per connection). The socket is readable, so
        // this returns at once; the deadline still bounds a spurious wake-up.
        let read = match timeout_at(deadline, stream.read(&mut buf[old..])).await {
            Ok(read) => read,
            Err(_elapsed) => Err(io::ErrorKind::WouldBlock.into()),
        };
        match read {
            Ok(0) => {
                buf.truncate(old);
                if buf.is_empty() {
                    return Ok(Outcome::Closed);
                }
                return Ok(Outcome::Routed(router.step(buf, true)));
            }
            Ok(n) => {
                buf.truncate(old + n);
                decision = router.step(buf, false);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => buf.truncate(old),
            Err(e) => {
                buf.truncate(old);
                return Err(e);
            }
        }
    }
}
