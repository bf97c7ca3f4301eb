//! The upstream servers, in-process on their own tokio runtime: a byte sink (counts what arrives and
//! answers the count at EOF; also holds routed idle connections) and a small request→response
//! server (reads one HTTP-like request head, answers a fixed response, closes first).

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

use crate::pmmux::Upstreams;
use crate::sys;

/// The request every connection-rate client sends (matched by `http(host=bench.local)`).
pub const REQUEST: &[u8] = b"GET /bench HTTP/1.1\r\nHost: bench.local\r\nUser-Agent: pmmux-bench\r\n\r\n";
/// The response the request→response server answers, then closes.
pub const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

/// Sink read buffer, one per runtime thread (never held across an await).
const SINK_BUF: usize = 256 * 1024;

thread_local! {
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Counters the servers keep.
#[derive(Default)]
pub struct Counters {
    /// Sink connections open right now.
    pub sink_live: AtomicUsize,
    /// Accept or I/O errors on either server.
    pub errors: AtomicU64,
}

/// The running servers; stopped with their runtime when dropped.
pub struct Servers {
    /// Where they listen.
    pub addrs: Upstreams,
    /// Their counters.
    pub counters: Arc<Counters>,
    runtime: Option<Runtime>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// Starts both servers on 127.0.0.1 port 0, with `threads` runtime threads pinned to `cpu` if given.
pub fn start(threads: usize, cpu: Option<usize>) -> anyhow::Result<Servers> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("upstream")
        .on_thread_start(move || {
            if let Some(c) = cpu {
                let _ = sys::pin_current(c);
            }
        })
        .enable_all()
        .build()
        .context("starting the upstream runtime")?;
    let counters = Arc::new(Counters::default());
    let (sink, rr) = runtime.block_on(async {
        let sink = TcpListener::bind("127.0.0.1:0").await?;
        let rr = TcpListener::bind("127.0.0.1:0").await?;
        io::Result::Ok((sink, rr))
    })?;
    let addrs = Upstreams {
        rr: rr.local_addr()?,
        sink: sink.local_addr()?,
    };
    runtime.spawn(accept_loop(sink, Arc::clone(&counters), Kind::Sink));
    runtime.spawn(accept_loop(rr, Arc::clone(&counters), Kind::Rr));
    Ok(Servers {
        addrs,
        counters,
        runtime: Some(runtime),
    })
}

#[derive(Clone, Copy)]
enum Kind {
    Sink,
    Rr,
}

async fn accept_loop(listener: TcpListener, counters: Arc<Counters>, kind: Kind) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let c = Arc::clone(&counters);
                tokio::spawn(async move {
                    let result = match kind {
                        Kind::Sink => sink(stream, &c).await,
                        Kind::Rr => request_response(stream).await,
                    };
                    if result.is_err() {
                        c.errors.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            Err(_) => {
                // EMFILE and the like: count, back off, keep serving.
                counters.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Reads until EOF, then writes the byte count (u64 big-endian) and closes.
async fn sink(stream: TcpStream, counters: &Counters) -> io::Result<()> {
    counters.sink_live.fetch_add(1, Ordering::Relaxed);
    let result = sink_inner(&stream).await;
    counters.sink_live.fetch_sub(1, Ordering::Relaxed);
    let total = result?;
    let mut stream = stream;
    stream.write_all(&total.to_be_bytes()).await?;
    stream.shutdown().await
}

async fn sink_inner(stream: &TcpStream) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        stream.readable().await?;
        let step = BUF.with(|b| {
            let mut b = b.borrow_mut();
            if b.len() < SINK_BUF {
                b.resize(SINK_BUF, 0);
            }
            let mut got = 0u64;
            loop {
                match stream.try_read(&mut b[..]) {
                    Ok(0) => return Ok((got, true)),
                    Ok(n) => got += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((got, false)),
                    Err(e) => return Err(e),
                }
            }
        });
        let (got, eof) = step?;
        total += got;
        if eof {
            return Ok(total);
        }
    }
}

/// Reads a request head (up to `\r\n\r\n`, at most 4 KiB), answers [`RESPONSE`], closes first.
async fn request_response(mut stream: TcpStream) -> io::Result<()> {
    let mut head = [0u8; 4096];
    let mut len = 0;
    loop {
        let n = stream.read(&mut head[len..]).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "request cut short"));
        }
        len += n;
        if head[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        if len == head.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "request head too long"));
        }
    }
    stream.write_all(RESPONSE).await?;
    // Dropping closes: the server closes first, so TIME_WAIT stays on the server side.
    Ok(())
}

/// Sends one request to `addr` and checks the response (used as a functional check).
pub async fn one_request(addr: SocketAddr) -> io::Result<()> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(REQUEST).await?;
    let mut got = Vec::with_capacity(RESPONSE.len());
    s.read_to_end(&mut got).await?;
    if got != RESPONSE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected response: {:?}", String::from_utf8_lossy(&got)),
        ));
    }
    Ok(())
}
