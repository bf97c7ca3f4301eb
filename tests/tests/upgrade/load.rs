//! The load the upgrade test runs through pmmux: short echo connections tallied by outcome, long
//! checksummed streams, and a lean echo server that keeps nothing of closed connections.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::common::*;
use pmmux_e2e::*;
use sha2::{Digest, Sha256};

/// Outcomes of the short connections.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) ok: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) reset: AtomicU64,
    pub(crate) corrupted: AtomicU64,
    pub(crate) other: AtomicU64,
    pub(crate) first_problem: Mutex<Option<String>>,
}

impl Tally {
    pub(crate) fn problem(&self, counter: &AtomicU64, what: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.first_problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(what);
    }

    pub(crate) fn assert_clean(&self, at_least: u64) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let summary = format!(
            "ok {} refused {} reset {} corrupted {} other {}; first problem: {:?}",
            get(&self.ok),
            get(&self.refused),
            get(&self.reset),
            get(&self.corrupted),
            get(&self.other),
            self.first_problem.lock().unwrap_or_else(|p| p.into_inner())
        );
        eprintln!("short connections: {summary}");
        assert_eq!(
            (
                get(&self.refused),
                get(&self.reset),
                get(&self.corrupted),
                get(&self.other)
            ),
            (0, 0, 0, 0),
            "{summary}"
        );
        assert!(get(&self.ok) >= at_least, "too few connections completed: {summary}");
    }
}

pub(crate) fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
    )
}

/// One short connection: connect, send `payload`, half-close, read the echo to EOF.
pub(crate) fn one_short(addr: SocketAddr, payload: &[u8], tally: &Tally) {
    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            return tally.problem(&tally.refused, format!("connect: {e}"))
        }
        Err(e) if is_reset(&e) => return tally.problem(&tally.reset, format!("connect: {e}")),
        Err(e) => return tally.problem(&tally.other, format!("connect: {e}")),
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(15)));
    let mut got = Vec::with_capacity(payload.len());
    let result = s
        .write_all(payload)
        .and_then(|_| s.shutdown(Shutdown::Write))
        .and_then(|_| s.read_to_end(&mut got));
    match result {
        Ok(_) if got == payload => {
            tally.ok.fetch_add(1, Ordering::Relaxed);
        }
        Ok(n) => tally.problem(
            &tally.corrupted,
            format!("echo of {} bytes came back as {n} different bytes", payload.len()),
        ),
        Err(e) if is_reset(&e) => tally.problem(&tally.reset, format!("exchange: {e}")),
        Err(e) => tally.problem(&tally.other, format!("exchange: {e}")),
    }
}

/// `threads` client threads looping short connections until the returned flag is set.
pub(crate) fn short_load(
    addr: SocketAddr,
    threads: usize,
    tally: &Arc<Tally>,
) -> (Arc<AtomicBool>, Vec<thread::JoinHandle<()>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let handles = (0..threads)
        .map(|i| {
            let (stop, tally) = (Arc::clone(&stop), Arc::clone(tally));
            let payload = random_bytes(512 + i * 97);
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    one_short(addr, &payload, &tally);
                }
            })
        })
        .collect();
    (stop, handles)
}

pub(crate) fn stop_load(stop: Arc<AtomicBool>, handles: Vec<thread::JoinHandle<()>>) {
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("client thread");
    }
}

/// A long stream: random chunks of 8 KiB, one every 20 ms, echoed back, until `stop` is set (so
/// it spans every upgrade of the test); the result is the byte count if the SHA-256 of what came
/// back equals that of what was sent. (Modest on purpose: the test's own hashing and random bytes
/// run unoptimised, and four such streams must not fall behind on two busy cores.)
pub(crate) struct Stream {
    pub(crate) local: SocketAddr,
    pub(crate) done: thread::JoinHandle<Result<u64, String>>,
}

pub(crate) fn long_stream(addr: SocketAddr, stop: &Arc<AtomicBool>) -> Stream {
    let s = connect(addr);
    let local = s.local_addr().expect("local address");
    s.set_read_timeout(Some(CLIENT_TIMEOUT)).expect("timeout");
    let mut writer = s.try_clone().expect("clone");
    let stop = Arc::clone(stop);
    let sender = thread::spawn(move || -> std::io::Result<(String, u64)> {
        let (mut sent, mut total) = (Sha256::new(), 0u64);
        while !stop.load(Ordering::Relaxed) {
            let chunk = random_bytes(8 * 1024);
            sent.update(&chunk);
            writer.write_all(&chunk)?;
            total += chunk.len() as u64;
            thread::sleep(Duration::from_millis(20));
        }
        writer.shutdown(Shutdown::Write)?;
        Ok((format!("{:x}", sent.finalize()), total))
    });
    let done = thread::spawn(move || {
        let mut s = s;
        let mut back = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    back.update(&buf[..n]);
                    total += n as u64;
                }
                Err(e) => return Err(format!("stream read after {total} bytes: {e}")),
            }
        }
        let (sent, sent_bytes) = sender
            .join()
            .map_err(|_| "sender panicked".to_string())?
            .map_err(|e| format!("stream write: {e}"))?;
        let back = format!("{:x}", back.finalize());
        if back == sent && total == sent_bytes {
            Ok(total)
        } else {
            Err(format!(
                "stream corrupted: sent {sent_bytes} bytes {sent}, got back {total} bytes {back}"
            ))
        }
    });
    Stream { local, done }
}

/// A thread-per-connection echo server that keeps nothing of closed connections (the harness's
/// `TcpEcho` keeps a clone of every accepted socket, thousands under this load).
pub(crate) fn lean_echo() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let addr = listener.local_addr().expect("echo address");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = stream.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}
