//! The old process's side of an upgrade: start the new binary with the listening sockets, wait for
//! it to report ready, and either confirm the takeover or kill it and say why.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{format_spec, tunnel, Kind, Spec, ENV};

/// How the process was started: the program path (as given, made absolute; symlinks are *not*
/// resolved, so a symlink re-pointed at a new version is followed), its arguments and folder.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The program.
    pub program: PathBuf,
    /// Its arguments (without `argv[0]`).
    pub args: Vec<OsString>,
    /// The working folder at start.
    pub dir: PathBuf,
}

static INVOCATION: OnceLock<Invocation> = OnceLock::new();

/// Records how this process was started (call at start, before anything changes folder).
pub fn remember_invocation() {
    let mut args = std::env::args_os();
    let argv0 = args.next().map(PathBuf::from).unwrap_or_default();
    let dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let program = if argv0.components().count() > 1 {
        dir.join(&argv0)
    } else {
        // Found through PATH (or odd argv[0]): the kernel's view of the file is the best we have.
        search_path(&argv0)
            .or_else(|| std::env::current_exe().ok())
            .unwrap_or(argv0)
    };
    let _ = INVOCATION.set(Invocation {
        program,
        args: args.collect(),
        dir,
    });
}

fn search_path(name: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                std::env::current_dir().unwrap_or_default().join(p)
            }
        })
}

/// The recorded invocation, if [`remember_invocation`] ran.
pub fn invocation() -> Option<&'static Invocation> {
    INVOCATION.get()
}

/// A listening socket offered to the new process: a duplicate of the descriptor, so a listener
/// removed meanwhile by a reload cannot close it under us.
#[derive(Debug)]
pub struct Offer {
    /// What it serves.
    pub kind: Kind,
    /// The configured address (port 0 stays 0: the new process's configuration names it so).
    pub address: crate::config::listen::ListenAddr,
    /// The duplicate.
    pub fd: OwnedFd,
}

/// Why an upgrade did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// This process does not know how it was started.
    #[error("the program path this process was started from is unknown")]
    NoInvocation,
    /// A socket pair or descriptor could not be made.
    #[error("cannot prepare the hand-over: {0}")]
    Prepare(io::Error),
    /// The new binary could not be started at all.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The new process said it cannot take over.
    #[error("the new process (PID {pid}) failed: {reason}")]
    Failed {
        /// Its PID.
        pid: u32,
        /// What it said.
        reason: String,
    },
    /// The new process exited before reporting ready.
    #[error("the new process (PID {pid}) exited ({status}) before it was ready")]
    Exited {
        /// Its PID.
        pid: u32,
        /// How it ended.
        status: String,
    },
    /// The new process did not report ready in time.
    #[error("the new process (PID {pid}) was not ready within {timeout:?}")]
    Timeout {
        /// Its PID.
        pid: u32,
        /// The time allowed.
        timeout: Duration,
    },
}

/// A started new process, not yet confirmed.
#[derive(Debug)]
pub struct Launched {
    child: Child,
    control: socket2::Socket,
    /// Per UDP listener (configured address): the old process's end of its flow tunnel.
    tunnels: HashMap<crate::config::listen::ListenAddr, OwnedFd>,
    started: Instant,
}

/// A confirmed upgrade: the new process accepts; these are what the old one still needs.
#[derive(Debug)]
pub struct HandedOver {
    /// The new process's PID.
    pub new_pid: u32,
    /// Per UDP listener (configured address): the old process's end of its flow tunnel.
    pub tunnels: HashMap<crate::config::listen::ListenAddr, OwnedFd>,
    /// From start to ready.
    pub took: Duration,
    control: socket2::Socket,
}

impl HandedOver {
    /// Tells the new process the old one has stopped accepting (it may now notify systemd).
    pub fn confirm(&self) {
        let _ = self.control.send(b"takeover");
    }
}

/// Starts the new binary with `offers` and the extra environment `env` (e.g. `NOTIFY_SOCKET`).
pub fn launch(offers: Vec<Offer>, env: &[(String, String)]) -> Result<Launched, UpgradeError> {
    let inv = invocation().ok_or(UpgradeError::NoInvocation)?;
    let (control, control_child) =
        socket2::Socket::pair(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None).map_err(UpgradeError::Prepare)?;
    let mut spec = Spec {
        parent: std::process::id(),
        control: control_child.as_raw_fd(),
        sockets: HashMap::new(),
    };
    let mut tunnels = HashMap::new();
    // Descriptors the child must keep: held open here until the spawn returned.
    let mut keep: Vec<OwnedFd> = vec![control_child.into()];
    for offer in offers {
        let tunnel_fd = if offer.kind == Kind::Udp {
            let (old_end, new_end) = tunnel::pair().map_err(UpgradeError::Prepare)?;
            tunnels.insert(offer.address.clone(), old_end);
            let raw = new_end.as_raw_fd();
            keep.push(new_end);
            Some(raw)
        } else {
            None
        };
        spec.sockets
            .insert((offer.kind, offer.address), (offer.fd.as_raw_fd(), tunnel_fd));
        keep.push(offer.fd);
    }
    let inherited: Vec<RawFd> = keep.iter().map(AsRawFd::as_raw_fd).collect();
    let mut cmd = Command::new(&inv.program);
    cmd.args(&inv.args)
        .current_dir(&inv.dir)
        .env(ENV, format_spec(&spec))
        .envs(env.iter().map(|(k, v)| (k, v)));
    // SAFETY: between fork and exec the closure only calls fcntl, which is async-signal-safe, on
    // descriptors copied into it; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &inherited {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|source| UpgradeError::Spawn {
        program: inv.program.clone(),
        source,
    })?;
    // Our copies of the child's ends close here: its exit then reads as end-of-file.
    drop(keep);
    Ok(Launched {
        child,
        control,
        tunnels,
        started: Instant::now(),
    })
}

impl Launched {
    /// The new process's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Blocks until the new process reports ready (then returns the hand-over) or fails.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<HandedOver, UpgradeError> {
        let pid = self.pid();
        let deadline = self.started + timeout;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(UpgradeError::Timeout { pid, timeout });
            }
            // Short reads, so a child that exits without closing (a grandchild holding the end) is noticed.
            let _ = self
                .control
                .set_read_timeout(Some(left.min(Duration::from_millis(200))));
            match io::Read::read(&mut &self.control, &mut buf) {
                Ok(0) => {
                    let status = self.reap(Duration::from_secs(2));
                    return Err(UpgradeError::Exited { pid, status });
                }
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if let Some(reason) = text.strip_prefix("failed ") {
                        let reason = reason.to_owned();
                        return Err(UpgradeError::Failed { pid, reason });
                    }
                    if text.starts_with("ready ") {
                        return Ok(HandedOver {
                            new_pid: pid,
                            tunnels: std::mem::take(&mut self.tunnels),
                            took: self.started.elapsed(),
                            control: self.control.try_clone().map_err(UpgradeError::Prepare)?,
                        });
                    }
                    tracing::warn!(new_pid = pid, message = %text, "upgrade: unexpected control message; ignored");
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                    ) =>
                {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        let status = describe(status);
                        return Err(UpgradeError::Exited { pid, status });
                    }
                }
                Err(e) => return Err(UpgradeError::Prepare(e)),
            }
        }
    }

    /// Ends a new process that will not take over: waits briefly for it to exit by itself, then
    /// kills it (by its PID: it is this process's own child) and reaps it.
    pub fn abandon(mut self) -> String {
        if let Ok(Some(status)) = self.child.try_wait() {
            return describe(status);
        }
        let status = self.reap(Duration::from_secs(1));
        if status != "still running" {
            return status;
        }
        let _ = self.child.kill();
        match self.child.wait() {
            Ok(s) => format!("killed: {}", describe(s)),
            Err(e) => format!("kill failed: {e}"),
        }
    }

    fn reap(&mut self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return describe(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                Ok(None) => return "still running".into(),
                Err(e) => return format!("unknown: {e}"),
            }
        }
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}
