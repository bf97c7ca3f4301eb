//! Following a pmmux binary upgrade from outside: the new process's PID (read from the log both
//! processes share), and stopping and reaping a process the test did not spawn itself (the new
//! process is re-parented to the test process, a subreaper, once the old one exits).

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

use crate::pmmux::Pmmux;
use crate::process::process_exists;

/// The PID of the process that took over from `old`: the new process logs
/// `upgrade: PID <new> started by PID <old>` (the last such line: an earlier attempt may have
/// failed). Waits up to `timeout`.
pub fn wait_new_pid(pm: &Pmmux, old: u32, timeout: Duration) -> Option<u32> {
    let needle = format!(" started by PID {old};");
    let deadline = Instant::now() + timeout;
    loop {
        let found = pm.log().lines().rev().find_map(|l| {
            let before = &l[..l.find(&needle)?];
            before.rsplit("PID ").next()?.trim().parse().ok()
        });
        if found.is_some() || Instant::now() >= deadline {
            return found;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` runs (exists and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s[s.rfind(')')? + 2..].chars().next()? != 'Z'))
        .unwrap_or(false)
}

/// Waits up to `timeout` for `pid` to end. If it is (or becomes) this process's child, it is reaped
/// and its status returned; otherwise `Some` of a synthetic success once it has gone.
pub fn wait_pid_exit(pid: u32, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: waitpid on one specific pid with WNOHANG, writing only `status`.
        let rc = unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
        if rc == pid as i32 {
            return Some(ExitStatus::from_raw(status));
        }
        if rc < 0 && !process_exists(pid) {
            return Some(ExitStatus::from_raw(0));
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// SIGTERM `pid`, wait up to `grace`, then SIGKILL; reaps it. Returns how it ended.
pub fn stop_pid(pid: u32, grace: Duration) -> Option<ExitStatus> {
    // SAFETY: kill(2) with integers only.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    if let Some(s) = wait_pid_exit(pid, grace) {
        return Some(s);
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    wait_pid_exit(pid, Duration::from_secs(5))
}

/// Sends `sig` to `pid`.
pub fn signal_pid(pid: u32, sig: i32) {
    // SAFETY: kill(2) with integers only.
    unsafe { libc::kill(pid as i32, sig) };
}

/// Stops the process on drop (by PID, then reaped), so a failing test leaves nothing running.
pub struct PidGuard(pub u32);

impl Drop for PidGuard {
    fn drop(&mut self) {
        if pid_alive(self.0) {
            stop_pid(self.0, Duration::from_secs(5));
        } else {
            wait_pid_exit(self.0, Duration::from_millis(100));
        }
    }
}
