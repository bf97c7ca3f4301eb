//! In-process loopback servers (TCP echo, TCP SHA-256 sink, UDP echo) and clients for checksummed relays.
//!
//! They run on plain std threads, so they work from sync tests and from any async runtime alike.
//! Dropping a server stops its accept loop (polled every few ms), shuts down every connection it
//! accepted (which ends their threads) and joins the accept thread.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::data::hex;

/// A connection idle this long on a server side is dropped (insurance; drop ends them sooner).
const SERVER_IDLE: Duration = Duration::from_secs(120);
const ACCEPT_POLL: Duration = Duration::from_millis(5);

type Handler = dyn Fn(TcpStream) + Send + Sync + 'static;

/// A TCP server on a loopback port with a handler thread per connection; stopped on drop.
pub struct TcpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl TcpServer {
    /// Serve `handler` on `bind` (use port 0, e.g. `"127.0.0.1:0"` or `"[::1]:0"`).
    pub fn start_with(bind: &str, handler: impl Fn(TcpStream) + Send + Sync + 'static) -> io::Result<TcpServer> {
        let listener = TcpListener::bind(bind)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let thread = {
            let (stop, accepted, conns) = (stop.clone(), accepted.clone(), conns.clone());
            thread::Builder::new()
                .name(format!("tcp-server-{addr}"))
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        match listener.accept() {
                            Ok((stream, _)) => {
                                accepted.fetch_add(1, Ordering::SeqCst);
                                let _ = stream.set_nonblocking(false);
                                let _ = stream.set_read_timeout(Some(SERVER_IDLE));
                                let _ = stream.set_write_timeout(Some(SERVER_IDLE));
                                if let Ok(clone) = stream.try_clone() {
                                    lock(&conns).push(clone);
                                }
                                let handler = handler.clone();
                                thread::spawn(move || handler(stream));
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(ACCEPT_POLL),
                            Err(_) => thread::sleep(ACCEPT_POLL),
                        }
                    }
                })?
        };
        Ok(TcpServer {
            addr,
            stop,
            accepted,
            conns,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Join first (bounded by the accept poll), so no connection is accepted after the sweep.
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for conn in lock(&self.conns).drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Echo server: sends back every byte it receives; half-closes when the client does.
pub struct TcpEcho;

impl TcpEcho {
    /// Start on 127.0.0.1 (port chosen by the kernel).
    pub fn start() -> TcpServer {
        Self::start_on("127.0.0.1:0").expect("start TCP echo server")
    }

    /// Start on `bind` (e.g. `"[::1]:0"`).
    pub fn start_on(bind: &str) -> io::Result<TcpServer> {
        TcpServer::start_with(bind, |mut stream| {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = stream.shutdown(Shutdown::Write);
        })
    }
}

/// Sink server: reads until the client half-closes, then replies with the 64 lowercase hex
/// characters of the SHA-256 of everything received (no newline) and closes.
pub struct TcpSink;

impl TcpSink {
    /// Start on 127.0.0.1 (port chosen by the kernel).
    pub fn start() -> TcpServer {
        Self::start_on("127.0.0.1:0").expect("start TCP sha256 sink")
    }

    /// Start on `bind` (e.g. `"[::1]:0"`).
    pub fn start_on(bind: &str) -> io::Result<TcpServer> {
        TcpServer::start_with(bind, |mut stream| {
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => hasher.update(&buf[..n]),
                    Err(_) => return,
                }
            }
            let _ = stream.write_all(hex(&hasher.finalize()).as_bytes());
            let _ = stream.shutdown(Shutdown::Both);
        })
    }
}

/// Connect to `addr`, send `data` (from a writer thread, so large payloads cannot deadlock
/// against an echo), half-close, and read until the peer closes. Everything is bounded by
/// `timeout` overall; a timeout is an `Err(TimedOut)`.
pub fn tcp_roundtrip(addr: SocketAddr, data: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    tcp_roundtrip_from(None, addr, data, timeout)
}

/// Like [`tcp_roundtrip`], from the local address `source` (any loopback address, 127.0.0.0/8,
/// port chosen by the kernel) when given: a test can be several clients.
pub fn tcp_roundtrip_from(
    source: Option<std::net::IpAddr>,
    addr: SocketAddr,
    data: &[u8],
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut stream = match source {
        None => TcpStream::connect_timeout(&addr, timeout)?,
        Some(ip) => {
            let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
            socket.bind(&SocketAddr::new(ip, 0).into())?;
            socket.connect_timeout(&addr.into(), timeout)?;
            socket.into()
        }
    };
    let slice = Duration::from_millis(200);
    stream.set_read_timeout(Some(slice))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut writer = stream.try_clone()?;
    let payload = data.to_vec();
    let sender = thread::spawn(move || -> io::Result<()> {
        writer.write_all(&payload)?;
        writer.shutdown(Shutdown::Write)
    });
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let result = loop {
        if Instant::now() >= deadline {
            break Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "tcp_roundtrip to {addr}: {} bytes received before the {timeout:?} timeout",
                    received.len()
                ),
            ));
        }
        match stream.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    // Unblocks the writer if it is still stuck (timeout or error), so the join is bounded.
    if result.is_err() {
        let _ = stream.shutdown(Shutdown::Both);
    }
    let sent = sender
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("writer thread panicked")));
    result?;
    sent?;
    Ok(received)
}

/// UDP echo server: sends every datagram back to its sender. Stopped on drop.
pub struct UdpEcho {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl UdpEcho {
    /// Start on 127.0.0.1 (port chosen by the kernel).
    pub fn start() -> UdpEcho {
        Self::start_on("127.0.0.1:0").expect("start UDP echo server")
    }

    /// Start on `bind` (e.g. `"[::1]:0"`).
    pub fn start_on(bind: &str) -> io::Result<UdpEcho> {
        let socket = UdpSocket::bind(bind)?;
        socket.set_read_timeout(Some(Duration::from_millis(20)))?;
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, received) = (stop.clone(), received.clone());
            thread::Builder::new().name(format!("udp-echo-{addr}")).spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok((n, peer)) = socket.recv_from(&mut buf) {
                        received.fetch_add(1, Ordering::SeqCst);
                        let _ = socket.send_to(&buf[..n], peer);
                    }
                }
            })?
        };
        Ok(UdpEcho {
            addr,
            stop,
            received,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// How many datagrams it received so far.
    pub fn datagrams(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Send one datagram from a fresh socket on 127.0.0.1 (or [::1] for an IPv6 `addr`) and wait up
/// to `timeout` for one reply.
pub fn udp_roundtrip(addr: SocketAddr, data: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let socket = UdpSocket::bind(if addr.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" })?;
    socket.set_read_timeout(Some(timeout))?;
    socket.send_to(data, addr)?;
    let mut buf = vec![0u8; 65536];
    let (n, _) = socket.recv_from(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}
