//! UDP plumbing for the `udp` test: the echo upstream (a thread of its own), the ping-pong clients,
//! the flow filler that shows pmmux many distinct source addresses without holding a socket for
//! each, socat as a reference relay (stopped by its process group), and the admin status reader.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::{pmmux, sys};

/// How long a ping-pong client waits for its echo before counting the datagram lost.
const REPLY_TIMEOUT: Duration = Duration::from_millis(200);
/// How long a ping-pong client may take to get its first echo, before the timed part.
const ESTABLISH_LIMIT: Duration = Duration::from_secs(3);
/// The flow filler's ports start here on each address, below the ephemeral range (32768–60999), so
/// that they do not collide with sockets bound to port 0 (pmmux's upstream sockets among them).
const FILL_PORT0: u16 = 10_000;
/// The filler gives up after this many unanswered flows.
const FILL_MAX_MISSES: usize = 1_000;

/// The echo upstream: one thread answering every datagram to its sender.
pub struct Echo {
    /// Where it listens (127.0.0.1, port 0).
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    /// Binds 127.0.0.1:0 and starts echoing on a thread pinned to `cpu` if given.
    pub fn start(cpu: Option<usize>) -> io::Result<Echo> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name("udp-echo".into()).spawn(move || {
            if let Some(cpu) = cpu {
                let _ = sys::pin_current(cpu);
            }
            let mut buf = vec![0u8; 65_536];
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&buf[..n], from);
                }
            }
        })?;
        Ok(Echo {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One ping-pong run of one or more clients.
#[derive(Debug, Default)]
pub struct PingPong {
    /// Round trips completed (the echo of the datagram just sent came back).
    pub round_trips: u64,
    /// Datagrams whose echo did not come back within [`REPLY_TIMEOUT`].
    pub lost: u64,
    /// Send or receive errors other than a timeout (ICMP port unreachable, ...).
    pub errors: u64,
    /// The first such error.
    pub first_error: Option<String>,
    /// Wall time from the common start to the last client done.
    pub secs: f64,
    /// Round-trip times in µs (every completed round trip).
    pub rtt_us: Vec<f64>,
}

impl PingPong {
    /// Round trips per second, all clients together.
    pub fn per_sec(&self) -> f64 {
        self.round_trips as f64 / self.secs
    }
}

/// `clients` threads (pinned to `cpu` if given), each with its own socket connected to `target`,
/// sending a `payload`-byte datagram and waiting for its echo, over and over for `secs`. Each client
/// first gets one echo back (not timed: the flow is set up), then all start together.
pub fn ping_pong(target: SocketAddr, clients: usize, secs: f64, payload: usize, cpu: Option<usize>) -> PingPong {
    let barrier = Arc::new(Barrier::new(clients + 1));
    let limit = Duration::from_secs_f64(secs);
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                if let Some(c) = cpu {
                    let _ = sys::pin_current(c);
                }
                let socket = UdpSocket::bind("127.0.0.1:0")
                    .and_then(|s| s.connect(target).map(|()| s))
                    .map_err(|e| format!("client socket: {e}"))
                    .and_then(|s| establish(&s, payload.max(8)).map(|()| s));
                barrier.wait();
                match socket {
                    Ok(s) => client(&s, payload.max(8), limit),
                    Err(e) => PingPong {
                        errors: 1,
                        first_error: Some(e),
                        ..PingPong::default()
                    },
                }
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let mut total = PingPong::default();
    for w in workers {
        let one = w.join().unwrap_or_else(|_| PingPong {
            errors: 1,
            first_error: Some("client thread panicked".into()),
            ..PingPong::default()
        });
        total.round_trips += one.round_trips;
        total.lost += one.lost;
        total.errors += one.errors;
        total.first_error = total.first_error.or(one.first_error);
        total.rtt_us.extend(one.rtt_us);
    }
    total.secs = started.elapsed().as_secs_f64();
    total
}

/// Before the timed part: sends datagram 0 until its echo comes back (the flow exists in pmmux, socat
/// has forked the client's child), retrying every 50 ms for up to [`ESTABLISH_LIMIT`].
fn establish(s: &UdpSocket, payload: usize) -> Result<(), String> {
    let out = vec![0u8; payload];
    let mut buf = vec![0u8; 65_536];
    let started = Instant::now();
    let mut last = String::from("no echo");
    s.set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| e.to_string())?;
    while started.elapsed() < ESTABLISH_LIMIT {
        match s.send(&out).and_then(|_| s.recv(&mut buf)) {
            Ok(n) if buf[..n] == out[..] => {
                return s.set_read_timeout(Some(REPLY_TIMEOUT)).map_err(|e| e.to_string());
            }
            Ok(_) => last = "unexpected echo".into(),
            Err(e) => {
                last = e.to_string();
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    Err(format!(
        "no echo within {ESTABLISH_LIMIT:?} before the timed part: {last}"
    ))
}

fn client(s: &UdpSocket, payload: usize, limit: Duration) -> PingPong {
    let mut out = vec![0x5au8; payload];
    let mut buf = vec![0u8; 65_536];
    let mut r = PingPong::default();
    let started = Instant::now();
    let mut seq = 0u64;
    while started.elapsed() < limit {
        seq += 1;
        out[..8].copy_from_slice(&seq.to_be_bytes());
        let t0 = Instant::now();
        if let Err(e) = s.send(&out) {
            fail(&mut r, e);
            continue;
        }
        loop {
            match s.recv(&mut buf) {
                // An echo of an earlier datagram that came back after its timeout: skip it.
                Ok(n) if n != payload || buf[..8] != out[..8] => continue,
                Ok(_) => {
                    r.round_trips += 1;
                    r.rtt_us.push(t0.elapsed().as_secs_f64() * 1e6);
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => r.lost += 1,
                Err(e) => fail(&mut r, e),
            }
            break;
        }
    }
    r
}

fn fail(r: &mut PingPong, e: io::Error) {
    r.errors += 1;
    r.first_error.get_or_insert_with(|| e.to_string());
    // An ICMP error (nothing listening yet): do not spin on it.
    std::thread::sleep(Duration::from_millis(1));
}

/// Sends single datagrams to `target` until one is echoed (pmmux or socat just started), for up
/// to `limit`.
pub fn wait_echo(target: SocketAddr, limit: Duration) -> anyhow::Result<()> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    s.connect(target)?;
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 64];
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        match s.send(b"pmmux-bench probe").and_then(|_| s.recv(&mut buf)) {
            Ok(n) if &buf[..n] == b"pmmux-bench probe" => return Ok(()),
            Ok(n) => last = format!("unexpected answer of {n} bytes"),
            Err(e) => {
                last = e.to_string();
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    bail!("no echo through {target} within {limit:?} ({last})")
}

/// The flow filler's outcome.
#[derive(Debug, Default)]
pub struct Fill {
    /// Flows whose datagram was echoed back.
    pub answered: usize,
    /// Flows whose echo did not come within the timeout.
    pub missed: usize,
    /// Source addresses skipped because they could not be bound (port in use).
    pub bind_failed: usize,
    /// Wall time.
    pub secs: f64,
}

/// Presents `n` new clients to `target`: `threads` threads, thread `t` using source address
/// 127.0.0.(2 + t) and ports upward from [`FILL_PORT0`]; for each, a fresh socket bound to that
/// address, one datagram, its echo awaited for `timeout`, the socket closed. Stops early after
/// [`FILL_MAX_MISSES`] misses.
pub fn fill_flows(target: SocketAddr, n: usize, threads: usize, timeout: Duration) -> Fill {
    let started = Instant::now();
    let threads = threads.clamp(1, 200);
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let want = n / threads + usize::from(t < n % threads);
            let ip = Ipv4Addr::new(127, 0, 0, 2 + t as u8);
            let max_misses = FILL_MAX_MISSES.div_ceil(threads);
            std::thread::spawn(move || fill_one(target, ip, want, timeout, max_misses))
        })
        .collect();
    let mut total = Fill::default();
    for w in workers {
        if let Ok(f) = w.join() {
            total.answered += f.answered;
            total.missed += f.missed;
            total.bind_failed += f.bind_failed;
        }
    }
    total.secs = started.elapsed().as_secs_f64();
    total
}

fn fill_one(target: SocketAddr, ip: Ipv4Addr, want: usize, timeout: Duration, max_misses: usize) -> Fill {
    let mut f = Fill::default();
    let mut buf = [0u8; 64];
    let mut port = FILL_PORT0;
    while f.answered + f.missed < want && f.missed < max_misses {
        let Some(next) = port.checked_add(1) else { break };
        let this = port;
        port = next;
        let Ok(s) = UdpSocket::bind((ip, this)) else {
            f.bind_failed += 1;
            continue;
        };
        let msg = [ip.octets()[3], (this >> 8) as u8, this as u8, b'f'];
        let ok = s.connect(target).is_ok()
            && s.set_read_timeout(Some(timeout)).is_ok()
            && s.send(&msg).is_ok()
            && matches!(s.recv(&mut buf), Ok(n) if buf[..n] == msg);
        if ok {
            f.answered += 1;
        } else {
            f.missed += 1;
        }
    }
    f
}

/// socat relaying UDP: `socat -T 10 UDP4-LISTEN:<port>,bind=127.0.0.1,reuseaddr,fork UDP4:<upstream>`,
/// in a process group of its own (each client gets a forked child); the group is stopped on drop.
pub struct Socat {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Socat {
    /// The socat arguments for relaying `listen` to `upstream`.
    pub fn args(listen: SocketAddr, upstream: SocketAddr) -> Vec<String> {
        vec![
            "-T".into(),
            "10".into(),
            format!("UDP4-LISTEN:{},bind={},reuseaddr,fork", listen.port(), listen.ip()),
            format!("UDP4:{upstream}"),
        ]
    }

    /// Starts socat on a free port, pinned to `cpu` if given, and waits until it echoes.
    pub fn start(upstream: SocketAddr, cpu: Option<usize>) -> anyhow::Result<Socat> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_udp_port()?));
        let mut cmd = Command::new("socat");
        cmd.args(Self::args(addr, upstream)).process_group(0);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        if let Some(cpu) = cpu {
            // SAFETY: only an async-signal-safe syscall runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || sys::pin_current(cpu));
            }
        }
        let child = cmd.spawn().context("starting socat")?;
        pmmux::track(child.id(), true);
        let s = Socat { child, addr };
        wait_echo(addr, Duration::from_secs(5))?;
        Ok(s)
    }
}

impl Drop for Socat {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        if matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: signalling the process group we created (its id is our child's PID, which is
            // not reaped yet): socat and the children it forked for each client.
            unsafe { libc::kill(-pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: as above.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = self.child.wait();
        }
        pmmux::track(self.child.id(), false);
    }
}

/// A UDP port free right now on 127.0.0.1 (bound to port 0, then released).
pub fn free_udp_port() -> io::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The `flows` count of UDP listener `name` from pmmux's admin endpoint (`GET /status` JSON).
pub fn admin_flows(admin: SocketAddr, name: &str) -> anyhow::Result<u64> {
    let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /status HTTP/1.0\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    json_udp_flows(&text, name).with_context(|| format!("no UDP listener `{name}` with flows in the status"))
}

/// Finds `"flows": N` after `"name": "<name>"` inside the status's `"udp"` array.
fn json_udp_flows(text: &str, name: &str) -> Option<u64> {
    let udp = &text[text.find("\"udp\"")?..];
    let entry = &udp[udp.find(&format!("\"{name}\""))?..];
    let flows = &entry[entry.find("\"flows\"")? + 7..];
    let digits: String = flows
        .trim_start_matches([':', ' '])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_flows_of_the_named_udp_listener() {
        let json = r#"{"listeners": [{"name": "a"}], "udp": [
            {"name": "a", "address": "127.0.0.1:1", "flows": 3, "datagrams": 9},
            {"name": "b", "address": "127.0.0.1:2", "flows":100000, "datagrams": 9}]}"#;
        assert_eq!(json_udp_flows(json, "a"), Some(3));
        assert_eq!(json_udp_flows(json, "b"), Some(100_000));
        assert_eq!(json_udp_flows(json, "c"), None);
    }

    #[test]
    fn ping_pong_through_the_echo() {
        let echo = Echo::start(None).expect("echo");
        let r = ping_pong(echo.addr, 2, 0.2, 64, None);
        assert!(r.round_trips > 0 && r.errors == 0, "{r:?}");
        assert_eq!(r.rtt_us.len() as u64, r.round_trips);
        let f = fill_flows(echo.addr, 20, 2, Duration::from_millis(500));
        assert_eq!((f.answered, f.missed), (20, 0), "{f:?}");
    }
}
