//! Binary upgrade without refusing a connection (`SIGUSR2`, or `pmmux upgrade`), and listening
//! sockets from systemd socket activation ([`inherit`]).
//!
//! # How an upgrade goes
//! 1. The old process starts the binary at the path it was itself started from, with the same
//!    arguments ([`parent::launch`]). Every listening socket (TCP, UDP, the admin endpoint) is
//!    *inherited*: the child gets duplicates of the descriptors (close-on-exec cleared in the child
//!    only), named with their configured addresses in `PMMUX_UPGRADE`, plus one end of a
//!    `SOCK_SEQPACKET` control pair and, per UDP listener, one end of a flow tunnel ([`tunnel`]).
//! 2. The new process loads its configuration and plugins as at any start; each listener whose
//!    configured address and transport match an inherited socket uses it instead of binding (so its
//!    options — `SO_REUSEPORT`, `TCP_NODELAY`, the backlog — are the ones it was made with). It
//!    starts accepting, then writes `ready <pid>` on the control socket.
//! 3. The old process tells systemd `MAINPID=<new>`, stops accepting and closes its copies of the
//!    TCP listening sockets (the kernel socket and its accept queue live on in the new process, so
//!    nothing queued is reset and nothing arriving is refused), hands its UDP clients over (below),
//!    writes `takeover`, drains open connections up to `drain_timeout_ms` and exits 0. The new
//!    process then sends `READY=1` as the service's main process.
//! 4. If the new process exits, writes `failed <why>`, or is not ready within [`READY_TIMEOUT`], the
//!    old one kills it (if still running), logs why, and goes on serving as if nothing happened.
//!
//! Why inherited descriptors and not `SCM_RIGHTS` over a unix socket (HAProxy's `-x`): the old
//! process starts the new one itself, so inheritance hands the sockets over atomically at `exec`,
//! with no socket path to create, secure or clean up, and works the same after a privilege drop.
//! The control pair is inherited the same way. (nginx hands its sockets over the same way on
//! `SIGUSR2`; Envoy's hot restart uses `SCM_RIGHTS` because its new process is started from outside.)
//!
//! # UDP across an upgrade
//! Both processes hold the same UDP socket, and the kernel would hand each datagram to whichever
//! reads first. So the old process stops reading it, sends the new one the list of clients it still
//! has flows (or undecided detections) for, and from then on only the new process reads. A datagram
//! from a listed client is passed back to the old process through the tunnel, and the old process's
//! flow forwards it on the same upstream socket as before; replies go from the old process's copy of
//! the listening socket. When such a flow goes idle, the old process bounces the client's next
//! datagram back and the new process treats the client as new. When the old process exits (drain
//! done or `drain_timeout_ms`), the tunnel closes and every later datagram of those clients starts a
//! new flow in the new process: detection again, a new upstream socket (so the upstream sees a new
//! source port — fine for DNS, syslog, WireGuard and QUIC, which roam; a protocol that pins a peer's
//! port would see a new peer).

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

pub mod command;
pub mod inherit;
pub mod parent;
pub mod trigger;
pub mod tunnel;

pub use inherit::InheritError;

use crate::config::listen::ListenAddr;

/// The environment variable describing the handed-over descriptors.
pub const ENV: &str = "PMMUX_UPGRADE";
/// How long the old process waits for the new one to report ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the new process waits for the old one's `takeover` after reporting ready.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(10);

/// What a handed-over socket serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A TCP listener.
    Tcp,
    /// A UDP listener.
    Udp,
    /// The admin endpoint.
    Admin,
}

impl Kind {
    /// The name used in `PMMUX_UPGRADE` and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Udp => "udp",
            Kind::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        [Kind::Tcp, Kind::Udp, Kind::Admin].into_iter().find(|k| k.name() == s)
    }
}

/// The new process's side of an upgrade: the old process's PID and the control socket.
struct Child {
    parent: u32,
    control: socket2::Socket,
}

static CHILD: OnceLock<Mutex<Option<Child>>> = OnceLock::new();

/// The parsed `PMMUX_UPGRADE` value.
#[derive(Debug, PartialEq)]
struct Spec {
    parent: u32,
    control: RawFd,
    sockets: HashMap<(Kind, ListenAddr), (RawFd, Option<RawFd>)>,
}

/// `parent=PID control=FD KIND@ADDRESS=FD[+TUNNEL_FD] ...`
fn format_spec(spec: &Spec) -> String {
    let mut out = format!("parent={} control={}", spec.parent, spec.control);
    let mut items: Vec<_> = spec.sockets.iter().collect();
    items.sort();
    for ((kind, addr), (fd, tunnel)) in items {
        out.push_str(&format!(" {}@{addr}={fd}", kind.name()));
        if let Some(t) = tunnel {
            out.push_str(&format!("+{t}"));
        }
    }
    out
}

fn parse_spec(text: &str) -> Result<Spec, String> {
    let (mut parent, mut control, mut sockets) = (None, None, HashMap::new());
    let fd = |s: &str| s.parse::<RawFd>().ok().filter(|&f| f > 2);
    for item in text.split_whitespace() {
        // The last `=`: a Unix socket path may hold one.
        let (key, value) = item.rsplit_once('=').ok_or(format!("`{item}` is not KEY=VALUE"))?;
        match key {
            "parent" => parent = value.parse::<u32>().ok(),
            "control" => control = fd(value),
            _ => {
                let bad = || format!("`{item}` is not KIND@ADDRESS=FD[+FD]");
                let (kind, addr) = key.split_once('@').ok_or_else(bad)?;
                let kind = Kind::parse(kind).ok_or_else(bad)?;
                let addr = ListenAddr::parse(addr).map_err(|_| bad())?;
                let (main, tunnel) = match value.split_once('+') {
                    Some((m, t)) => (fd(m).ok_or_else(bad)?, Some(fd(t).ok_or_else(bad)?)),
                    None => (fd(value).ok_or_else(bad)?, None),
                };
                sockets.insert((kind, addr), (main, tunnel));
            }
        }
    }
    Ok(Spec {
        parent: parent.ok_or("no parent=PID")?,
        control: control.ok_or("no control=FD")?,
        sockets,
    })
}

/// Reads `PMMUX_UPGRADE` (set by the process being upgraded), adopts the sockets it names into the
/// [`inherit`] pool and keeps the control socket; removes the variable. Returns the old process's
/// PID. Call first thing in `main`, while the process has one thread.
pub fn init() -> Result<Option<u32>, InheritError> {
    let Some(text) = std::env::var_os(ENV) else {
        return Ok(None);
    };
    std::env::remove_var(ENV);
    let text = text.to_string_lossy();
    let spec = parse_spec(&text).map_err(|why| InheritError::Malformed { var: ENV, why })?;
    let control = socket2::Socket::from(inherit::own(spec.control)?);
    inherit::adopt(&spec.sockets)?;
    let child = Child {
        parent: spec.parent,
        control,
    };
    *CHILD
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(child);
    Ok(Some(spec.parent))
}

fn take_child() -> Option<Child> {
    CHILD.get()?.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// The PID of the process this one is taking over from, while the upgrade is under way.
pub fn upgrading_from() -> Option<u32> {
    CHILD
        .get()?
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|c| c.parent)
}

/// Tells the old process this one accepts on every listener, then waits (up to
/// [`TAKEOVER_TIMEOUT`]) for its `takeover`. Returns the old PID, or `None` when not upgrading.
pub fn report_ready() -> Option<u32> {
    let child = take_child()?;
    let old = child.parent;
    if let Err(e) = child.control.send(format!("ready {}", std::process::id()).as_bytes()) {
        tracing::warn!(old_pid = old, error = %e, "upgrade: cannot tell the old process we are ready; serving anyway");
        return Some(old);
    }
    tracing::info!(
        old_pid = old,
        "upgrade: accepting on every listener; told the old process (PID {old})"
    );
    let _ = child.control.set_read_timeout(Some(TAKEOVER_TIMEOUT));
    let mut buf = [0u8; 64];
    match io::Read::read(&mut &child.control, &mut buf) {
        Ok(n) if &buf[..n] == b"takeover" => {
            tracing::info!(
                old_pid = old,
                "upgrade: took over from PID {old}; it stops accepting and drains"
            );
        }
        Ok(_) => tracing::warn!(
            old_pid = old,
            "upgrade: the old process (PID {old}) closed the control socket without confirming; serving anyway"
        ),
        Err(e) => {
            tracing::warn!(old_pid = old, error = %e, "upgrade: no confirmation from the old process (PID {old}); serving anyway")
        }
    }
    Some(old)
}

/// Tells the old process why this one cannot take over (it keeps serving). Does nothing when not
/// upgrading or when the report was already made.
pub fn report_failed(reason: &str) {
    if let Some(child) = take_child() {
        let _ = child.control.send(format!("failed {reason}").as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips_and_refuses_garbage() {
        let spec = Spec {
            parent: 42,
            control: 7,
            sockets: HashMap::from([
                ((Kind::Tcp, ListenAddr::Ip("127.0.0.1:0".parse().unwrap())), (8, None)),
                ((Kind::Udp, ListenAddr::Ip("[::1]:53".parse().unwrap())), (9, Some(10))),
                (
                    (Kind::Admin, ListenAddr::Ip("127.0.0.1:9000".parse().unwrap())),
                    (11, None),
                ),
                ((Kind::Tcp, ListenAddr::Unix("/run/p=mux/a.sock".into())), (12, None)),
            ]),
        };
        let text = format_spec(&spec);
        assert_eq!(
            text,
            "parent=42 control=7 tcp@127.0.0.1:0=8 tcp@unix:/run/p=mux/a.sock=12 udp@[::1]:53=9+10 admin@127.0.0.1:9000=11"
        );
        assert_eq!(parse_spec(&text), Ok(spec));
        for bad in [
            "control=7",
            "parent=1",
            "parent=1 control=1",
            "parent=1 control=7 tcp@x=8",
            "parent=1 control=7 sctp@127.0.0.1:1=8",
            "parent=1 control=7 tcp@127.0.0.1:1=8+",
            "parent=1 control=7 junk",
        ] {
            assert!(parse_spec(bad).is_err(), "{bad}");
        }
    }
}
