//! systemd service notification (`Type=notify`), hand-written: one datagram per state change to
//! `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket). `READY=1` once every listener is
//! bound and the plugins are loaded, `RELOADING=1` + `MONOTONIC_USEC=` then `READY=1` around a
//! SIGHUP reload, `STOPPING=1` at shutdown, `STATUS=` lines, and `WATCHDOG=1` pings when
//! `$WATCHDOG_USEC` asks for them. Without `$NOTIFY_SOCKET` every call does nothing.
//!
//! The protocol is a few lines of text over a unix datagram socket (sd_notify(3)), so no crate is
//! pulled in for it. The socket is connected once at start-up (before any privilege drop) and the
//! variables are removed from the environment so children never inherit them.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;
use std::time::Duration;

/// The process-wide notifier, set by [`init`].
static NOTIFIER: OnceLock<Notifier> = OnceLock::new();

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Connects to `address` (`/path` or `@abstract`), with the watchdog interval systemd asked for.
    pub fn connect(address: &str, watchdog: Option<Duration>) -> io::Result<Notifier> {
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
        Ok(Notifier { socket, watchdog })
    }

    /// Sends one notification (newline-separated `KEY=value` assignments).
    pub fn send(&self, message: &str) -> io::Result<()> {
        self.socket.send(message.as_bytes()).map(|_| ())
    }

    /// How often to send `WATCHDOG=1` (half the interval systemd enforces), if at all.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }
}

/// Reads `$NOTIFY_SOCKET` (and `$WATCHDOG_USEC` / `$WATCHDOG_PID`), connects, and removes them
/// from the environment. Call first thing in `main`, while the process has a single thread.
pub fn init() {
    let Some(address) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let watchdog = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|u| u.parse::<u64>().ok())
        .filter(|&u| u > 0)
        .filter(|_| {
            std::env::var("WATCHDOG_PID")
                .ok()
                .and_then(|p| p.parse::<u32>().ok())
                .is_none_or(|p| p == std::process::id())
        })
        .map(Duration::from_micros);
    for var in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        std::env::remove_var(var);
    }
    let address = address.to_string_lossy().into_owned();
    match Notifier::connect(&address, watchdog) {
        Ok(n) => {
            let _ = NOTIFIER.set(n);
        }
        Err(e) => tracing::warn!(socket = %address, error = %e, "cannot reach the systemd notification socket"),
    }
}

fn notify(message: &str) {
    if let Some(n) = NOTIFIER.get() {
        if let Err(e) = n.send(message) {
            tracing::warn!(error = %e, "systemd notification failed");
        }
    }
}

/// `READY=1` with a status line: serving.
pub fn ready(status: &str) {
    notify(&format!("READY=1\nSTATUS={status}"));
}

/// `RELOADING=1` with the monotonic time, as `Type=notify-reload` requires.
pub fn reloading() {
    notify(&format!(
        "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the configuration",
        monotonic_usec()
    ));
}

/// `STOPPING=1`: shutdown has begun.
pub fn stopping() {
    notify("STOPPING=1\nSTATUS=shutting down: draining open connections");
}

/// A `STATUS=` line.
pub fn status(status: &str) {
    notify(&format!("STATUS={status}"));
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
        notify("WATCHDOG=1");
    }
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the struct passed by pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1000
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
        n.send("READY=1\nSTATUS=x").unwrap();
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=x");
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(5)));

        use std::os::linux::net::SocketAddrExt;
        let name = format!("pmmux-unit-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::connect(&format!("@{name}"), None).unwrap();
        n.send("STOPPING=1").unwrap();
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1");
        assert_eq!(n.watchdog_interval(), None);
    }

    #[test]
    fn monotonic_time_moves_forward() {
        let a = monotonic_usec();
        std::thread::sleep(Duration::from_millis(2));
        assert!(monotonic_usec() > a);
    }
}
