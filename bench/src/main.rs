//! `pmmux-bench`: the command line, the run's setup (limits, upstream servers, plugin folder), the
//! watchdog that bounds the run, and the final table, summary line and TSV.

mod detect;
mod load;
mod measure;
mod pmlog;
mod pmmux;
mod reload;
mod report;
mod sys;
mod udp;
mod udpload;
mod upgrade;
mod upstream;
mod versioned;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;

use report::{fmt_num, Results};

/// Descriptors kept aside for everything but the held connections (listeners, runtime, logs).
const FD_MARGIN: u64 = 300;

/// Loopback benchmark of pmmux against a direct connection, measured in the same run.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Args {
    /// Measurements to run, comma-separated: detect, bulk, rate, memory, reload, udp, upgrade.
    #[arg(
        long,
        default_value = "detect,bulk,rate,memory,reload,udp,upgrade",
        value_delimiter = ','
    )]
    pub tests: Vec<String>,
    /// Rounds per measurement (direct and pmmux alternate within each round).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Bulk: bytes per stream, in GiB (a stream also stops at --bulk-secs).
    #[arg(long, default_value_t = 2.0)]
    pub bulk_gib: f64,
    /// Bulk: longest a stream may send, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub bulk_secs: f64,
    /// Connection rate: concurrent client workers.
    #[arg(long, default_value_t = 50)]
    pub conns: usize,
    /// Connection rate: seconds per run.
    #[arg(long, default_value_t = 3.0)]
    pub rate_secs: f64,
    /// Memory: connections held open in each case (preview and routed).
    #[arg(long, default_value_t = 10_000)]
    pub idle_conns: usize,
    /// Reload: the plugin folder's `[reload] quiet_period_ms`.
    #[arg(long, default_value_t = 100)]
    pub reload_quiet_ms: u64,
    /// Reload: replaces timed for the latency figures (alternating versions 2 and 1).
    #[arg(long, default_value_t = 50)]
    pub reload_replaces: usize,
    /// Reload: how the library file is replaced, comma-separated to time several: `rename` (a copy
    /// renamed over it, atomic) or `cp` (copied over it in place). The rate windows use the first.
    #[arg(long, default_value = "rename", value_delimiter = ',')]
    pub reload_how: Vec<String>,
    /// Upgrade: SIGUSR2 upgrades timed one by one (time to the new process accepting).
    #[arg(long, default_value_t = 10)]
    pub upgrades: usize,
    /// Upgrade: seconds per connection-rate window (steady, and upgrading back to back).
    #[arg(long, default_value_t = 4.0)]
    pub upgrade_secs: f64,
    /// Upgrade: rounds of one steady and one upgrading window.
    #[arg(long, default_value_t = 3)]
    pub upgrade_rounds: usize,
    /// Reload: seconds per connection-rate window (steady and reloading).
    #[arg(long, default_value_t = 5.0)]
    pub reload_secs: f64,
    /// Reload: rounds of one steady and one reloading window.
    #[arg(long, default_value_t = 3)]
    pub reload_rounds: usize,
    /// Reload: pause after each timed replace is live, before the next [default: 2 x quiet period
    /// + 100 ms, so that every replace finds the reloader idle].
    #[arg(long)]
    pub reload_gap_ms: Option<u64>,
    /// Reload: interval between replaces while reloading continuously [default: 2 x quiet period].
    #[arg(long)]
    pub reload_every_ms: Option<u64>,
    /// Reload: the versioned fixture built as version 1
    /// [default: <target>/bench-fixtures/libfixture_versioned_v1.so, where bench/run.sh builds it].
    #[arg(long)]
    pub versioned_v1: Option<PathBuf>,
    /// Reload: the versioned fixture built as version 2 [default: as --versioned-v1, with v2].
    #[arg(long)]
    pub versioned_v2: Option<PathBuf>,
    /// Reload: pmmux's log filter for the reload test (swap times are read from the log; connection
    /// lines stay off so that logging does not weigh on the rate).
    #[arg(long, default_value = "warn,pmmux::control::reload=info,pmmux::plugins=debug")]
    pub reload_log: String,
    /// UDP: seconds per ping-pong run (each way, each round, each client count).
    #[arg(long, default_value_t = 1.0)]
    pub udp_secs: f64,
    /// UDP: clients of the multi-client ping-pong variant (the first variant has one).
    #[arg(long, default_value_t = 16)]
    pub udp_clients: usize,
    /// UDP: datagram payload in bytes (at least 8: a sequence number leads it).
    #[arg(long, default_value_t = 64)]
    pub udp_payload: usize,
    /// UDP: flows held for the memory figure through the `echo` plugin (no upstream socket).
    #[arg(long, default_value_t = 100_000)]
    pub udp_flows: usize,
    /// UDP: forwarded flows (`pass`, one upstream socket each) held for the memory figure; capped
    /// at the open-file limit minus 1,000.
    #[arg(long, default_value_t = 15_000)]
    pub udp_pass_flows: usize,
    /// Detect: calls per timed batch (each per-plugin figure and each routing figure).
    #[arg(long, default_value_t = 200_000)]
    pub detect_iters: usize,
    /// Detect: timed batches per figure (the median is quoted).
    #[arg(long, default_value_t = 7)]
    pub detect_batches: usize,
    /// The pmmux binary [default: `pmmux` next to this binary].
    #[arg(long)]
    pub pmmux: Option<PathBuf>,
    /// Folder holding the release plugins (libpmmux_*.so) [default: the pmmux binary's folder].
    #[arg(long)]
    pub plugin_dir: Option<PathBuf>,
    /// Where to write the results as TSV.
    #[arg(long, default_value = "/tmp/pmmux-bench.tsv")]
    pub out: PathBuf,
    /// Optional pinning as CLIENT,SERVER CPU numbers: the clients run on CLIENT; pmmux and the
    /// upstream servers share SERVER (as bench/anchors.sh does). Off by default.
    #[arg(long, value_parser = parse_pin)]
    pub pin: Option<(usize, usize)>,
    /// Client runtime threads [default: 1 when pinned, else up to 2].
    #[arg(long)]
    pub client_threads: Option<usize>,
    /// Upstream server runtime threads [default: 1 when pinned, else up to 2].
    #[arg(long)]
    pub server_threads: Option<usize>,
    /// The whole run is stopped (pmmux killed, exit 3) after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub max_secs: u64,
    /// Keep the temp folder (configs, pmmux logs) and print its path.
    #[arg(long)]
    pub keep: bool,
}

fn parse_pin(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s.split_once(',').ok_or("expected CLIENT,SERVER, e.g. 0,1")?;
    let cpu = |x: &str| x.trim().parse::<usize>().map_err(|e| format!("`{x}`: {e}"));
    Ok((cpu(a)?, cpu(b)?))
}

impl Args {
    /// The CPU for the clients, when pinning.
    pub fn client_cpu(&self) -> Option<usize> {
        self.pin.map(|p| p.0)
    }

    /// The CPU for pmmux and the upstream servers, when pinning.
    pub fn server_cpu(&self) -> Option<usize> {
        self.pin.map(|p| p.1)
    }

    /// Threads of the client runtime.
    pub fn client_threads(&self) -> usize {
        self.client_threads
            .unwrap_or(if self.pin.is_some() { 1 } else { sys::cpus().min(2) })
    }

    fn runs(&self, test: &str) -> bool {
        self.tests.iter().any(|t| t == test)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let max = Duration::from_secs(args.max_secs);
    std::thread::spawn(move || {
        std::thread::sleep(max);
        eprintln!(
            "pmmux-bench: watchdog: the run exceeded {}s; killing pmmux and exiting",
            max.as_secs()
        );
        pmmux::kill_live();
        std::process::exit(3);
    });
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pmmux-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    if args.rounds == 0 || args.conns == 0 {
        bail!("--rounds and --conns must be above 0");
    }
    for t in &args.tests {
        if !["detect", "bulk", "rate", "memory", "reload", "udp", "upgrade"].contains(&t.as_str()) {
            bail!("unknown test `{t}` (expected detect, bulk, rate, memory, reload, udp, upgrade)");
        }
    }
    if args.runs("udp") && (args.udp_clients == 0 || args.udp_payload < 8 || args.udp_payload > 65_507) {
        bail!("--udp-clients must be above 0 and --udp-payload within 8..=65507");
    }
    if args.runs("reload") {
        if args.reload_replaces == 0 || args.reload_rounds == 0 || args.reload_how.is_empty() {
            bail!("--reload-replaces, --reload-rounds and --reload-how must not be 0 or empty");
        }
        for h in &args.reload_how {
            versioned::How::parse(h).map_err(|e| anyhow::anyhow!("--reload-how {e}"))?;
        }
    }
    if let Some((c, s)) = args.pin {
        if c.max(s) >= sys::cpus() {
            bail!("--pin {c},{s}: this machine has {} CPUs", sys::cpus());
        }
    }
    let mut results = Results::default();

    // Memory test, routed case: the bench holds N client sockets plus the N the sink accepted, and
    // pmmux holds 2N (client side and upstream side); the preview case needs N on each side.
    let wanted = 2 * args.idle_conns as u64 + FD_MARGIN;
    let limit = sys::raise_nofile(wanted).context("raising RLIMIT_NOFILE")?;
    let fit = |per: u64| (limit.saturating_sub(FD_MARGIN) / per).min(args.idle_conns as u64) as usize;
    let (preview_conns, routed_conns) = (fit(1), fit(2));
    if args.runs("memory") && routed_conns.min(preview_conns) < args.idle_conns {
        results.note(format!(
            "open-file limit is {limit} (the routed case needs {wanted} for {} connections): memory test \
             scaled to {preview_conns} preview / {routed_conns} routed; raise `ulimit -Hn` (root with \
             CAP_SYS_RESOURCE can) for the full count",
            args.idle_conns
        ));
    }

    let exe = std::env::current_exe().context("locating this binary")?;
    let bin_dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    let pmmux_bin = args.pmmux.clone().unwrap_or_else(|| bin_dir.join("pmmux"));
    let plugin_src = args
        .plugin_dir
        .clone()
        .unwrap_or_else(|| pmmux_bin.parent().map(PathBuf::from).unwrap_or_default());
    let setup = pmmux::Setup::new(&pmmux_bin, &plugin_src, args.keep)?;
    if !setup.has_http {
        results.note(format!(
            "http plugin missing in {}: the rate chain ends on `pass`",
            plugin_src.display()
        ));
    }
    let threads = args
        .server_threads
        .unwrap_or(if args.pin.is_some() { 1 } else { sys::cpus().min(2) });
    let servers = upstream::start(threads, args.server_cpu())?;

    let load_start = sys::loadavg();
    println!(
        "== pmmux-bench: {} cpus, load average {load_start:.2}, {} rounds, pin {}, nofile {limit}, pmmux {}",
        sys::cpus(),
        args.rounds,
        args.pin
            .map_or("off".into(), |(c, s)| format!("client cpu {c} / pmmux+servers cpu {s}")),
        pmmux_bin.display()
    );
    println!("== rate chain (every connection asks each in turn): {}", setup.chain());
    if args.keep {
        println!("== work folder kept: {}", setup.path().display());
    }

    // First, while the machine is quiet: in-process, no sockets.
    if args.runs("detect") {
        detect::run(args, &plugin_src, setup.path(), &mut results)?;
    }
    if args.runs("bulk") || args.runs("rate") {
        let mut p = setup.start("main", servers.addrs, 3000, args.server_cpu())?;
        measure::check(&servers, &p)?;
        if args.runs("bulk") {
            measure::bulk(args, &servers, &mut p, &mut results)?;
        }
        if args.runs("rate") {
            measure::rate(args, &servers, &mut p, &mut results)?;
        }
        let lines = p.log_lines();
        if lines > 0 {
            results.note(format!(
                "pmmux logged {lines} warning/error line(s); last: {}",
                p.log_tail()
            ));
        }
        p.stop(Duration::from_secs(3))?;
    }
    if args.runs("udp") {
        udp::run(args, &setup, limit, &mut results)?;
    }
    // Before the memory test, whose 2 x 10,000 closed client sockets linger in TIME_WAIT.
    if args.runs("reload") {
        match versioned::Fixtures::find(args.versioned_v1.as_deref(), args.versioned_v2.as_deref(), &bin_dir) {
            Ok(fixtures) => reload::run(args, &setup, &fixtures, &mut results)?,
            Err(e) => results.note(format!("reload test skipped: {e}")),
        }
    }
    if args.runs("upgrade") {
        if args.upgrade_rounds == 0 {
            bail!("--upgrade-rounds must be above 0");
        }
        upgrade::run(args, &setup, servers.addrs.rr, &mut results)?;
    }
    if args.runs("memory") {
        for (routed, n) in [(false, preview_conns), (true, routed_conns)] {
            if n > 0 {
                measure::memory(&setup, &servers, args.server_cpu(), routed, n, &mut results)?;
            }
        }
    }
    let upstream_errors = servers.counters.errors.load(std::sync::atomic::Ordering::Relaxed);
    if upstream_errors > 0 {
        results.note(format!(
            "upstream servers counted {upstream_errors} error(s) (accept or I/O)"
        ));
    }
    drop(servers);
    // Only the start counts: by the end the bench itself has loaded every CPU for a minute.
    if load_start > 0.5 * sys::cpus() as f64 {
        results.note(format!(
            "busy machine: load average {load_start:.2} at the start ({} cpus); other jobs weigh on \
             both paths: compare ratios, not absolute figures",
            sys::cpus()
        ));
    }

    println!();
    print!("{}", results.table());
    for n in &results.notes {
        println!("note: {n}");
    }
    println!("{}", summary(&results));
    results
        .write_tsv(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "== results: {} ({:.0} s)",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn summary(r: &Results) -> String {
    let mut parts = Vec::new();
    let bulk = r.median("bulk", "gbps", "ratio");
    if bulk.is_finite() {
        let verdict = if bulk >= 0.9 { "met" } else { "NOT met" };
        parts.push(format!("bulk {bulk:.2}x direct (target >= 0.9x: {verdict})"));
    }
    let rate = r.median("rate", "conn_per_s", "ratio");
    if rate.is_finite() {
        parts.push(format!(
            "conn rate {rate:.2}x direct ({} vs {} conn/s)",
            fmt_num(r.median("rate", "conn_per_s", "pmmux")),
            fmt_num(r.median("rate", "conn_per_s", "direct"))
        ));
        parts.push(format!(
            "p99 added {:+.3} ms (p50 {:+.3} ms)",
            r.median("rate", "p99_ms", "added"),
            r.median("rate", "p50_ms", "added")
        ));
    }
    for (metric, label) in [("rss_per_conn_preview", "preview"), ("rss_per_conn_routed", "routed")] {
        let v = r.median("memory", metric, "pmmux");
        if v.is_finite() {
            parts.push(format!("RSS {label} {v:.2} KiB/conn"));
        }
    }
    parts.extend(detect::summary(r));
    parts.extend(reload_summary(r));
    parts.extend(upgrade_summary(r));
    parts.extend(udp_summary(r));
    format!("SUMMARY: {}", parts.join(" | "))
}

/// The udp test's part of the summary: round trips against direct (the target: >= 0.8x for
/// one client) and socat, then the flows held and their memory.
fn udp_summary(r: &Results) -> Vec<String> {
    let mut parts = Vec::new();
    let mut clients: Vec<String> = r
        .series
        .iter()
        .filter(|s| s.test == "udp" && s.path == "ratio")
        .filter_map(|s| s.metric.strip_prefix("rt_per_s_")?.strip_suffix('c').map(String::from))
        .collect();
    clients.dedup();
    for c in clients {
        let m = format!("rt_per_s_{c}c");
        let ratio = r.median("udp", &m, "ratio");
        let target = if c == "1" {
            format!(" (target >= 0.8x: {})", if ratio >= 0.8 { "met" } else { "NOT met" })
        } else {
            String::new()
        };
        let socat = r.median("udp", &m, "ratio_socat");
        let socat = if socat.is_finite() {
            format!(", {socat:.2}x socat ({} rt/s)", fmt_num(r.median("udp", &m, "socat")))
        } else {
            String::new()
        };
        parts.push(format!(
            "udp {c} client{}: {ratio:.2}x direct{target}{socat} ({} vs {} rt/s direct)",
            if c == "1" { "" } else { "s" },
            fmt_num(r.median("udp", &m, "pmmux")),
            fmt_num(r.median("udp", &m, "direct"))
        ));
    }
    for (case, what) in [("echo", "echo flows"), ("pass", "forwarded flows (1 fd each)")] {
        let flows = r.median("udp", &format!("mem_flows_{case}"), "pmmux");
        if !flows.is_finite() {
            continue;
        }
        let held = if case == "echo" {
            format!(
                "; >= 100k flows held: {}",
                if flows >= 100_000.0 { "met" } else { "NOT met" }
            )
        } else {
            String::new()
        };
        parts.push(format!(
            "{flows:.0} {what} in {:.1} MiB ({:.0} B/flow{held})",
            r.median("udp", &format!("mem_growth_{case}"), "pmmux"),
            r.median("udp", &format!("mem_bytes_per_flow_{case}"), "pmmux")
        ));
    }
    parts
}

/// The reload test's part of the summary: new-version latency against "quiet period + 50 ms" for
/// each way of replacing, then the connection rate while reloading.
fn upgrade_summary(r: &Results) -> Vec<String> {
    let accepting = r.median("upgrade", "sigusr2_to_accepting_ms", "pmmux");
    if accepting.is_nan() {
        return Vec::new();
    }
    let errors: f64 = ["steady", "upgrading"]
        .iter()
        .map(|p| r.sum("upgrade", "errors", p))
        .sum();
    vec![format!(
        "upgrade SIGUSR2 -> new process accepting {} ms (median of {}), old process gone {} ms; conn/s upgrading {}x steady ({} vs {}, {} upgrades per window), {errors} failed connections",
        fmt_num(accepting),
        r.count("upgrade", "sigusr2_to_accepting_ms", "pmmux"),
        fmt_num(r.median("upgrade", "old_exit_ms", "pmmux")),
        fmt_num(r.median("upgrade", "conn_per_s", "ratio")),
        fmt_num(r.median("upgrade", "conn_per_s", "upgrading")),
        fmt_num(r.median("upgrade", "conn_per_s", "steady")),
        fmt_num(r.median("upgrade", "upgrades_per_window", "upgrading")),
    )]
}

fn reload_summary(r: &Results) -> Vec<String> {
    let mut parts = Vec::new();
    let quiet = r.median("reload", "quiet_period_ms", "pmmux");
    let target = quiet + 50.0;
    let verdict = |x: f64| if x <= target { "met" } else { "NOT met" };
    for how in ["rename", "cp"] {
        let p50 = r.median("reload", &format!("live_after_{how}_ms"), "pmmux");
        if !p50.is_finite() {
            continue;
        }
        let p99 = r.median("reload", &format!("live_after_{how}_p99_ms"), "pmmux");
        let failures = r.median("reload", &format!("failures_{how}"), "pmmux");
        let early = r.median("reload", &format!("early_{how}"), "pmmux");
        let n = r.count("reload", &format!("live_after_{how}_ms"), "pmmux");
        parts.push(format!(
            "reload by {how}: new version live p50 {p50:.1} ms ({}), p99 {p99:.1} ms ({}) vs target quiet {quiet:.0} + 50 ms, \
             {failures:.0} failed conn{}",
            verdict(p50),
            verdict(p99),
            if early > 0.0 {
                format!(", {early:.0} of {n} live before the quiet period")
            } else {
                String::new()
            }
        ));
    }
    let ratio = r.median("reload", "conn_per_s", "ratio");
    if ratio.is_finite() {
        let failures: f64 = ["steady", "reloading"]
            .iter()
            .map(|p| r.sum("reload", "failures", p))
            .sum();
        parts.push(format!(
            "conn rate while reloading {ratio:.2}x steady ({} vs {} conn/s, {} replaces per window), {failures:.0} failed conn",
            fmt_num(r.median("reload", "conn_per_s", "reloading")),
            fmt_num(r.median("reload", "conn_per_s", "steady")),
            fmt_num(r.median("reload", "replaces", "reloading"))
        ));
    }
    parts
}
