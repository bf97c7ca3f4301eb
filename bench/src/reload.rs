//! The reload test: a pmmux serving only the `versioned` fixture plugin, whose library file is
//! replaced under it. Measured: the time from the file landing to the first new connection greeted
//! by the new version (per replace; median, p90, p99, max against "quiet period + 50 ms"), and the
//! connection rate while the plugin is replaced continuously versus not at all, in the same run.
//! Every failed connection is counted. pmmux's log gives the time of each registry swap, which
//! splits each delay into pmmux's part and the client's.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::pmlog::{self, wall_now, Swap};
use crate::pmmux::{free_port, Pmmux, Setup};
use crate::report::{fmt_num, percentile, Results};
use crate::versioned::{self, Fixtures, How, LIVE_NAME};
use crate::{load, sys, Args};

/// How long the version being waited for may take to greet, beyond the debounce cap.
const LIVE_LIMIT: Duration = Duration::from_secs(5);
/// Outliers listed as notes, at most.
const MAX_OUTLIERS: usize = 5;

/// The pmmux under test and the file it serves from.
struct Live<'a> {
    p: Pmmux,
    addr: SocketAddr,
    file: PathBuf,
    fixtures: &'a Fixtures,
    /// The version the file holds now (1 or 2).
    version: u32,
}

impl Live<'_> {
    fn ensure_alive(&mut self) -> anyhow::Result<()> {
        if !self.p.alive() {
            bail!("pmmux died: {}", self.p.log_tail());
        }
        Ok(())
    }

    /// Probes until a new connection is greeted by the version the file holds.
    fn wait_current(&mut self, limit: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut last = String::from("no answer yet");
        while started.elapsed() < limit {
            match versioned::probe(self.addr) {
                Ok((v, _)) if v == self.version => return Ok(()),
                Ok((v, _)) => last = format!("greeted by v{v}"),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.ensure_alive()?;
        bail!(
            "v{} not serving {limit:?} after it landed ({last}); pmmux log: {}",
            self.version,
            self.p.log_tail()
        )
    }
}

/// The configuration: one listener, the quiet period under test, a rescan that never comes during
/// the run, and the `versioned` backend.
fn config(port: u16, quiet_ms: u64) -> String {
    format!(
        "# written by pmmux-bench (reload test)\nplugin_dir = \"plugins\"\n\n\
         [[listener]]\nname = \"reload\"\naddress = \"127.0.0.1:{port}\"\n\n\
         [routing]\ndrain_timeout_ms = 500\n\n\
         [reload]\nquiet_period_ms = {quiet_ms}\nrescan_interval_ms = 3600000\n\n\
         [[backend]]\nname = \"versioned\"\nprotocol = \"versioned\"\n"
    )
}

/// Runs the whole reload test into `r`.
pub fn run(args: &Args, setup: &Setup, fixtures: &Fixtures, r: &mut Results) -> anyhow::Result<()> {
    let hows = args
        .reload_how
        .iter()
        .map(|h| How::parse(h).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<How>>>()?;
    // The config lives in a folder of its own (pmmux watches the config's folder); the log does not.
    let dir = setup.path().join("reload");
    let plugins = dir.join("plugins");
    fs::create_dir_all(&plugins)?;
    let file = plugins.join(LIVE_NAME);
    fs::copy(fixtures.path(1), &file).with_context(|| format!("copying {}", fixtures.path(1).display()))?;
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config_file = dir.join("pmmux.toml");
    fs::write(&config_file, config(port, args.reload_quiet_ms))?;
    let log = setup.path().join("pmmux-reload.log");
    let p = setup.launch(&config_file, &log, &args.reload_log, [addr, addr], args.server_cpu())?;
    let mut live = Live {
        p,
        addr,
        file,
        fixtures,
        version: 1,
    };
    live.wait_current(Duration::from_secs(10))?;
    eprintln!(
        "reload: quiet period {} ms, {} replaces by {}; rate {} workers x {} s steady vs reloading every {} ms, {} rounds",
        args.reload_quiet_ms,
        args.reload_replaces,
        args.reload_how.join(" then "),
        args.conns,
        args.reload_secs,
        every(args).as_millis(),
        args.reload_rounds
    );
    r.add("reload", "quiet_period_ms", "pmmux", "ms", args.reload_quiet_ms as f64);
    let rss0 = sys::rss_kib(live.p.pid()).unwrap_or(0);
    let swaps0 = pmlog::swaps(&log).len();
    for how in hows.iter().copied() {
        latency(args, &mut live, how, r)?;
    }
    rate(args, &mut live, hows.first().copied().unwrap_or(How::Rename), r)?;
    let swaps = pmlog::swaps(&log).len() - swaps0;
    if let (Ok(rss1), true) = (sys::rss_kib(live.p.pid()), swaps > 0) {
        r.add(
            "reload",
            "rss_growth_per_swap",
            "pmmux",
            "KiB",
            (rss1 as f64 - rss0 as f64) / swaps as f64,
        );
        r.add("reload", "swaps_total", "pmmux", "count", swaps as f64);
    }
    let (n, last) = pmlog::warnings(&log);
    if let Some(last) = last {
        r.note(format!("reload: pmmux logged {n} warning/error line(s); last: {last}"));
    }
    live.p.stop(Duration::from_secs(3))?;
    Ok(())
}

/// The interval between replaces while reloading continuously.
fn every(args: &Args) -> Duration {
    Duration::from_millis(args.reload_every_ms.unwrap_or(2 * args.reload_quiet_ms).max(1))
}

/// One replace of the latency measurement, as the client saw it.
struct Replace {
    /// Wall-clock time right after the file landed (for the log).
    t0_wall: f64,
    /// From the file landing to the first greeting by the new version, in ms (NaN if never).
    live_ms: f64,
    version: u32,
}

/// Latency: `--reload-replaces` replaces, alternating versions; after each, connections back to
/// back until one is greeted by the new version.
fn latency(args: &Args, live: &mut Live<'_>, how: How, r: &mut Results) -> anyhow::Result<()> {
    let quiet = Duration::from_millis(args.reload_quiet_ms);
    // The host postpones a reload at most to 4 quiet periods + 100 ms after the first event.
    let limit = quiet * 4 + Duration::from_millis(100) + LIVE_LIMIT;
    let target = args.reload_quiet_ms as f64 + 50.0;
    let gap = Duration::from_millis(args.reload_gap_ms.unwrap_or(2 * args.reload_quiet_ms + 100));
    let cpu = args.client_cpu();
    let mut replaces: Vec<Replace> = Vec::with_capacity(args.reload_replaces);
    let (mut failures, mut old_served) = (0u64, 0u64);
    let mut first_failure: Option<String> = None;
    // The probes run on a thread of their own, pinned like the other clients.
    std::thread::scope(|s| {
        s.spawn(|| -> anyhow::Result<()> {
            if let Some(c) = cpu {
                let _ = sys::pin_current(c);
            }
            // The first replace too finds the reloader idle since its last event.
            std::thread::sleep(gap);
            for i in 0..args.reload_replaces {
                let (old, new) = (live.version, 3 - live.version);
                versioned::replace(how, live.fixtures.path(new), &live.file)
                    .with_context(|| format!("{} of v{new}", how.name()))?;
                let (t0, t0_wall) = (Instant::now(), wall_now());
                live.version = new;
                let mut live_ms = f64::NAN;
                loop {
                    match versioned::probe(live.addr) {
                        Ok((v, at)) if v == new => {
                            live_ms = at.duration_since(t0).as_secs_f64() * 1e3;
                            break;
                        }
                        Ok((v, _)) if v == old => old_served += 1,
                        Ok((v, _)) => {
                            failures += 1;
                            first_failure.get_or_insert(format!("greeted by v{v}, expected v{old} or v{new}"));
                        }
                        Err(e) => {
                            failures += 1;
                            first_failure.get_or_insert(e);
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    if t0.elapsed() > limit {
                        failures += 1;
                        first_failure.get_or_insert(format!("v{new} not serving {limit:?} after the {}", how.name()));
                        break;
                    }
                }
                replaces.push(Replace {
                    t0_wall,
                    live_ms,
                    version: new,
                });
                if (i + 1) % 10 == 0 || i + 1 == args.reload_replaces {
                    let last: Vec<f64> = replaces[i.saturating_sub(9)..].iter().map(|x| x.live_ms).collect();
                    eprintln!(
                        "  {} {:>3}/{}: new version live after {} .. {} ms",
                        how.name(),
                        i + 1,
                        args.reload_replaces,
                        fmt_num(percentile(&last, 0.0)),
                        fmt_num(percentile(&last, 100.0))
                    );
                }
                live.ensure_alive()?;
                // Each replace starts from an idle reloader (any trailing reconcile done).
                std::thread::sleep(gap);
            }
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| bail!("the probe thread panicked"))
    })?;

    let h = how.name();
    let samples: Vec<f64> = replaces.iter().map(|x| x.live_ms).collect();
    for &v in &samples {
        r.add("reload", &format!("live_after_{h}_ms"), "pmmux", "ms", v);
    }
    for (p, name) in [(90.0, "p90"), (99.0, "p99"), (100.0, "max")] {
        r.add(
            "reload",
            &format!("live_after_{h}_{name}_ms"),
            "pmmux",
            "ms",
            percentile(&samples, p),
        );
    }
    r.add("reload", &format!("failures_{h}"), "pmmux", "count", failures as f64);
    r.add(
        "reload",
        &format!("old_version_conns_{h}"),
        "pmmux",
        "count",
        old_served as f64,
    );
    if let Some(e) = first_failure {
        r.note(format!("reload {h}: {failures} failed connection(s), first: {e}"));
    }

    // pmmux's side, from its log: when the swap bringing each new version happened.
    let swaps = pmlog::swaps(live.p.log_path());
    let matched: Vec<Option<Swap>> = replaces
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let until = replaces.get(i + 1).map_or(f64::INFINITY, |n| n.t0_wall);
            swaps
                .iter()
                .find(|s| s.at >= x.t0_wall - 0.001 && s.at < until && s.version.is_none_or(|v| v == x.version))
                .copied()
        })
        .collect();
    if matched.iter().all(Option::is_none) {
        r.note(format!(
            "reload {h}: no `registry swapped` line in pmmux's log (log filter `{}`): swap times unknown",
            args.reload_log
        ));
    }
    for (x, s) in replaces.iter().zip(&matched) {
        if let Some(s) = s {
            let swap_ms = (s.at - x.t0_wall) * 1e3;
            r.add("reload", &format!("swap_after_{h}_ms"), "pmmux", "ms", swap_ms);
            r.add(
                "reload",
                &format!("seen_after_swap_{h}_ms"),
                "pmmux",
                "ms",
                x.live_ms - swap_ms,
            );
            if let Some(l) = s.load_ms {
                r.add("reload", &format!("plugin_load_{h}_ms"), "pmmux", "ms", l);
            }
        }
    }
    // Sooner than the quiet period: pmmux did not wait for writes to settle.
    let early: Vec<f64> = replaces
        .iter()
        .zip(&matched)
        .filter(|(x, _)| x.live_ms < args.reload_quiet_ms as f64)
        .map(|(x, s)| s.map_or(x.live_ms, |s| (s.at - x.t0_wall) * 1e3))
        .collect();
    r.add("reload", &format!("early_{h}"), "pmmux", "count", early.len() as f64);
    if !early.is_empty() {
        r.note(format!(
            "reload {h}: {} of {} replaces were live before the quiet period ({} ms) had passed (swap {} .. {} ms \
             after the file landed): pmmux reconciled on the first event without waiting for writes to settle",
            early.len(),
            replaces.len(),
            args.reload_quiet_ms,
            fmt_num(percentile(&early, 0.0)),
            fmt_num(percentile(&early, 100.0))
        ));
    }
    let mut outliers: Vec<(usize, &Replace, Option<&Swap>)> = replaces
        .iter()
        .zip(&matched)
        .enumerate()
        .filter(|(_, (x, _))| x.live_ms.is_nan() || x.live_ms > target)
        .map(|(i, (x, s))| (i, x, s.as_ref()))
        .collect();
    outliers.sort_by(|a, b| b.1.live_ms.total_cmp(&a.1.live_ms));
    let n_out = outliers.len();
    for (rank, (i, x, s)) in outliers.into_iter().take(MAX_OUTLIERS).enumerate() {
        let pmmux_side = s.map_or("no swap line in the log".into(), |s| {
            format!(
                "swap logged {:.1} ms after it landed, plugin load {} ms",
                (s.at - x.t0_wall) * 1e3,
                s.load_ms.map_or("?".into(), fmt_num)
            )
        });
        r.note(format!(
            "reload {h} outlier: replace #{} (v{}) live after {} ms > {target} ms ({pmmux_side}){}",
            i + 1,
            x.version,
            fmt_num(x.live_ms),
            if n_out > MAX_OUTLIERS && rank == 0 {
                format!("; {n_out} over target in all")
            } else {
                String::new()
            }
        ));
    }
    Ok(())
}

/// Which kind of window.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Steady,
    Reloading,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Steady => "steady",
            Mode::Reloading => "reloading",
        }
    }
}

/// Replaces the plugin every `every` until `stop`; returns when each replace landed, the version
/// the file holds at the end, and the error that stopped it early, if any.
fn replacer(
    stop: &AtomicBool,
    every: Duration,
    how: How,
    fixtures: &Fixtures,
    file: &Path,
    mut version: u32,
) -> (Vec<Instant>, u32, Option<String>) {
    let mut landed = Vec::new();
    let mut next = Instant::now() + every;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(10)));
            continue;
        }
        if let Err(e) = versioned::replace(how, fixtures.path(3 - version), file) {
            return (landed, version, Some(format!("{}: {e}", how.name())));
        }
        landed.push(Instant::now());
        version = 3 - version;
        next += every;
    }
    (landed, version, None)
}

/// Connection rate: per round, `--reload-secs` of rate workers with no reload and the same with
/// the plugin replaced every `every` (order alternating by round); conn/s, latency, failures.
fn rate(args: &Args, live: &mut Live<'_>, how: How, r: &mut Results) -> anyhow::Result<()> {
    let (cpu, threads) = (args.client_cpu(), args.client_threads());
    let quiet = Duration::from_millis(args.reload_quiet_ms);
    // After a reloading window: the last replace is applied before anything else is measured.
    let settle = quiet * 4 + Duration::from_millis(300);
    let every = every(args);
    let _ = load::rate_with(live.addr, args.conns, 0.5, threads, cpu, versioned::exchange);
    let mut windows: Vec<(usize, Mode, f64, f64)> = Vec::new();
    for round in 0..args.reload_rounds {
        let order = if round % 2 == 0 {
            [Mode::Steady, Mode::Reloading]
        } else {
            [Mode::Reloading, Mode::Steady]
        };
        let mut per_sec = [f64::NAN; 2];
        let mut p50 = [f64::NAN; 2];
        let mut p99 = [f64::NAN; 2];
        for mode in order {
            live.wait_current(LIVE_LIMIT)?;
            let stop = AtomicBool::new(false);
            let (start, start_wall) = (Instant::now(), wall_now());
            let (run, replaced) = std::thread::scope(|s| {
                let replacing = (mode == Mode::Reloading)
                    .then(|| s.spawn(|| replacer(&stop, every, how, live.fixtures, &live.file, live.version)));
                let run = load::rate_with(
                    live.addr,
                    args.conns,
                    args.reload_secs,
                    threads,
                    cpu,
                    versioned::exchange,
                );
                stop.store(true, Ordering::Relaxed);
                (run, replacing.map(|h| h.join()))
            });
            let (end, end_wall) = (Instant::now(), wall_now());
            let run = run?;
            let mut reloads = 0;
            if let Some(replaced) = replaced {
                let Ok((landed, version, error)) = replaced else {
                    bail!("the replacer thread panicked");
                };
                live.version = version;
                if let Some(e) = error {
                    bail!("replacing the plugin: {e}");
                }
                reloads = landed.iter().filter(|&&t| t >= start && t <= end).count();
                std::thread::sleep(settle);
            }
            windows.push((round, mode, start_wall, end_wall));
            let i = mode as usize;
            (per_sec[i], p50[i], p99[i]) = (run.per_sec(), run.pct_ms(50.0), run.pct_ms(99.0));
            eprintln!(
                "  round {} {:<9} {:>8} conn/s  p50 {:.3} ms  p99 {:.3} ms  failures {}{}",
                round + 1,
                mode.name(),
                fmt_num(per_sec[i]),
                p50[i],
                p99[i],
                run.errors,
                if mode == Mode::Reloading {
                    format!("  replaces {reloads}")
                } else {
                    String::new()
                }
            );
            r.add("reload", "conn_per_s", mode.name(), "conn/s", per_sec[i]);
            r.add("reload", "p50_ms", mode.name(), "ms", p50[i]);
            r.add("reload", "p99_ms", mode.name(), "ms", p99[i]);
            r.add("reload", "failures", mode.name(), "count", run.errors as f64);
            if mode == Mode::Reloading {
                r.add("reload", "replaces", mode.name(), "count", reloads as f64);
            }
            if let Some(e) = &run.first_error {
                r.note(format!(
                    "reload rate round {} {}: {} failed connection(s), first: {e}",
                    round + 1,
                    mode.name(),
                    run.errors
                ));
            }
            live.ensure_alive()?;
        }
        r.add("reload", "conn_per_s", "ratio", "x", per_sec[1] / per_sec[0]);
        r.add("reload", "p50_ms", "added", "ms", p50[1] - p50[0]);
        r.add("reload", "p99_ms", "added", "ms", p99[1] - p99[0]);
    }
    // Swaps pmmux logged inside each window: as many as replaces while reloading, none when steady.
    let swaps = pmlog::swaps(live.p.log_path());
    if !swaps.is_empty() {
        for (_, mode, a, b) in windows {
            let n = swaps.iter().filter(|s| s.at >= a && s.at <= b).count();
            r.add("reload", "swaps", mode.name(), "count", n as f64);
        }
    }
    Ok(())
}
