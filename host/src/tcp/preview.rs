//! The preview: reads a new connection's first bytes, bounded in size (`preview_limit`) and time
//! (`probe_timeout`), re-asking the router as bytes arrive. The bytes are kept for replay upstream.
//! Nothing is allocated for a client that has sent nothing yet.

use std::io;

use crate::tcp::stream::Stream;
use bytes::BufMut;
use tokio::io::AsyncReadExt;
use tokio::time::{sleep_until, Instant};

use crate::routing::router::{Decision, Router};

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
pub(crate) async fn run(stream: &mut Stream, router: &mut Router, buf: &mut Vec<u8>) -> io::Result<Outcome> {
    let routing = &router.registry().routing;
    let (limit, deadline) = (routing.preview_limit, Instant::now() + routing.probe_timeout);
    // Backends that need no bytes (built-in pass, or matchers alone) decide before the client speaks.
    let mut decision = router.step(buf, false);
    // One timer for the whole preview, polled only when the client has not sent yet: a client whose
    // bytes are already there when it is accepted never touches the timer wheel.
    let timer = sleep_until(deadline);
    tokio::pin!(timer);
    loop {
        if decision != Decision::Wait {
            return Ok(Outcome::Routed(decision));
        }
        if buf.len() >= limit {
            return Ok(Outcome::Routed(router.step(buf, true)));
        }
        // Wait before allocating: a silent client holds no buffer.
        tokio::select! {
            biased;
            ready = stream.readable() => ready?,
            () = &mut timer => return Ok(timed_out(router, buf)),
        }
        let old = buf.len();
        let want = CHUNK.min(limit - old);
        buf.reserve_exact(want);
        // Into the spare capacity (never zero-filled), and through `AsyncRead` rather than
        // `try_read`: a short read there clears the socket's readiness, so the relay's first read
        // of the client waits for the next event instead of failing with EAGAIN. The socket is
        // readable, so this returns at once; the timer still bounds a spurious wake-up.
        let mut spare = (&mut *buf).limit(want);
        let read = tokio::select! {
            biased;
            read = stream.read_buf(&mut spare) => Some(read),
            () = &mut timer => None,
        };
        let Some(read) = read else {
            return Ok(timed_out(router, buf));
        };
        match read {
            Ok(0) if old == 0 => return Ok(Outcome::Closed),
            Ok(0) => return Ok(Outcome::Routed(router.step(buf, true))),
            Ok(_) => decision = router.step(buf, false),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// The probe timeout passed: a client that sent nothing is silent; otherwise backends still
/// undecided count as `NoMatch` and the router decides.
fn timed_out(router: &mut Router, buf: &[u8]) -> Outcome {
    if buf.is_empty() {
        Outcome::Silent
    } else {
        Outcome::Routed(router.step(buf, true))
    }
}
