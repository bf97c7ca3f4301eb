//! The udp test: request/response round trips per second over UDP (one client, then several, each
//! ping-ponging a small datagram with an in-process echo upstream) directly, through pmmux (`pass`,
//! and a listener whose chain asks the `dns` plugin first) and through socat, in the same rounds;
//! then pmmux's memory per flow with 100,000 flows answered by the `echo` plugin (no upstream socket)
//! and with as many forwarded flows (one upstream socket each) as the open-file limit allows.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::pmmux::{Pmmux, Setup};
use crate::report::{percentile, Results};
use crate::udpload::{self, Echo, PingPong, Socat};
use crate::{sys, Args};

/// Flow idle timeout in the memory cases: nothing expires while the flows are counted.
const MEMORY_IDLE_MS: u64 = 600_000;
/// Threads (and source addresses 127.0.0.2, .3, ...) of the flow filler.
const FILL_THREADS: usize = 8;
/// How long the filler waits for each flow's echo.
const FILL_TIMEOUT: Duration = Duration::from_millis(200);
/// Descriptors left to pmmux for everything but the forwarded flows' upstream sockets.
const PASS_FD_MARGIN: u64 = 1_000;

/// One way to the echo upstream.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Way {
    Direct,
    Pmmux,
    /// pmmux, on the listener whose chain asks `dns` (which says no) before `pass`.
    PmmuxDns,
    Socat,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Direct => "direct",
            Way::Pmmux => "pmmux",
            Way::PmmuxDns => "pmmux-dns",
            Way::Socat => "socat",
        }
    }
}

/// The address each way sends to.
struct Targets {
    direct: SocketAddr,
    pmmux: SocketAddr,
    dns: Option<SocketAddr>,
    socat: Option<Socat>,
}

impl Targets {
    fn ways(&self) -> Vec<Way> {
        let mut w = vec![Way::Direct, Way::Pmmux];
        if self.dns.is_some() {
            w.push(Way::PmmuxDns);
        }
        if self.socat.is_some() {
            w.push(Way::Socat);
        }
        w
    }

    fn addr(&self, way: Way) -> SocketAddr {
        match way {
            Way::Direct => self.direct,
            Way::Pmmux => self.pmmux,
            Way::PmmuxDns => self.dns.unwrap_or(self.pmmux),
            Way::Socat => self.socat.as_ref().map_or(self.direct, |s| s.addr),
        }
    }
}

/// A `[[listener]]` (UDP only), the `[admin]` endpoint and `[routing]`, then `backends`.
fn config(listeners: &[(&str, u16)], admin: u16, max_flows: usize, backends: &str) -> String {
    let mut c = String::from("# written by pmmux-bench (udp test)\nplugin_dir = \"plugins\"\n");
    for (name, port) in listeners {
        c += &format!("\n[[listener]]\nname = \"{name}\"\naddress = \"127.0.0.1:{port}\"\ntransport = [\"udp\"]\n");
    }
    c += &format!(
        "\n[admin]\naddress = \"127.0.0.1:{admin}\"\n\n\
         [routing]\ndrain_timeout_ms = 500\nmax_udp_flows = {max_flows}\n{backends}"
    );
    c
}

/// Starts pmmux on `text` (written as `pmmux-<label>.toml`); returns once the admin endpoint
/// accepts (UDP readiness is checked by the caller with a probe datagram).
fn start(setup: &Setup, label: &str, text: &str, admin: u16, cpu: Option<usize>) -> anyhow::Result<Pmmux> {
    let file = setup.path().join(format!("pmmux-{label}.toml"));
    std::fs::write(&file, text)?;
    let log = setup.path().join(format!("pmmux-{label}.log"));
    let admin = SocketAddr::from(([127, 0, 0, 1], admin));
    setup.launch(&file, &log, "warn", [admin, admin], cpu)
}

/// Runs the round trips and both memory cases into `r`; `nofile` is the open-file limit pmmux
/// inherits.
pub fn run(args: &Args, setup: &Setup, nofile: u64, r: &mut Results) -> anyhow::Result<()> {
    let echo = Echo::start(args.server_cpu()).context("starting the UDP echo upstream")?;
    round_trips(args, setup, &echo, r)?;
    if setup.has("echo") {
        memory(args, setup, &echo, "echo", args.udp_flows, r)?;
    } else {
        r.note("udp: the echo plugin is missing: the 100k-flow memory case is skipped");
    }
    let pass = args.udp_pass_flows.min(nofile.saturating_sub(PASS_FD_MARGIN) as usize);
    if pass < args.udp_pass_flows {
        r.note(format!(
            "udp: open-file limit {nofile}: forwarded-flow memory case scaled to {pass} flows \
             (each holds one upstream socket in pmmux; raise `ulimit -Hn` for more)"
        ));
    }
    if pass > 0 {
        memory(args, setup, &echo, "pass", pass, r)?;
    }
    Ok(())
}

fn round_trips(args: &Args, setup: &Setup, echo: &Echo, r: &mut Results) -> anyhow::Result<()> {
    let (pass_port, dns_port, admin) = (
        udpload::free_udp_port()?,
        udpload::free_udp_port()?,
        crate::pmmux::free_port()?,
    );
    let up = echo.addr;
    let has_dns = setup.has("dns");
    let mut listeners = vec![("udp-pass", pass_port)];
    let mut backends = String::new();
    if has_dns {
        listeners.push(("udp-dns", dns_port));
        backends += &format!(
            "\n[[backend]]\nname = \"dns\"\nprotocol = \"dns\"\ntarget = \"{up}\"\n\
             [backend.match]\nlocal_port = [{dns_port}]\n[backend.params]\nname_suffix = \"nomatch.invalid\"\n"
        );
    } else {
        r.note("udp: the dns plugin is missing: no dns-first row");
    }
    backends += &format!("\n[[backend]]\nname = \"pass\"\nprotocol = \"pass\"\ntarget = \"{up}\"\n");
    let text = config(&listeners, admin, 100_000, &backends);
    let mut p = start(setup, "udp", &text, admin, args.server_cpu())?;
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let probe = Duration::from_secs(5);
    udpload::wait_echo(up, probe).context("the echo upstream")?;
    udpload::wait_echo(at(pass_port), probe).with_context(|| format!("through pmmux: {}", p.log_tail()))?;
    if has_dns {
        udpload::wait_echo(at(dns_port), probe)
            .with_context(|| format!("through pmmux (dns first): {}", p.log_tail()))?;
    }
    let socat = match Socat::start(up, args.server_cpu()) {
        Ok(s) => Some(s),
        Err(e) => {
            r.note(format!("udp: socat row skipped: {e:#}"));
            None
        }
    };
    let targets = Targets {
        direct: up,
        pmmux: at(pass_port),
        dns: has_dns.then(|| at(dns_port)),
        socat,
    };
    if let Some(s) = &targets.socat {
        eprintln!("udp: socat {}", Socat::args(s.addr, up).join(" "));
    }
    let mut variants = vec![1];
    if args.udp_clients > 1 {
        variants.push(args.udp_clients);
    }
    for clients in variants {
        eprintln!(
            "udp: {clients} client(s) ping-pong, {} B datagrams, {} s per run, {} rounds, ways: {}",
            args.udp_payload,
            args.udp_secs,
            args.rounds,
            targets.ways().iter().map(|w| w.name()).collect::<Vec<_>>().join(", ")
        );
        for way in targets.ways() {
            udpload::ping_pong(targets.addr(way), clients, 0.2, args.udp_payload, args.client_cpu());
        }
        for round in 0..args.rounds {
            one_round(args, &targets, clients, round, &mut p, r)?;
        }
    }
    drop(targets);
    let lines = p.log_lines();
    if lines > 0 {
        r.note(format!(
            "udp: pmmux logged {lines} warning/error line(s); last: {}",
            p.log_tail()
        ));
    }
    p.stop(Duration::from_secs(3))?;
    Ok(())
}

/// One run per way (order rotated by round), recorded under metrics suffixed with the client count.
fn one_round(
    args: &Args,
    t: &Targets,
    clients: usize,
    round: usize,
    p: &mut Pmmux,
    r: &mut Results,
) -> anyhow::Result<()> {
    let mut ways = t.ways();
    let first = round % ways.len();
    ways.rotate_left(first);
    let mut got: Vec<(Way, PingPong)> = Vec::new();
    let mut cpu_us_per_rt = f64::NAN;
    for way in ways {
        let cpu0 = sys::cpu_secs(p.pid()).unwrap_or(f64::NAN);
        let run = udpload::ping_pong(t.addr(way), clients, args.udp_secs, args.udp_payload, args.client_cpu());
        if way == Way::Pmmux {
            let used = sys::cpu_secs(p.pid()).unwrap_or(f64::NAN) - cpu0;
            cpu_us_per_rt = used * 1e6 / run.round_trips.max(1) as f64;
            r.add(
                "udp",
                &format!("pmmux_cpu_{clients}c"),
                "pmmux",
                "cores",
                used / run.secs,
            );
        }
        eprintln!(
            "  round {} {:<9} {:>8.0} rt/s  p50 {:.1} us  p99 {:.1} us  lost {}  errors {}",
            round + 1,
            way.name(),
            run.per_sec(),
            percentile(&run.rtt_us, 50.0),
            percentile(&run.rtt_us, 99.0),
            run.lost,
            run.errors
        );
        if let Some(e) = &run.first_error {
            r.note(format!(
                "udp round {} {} ({clients} clients): {} error(s), first: {e}",
                round + 1,
                way.name(),
                run.errors
            ));
        }
        if !p.alive() {
            bail!("pmmux died: {}", p.log_tail());
        }
        got.push((way, run));
    }
    r.add(
        "udp",
        &format!("pmmux_cpu_us_per_rt_{clients}c"),
        "pmmux",
        "us",
        cpu_us_per_rt,
    );
    let find = |w: Way| got.iter().find(|(g, _)| *g == w).map(|(_, run)| run);
    let (Some(direct), Some(pm)) = (find(Way::Direct), find(Way::Pmmux)) else {
        return Ok(());
    };
    let socat = find(Way::Socat);
    let mut record = |suffix: &str, pm: &PingPong| {
        type Get = fn(&PingPong) -> f64;
        let metrics: [(&str, &'static str, Get, bool); 4] = [
            ("rt_per_s", "rt/s", PingPong::per_sec, true),
            ("rtt_p50", "us", |x| percentile(&x.rtt_us, 50.0), false),
            ("rtt_p99", "us", |x| percentile(&x.rtt_us, 99.0), false),
            ("lost", "count", |x| x.lost as f64, false),
        ];
        for (metric, unit, get, is_rate) in metrics {
            let m = format!("{metric}_{clients}c{suffix}");
            let (d, v) = (get(direct), get(pm));
            r.add("udp", &m, "direct", unit, d);
            r.add("udp", &m, "pmmux", unit, v);
            if let Some(s) = socat {
                r.add("udp", &m, "socat", unit, get(s));
            }
            if metric == "lost" {
                continue;
            }
            let (vs, path) = if is_rate { (v / d, "ratio") } else { (v - d, "added") };
            r.add("udp", &m, path, if is_rate { "x" } else { unit }, vs);
            if let Some(s) = socat {
                let (vs, path) = if is_rate {
                    (v / get(s), "ratio_socat")
                } else {
                    (v - get(s), "added_socat")
                };
                r.add("udp", &m, path, if is_rate { "x" } else { unit }, vs);
            }
        }
    };
    record("", pm);
    if let Some(dns) = find(Way::PmmuxDns) {
        record("_dns_first", dns);
    }
    Ok(())
}

/// A fresh pmmux whose one UDP listener goes to `case` (`echo`: the plugin replies itself; `pass`:
/// forwarded to the echo upstream); `n` new clients, one datagram each; RSS and descriptors per flow.
fn memory(args: &Args, setup: &Setup, echo: &Echo, case: &str, n: usize, r: &mut Results) -> anyhow::Result<()> {
    let (port, admin) = (udpload::free_udp_port()?, crate::pmmux::free_port()?);
    let backend = match case {
        "echo" => format!("\n[[backend]]\nname = \"echo\"\nprotocol = \"echo\"\nudp_idle_timeout_ms = {MEMORY_IDLE_MS}\n"),
        _ => format!(
            "\n[[backend]]\nname = \"pass\"\nprotocol = \"pass\"\ntarget = \"{}\"\nudp_idle_timeout_ms = {MEMORY_IDLE_MS}\n",
            echo.addr
        ),
    };
    let name = "udp-mem";
    let text = config(&[(name, port)], admin, n + 1_000, &backend);
    let mut p = start(setup, &format!("udp-mem-{case}"), &text, admin, args.server_cpu())?;
    let (pid, addr) = (p.pid(), SocketAddr::from(([127, 0, 0, 1], port)));
    let admin = SocketAddr::from(([127, 0, 0, 1], admin));
    udpload::wait_echo(addr, Duration::from_secs(5)).with_context(|| format!("udp memory {case}: {}", p.log_tail()))?;
    // Warm-up: worker threads busy, plugin code paged in, a few flows in the table.
    udpload::ping_pong(addr, 4, 0.3, args.udp_payload, args.client_cpu());
    std::thread::sleep(Duration::from_millis(300));
    let (flows0, fd0, rss0) = (
        udpload::admin_flows(admin, name)?,
        sys::fd_count(pid)?,
        sys::rss_kib(pid)?,
    );
    eprintln!(
        "udp memory {case}: {n} new clients from 127.0.0.2..{} ...",
        1 + FILL_THREADS
    );
    let fill = udpload::fill_flows(addr, n, FILL_THREADS, FILL_TIMEOUT);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut flows1 = udpload::admin_flows(admin, name)?;
    while flows1 < flows0 + fill.answered as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        flows1 = udpload::admin_flows(admin, name)?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let (fd1, rss1) = (sys::fd_count(pid)?, sys::rss_kib(pid)?);
    let flows1 = udpload::admin_flows(admin, name)?;
    let added = flows1.saturating_sub(flows0);
    let grown = rss1 as f64 - rss0 as f64;
    let per_flow = grown * 1024.0 / added.max(1) as f64;
    let fds = (fd1 as f64 - fd0 as f64) / added.max(1) as f64;
    eprintln!(
        "udp memory {case}: {added} flows held ({} answered, {} missed, {} bind failures) in {:.1} s; \
         pmmux RSS {:.1} -> {:.1} MiB = {per_flow:.0} B/flow, {fds:.2} fd/flow",
        fill.answered,
        fill.missed,
        fill.bind_failed,
        fill.secs,
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0
    );
    if fill.missed > 0 {
        r.note(format!(
            "udp memory {case}: {} of {n} new clients got no echo within {FILL_TIMEOUT:?}",
            fill.missed
        ));
    }
    r.add("udp", &format!("mem_flows_{case}"), "pmmux", "flows", added as f64);
    r.add("udp", &format!("mem_bytes_per_flow_{case}"), "pmmux", "B", per_flow);
    r.add("udp", &format!("mem_growth_{case}"), "pmmux", "MiB", grown / 1024.0);
    r.add(
        "udp",
        &format!("mem_rss_base_{case}"),
        "pmmux",
        "MiB",
        rss0 as f64 / 1024.0,
    );
    r.add(
        "udp",
        &format!("mem_rss_held_{case}"),
        "pmmux",
        "MiB",
        rss1 as f64 / 1024.0,
    );
    r.add("udp", &format!("mem_fds_per_flow_{case}"), "pmmux", "fd", fds);
    r.add(
        "udp",
        &format!("mem_misses_{case}"),
        "pmmux",
        "count",
        fill.missed as f64,
    );
    r.add(
        "udp",
        &format!("new_flows_per_s_{case}"),
        "pmmux",
        "flows/s",
        fill.answered as f64 / fill.secs,
    );
    let lines = p.log_lines();
    if lines > 0 {
        r.note(format!(
            "udp memory {case}: pmmux logged {lines} warning/error line(s); last: {}",
            p.log_tail()
        ));
    }
    p.stop(Duration::from_secs(3))?;
    Ok(())
}
