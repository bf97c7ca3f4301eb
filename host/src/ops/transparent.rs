//! Transparent proxying (`transparent = true` on a backend): upstream sockets bound to the client's
//! own address and port with IP_TRANSPARENT / IPV6_TRANSPARENT, so the upstream server sees the
//! client; whether this process may set that option (CAP_NET_ADMIN), checked at start-up and on
//! reload; with `--user`, the [`keeper`] thread that alone keeps the capability; and, in [`setup`],
//! what `pmmux check-transparent` inspects on the host (routing and nftables rules for the reply
//! path).
//!
//! The kernel lets a socket with IP_TRANSPARENT bind an address that is not local; replies to it
//! reach the socket only when the host routes them to itself (README, "Transparent proxying").

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;

pub mod keeper;
pub mod setup;

/// Why transparent backends cannot run here.
#[derive(Debug, thiserror::Error)]
#[error(
    "backend{} {} ha{} transparent = true, but pmmux cannot set IP_TRANSPARENT on a socket: {source}; \
     it needs CAP_NET_ADMIN (newer kernels also accept CAP_NET_RAW): run it as root (also with --user: one thread keeps CAP_NET_ADMIN for this), or grant \
     the capability (systemd: AmbientCapabilities=CAP_NET_ADMIN; a plain binary: setcap cap_net_admin+ep), \
     or set transparent = false; `pmmux check-transparent` lists what else the host needs",
    if backends.len() == 1 { "" } else { "s" },
    backends.iter().map(|b| format!("`{b}`")).collect::<Vec<_>>().join(", "),
    if backends.len() == 1 { "s" } else { "ve" }
)]
pub struct CapabilityError {
    /// The transparent backends.
    pub backends: Vec<String>,
    /// What the kernel said.
    pub source: io::Error,
}

/// The names of `config`'s transparent backends.
pub fn transparent_backends(config: &Config) -> Vec<String> {
    config
        .backends
        .iter()
        .filter(|b| b.transparent)
        .map(|b| b.name.clone())
        .collect()
}

/// Why `transparent = true` cannot apply to a backend of `protocol` forwarding to `target`, if it
/// cannot: the client's address is an IP address and port, so the upstream must be reached over IP.
pub(crate) fn refused(transparent: bool, protocol: &str, target: Option<&str>) -> Option<&'static str> {
    if !transparent {
        None
    } else if protocol == "noop" {
        Some("has no effect: protocol `noop` opens no upstream connection")
    } else if target.is_some_and(|t| t.starts_with("unix:")) {
        Some("cannot apply to a Unix-socket target: a client's IP address and port cannot be the source of a Unix-socket connection")
    } else {
        None
    }
}

/// Whether this process may set IP_TRANSPARENT: sets it on a throwaway socket (in the thread that
/// makes transparent sockets: the [`keeper`] after `--user`).
pub fn probe() -> io::Result<()> {
    if keeper::running() {
        keeper::probe()
    } else {
        probe_here()
    }
}

fn probe_here() -> io::Result<()> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_ip_transparent_v4(true)
}

/// Start-up and reload check: `Err` naming the transparent backends when the option cannot be set.
pub fn check(config: &Config) -> Result<(), CapabilityError> {
    let backends = transparent_backends(config);
    if backends.is_empty() {
        return Ok(());
    }
    probe().map_err(|source| CapabilityError { backends, source })
}

/// The address the upstream socket binds: the client's, an IPv4 client seen through a dual-stack
/// listener (`::ffff:a.b.c.d`) as IPv4.
pub(crate) fn source_of(client: SocketAddr) -> SocketAddr {
    SocketAddr::new(client.ip().to_canonical(), client.port())
}

/// Whether an upstream at `addr` can be reached from `source` (the same address family).
pub(crate) fn same_family(source: SocketAddr, addr: SocketAddr) -> bool {
    source.is_ipv4() == addr.is_ipv4()
}

/// A socket of `kind` with IP_TRANSPARENT (IPV6_TRANSPARENT) and SO_REUSEADDR set, bound to
/// `source` (non-blocking). SO_REUSEADDR: a client may use one source port towards two listeners,
/// and a UDP client may have several flows (one per backend, `udp_routing = "per-message"`).
fn bound_here(source: SocketAddr, kind: Type, protocol: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(source), kind, Some(protocol))?;
    if source.is_ipv4() {
        socket.set_ip_transparent_v4(true)?;
    } else {
        socket.set_ip_transparent_v6(true)?;
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&source.into())?;
    Ok(socket)
}

/// [`bound_here`], or by the [`keeper`] when it holds the capability.
async fn bound(source: SocketAddr, kind: Type, protocol: Protocol) -> io::Result<Socket> {
    if keeper::running() {
        keeper::bound(source, kind, protocol).await
    } else {
        bound_here(source, kind, protocol)
    }
}

/// An unconnected TCP socket bound to `source` for a transparent upstream connection.
pub(crate) async fn tcp_socket(source: SocketAddr) -> io::Result<tokio::net::TcpSocket> {
    let socket = bound(source, Type::STREAM, Protocol::TCP).await?;
    Ok(tokio::net::TcpSocket::from_std_stream(socket.into()))
}

/// A UDP socket bound to `source` and connected to `target`, for a transparent flow.
pub(crate) async fn udp_socket(source: SocketAddr, target: SocketAddr) -> io::Result<tokio::net::UdpSocket> {
    let socket = bound(source, Type::DGRAM, Protocol::UDP).await?;
    socket.connect(&target.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v4_mapped_client_binds_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:4242".parse().unwrap();
        assert_eq!(source_of(mapped), "192.0.2.7:4242".parse::<SocketAddr>().unwrap());
        let v6: SocketAddr = "[2001:db8::1]:5".parse().unwrap();
        assert_eq!(source_of(v6), v6);
        assert!(same_family(source_of(mapped), "10.0.0.1:80".parse().unwrap()));
        assert!(!same_family(v6, "10.0.0.1:80".parse().unwrap()));
    }

    #[test]
    fn the_capability_error_names_every_backend_and_the_fix() {
        let one = CapabilityError {
            backends: vec!["ssh".into()],
            source: io::Error::from_raw_os_error(libc::EPERM),
        }
        .to_string();
        assert!(one.starts_with("backend `ssh` has transparent = true"), "{one}");
        assert!(
            one.contains("CAP_NET_ADMIN") && one.contains("check-transparent"),
            "{one}"
        );
        let two = CapabilityError {
            backends: vec!["ssh".into(), "web".into()],
            source: io::Error::from_raw_os_error(libc::EPERM),
        }
        .to_string();
        assert!(
            two.starts_with("backends `ssh`, `web` have transparent = true"),
            "{two}"
        );
    }

    /// As root (or with CAP_NET_ADMIN) the probe succeeds and a socket binds an address that is
    /// not local; without, the probe says so. Both are the kernel's answer, not a guess.
    #[test]
    fn probe_matches_what_a_bind_can_do() {
        let source: SocketAddr = "192.0.2.77:40001".parse().unwrap();
        match probe() {
            Ok(()) => {
                let s = bound_here(source, Type::DGRAM, Protocol::UDP).expect("transparent bind");
                assert_eq!(s.local_addr().unwrap().as_socket(), Some(source));
            }
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
                assert!(bound_here(source, Type::DGRAM, Protocol::UDP).is_err());
            }
        }
    }
}
