//! systemd service notification (`Type=notify` / `notify-reload`): one datagram per state change to
//! `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket). `READY=1` once every listener is
//! bound and the plugins are loaded, `RELOADING=1` + `MONOTONIC_USEC=` then `READY=1` around a
//! SIGHUP reload, `STOPPING=1` at shutdown, `STATUS=` lines, and `WATCHDOG=1` pings when
//! `$WATCHDOG_USEC` asks for them. Without `$NOTIFY_SOCKET` every call does nothing.
//!
//! The states ([`NotifyState`]), the watchdog variables and the monotonic clock come from the
//! `sd-notify` crate. The socket stays here: `sd_notify::notify` opens `$NOTIFY_SOCKET` anew on
//! every call, so it cannot reach an abstract `@name` socket, needs the variable left in the
//! environment (for children to inherit), and after `--user` would connect as the unprivileged
//! user. This module connects once at start-up, before any privilege drop, and removes the
//! variables from the environment.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

pub use sd_notify::NotifyState;

/// The process-wide notifier, set by [`init`].
static NOTIFIER: OnceLock<Notifier> = OnceLock::new();

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub(crate) struct Notifier {
    socket: UnixDatagram,
    watchdog: Option<Duration>,
    /// The last send failed: the next failure is not logged again (watchdog pings would repeat it).
    failing: AtomicBool,
    /// The address, passed on to a new process at a binary upgrade.
    address: String,
}

/// Set once a new process is the service's main process: this one stays silent from then on
/// (systemd ignores notifications from a process that is not the main one, and logs each).
static HANDED_OVER: AtomicBool = AtomicBool::new(false);

impl Notifier {
    /// Connects to `address` (`/path` or `@abstract`), with the watchdog interval systemd asked for.
    pub(crate) fn connect(address: &str, watchdog: Option<Duration>) -> io::Result<Notifier> {
        let socket = UnixDatagram::unbound()?;
        if let Some(name) = address.strip_prefix('@') {
            #[cfg(target_os = "linux")]
            {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
                socket.connect_addr(&addr)?;
            }
            #[cfg(not(target_os = "linux"))]
            {
                let _ = name;
                return Err(io::Error::other("abstract sockets exist only on Linux"));
            }
        } else {
            socket.connect(address)?;
        }
        Ok(Notifier {
            socket,
            watchdog,
            failing: AtomicBool::new(false),
            address: address.to_owned(),
        })
    }

    /// Sends `states` as one datagram.
    pub(crate) fn send(&self, states: &[NotifyState]) -> io::Result<()> {
        self.socket.send(message(states).as_bytes()).map(|_| ())
    }

    /// How often to send `WATCHDOG=1` (half the interval systemd enforces), if at all.
    pub(crate) fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }
}

/// The datagram: one `KEY=value` assignment per line (sd_notify(3)).
fn message(states: &[NotifyState]) -> String {
    let lines: Vec<String> = states.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// Reads `$NOTIFY_SOCKET` (and `$WATCHDOG_USEC` / `$WATCHDOG_PID`), connects, and removes them
/// from the environment. Call first thing in `main`, while the process has a single thread.
pub fn init() {
    let Some(address) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    std::env::remove_var("NOTIFY_SOCKET");
    // SAFETY: `init` runs first thing in `main`, before any other thread exists, so nothing reads
    // the environment while the watchdog variables are removed.
    let watchdog = unsafe { sd_notify::watchdog_enabled_and_unset_env() }.filter(|w| !w.is_zero());
    let address = address.to_string_lossy().into_owned();
    match Notifier::connect(&address, watchdog) {
        Ok(n) => {
            let _ = NOTIFIER.set(n);
        }
        Err(e) => tracing::warn!(socket = %address, error = %e, "cannot reach the systemd notification socket"),
    }
}

/// Sends `states` to the service manager as one notification; does nothing without
/// `$NOTIFY_SOCKET`. A failure is logged (once until a send succeeds again), never returned: the
/// service goes on either way.
pub fn notify(states: &[NotifyState]) {
    if HANDED_OVER.load(Ordering::Relaxed) {
        return;
    }
    let Some(n) = NOTIFIER.get() else {
        return;
    };
    match n.send(states) {
        Ok(()) => n.failing.store(false, Ordering::Relaxed),
        Err(e) if !n.failing.swap(true, Ordering::Relaxed) => {
            tracing::warn!(error = %e, "systemd notification failed");
        }
        Err(_) => {}
    }
}

/// `READY=1` with a status line: serving.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The environment a new process started by a binary upgrade needs to reach the same socket
/// (`NOTIFY_SOCKET`, and `WATCHDOG_USEC` when a watchdog runs); empty without systemd.
pub fn child_env() -> Vec<(String, String)> {
    let Some(n) = NOTIFIER.get() else { return Vec::new() };
    let mut env = vec![("NOTIFY_SOCKET".to_owned(), n.address.clone())];
    if let Some(w) = n.watchdog {
        env.push(("WATCHDOG_USEC".to_owned(), w.as_micros().to_string()));
    }
    env
}

/// `MAINPID=<pid>`: the new process of a binary upgrade is the service's main process now (sent by
/// the old one, which systemd still accepts it from); this process sends nothing more.
pub fn main_pid(pid: u32) {
    let status = format!("upgraded: PID {pid} serves; PID {} drains", std::process::id());
    notify(&[NotifyState::MainPid(pid), NotifyState::Status(&status)]);
    HANDED_OVER.store(true, Ordering::Relaxed);
}

/// `RELOADING=1` with the monotonic time, as `Type=notify-reload` requires.
pub fn reloading() {
    let status = NotifyState::Status("reloading the configuration");
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now, status]),
        Err(e) => {
            tracing::warn!(error = %e, "no monotonic clock for MONOTONIC_USEC");
            notify(&[NotifyState::Reloading, status]);
        }
    }
}

/// `STOPPING=1`: shutdown has begun.
pub fn stopping() {
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("shutting down: draining open connections"),
    ]);
}

/// A `STATUS=` line.
pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

/// Sends `WATCHDOG=1` at half the interval systemd set, for as long as the runtime runs it (a
/// stuck runtime stops pinging and systemd restarts the service). Returns at once without a
/// watchdog.
pub async fn watchdog() {
    let Some(every) = NOTIFIER.get().and_then(Notifier::watchdog_interval) else {
        return;
    };
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    loop {
        tick.tick().await;
        notify(&[NotifyState::Watchdog]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_and_to_an_abstract_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::connect(path.to_str().unwrap(), Some(Duration::from_secs(10))).unwrap();
        n.send(&[NotifyState::Ready, NotifyState::Status("x")]).unwrap();
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=x");
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(5)));

        use std::os::linux::net::SocketAddrExt;
        let name = format!("pmmux-unit-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::connect(&format!("@{name}"), None).unwrap();
        n.send(&[NotifyState::Stopping]).unwrap();
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1");
        assert_eq!(n.watchdog_interval(), None);
    }

    #[test]
    fn one_assignment_per_line_without_a_trailing_newline() {
        assert_eq!(message(&[NotifyState::Watchdog]), "WATCHDOG=1");
        assert_eq!(
            message(&[
                NotifyState::Reloading,
                NotifyState::MonotonicUsec(12),
                NotifyState::MainPid(7)
            ]),
            "RELOADING=1\nMONOTONIC_USEC=12\nMAINPID=7"
        );
    }

    #[test]
    fn monotonic_time_moves_forward() {
        let usec = || match NotifyState::monotonic_usec_now() {
            Ok(NotifyState::MonotonicUsec(u)) => u,
            other => panic!("{other:?}"),
        };
        let a = usec();
        std::thread::sleep(Duration::from_millis(2));
        assert!(usec() > a);
    }
}
