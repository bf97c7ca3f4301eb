//! The three measurements, each repeated over rounds with direct and pmmux alternating, recorded
//! into [`Results`]: bulk throughput, connection rate with latency, and RSS per held connection.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::pmmux::{Pmmux, Setup};
use crate::report::{fmt_num, Results};
use crate::upstream::{self, Servers};
use crate::{load, sys, Args};

/// Which way a round goes.
#[derive(Clone, Copy, PartialEq)]
enum Path {
    Direct,
    Pmmux,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Pmmux => "pmmux",
        }
    }
}

/// Direct first in even rounds, pmmux first in odd ones, to spread drift evenly.
fn order(round: usize) -> [Path; 2] {
    if round % 2 == 0 {
        [Path::Direct, Path::Pmmux]
    } else {
        [Path::Pmmux, Path::Direct]
    }
}

fn ensure_alive(p: &mut Pmmux) -> anyhow::Result<()> {
    if !p.alive() {
        bail!("pmmux died: {}", p.log_tail());
    }
    Ok(())
}

/// One request→response through each path and a small bulk transfer through pmmux.
pub fn check(servers: &Servers, p: &Pmmux) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    for (what, addr) in [("direct", servers.addrs.rr), ("pmmux", p.rate)] {
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), upstream::one_request(addr)).await })
            .map_err(|_| anyhow::anyhow!("timed out"))
            .and_then(|r| r.map_err(anyhow::Error::from))
            .with_context(|| {
                format!(
                    "functional check, request through {what} ({addr}); pmmux log: {}",
                    p.log_tail()
                )
            })?;
    }
    load::bulk(p.bulk, 1 << 20, 5.0, None)
        .with_context(|| format!("functional check, bulk via pmmux: {}", p.log_tail()))?;
    Ok(())
}

/// Bulk: one stream per path per round; Gbit/s, ratio, and pmmux's CPU use while relaying.
pub fn bulk(args: &Args, servers: &Servers, p: &mut Pmmux, r: &mut Results) -> anyhow::Result<()> {
    let bytes = (args.bulk_gib * (1u64 << 30) as f64) as u64;
    let cpu = args.client_cpu();
    eprintln!(
        "bulk: {} GiB or {} s per stream, {} rounds",
        args.bulk_gib, args.bulk_secs, args.rounds
    );
    // Warm-up, not recorded.
    for addr in [servers.addrs.sink, p.bulk] {
        let _ = load::bulk(addr, 256 << 20, 2.0, cpu);
    }
    for round in 0..args.rounds {
        let mut got = [f64::NAN; 2];
        for path in order(round) {
            let addr = if path == Path::Direct {
                servers.addrs.sink
            } else {
                p.bulk
            };
            let cpu0 = sys::cpu_secs(p.pid()).unwrap_or(f64::NAN);
            match load::bulk(addr, bytes, args.bulk_secs, cpu) {
                Ok(b) => {
                    eprintln!(
                        "  round {} {:<6} {:>7.2} Gbit/s ({:.2} GiB in {:.2} s)",
                        round + 1,
                        path.name(),
                        b.gbps(),
                        b.bytes as f64 / (1u64 << 30) as f64,
                        b.secs
                    );
                    r.add("bulk", "gbps", path.name(), "Gbit/s", b.gbps());
                    got[path as usize] = b.gbps();
                    if path == Path::Pmmux {
                        let used = sys::cpu_secs(p.pid()).unwrap_or(f64::NAN) - cpu0;
                        r.add("bulk", "pmmux_cpu", "pmmux", "cores", used / b.secs);
                    }
                }
                Err(e) => r.note(format!("bulk round {} {}: {e:#}", round + 1, path.name())),
            }
            ensure_alive(p)?;
        }
        r.add("bulk", "gbps", "ratio", "x", got[1] / got[0]);
    }
    Ok(())
}

/// Connection rate: `--conns` workers for `--rate-secs` per path per round; conn/s, p50/p99.
pub fn rate(args: &Args, servers: &Servers, p: &mut Pmmux, r: &mut Results) -> anyhow::Result<()> {
    let (cpu, threads) = (args.client_cpu(), args.client_threads());
    eprintln!(
        "rate: {} workers x {} s per run, {} client thread(s), {} rounds",
        args.conns, args.rate_secs, threads, args.rounds
    );
    for addr in [servers.addrs.rr, p.rate] {
        let _ = load::rate(addr, args.conns, 0.5, threads, cpu);
    }
    for round in 0..args.rounds {
        let mut per_sec = [f64::NAN; 2];
        let mut p50 = [f64::NAN; 2];
        let mut p99 = [f64::NAN; 2];
        for path in order(round) {
            let addr = if path == Path::Direct { servers.addrs.rr } else { p.rate };
            let cpu0 = sys::cpu_secs(p.pid()).unwrap_or(f64::NAN);
            let run = load::rate(addr, args.conns, args.rate_secs, threads, cpu)?;
            let i = path as usize;
            (per_sec[i], p50[i], p99[i]) = (run.per_sec(), run.pct_ms(50.0), run.pct_ms(99.0));
            eprintln!(
                "  round {} {:<6} {:>8} conn/s  p50 {:.3} ms  p99 {:.3} ms  errors {}",
                round + 1,
                path.name(),
                fmt_num(per_sec[i]),
                p50[i],
                p99[i],
                run.errors
            );
            r.add("rate", "conn_per_s", path.name(), "conn/s", per_sec[i]);
            r.add("rate", "p50_ms", path.name(), "ms", p50[i]);
            r.add("rate", "p99_ms", path.name(), "ms", p99[i]);
            r.add("rate", "errors", path.name(), "count", run.errors as f64);
            if let Some(e) = &run.first_error {
                r.note(format!(
                    "rate round {} {}: {} error(s), first: {e}",
                    round + 1,
                    path.name(),
                    run.errors
                ));
            }
            if path == Path::Pmmux {
                let used = sys::cpu_secs(p.pid()).unwrap_or(f64::NAN) - cpu0;
                r.add("rate", "pmmux_cpu", "pmmux", "cores", used / run.secs);
                r.add(
                    "rate",
                    "pmmux_cpu_us_per_conn",
                    "pmmux",
                    "us",
                    used * 1e6 / run.ok.max(1) as f64,
                );
            }
            ensure_alive(p)?;
        }
        r.add("rate", "conn_per_s", "ratio", "x", per_sec[1] / per_sec[0]);
        r.add("rate", "p50_ms", "added", "ms", p50[1] - p50[0]);
        r.add("rate", "p99_ms", "added", "ms", p99[1] - p99[0]);
    }
    Ok(())
}

/// Memory: a fresh pmmux, warmed up; then `n` connections held open either silent (still in the
/// preview) or after one byte (routed to the sink, which holds them); RSS delta per connection.
pub fn memory(
    setup: &Setup,
    servers: &Servers,
    cpu: Option<usize>,
    routed: bool,
    n: usize,
    r: &mut Results,
) -> anyhow::Result<()> {
    let case = if routed { "routed" } else { "preview" };
    let mut p = setup.start(&format!("mem-{case}"), servers.addrs, 120_000, cpu)?;
    let pid = p.pid();
    // Warm-up: worker threads started, plugin code paged in, allocator arenas in use.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    for _ in 0..200 {
        let _ =
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), upstream::one_request(p.rate)).await });
    }
    std::thread::sleep(Duration::from_millis(300));
    let (fd0, rss0) = (sys::fd_count(pid)?, sys::rss_kib(pid)?);
    let live0 = servers.counters.sink_live.load(Ordering::Relaxed);
    let target: SocketAddr = if routed { p.bulk } else { p.rate };
    let t0 = Instant::now();
    let held = load::hold(target, n, routed);
    let opened = held.streams.len();
    if let Some(e) = &held.first_error {
        r.note(format!(
            "memory {case}: {} of {n} connections failed, first: {e}",
            held.errors
        ));
    }
    // Settle: pmmux has accepted them all (and connected upstream, when routed).
    let per = if routed { 2 } else { 1 };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let fds = sys::fd_count(pid).unwrap_or(0);
        let sunk = servers.counters.sink_live.load(Ordering::Relaxed).saturating_sub(live0);
        if fds >= fd0 + per * opened && (!routed || sunk >= opened) {
            break;
        }
        if Instant::now() > deadline {
            r.note(format!(
                "memory {case}: after 30 s pmmux holds {} fds (expected {}), sink {sunk}",
                fds - fd0.min(fds),
                per * opened
            ));
            break;
        }
        ensure_alive(&mut p)?;
        std::thread::sleep(Duration::from_millis(50));
    }
    let settle = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let rss1 = sys::rss_kib(pid)?;
    let per_conn = (rss1 as f64 - rss0 as f64) / opened.max(1) as f64;
    eprintln!(
        "memory {case}: {opened} connections open in {settle:.1} s; pmmux RSS {:.1} -> {:.1} MiB = {per_conn:.2} KiB/conn",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0
    );
    r.add("memory", &format!("rss_per_conn_{case}"), "pmmux", "KiB", per_conn);
    r.add(
        "memory",
        &format!("rss_base_{case}"),
        "pmmux",
        "MiB",
        rss0 as f64 / 1024.0,
    );
    r.add(
        "memory",
        &format!("rss_held_{case}"),
        "pmmux",
        "MiB",
        rss1 as f64 / 1024.0,
    );
    r.add("memory", &format!("conns_{case}"), "pmmux", "count", opened as f64);
    drop(held);
    p.stop(Duration::from_secs(3))?;
    Ok(())
}
