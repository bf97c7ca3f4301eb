//! Listening sockets this process did not bind itself: handed over by the process it replaces
//! (`PMMUX_UPGRADE`, see [`super`]) or passed by systemd socket activation (`LISTEN_FDS`,
//! sd_listen_fds(3)). Read once at start-up into a pool; a listener whose address matches a socket
//! in the pool takes it instead of binding. What nobody took is closed with a warning after start-up.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard, OnceLock};

use super::Kind;
use crate::config::listen::ListenAddr;

/// Where the pool's sockets came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The process being upgraded (`PMMUX_UPGRADE`): matched by configured address.
    Upgrade,
    /// systemd (`LISTEN_FDS`): matched by the address the socket is bound to.
    Systemd,
}

/// One inherited socket.
#[derive(Debug)]
struct Entry {
    kind: Kind,
    address: ListenAddr,
    fd: OwnedFd,
    /// UDP only, upgrade only: this process's end of the flow tunnel to the old process.
    tunnel: Option<OwnedFd>,
    source: Source,
}

/// Why an inherited descriptor cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InheritError {
    /// An environment variable does not parse.
    #[error("{var}: {why}")]
    Malformed {
        /// The variable.
        var: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A descriptor is not the socket it is said to be.
    #[error("{var}: descriptor {fd} is not a {expected} socket: {why}")]
    NotASocket {
        /// The variable naming it.
        var: &'static str,
        /// The descriptor.
        fd: RawFd,
        /// What it should be.
        expected: &'static str,
        /// What it is.
        why: String,
    },
}

static POOL: OnceLock<Mutex<Vec<Entry>>> = OnceLock::new();

fn pool() -> MutexGuard<'static, Vec<Entry>> {
    POOL.get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Whether sockets were inherited from systemd.
pub fn from_systemd() -> bool {
    pool().iter().any(|e| e.source == Source::Systemd)
}

/// Takes the TCP (or Unix stream) listening socket inherited for `address`, if any.
pub fn take_tcp(address: &ListenAddr) -> Option<OwnedFd> {
    take_tcp_from(address).map(|(fd, _)| fd)
}

/// As [`take_tcp`], with where the socket came from.
pub fn take_tcp_from(address: &ListenAddr) -> Option<(OwnedFd, Source)> {
    take_entry(Kind::Tcp, address).map(|e| (e.fd, e.source))
}

/// Takes the UDP socket inherited for `address` (and the flow tunnel, after an upgrade).
pub fn take_udp(address: &ListenAddr) -> Option<(OwnedFd, Option<OwnedFd>)> {
    take(Kind::Udp, address)
}

/// Takes the admin endpoint's listening socket: the one handed over as such, or a systemd TCP socket
/// bound to `address`.
pub fn take_admin(address: std::net::SocketAddr) -> Option<OwnedFd> {
    let address = ListenAddr::Ip(address);
    take(Kind::Admin, &address)
        .or_else(|| take(Kind::Tcp, &address).filter(|_| from_systemd()))
        .map(|(fd, _)| fd)
}

fn take(kind: Kind, address: &ListenAddr) -> Option<(OwnedFd, Option<OwnedFd>)> {
    take_entry(kind, address).map(|e| (e.fd, e.tunnel))
}

fn take_entry(kind: Kind, address: &ListenAddr) -> Option<Entry> {
    let mut pool = pool();
    let i = pool.iter().position(|e| e.kind == kind && e.address == *address)?;
    let e = pool.swap_remove(i);
    tracing::info!(
        address = %address,
        transport = kind.name(),
        fd = e.fd.as_raw_fd(),
        from = match e.source { Source::Upgrade => "the old process", Source::Systemd => "systemd" },
        "using an inherited socket instead of binding"
    );
    Some(e)
}

/// Closes every inherited socket no listener took, naming each (call once the listeners are up).
pub fn close_unused() {
    for e in pool().drain(..) {
        tracing::warn!(
            address = %e.address,
            transport = e.kind.name(),
            fd = e.fd.as_raw_fd(),
            "an inherited socket matches no configured listener; closing it"
        );
    }
}

/// Reads `LISTEN_FDS` (when `LISTEN_PID` is this process) into the pool, then removes the variables
/// so children never see them. Call first thing in `main`, while the process has one thread.
pub fn init_systemd() -> Result<usize, InheritError> {
    let count = std::env::var("LISTEN_FDS").ok();
    let pid = std::env::var("LISTEN_PID").ok();
    for var in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    let Some(count) = count else { return Ok(0) };
    if pid.and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id()) {
        return Ok(0); // meant for another process (sd_listen_fds ignores them too)
    }
    let malformed = |why: String| InheritError::Malformed { var: "LISTEN_FDS", why };
    let count: RawFd = count
        .parse()
        .map_err(|_| malformed(format!("`{count}` is not a count")))?;
    let mut entries = Vec::new();
    for fd in 3..3 + count {
        set_cloexec(fd).map_err(|e| malformed(format!("descriptor {fd}: {e}")))?;
        // SAFETY: systemd passes descriptors 3..3+LISTEN_FDS to this process (LISTEN_PID matched),
        // and nothing else in the process has taken ownership of them yet.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let (kind, address) = describe(&owned).map_err(|why| InheritError::NotASocket {
            var: "LISTEN_FDS",
            fd,
            expected: "TCP, UDP or Unix stream",
            why,
        })?;
        entries.push(Entry {
            kind,
            address,
            fd: owned,
            tunnel: None,
            source: Source::Systemd,
        });
    }
    let n = entries.len();
    pool().extend(entries);
    Ok(n)
}

/// Adds the sockets named by the old process's `PMMUX_UPGRADE` items (see [`super::Handover`]).
pub(super) fn adopt(items: &HashMap<(Kind, ListenAddr), (RawFd, Option<RawFd>)>) -> Result<(), InheritError> {
    let mut entries = Vec::new();
    for ((kind, address), &(fd, tunnel)) in items {
        let (kind, address) = (*kind, address.clone());
        let owned = own(fd)?;
        let tunnel = tunnel.map(own).transpose()?;
        match describe(&owned) {
            Ok((actual, _)) if actual == kind || (kind == Kind::Admin && actual == Kind::Tcp) => {}
            Ok((actual, _)) => {
                return Err(InheritError::NotASocket {
                    var: super::ENV,
                    fd,
                    expected: kind.name(),
                    why: format!("it is a {} socket", actual.name()),
                })
            }
            Err(why) => {
                return Err(InheritError::NotASocket {
                    var: super::ENV,
                    fd,
                    expected: kind.name(),
                    why,
                })
            }
        }
        entries.push(Entry {
            kind,
            address,
            fd: owned,
            tunnel,
            source: Source::Upgrade,
        });
    }
    pool().extend(entries);
    Ok(())
}

pub(super) fn own(fd: RawFd) -> Result<OwnedFd, InheritError> {
    set_cloexec(fd).map_err(|e| InheritError::Malformed {
        var: super::ENV,
        why: format!("descriptor {fd}: {e}"),
    })?;
    // SAFETY: the old process left `fd` open for us and named it in PMMUX_UPGRADE; fcntl above
    // proved it is open, and nothing else in this process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an integer descriptor; fails with EBADF if it is not open.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The transport and bound address of an inherited socket; TCP ones must be listening. A Unix
/// stream socket counts as TCP (it serves a `unix:` listener), named by its path.
fn describe(fd: &OwnedFd) -> Result<(Kind, ListenAddr), String> {
    let sock = socket2::SockRef::from(fd);
    let local = sock.local_addr().map_err(|e| e.to_string())?;
    let address = match (local.as_socket(), local.as_pathname()) {
        (Some(a), _) => ListenAddr::Ip(a),
        (None, Some(path)) => ListenAddr::Unix(path.to_owned()),
        (None, None) => return Err("it is neither an IP socket nor a Unix socket with a path".into()),
    };
    let unix = matches!(address, ListenAddr::Unix(_));
    let kind = match sock.r#type().map_err(|e| e.to_string())? {
        socket2::Type::DGRAM if unix => {
            return Err("a Unix datagram socket (pmmux serves Unix stream sockets only)".into())
        }
        socket2::Type::STREAM if sock.is_listener().unwrap_or(false) => Kind::Tcp,
        socket2::Type::STREAM => return Err("a stream socket that is not listening".into()),
        socket2::Type::DGRAM => Kind::Udp,
        _ => return Err("neither a stream nor a datagram socket".into()),
    };
    Ok((kind, address))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    #[test]
    fn describes_listening_tcp_and_udp_and_refuses_a_connected_stream() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        assert_eq!(
            describe(&OwnedFd::from(tcp)).unwrap(),
            (Kind::Tcp, ListenAddr::Ip(addr))
        );
        let udp = std::net::UdpSocket::bind("[::1]:0").unwrap();
        let addr = udp.local_addr().unwrap();
        assert_eq!(
            describe(&OwnedFd::from(udp)).unwrap(),
            (Kind::Udp, ListenAddr::Ip(addr))
        );
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert!(describe(&OwnedFd::from(c)).unwrap_err().contains("not listening"));
    }

    #[test]
    fn adopted_sockets_are_taken_by_kind_and_address_once() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let configured = ListenAddr::Ip("127.0.0.1:0".parse().unwrap());
        let fd = tcp.into_raw_fd();
        let items = HashMap::from([((Kind::Tcp, configured.clone()), (fd, None))]);
        adopt(&items).unwrap();
        assert!(take_udp(&configured).is_none());
        let got = take_tcp(&configured).expect("the adopted socket");
        assert_eq!(got.as_raw_fd(), fd);
        assert!(take_tcp(&configured).is_none());
    }

    #[test]
    fn a_unix_stream_listener_is_described_by_its_path_and_taken_as_tcp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.sock");
        let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let configured = ListenAddr::Unix(path.clone());
        assert_eq!(describe(&OwnedFd::from(unix)).unwrap(), (Kind::Tcp, configured.clone()));
        let again = std::os::unix::net::UnixListener::bind(dir.path().join("v.sock")).unwrap();
        let fd = again.into_raw_fd();
        let items = HashMap::from([((Kind::Tcp, configured.clone()), (fd, None))]);
        adopt(&items).unwrap();
        let (got, source) = take_tcp_from(&configured).expect("the adopted socket");
        assert_eq!((got.as_raw_fd(), source), (fd, Source::Upgrade));
        let dgram = std::os::unix::net::UnixDatagram::bind(dir.path().join("d.sock")).unwrap();
        assert!(describe(&OwnedFd::from(dgram)).unwrap_err().contains("datagram"));
    }

    #[test]
    fn a_udp_socket_named_as_tcp_is_refused() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let configured = ListenAddr::Ip("127.0.0.1:1".parse().unwrap());
        let items = HashMap::from([((Kind::Tcp, configured), (udp.into_raw_fd(), None))]);
        let e = adopt(&items).unwrap_err().to_string();
        assert!(e.contains("is not a tcp socket: it is a udp socket"), "{e}");
    }
}
