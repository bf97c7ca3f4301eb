//! Helpers shared by the routing, relay and lifecycle end-to-end tests (not a test target itself).

#![allow(dead_code)] // each test binary uses its own subset

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

use pmmux_e2e::*;

/// Bound on one client program (curl, ssh, openssl, socat) or one round trip.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on waiting for a log line that the event just caused.
pub const LOG_TIMEOUT: Duration = Duration::from_secs(10);

/// `plugin_dir` plus one `[[listener]]` per address (`"127.0.0.1:1234"`, `"[::1]:1234"`).
pub fn listeners(addresses: &[String]) -> String {
    let mut text = String::from("plugin_dir = \"plugins\"\n");
    for a in addresses {
        text += &format!("[[listener]]\naddress = \"{a}\"\n");
    }
    text
}

/// Start pmmux with `config(ports)` on `n` fresh loopback ports and wait until it listens on all
/// of them. A port another process took between [`free_port`] and pmmux's bind makes pmmux exit;
/// then the whole start is retried on new ports (up to 5 times).
pub fn start_pmmux(n: usize, plugins: &[&str], mut config: impl FnMut(&[u16]) -> String) -> (Pmmux, Vec<u16>) {
    let mut errors = Vec::new();
    for _ in 0..5 {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let pm = Pmmux::start(&config(&ports), plugins);
        let mut failed = None;
        for &p in &ports {
            if let Err(e) = pm.try_wait_listening(loopback(p), PMMUX_START_TIMEOUT) {
                failed = Some(e);
                break;
            }
        }
        match failed {
            None => return (pm, ports),
            // Lost a bind race: the host exited naming the address. Anything else is a real failure.
            Some(e) if !pm.is_running() && e.contains("cannot listen on") => errors.push(e),
            Some(e) => panic!("{e}"),
        }
    }
    panic!("pmmux could not bind fresh ports 5 times:\n{}", errors.join("\n"))
}

/// Start pmmux with one listener on a fresh port; see [`start_pmmux`].
pub fn start_one(plugins: &[&str], mut config: impl FnMut(u16) -> String) -> (Pmmux, u16) {
    let (pm, ports) = start_pmmux(1, plugins, |p| config(p[0]));
    (pm, ports[0])
}

/// The lines of pmmux's log containing every one of `needles`.
pub fn log_lines(pm: &Pmmux, needles: &[&str]) -> Vec<String> {
    pm.log()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_owned)
        .collect()
}

/// Wait up to [`LOG_TIMEOUT`] for a log line containing every one of `needles`; returns it or
/// panics with the log.
pub fn wait_log_line(pm: &Pmmux, needles: &[&str]) -> String {
    let deadline = Instant::now() + LOG_TIMEOUT;
    loop {
        if let Some(line) = log_lines(pm, needles).into_iter().next() {
            return line;
        }
        if Instant::now() >= deadline {
            panic!(
                "no log line with all of {needles:?} within {LOG_TIMEOUT:?}; log:\n{}",
                pm.log()
            );
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// Wait up to [`LOG_TIMEOUT`] until at least `n` log lines contain every one of `needles`.
pub fn wait_log_count(pm: &Pmmux, needles: &[&str], n: usize) {
    assert!(
        eventually(LOG_TIMEOUT, || log_lines(pm, needles).len() >= n),
        "fewer than {n} log lines with all of {needles:?} within {LOG_TIMEOUT:?}; log:\n{}",
        pm.log()
    );
}

/// Poll `cond` every 10 ms for up to `timeout`.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Run a client program bounded by [`CLIENT_TIMEOUT`].
pub fn client(program: &str, args: &[String]) -> Output {
    run(program, args, CLIENT_TIMEOUT)
}

/// `&[&str]` to owned arguments.
pub fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// A connected client with read and write timeouts set.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set read timeout");
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .expect("set write timeout");
    s
}

/// Read exactly `n` bytes (bounded by the stream's read timeout).
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).unwrap_or_else(|e| panic!("read {n} bytes: {e}"));
    buf
}

/// Write `data` (from a thread, so a large payload cannot deadlock against the echo) and read the
/// same number of bytes back; they must be identical.
pub fn echo_exchange(s: &mut TcpStream, data: &[u8]) {
    let mut w = s.try_clone().expect("clone client stream");
    let payload = data.to_vec();
    let writer = thread::spawn(move || w.write_all(&payload));
    let got = read_n(s, data.len());
    writer.join().expect("writer thread").expect("write to the echo");
    assert!(got == data, "the echo returned other bytes ({} bytes sent)", data.len());
}

/// How a client saw its connection end.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// Orderly close (read returned 0) or reset: pmmux closed it.
    Closed,
    /// Still open when the bound passed.
    StillOpen,
}

/// Read (discarding) until the peer closes or resets, for up to `bound`. Returns how it ended,
/// the bytes read and when.
pub fn wait_closed(s: &mut TcpStream, bound: Duration) -> (End, Vec<u8>, Duration) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    s.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("set read timeout");
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (End::Closed, got, start.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return (End::Closed, got, start.elapsed()),
        }
        if start.elapsed() >= bound {
            return (End::StillOpen, got, start.elapsed());
        }
    }
}

/// Send `data` from a thread ignoring errors (the peer may close first), then half-close.
pub fn send_in_background(s: &TcpStream, data: Vec<u8>) -> thread::JoinHandle<io::Result<()>> {
    let mut w = s.try_clone().expect("clone client stream");
    thread::spawn(move || {
        w.write_all(&data)?;
        w.shutdown(Shutdown::Write)
    })
}

/// Whether `[::1]` can be bound here (IPv6 loopback configured).
pub fn ipv6_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}
