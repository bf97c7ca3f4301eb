//! The clients: one bulk stream, the connection-rate workers, and the holder that opens thousands of
//! connections and keeps them open. I/O errors are counted and reported, never unwrapped.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::sys;
use crate::upstream::{REQUEST, RESPONSE};

/// Write size of the bulk client.
const BULK_CHUNK: usize = 256 * 1024;
/// Longest a single connection-rate exchange may take before it counts as an error.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// One bulk transfer.
#[derive(Debug, Clone, Copy)]
pub struct Bulk {
    /// Bytes the sink says it received.
    pub bytes: u64,
    /// From connect to the sink's count arriving back.
    pub secs: f64,
}

impl Bulk {
    /// Throughput in Gbit/s.
    pub fn gbps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.secs / 1e9
    }
}

/// Sends up to `max_bytes` (or for `max_secs`) to the sink at `addr` over one connection, on a
/// thread of its own pinned to `cpu` if given.
pub fn bulk(addr: SocketAddr, max_bytes: u64, max_secs: f64, cpu: Option<usize>) -> anyhow::Result<Bulk> {
    let worker = std::thread::Builder::new().name("bulk-client".into()).spawn(move || {
        if let Some(c) = cpu {
            let _ = sys::pin_current(c);
        }
        bulk_inner(addr, max_bytes, max_secs)
    })?;
    match worker.join() {
        Ok(r) => r,
        Err(_) => bail!("bulk client thread panicked"),
    }
}

fn bulk_inner(addr: SocketAddr, max_bytes: u64, max_secs: f64) -> anyhow::Result<Bulk> {
    let chunk = vec![0u8; BULK_CHUNK];
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).context("bulk connect")?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let limit = Duration::from_secs_f64(max_secs);
    let mut sent = 0u64;
    while sent < max_bytes && started.elapsed() < limit {
        let n = (max_bytes - sent).min(BULK_CHUNK as u64) as usize;
        s.write_all(&chunk[..n]).context("bulk write")?;
        sent += n as u64;
    }
    s.shutdown(Shutdown::Write).context("bulk shutdown")?;
    let mut count = [0u8; 8];
    s.read_exact(&mut count).context("reading the sink's byte count")?;
    let secs = started.elapsed().as_secs_f64();
    let bytes = u64::from_be_bytes(count);
    if bytes != sent {
        bail!("sink received {bytes} bytes, {sent} were sent");
    }
    Ok(Bulk { bytes, secs })
}

/// One connection-rate run.
#[derive(Debug, Default)]
pub struct Rate {
    /// Completed exchanges.
    pub ok: u64,
    /// Failed exchanges (connect, I/O, timeout or a wrong response).
    pub errors: u64,
    /// The first error seen.
    pub first_error: Option<String>,
    /// Wall time of the run.
    pub secs: f64,
    /// Latency of every completed exchange, connect to EOF, in microseconds, sorted.
    pub lat_us: Vec<u32>,
}

impl Rate {
    /// Completed exchanges per second.
    pub fn per_sec(&self) -> f64 {
        self.ok as f64 / self.secs
    }

    /// Latency percentile `p` (0..=100) in milliseconds.
    pub fn pct_ms(&self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return f64::NAN;
        }
        let i = ((p / 100.0) * (self.lat_us.len() - 1) as f64).round() as usize;
        self.lat_us[i.min(self.lat_us.len() - 1)] as f64 / 1e3
    }
}

/// `workers` concurrent clients, each looping connect → request → response → close, for `secs`.
pub fn rate(addr: SocketAddr, workers: usize, secs: f64, threads: usize, cpu: Option<usize>) -> anyhow::Result<Rate> {
    rate_with(addr, workers, secs, threads, cpu, exchange)
}

/// Like [`rate`], with `exchange` as one connection's whole life (connect, talk, check, close).
pub fn rate_with<F, Fut>(
    addr: SocketAddr,
    workers: usize,
    secs: f64,
    threads: usize,
    cpu: Option<usize>,
    exchange: F,
) -> anyhow::Result<Rate>
where
    F: Fn(SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = io::Result<()>> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("rate-client")
        .on_thread_start(move || {
            if let Some(c) = cpu {
                let _ = sys::pin_current(c);
            }
        })
        .enable_all()
        .build()
        .context("starting the client runtime")?;
    let result = runtime.block_on(async {
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(secs);
        let tasks: Vec<_> = (0..workers)
            .map(|_| tokio::spawn(worker(addr, deadline, exchange.clone())))
            .collect();
        let mut total = Rate::default();
        for t in tasks {
            match t.await {
                Ok(r) => {
                    total.ok += r.ok;
                    total.errors += r.errors;
                    total.first_error = total.first_error.or(r.first_error);
                    total.lat_us.extend(r.lat_us);
                }
                Err(e) => {
                    total.errors += 1;
                    total
                        .first_error
                        .get_or_insert_with(|| format!("worker task failed: {e}"));
                }
            }
        }
        total.secs = started.elapsed().as_secs_f64();
        total
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    let mut result = result;
    result.lat_us.sort_unstable();
    Ok(result)
}

async fn worker<F, Fut>(addr: SocketAddr, deadline: Instant, exchange: F) -> Rate
where
    F: Fn(SocketAddr) -> Fut,
    Fut: Future<Output = io::Result<()>>,
{
    let mut r = Rate::default();
    while Instant::now() < deadline {
        let t0 = Instant::now();
        let outcome = match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(addr)).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "exchange timed out")),
        };
        match outcome {
            Ok(()) => {
                r.ok += 1;
                r.lat_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            Err(e) => {
                r.errors += 1;
                r.first_error.get_or_insert_with(|| e.to_string());
                // Out of ports or descriptors: do not spin on the error.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    r
}

async fn exchange(addr: SocketAddr) -> io::Result<()> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(REQUEST).await?;
    let mut buf = [0u8; 256];
    let mut len = 0;
    loop {
        let n = s.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
        if len == buf.len() {
            break;
        }
    }
    if &buf[..len] != RESPONSE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("wrong response ({len} bytes)"),
        ));
    }
    Ok(())
}

/// Connections opened and kept by [`hold`].
pub struct Held {
    /// The open client sockets (closed when dropped).
    pub streams: Vec<TcpStream>,
    /// Connections that could not be opened (or written to).
    pub errors: u64,
    /// The first error seen.
    pub first_error: Option<String>,
}

/// Opens `n` connections to `addr` and keeps them; with `first_byte`, sends one byte on each so that
/// pmmux routes it (the upstream then holds it), else sends nothing (it stays in the preview).
pub fn hold(addr: SocketAddr, n: usize, first_byte: bool) -> Held {
    let mut held = Held {
        streams: Vec::with_capacity(n),
        errors: 0,
        first_error: None,
    };
    for _ in 0..n {
        let opened = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).and_then(|mut s| {
            if first_byte {
                s.write_all(b"x")?;
            }
            Ok(s)
        });
        match opened {
            Ok(s) => held.streams.push(s),
            Err(e) => {
                held.errors += 1;
                held.first_error.get_or_insert_with(|| e.to_string());
                if held.errors > (n as u64 / 10).max(10) {
                    break;
                }
            }
        }
    }
    held
}
