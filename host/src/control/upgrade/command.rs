//! `pmmux upgrade`: sends `SIGUSR2` to the running process and follows the attempt to its end.
//! With the admin endpoint, the outcome is read from the status document (the PID answering
//! changes on success; a failure is counted there with its reason); without it, from `/proc`: the
//! new process is the old one's child, and the old one exits once drained.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::ops::status::Status;

/// Poll interval while following an attempt.
const POLL: Duration = Duration::from_millis(20);

/// Signals the process (`pid`, or the one the admin endpoint names) and waits up to `timeout` for
/// the outcome. Ok: what happened; Err: why not (the old process then keeps serving).
pub fn upgrade(pid: Option<u32>, admin: Option<SocketAddr>, timeout: Duration) -> Result<String, String> {
    let before = match (admin, pid) {
        (Some(a), None) => Some(fetch(a)?),
        (Some(a), Some(_)) => fetch(a).ok(),
        (None, _) => None,
    };
    let old = pid
        .or(before.as_ref().map(|s| s.pid))
        .ok_or("no process to upgrade: pass --pid or configure [admin]")?;
    let failures_before = before.as_ref().map_or(0, |s| s.upgrade.failures);
    // SAFETY: kill with a positive PID and a valid signal number.
    if unsafe { libc::kill(old as libc::pid_t, libc::SIGUSR2) } != 0 {
        return Err(format!("cannot signal PID {old}: {}", std::io::Error::last_os_error()));
    }
    let deadline = Instant::now() + timeout;
    let mut child = None;
    loop {
        if child.is_none() {
            child = children_of(old).into_iter().next();
        }
        if !alive(old) {
            // It exits on its own only after a takeover (or when told to stop meanwhile).
            let new = child.or_else(|| admin.and_then(|a| fetch(a).ok()).map(|s| s.pid).filter(|&p| p != old));
            return match new {
                Some(new) => Ok(format!("upgraded: PID {new} serves; PID {old} drained and exited")),
                None => Ok(format!(
                    "upgraded: PID {old} drained and exited (its successor was not seen)"
                )),
            };
        }
        if let Some(s) = admin.and_then(|a| fetch(a).ok()) {
            if s.pid != old {
                return Ok(format!(
                    "upgraded: PID {} serves; PID {old} drains its open connections and exits",
                    s.pid
                ));
            }
            if s.upgrade.failures > failures_before {
                let why = s.upgrade.last_error.unwrap_or_default();
                return Err(format!("upgrade failed: {why}; PID {old} keeps serving"));
            }
        } else if let Some(new) = child.filter(|&n| !alive(n)) {
            return Err(format!(
                "the new process (PID {new}) exited before taking over; PID {old} keeps serving (its log says why)"
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no outcome within {timeout:?}; PID {old} is still running (its log says why)"
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// GET /status from the admin endpoint.
fn fetch(address: SocketAddr) -> Result<Status, String> {
    let timeout = Duration::from_secs(2);
    let fail = |e: std::io::Error| format!("admin endpoint {address}: {e}");
    let mut stream = TcpStream::connect_timeout(&address, timeout).map_err(fail)?;
    stream.set_read_timeout(Some(timeout)).map_err(fail)?;
    stream.write_all(b"GET /status HTTP/1.0\r\n\r\n").map_err(fail)?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(fail)?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .ok_or_else(|| format!("admin endpoint {address}: malformed answer"))?;
    serde_json::from_str(body).map_err(|e| format!("admin endpoint {address}: unreadable status: {e}"))
}

/// State letter and parent PID from `/proc/PID/stat` (the fields after the parenthesised name).
fn stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = text.get(text.rfind(')')? + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid))
}

fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|(_, ppid)| ppid == parent))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process_and_finds_a_child() {
        let me = std::process::id();
        assert!(alive(me));
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let kids = children_of(me);
        assert!(kids.contains(&child.id()), "{kids:?}");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!alive(child.id()));
    }
}
