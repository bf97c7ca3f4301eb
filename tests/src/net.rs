//! Loopback ports: finding free ones, waiting for listeners, and telling which process owns a socket.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// Ports this test process has handed out already: the kernel may pick the same free port twice
/// in a row, and two callers given one port (a listener and the admin endpoint, or a "dead"
/// target and a live server) make a test fail for no reason of its own.
static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// Bind to port 0 with `bind` until the kernel picks a port not handed out before in this process.
fn fresh_port(what: &str, bind: impl Fn() -> std::io::Result<u16>) -> u16 {
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for _ in 0..64 {
        let port = bind().unwrap_or_else(|e| panic!("bind {what}: {e}"));
        if !handed.contains(&port) {
            handed.push(port);
            return port;
        }
    }
    panic!("bind {what}: the kernel kept returning ports already handed out")
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close), and not
/// handed out before by this process.
///
/// Another process may take it before it is used again; servers in this crate therefore retry
/// with a new port when their bind fails (see the server modules). For a port where nothing
/// must listen, use [`RefusedPort`], which holds the port.
pub fn free_port() -> u16 {
    fresh_port("127.0.0.1:0", || {
        TcpListener::bind("127.0.0.1:0")?.local_addr().map(|a| a.port())
    })
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    fresh_port("udp 127.0.0.1:0", || {
        UdpSocket::bind("127.0.0.1:0")?.local_addr().map(|a| a.port())
    })
}

/// A TCP port on [::1] that was free a moment ago.
pub fn free_port_v6() -> u16 {
    fresh_port("[::1]:0 (is IPv6 loopback configured?)", || {
        TcpListener::bind("[::1]:0")?.local_addr().map(|a| a.port())
    })
}

/// A TCP port on 127.0.0.1 that refuses every connection for as long as this value lives: a
/// socket is bound to it and never listens, so no other process can take the port and a connect
/// gets a reset (ECONNREFUSED). The target for "the upstream is down" tests.
#[derive(Debug)]
pub struct RefusedPort {
    /// Bound, never listening: holds the port.
    _socket: socket2::Socket,
    /// The port it holds.
    port: u16,
}

impl RefusedPort {
    /// Reserve a port on 127.0.0.1 that refuses connections.
    pub fn new() -> RefusedPort {
        let bind = || -> std::io::Result<(socket2::Socket, u16)> {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
            let port = socket.local_addr()?.as_socket().map_or(0, |a| a.port());
            Ok((socket, port))
        };
        let (socket, port) = bind().expect("bind a refusing socket on 127.0.0.1:0");
        RefusedPort { _socket: socket, port }
    }

    /// The reserved port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Default for RefusedPort {
    fn default() -> Self {
        RefusedPort::new()
    }
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Wait up to `timeout` until a TCP connection to `addr` succeeds (each attempt bounded too).
///
/// This connects, so the listener sees (and logs) a connection that closes at once; to wait for a
/// process the harness started, prefer [`crate::ChildGuard::wait_listening`], which does not.
pub fn wait_for_port(addr: impl ToSocketAddrs, timeout: Duration) -> bool {
    let Some(addr) = addr.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return false;
    };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = left.min(Duration::from_millis(500));
        if !attempt.is_zero() && TcpStream::connect_timeout(&addr, attempt).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(25));
    }
}

fn parse_hex_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    // The kernel prints the address as 32-bit words in host byte order.
    let word =
        |i: usize| -> Option<[u8; 4]> { Some(u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?.to_ne_bytes()) };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Whether a socket bound to `local` serves `wanted` (same port; same address, a wildcard, or
/// the IPv4-mapped form of it).
fn covers(local: SocketAddr, wanted: SocketAddr) -> bool {
    if local.port() != wanted.port() {
        return false;
    }
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    local.ip().is_unspecified() || canon(local.ip()) == canon(wanted.ip())
}

/// Socket inodes in `/proc/net/{proto}{,6}` that serve `addr`, restricted to state `state`
/// (hex, e.g. "0A" = LISTEN) when given.
fn socket_inodes(proto: &str, addr: SocketAddr, state: Option<&str>) -> Vec<u64> {
    let mut inodes = Vec::new();
    for file in [format!("/proc/net/{proto}"), format!("/proc/net/{proto}6")] {
        let Ok(table) = fs::read_to_string(&file) else {
            continue;
        };
        for line in table.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || state.is_some_and(|s| f[3] != s) {
                continue;
            }
            let Some(local) = parse_hex_addr(f[1]) else {
                continue;
            };
            if covers(local, addr) {
                if let Ok(inode) = f[9].parse::<u64>() {
                    if inode != 0 {
                        inodes.push(inode);
                    }
                }
            }
        }
    }
    inodes
}

fn pid_has_socket(pid: u32, inodes: &[u64]) -> bool {
    socket_fd(pid, inodes).is_some()
}

/// The number of a descriptor of process `pid` that is one of the sockets `inodes`.
fn socket_fd(pid: u32, inodes: &[u64]) -> Option<i32> {
    if inodes.is_empty() {
        return None;
    }
    fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten().find_map(|fd| {
        let target = fs::read_link(fd.path()).ok()?;
        let inode = target
            .to_str()?
            .strip_prefix("socket:[")?
            .strip_suffix(']')?
            .parse::<u64>()
            .ok()?;
        inodes.contains(&inode).then(|| fd.file_name().to_str()?.parse().ok())?
    })
}

/// Whether process `pid` holds a TCP socket listening on `addr` (or on its wildcard).
pub fn pid_listens_tcp(pid: u32, addr: SocketAddr) -> bool {
    pid_has_socket(pid, &socket_inodes("tcp", addr, Some("0A")))
}

/// An integer socket option (`level`, `name`) of the TCP socket process `pid` listens on at
/// `addr`, read from a duplicate of its descriptor (`pidfd_getfd`, Linux 5.6+; needs the right to
/// ptrace `pid`, which root has). `None` when no such socket or the kernel refuses.
pub fn listener_sockopt(pid: u32, addr: SocketAddr, level: i32, name: i32) -> Option<i32> {
    let fd = socket_fd(pid, &socket_inodes("tcp", addr, Some("0A")))?;
    // SAFETY: plain system calls on integers; every descriptor they return is closed below.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) as i32;
        if pidfd < 0 {
            return None;
        }
        let dup = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) as i32;
        libc::close(pidfd);
        if dup < 0 {
            return None;
        }
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let rc = libc::getsockopt(dup, level, name, std::ptr::addr_of_mut!(value).cast(), &mut len);
        libc::close(dup);
        (rc == 0).then_some(value)
    }
}

/// Whether process `pid` holds a UDP socket bound to `addr` (or to its wildcard).
pub fn pid_bound_udp(pid: u32, addr: SocketAddr) -> bool {
    pid_has_socket(pid, &socket_inodes("udp", addr, None))
}

/// Whether process `pid` holds the established TCP connection between `local` and `remote` (as
/// seen from its side: `local` is its own address). Asks `ss` (iproute2, over netlink, filtered
/// in the kernel), which stays fast with tens of thousands of TIME_WAIT sockets around, where
/// reading `/proc/net/tcp` takes seconds; falls back to `/proc` without `ss`.
pub fn pid_has_tcp_connection(pid: u32, local: SocketAddr, remote: SocketAddr) -> bool {
    let out = std::process::Command::new("ss")
        .args([
            "-Htnp",
            "state",
            "established",
            "src",
            &local.to_string(),
            "dst",
            &remote.to_string(),
        ])
        .output();
    if let Some(out) = out.ok().filter(|o| o.status.success()) {
        let needle = format!("pid={pid},");
        return String::from_utf8_lossy(&out.stdout).contains(&needle);
    }
    let mut inodes = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(table) = fs::read_to_string(file) else { continue };
        for line in table.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 10 && parse_hex_addr(f[1]) == Some(local) && parse_hex_addr(f[2]) == Some(remote) {
                inodes.extend(f[9].parse::<u64>().ok().filter(|&i| i != 0));
            }
        }
    }
    pid_has_socket(pid, &inodes)
}

/// Whether any process listens on TCP `addr`, from `/proc/net` (no connection is made).
pub fn tcp_listening(addr: SocketAddr) -> bool {
    !socket_inodes("tcp", addr, Some("0A")).is_empty()
}

/// Try `attempt` on up to 5 fresh free ports; panic with every error if none works.
pub(crate) fn with_free_port<T>(what: &str, mut attempt: impl FnMut(u16) -> Result<T, String>) -> T {
    let mut errors = Vec::new();
    for _ in 0..5 {
        let port = free_port();
        match attempt(port) {
            Ok(server) => return server,
            Err(e) => errors.push(format!("port {port}: {e}")),
        }
    }
    panic!("could not start {what} after 5 attempts:\n{}", errors.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_addresses() {
        let v4 = parse_hex_addr("0100007F:1F90").expect("v4");
        if cfg!(target_endian = "little") {
            assert_eq!(v4, "127.0.0.1:8080".parse().expect("addr"));
            let v6 = parse_hex_addr("00000000000000000000000001000000:0016").expect("v6");
            assert_eq!(v6, "[::1]:22".parse().expect("addr"));
        }
        assert!(covers(
            "0.0.0.0:80".parse().expect("addr"),
            "127.0.0.1:80".parse().expect("addr")
        ));
        assert!(covers(
            "[::ffff:127.0.0.1]:80".parse().expect("addr"),
            "127.0.0.1:80".parse().expect("addr")
        ));
        assert!(!covers(
            "127.0.0.2:80".parse().expect("addr"),
            "127.0.0.1:80".parse().expect("addr")
        ));
    }
}
