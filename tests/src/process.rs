//! Process guards: every process the harness starts is killed with its whole tree, and reaped, on drop.
//!
//! A [`ChildGuard`] starts its process as the leader of a new process group. Killing it first
//! stops (SIGSTOP) the group and every descendant found through `/proc` until no new one appears,
//! so nothing can fork away while it is being killed, then sends SIGKILL to all of them and reaps
//! them with bounded waits. Daemons such as sshd put each connection's process in a new session,
//! which is why the group alone is not enough.
//!
//! The test process makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`) before its first
//! spawn: orphaned grandchildren are then re-parented to it rather than to PID 1 (which, in the
//! sandbox these tests run in, does not reap), so the guard can reap them and leave no zombies.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard, Once};
use std::thread;
use std::time::{Duration, Instant};

use crate::net;

/// How long reaping may take after SIGKILL before the guard gives up (and says so on stderr).
const REAP_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(10);
/// Lines of a process's log printed to stderr when its guard is dropped during a panic.
const LOG_TAIL_LINES: usize = 60;

/// Make the test process the reaper of orphans it causes (once per process).
pub(crate) fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: PR_SET_CHILD_SUBREAPER takes one integer argument and touches no memory of ours.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            eprintln!(
                "pmmux-e2e: PR_SET_CHILD_SUBREAPER failed: {}",
                io::Error::last_os_error()
            );
        }
    });
}

/// Leaders spawned by guards that are still owned by one (std reaps them; we must not).
static LEADERS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn leaders() -> MutexGuard<'static, Vec<i32>> {
    LEADERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reap zombies the test process adopted as subreaper: dead children of ours in another session
/// (daemons such as sshd start a session per connection) that no guard spawned. A test that
/// spawns a process in a new session itself, outside a guard, must not rely on waiting for it.
fn reap_adopted() {
    let me = std::process::id() as i32;
    // SAFETY: getsid(0) only reads our own session id.
    let my_session = unsafe { libc::getsid(0) };
    let leaders = leaders().clone();
    for p in process_table() {
        if p.ppid == me && p.state == 'Z' && p.session != my_session && !leaders.contains(&p.pid) {
            // SAFETY: waitpid on one specific pid with WNOHANG; no status is read.
            unsafe { libc::waitpid(p.pid, std::ptr::null_mut(), libc::WNOHANG) };
        }
    }
}

fn send_signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) only takes integers; a stale pid yields ESRCH, which is ignored.
    unsafe { libc::kill(pid, sig) };
}

/// One row of `/proc/<pid>/stat`.
#[derive(Clone, Copy)]
struct ProcInfo {
    pid: i32,
    ppid: i32,
    pgrp: i32,
    session: i32,
    state: char,
}

fn proc_info(pid: i32) -> Option<ProcInfo> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp ..."; comm may contain spaces and parentheses.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    let session = fields.next()?.parse().ok()?;
    Some(ProcInfo {
        pid,
        ppid,
        pgrp,
        session,
        state,
    })
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After "(comm)": state is field 3; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0)?;
    Some(Duration::from_millis((utime + stime) * 1000 / hz))
}

/// Every process, from `/proc`.
fn process_table() -> Vec<ProcInfo> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_info)
        .collect()
}

/// Stop, then SIGKILL, `leader`'s process group and all its descendants. Returns every pid
/// signalled besides the leader, for reaping.
fn kill_tree(leader: i32, leader_alive: bool) -> Vec<i32> {
    let mut tree: HashSet<i32> = HashSet::new();
    if leader_alive {
        send_signal(leader, libc::SIGSTOP);
        tree.insert(leader);
    }
    send_signal(-leader, libc::SIGSTOP);
    // Grow the set to a fixpoint: group members and children of members. Everything found is
    // stopped at once, so it cannot fork past us. Bounded: a stopped tree stops growing.
    let me = std::process::id() as i32;
    // SAFETY: getsid(0) only reads our own session id.
    let my_session = unsafe { libc::getsid(0) };
    for _ in 0..50 {
        let table = process_table();
        // Sessions the tree's daemons made (one per sshd connection, say): an orphan of such a
        // session was adopted by us and belongs to this tree too.
        let sessions: HashSet<i32> = table
            .iter()
            .filter(|p| tree.contains(&p.pid) && p.session != my_session)
            .map(|p| p.session)
            .collect();
        let new: Vec<i32> = table
            .iter()
            .filter(|p| {
                !tree.contains(&p.pid)
                    && (p.pgrp == leader || tree.contains(&p.ppid) || (p.ppid == me && sessions.contains(&p.session)))
            })
            .map(|p| p.pid)
            .collect();
        if new.is_empty() {
            break;
        }
        for pid in new {
            send_signal(pid, libc::SIGSTOP);
            tree.insert(pid);
        }
    }
    send_signal(-leader, libc::SIGKILL);
    for &pid in &tree {
        send_signal(pid, libc::SIGKILL);
    }
    tree.remove(&leader);
    tree.into_iter().collect()
}

/// Reap descendants that were re-parented to us (the subreaper), bounded by `deadline`.
fn reap_orphans(mut pending: Vec<i32>, killed: &HashSet<i32>, deadline: Instant) {
    while !pending.is_empty() {
        pending.retain(|&pid| {
            // SAFETY: waitpid on one specific pid with WNOHANG; no status is read.
            let rc = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
            if rc == pid {
                return false; // reaped
            }
            if rc == 0 {
                return true; // our child, not dead yet
            }
            // Not our child (yet): keep waiting only while a killed parent is about to hand it
            // over to us; anything else is not ours to reap.
            proc_info(pid).is_some_and(|p| killed.contains(&p.ppid))
        });
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        thread::sleep(POLL);
    }
    if !pending.is_empty() {
        eprintln!("pmmux-e2e: gave up reaping {pending:?} after {REAP_TIMEOUT:?}");
    }
}

/// Last `n` lines of a text.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A spawned process (and everything it forks) that is killed and reaped when dropped.
pub struct ChildGuard {
    name: String,
    child: Child,
    log: Option<PathBuf>,
    cleaned: bool,
}

impl ChildGuard {
    /// Spawn `cmd` as the leader of a new process group. Its stdio is whatever `cmd` says.
    pub fn spawn(name: &str, mut cmd: Command) -> io::Result<ChildGuard> {
        become_subreaper();
        cmd.process_group(0);
        reap_adopted();
        let child = cmd.spawn()?;
        leaders().push(child.id() as i32);
        Ok(ChildGuard {
            name: name.to_string(),
            child,
            log: None,
            cleaned: false,
        })
    }

    /// Spawn `cmd` with stdin from `/dev/null` and stdout and stderr appended to `log`.
    pub fn spawn_logged(name: &str, mut cmd: Command, log: &Path) -> io::Result<ChildGuard> {
        let file = OpenOptions::new().create(true).append(true).open(log)?;
        cmd.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file);
        let mut guard = ChildGuard::spawn(name, cmd)?;
        guard.log = Some(log.to_path_buf());
        Ok(guard)
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name given at spawn, used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The log file, for guards made with [`ChildGuard::spawn_logged`].
    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// The log so far (lossy UTF-8); empty without a log file.
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Wait up to `timeout` for `needle` to appear in the log.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// The exit status if the leader has exited (reaping it), else `None`.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Whether the leader is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Wait up to `timeout` for the leader to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL);
        }
    }

    /// Send `sig` to the leader only (if it has not exited), e.g. `libc::SIGHUP`.
    pub fn signal(&mut self, sig: i32) {
        if self.is_running() {
            send_signal(self.child.id() as i32, sig);
        }
    }

    /// SIGTERM the leader and wait up to `grace` for it to exit; then kill whatever is left of
    /// the tree (SIGKILL). Returns the leader's exit status.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        self.wait_timeout(grace);
        self.kill()
    }

    /// SIGKILL the process tree and reap it (bounded). Idempotent. Returns the leader's status.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if !self.cleaned {
            self.cleaned = true;
            let leader = self.child.id() as i32;
            let leader_alive = self.try_status().is_none();
            let others = kill_tree(leader, leader_alive);
            let deadline = Instant::now() + REAP_TIMEOUT;
            let mut killed: HashSet<i32> = others.iter().copied().collect();
            killed.insert(leader);
            if self.wait_timeout(REAP_TIMEOUT).is_none() {
                eprintln!(
                    "pmmux-e2e: {} (pid {leader}) did not die within {REAP_TIMEOUT:?} of SIGKILL",
                    self.name
                );
            }
            reap_orphans(others, &killed, deadline);
            leaders().retain(|&p| p != leader);
            reap_adopted();
        }
        self.try_status()
    }

    /// Wait until this process itself has a TCP socket listening on `addr` (checked in `/proc`, so
    /// no connection is made and another process holding the port does not count).
    ///
    /// Err (with the log's tail) when the process exits first or `timeout` passes.
    pub fn wait_listening(&mut self, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
        self.wait_socket(addr, timeout, net::pid_listens_tcp, "listen on TCP")
    }

    /// Like [`ChildGuard::wait_listening`] for a bound UDP socket.
    pub fn wait_udp_bound(&mut self, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
        self.wait_socket(addr, timeout, net::pid_bound_udp, "bind UDP")
    }

    fn wait_socket(
        &mut self,
        addr: SocketAddr,
        timeout: Duration,
        check: fn(u32, SocketAddr) -> bool,
        what: &str,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Err(format!(
                    "{} exited ({status}) before it would {what} {addr}; log:\n{}",
                    self.name,
                    tail(&self.log(), LOG_TAIL_LINES)
                ));
            }
            if check(self.pid(), addr) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not {what} {addr} within {timeout:?}; log:\n{}",
                    self.name,
                    tail(&self.log(), LOG_TAIL_LINES)
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if thread::panicking() && self.log.is_some() {
            eprintln!(
                "----- {} (pid {}) log, last {LOG_TAIL_LINES} lines -----\n{}\n-----",
                self.name,
                self.pid(),
                tail(&self.log(), LOG_TAIL_LINES)
            );
        }
        self.kill();
    }
}

/// Run `program` with `args`, stdin closed, capturing stdout and stderr; killed (with its tree)
/// after `timeout`. A killed run shows a signal status and a note at the end of stderr.
pub fn run<S: AsRef<OsStr>>(program: &str, args: &[S], timeout: Duration) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args);
    run_cmd(cmd, None, timeout)
}

/// Like [`run`], writing `input` to the program's stdin and then closing it.
pub fn run_with_input<S: AsRef<OsStr>>(program: &str, args: &[S], input: &[u8], timeout: Duration) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args);
    run_cmd(cmd, Some(input), timeout)
}

fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// Run a prepared command (its stdio is replaced) with a bounded `timeout`; see [`run`].
///
/// # Panics
/// When the program cannot be started (not installed, not executable).
pub fn run_cmd(mut cmd: Command, input: Option<&[u8]>, timeout: Duration) -> Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guard = ChildGuard::spawn(&program, cmd).unwrap_or_else(|e| panic!("cannot run `{program}`: {e}"));
    let stdout = drain(guard.child.stdout.take().expect("stdout is piped"));
    let stderr = drain(guard.child.stderr.take().expect("stderr is piped"));
    if let (Some(input), Some(mut stdin)) = (input, guard.child.stdin.take()) {
        let input = input.to_vec();
        // A writer thread, so a program that does not read its stdin cannot block us.
        thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let finished = guard.wait_timeout(timeout);
    let status = guard.kill().unwrap_or_else(|| ExitStatus::from_raw(libc::SIGKILL));
    let collect = |rx: mpsc::Receiver<Vec<u8>>| rx.recv_timeout(REAP_TIMEOUT).unwrap_or_default();
    let stdout = collect(stdout);
    let mut stderr = collect(stderr);
    if finished.is_none() {
        stderr
            .extend_from_slice(format!("\n[pmmux-e2e: `{program}` killed after the {timeout:?} timeout]\n").as_bytes());
    }
    Output { status, stdout, stderr }
}

/// Convenience accessors for a finished command's [`Output`].
pub trait OutputExt {
    /// stdout as (lossy) UTF-8.
    fn stdout_str(&self) -> String;
    /// stderr as (lossy) UTF-8.
    fn stderr_str(&self) -> String;
    /// Panic with status, stdout and stderr unless it exited 0; returns stdout.
    fn expect_success(&self, what: &str) -> String;
}

impl OutputExt for Output {
    fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    fn expect_success(&self, what: &str) -> String {
        if !self.status.success() {
            panic!(
                "{what} failed ({}).\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.status,
                tail(&self.stdout_str(), 100),
                tail(&self.stderr_str(), 100)
            );
        }
        self.stdout_str()
    }
}

/// Pids of all descendants of `pid` (children, their children, ...), zombies included.
pub fn descendants(pid: u32) -> Vec<u32> {
    let table = process_table();
    let mut found: Vec<i32> = vec![pid as i32];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(table.iter().filter(|p| p.ppid == parent).map(|p| p.pid));
        i += 1;
    }
    found.into_iter().skip(1).map(|p| p as u32).collect()
}

/// Whether a process exists (a zombie, dead but not reaped, counts as existing).
pub fn process_exists(pid: u32) -> bool {
    proc_info(pid as i32).is_some()
}

/// Whether the process is a zombie (dead, not reaped).
pub fn is_zombie(pid: u32) -> bool {
    proc_info(pid as i32).is_some_and(|p| p.state == 'Z')
}
