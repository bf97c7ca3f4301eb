//! The upgrade test: a pmmux whose one listener passes connections to the request→response server
//! is upgraded (SIGUSR2) over and over, to the same binary. Measured, in the same run:
//! - `sigusr2_to_accepting_ms`: from the wall time right before `kill(SIGUSR2)` to the new process
//!   logging that it accepts on every listener (it logs that once its accept loops run, before it
//!   tells the old one); also `sigusr2_to_handover_ms` (the old process has closed its copies of the
//!   listening sockets) and `old_exit_ms` (the old process has drained and exited);
//! - `conn_per_s` while upgrades run back to back (`upgrading`) versus not at all (`steady`),
//!   alternating windows, with every failed connection counted (`errors`).

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::pmlog::{field, timestamp, wall_now};
use crate::pmmux::{free_port, track, Setup};
use crate::report::Results;
use crate::{load, Args};

/// Bound on one upgrade (spawn, plugin load, takeover, drain of short connections).
const UPGRADE_LIMIT: Duration = Duration::from_secs(20);

fn config(port: u16, rr: SocketAddr) -> String {
    format!(
        "# written by pmmux-bench (upgrade test)\nplugin_dir = \"plugins\"\n\n\
         [[listener]]\nname = \"upgrade\"\naddress = \"127.0.0.1:{port}\"\n\n\
         [routing]\ndrain_timeout_ms = 2000\n\n\
         [[backend]]\nname = \"rr\"\nprotocol = \"pass\"\ntarget = \"{rr}\"\n"
    )
}

fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(!matches!(s.get(s.rfind(')')? + 2..)?.chars().next()?, 'Z' | 'X')))
        .unwrap_or(false)
}

/// One upgrade as seen from outside.
struct Upgrade {
    new_pid: u32,
    accepting_ms: f64,
    handover_ms: f64,
    exit_ms: f64,
}

/// Signals `pid`, then follows the log until the new process accepts and the old one exited.
fn upgrade(log: &Path, pid: u32, from_line: usize) -> anyhow::Result<(Upgrade, usize)> {
    let t0 = wall_now();
    let started = Instant::now();
    // SAFETY: kill(2) on a PID this run started (directly or as a successor) and saw alive.
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGUSR2) } != 0 {
        bail!("cannot signal PID {pid}: {}", std::io::Error::last_os_error());
    }
    let accepting = format!("told the old process (PID {pid})");
    let handover = format!("this process (PID {pid}) stops accepting");
    let (mut accepting_at, mut handover_at, mut new_pid) = (None, None, None);
    let mut seen = from_line;
    while accepting_at.is_none() || handover_at.is_none() {
        if started.elapsed() > UPGRADE_LIMIT {
            bail!("no takeover from PID {pid} within {UPGRADE_LIMIT:?}");
        }
        let text = fs::read_to_string(log).unwrap_or_default();
        for line in text.lines().skip(from_line) {
            if line.contains("upgrade failed") {
                bail!("upgrade of PID {pid} failed: {line}");
            }
            let at = line.split_whitespace().next().and_then(timestamp);
            if accepting_at.is_none() && line.contains(&accepting) {
                accepting_at = at;
            }
            if handover_at.is_none() && line.contains(&handover) {
                handover_at = at;
                new_pid = field(line, "new_pid").and_then(|p| p.parse::<u32>().ok());
            }
        }
        seen = text.lines().count();
        std::thread::sleep(Duration::from_millis(2));
    }
    let new_pid = new_pid.context("no new_pid in the hand-over line")?;
    track(new_pid, true);
    while alive(pid) {
        if started.elapsed() > UPGRADE_LIMIT {
            bail!("PID {pid} did not exit within {UPGRADE_LIMIT:?} of the upgrade");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let exit_ms = started.elapsed().as_secs_f64() * 1e3;
    track(pid, false);
    let ms = |at: Option<f64>| at.map_or(f64::NAN, |a| (a - t0) * 1e3);
    Ok((
        Upgrade {
            new_pid,
            accepting_ms: ms(accepting_at),
            handover_ms: ms(handover_at),
            exit_ms,
        },
        seen,
    ))
}

/// Runs the whole upgrade test into `r`.
pub fn run(args: &Args, setup: &Setup, rr: SocketAddr, r: &mut Results) -> anyhow::Result<()> {
    let dir = setup.path().join("upgrade");
    fs::create_dir_all(&dir)?;
    // The plugin folder is empty: the test is about the host (`pass` is built in).
    fs::create_dir_all(dir.join("plugins"))?;
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config_file = dir.join("pmmux.toml");
    fs::write(&config_file, config(port, rr))?;
    let log = setup.path().join("pmmux-upgrade.log");
    let mut first = setup.launch(
        &config_file,
        &log,
        "warn,pmmux::control=info",
        [addr, addr],
        args.server_cpu(),
    )?;
    let mut pid = first.pid();
    let mut line = 0;
    eprintln!(
        "upgrade: {} upgrades for latency; rate {} workers x {} s steady vs upgrading back to back, {} rounds",
        args.upgrades, args.conns, args.upgrade_secs, args.upgrade_rounds
    );
    let result = (|| -> anyhow::Result<()> {
        for _ in 0..args.upgrades {
            let (u, seen) = upgrade(&log, pid, line)?;
            r.add("upgrade", "sigusr2_to_accepting_ms", "pmmux", "ms", u.accepting_ms);
            r.add("upgrade", "sigusr2_to_handover_ms", "pmmux", "ms", u.handover_ms);
            r.add("upgrade", "old_exit_ms", "pmmux", "ms", u.exit_ms);
            (pid, line) = (u.new_pid, seen);
        }
        for round in 0..args.upgrade_rounds {
            let steady = load::rate(
                addr,
                args.conns,
                args.upgrade_secs,
                args.client_threads(),
                args.client_cpu(),
            )?;
            let stop = AtomicBool::new(false);
            let (upgrading, count) = std::thread::scope(|s| -> anyhow::Result<(load::Rate, usize)> {
                let clients = s.spawn(|| {
                    let out = load::rate(
                        addr,
                        args.conns,
                        args.upgrade_secs,
                        args.client_threads(),
                        args.client_cpu(),
                    );
                    stop.store(true, Ordering::Relaxed);
                    out
                });
                let mut count = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (u, seen) = upgrade(&log, pid, line)?;
                    (pid, line) = (u.new_pid, seen);
                    count += 1;
                }
                let rate = clients
                    .join()
                    .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
                Ok((rate, count))
            })?;
            eprintln!(
                "upgrade round {}: steady {:.0} conn/s ({} errors), upgrading {:.0} conn/s ({} errors, {count} upgrades)",
                round + 1,
                steady.per_sec(),
                steady.errors,
                upgrading.per_sec(),
                upgrading.errors
            );
            r.add("upgrade", "conn_per_s", "steady", "conn/s", steady.per_sec());
            r.add("upgrade", "conn_per_s", "upgrading", "conn/s", upgrading.per_sec());
            r.add(
                "upgrade",
                "conn_per_s",
                "ratio",
                "x",
                upgrading.per_sec() / steady.per_sec(),
            );
            r.add("upgrade", "errors", "steady", "count", steady.errors as f64);
            r.add("upgrade", "errors", "upgrading", "count", upgrading.errors as f64);
            r.add("upgrade", "upgrades_per_window", "upgrading", "count", count as f64);
            if let Some(e) = upgrading.first_error.or(steady.first_error) {
                r.note(format!("upgrade: first client error: {e}"));
            }
        }
        Ok(())
    })();
    // The last process is not the bench's child once the first has exited: stop it by PID.
    if pid != first.pid() {
        // SAFETY: kill(2) on the PID of the pmmux this run upgraded to, alive a moment ago.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above; a no-op if it has exited.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        track(pid, false);
    }
    first.stop(Duration::from_secs(3))?;
    result
}
