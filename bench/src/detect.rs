//! The detect test: nanoseconds per detection call of each real plugin through the ABI, on matching
//! and non-matching bytes, and per full routing decision (`Router::new` + `step` / `Router::for_datagrams` + `step_datagrams`)
//! over a registry holding every plugin at once, loaded in-process by the host's own loader.

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use ::pmmux::config::{self, Strategy};
use ::pmmux::plugins::{Loader, PluginSet};
use ::pmmux::routing::registry::{BackendKind, Registry};
use ::pmmux::routing::router::{Decision, Router};
use abi_stable::std_types::{RResult, RSlice, RStr};
use anyhow::{bail, Context};
use pmmux_plugin_api::ffi::Detection;
use pmmux_plugin_api::ConnInfo;

use crate::report::{fmt_num, Results};
use crate::Args;

/// The issue's target for a full routing decision in which every plugin says `NoMatch`.
pub const TARGET_NS: f64 = 2000.0;

/// Matching inputs. Captures from the plugins' own test data where there is one.
const HTTP_GET: &[u8] = include_bytes!("../../plugins/http/tests/data/curl_get.bin");
const HTTP_GET_PLAIN: &[u8] = include_bytes!("../../plugins/http-response/tests/data/curl_get_plain.bin");
const SSH_BANNER: &[u8] = include_bytes!("../../plugins/http/tests/data/ssh_banner.bin");
const TLS_HELLO: &[u8] = include_bytes!("../../plugins/tls/tests/data/curl.bin");
const ADB: &[u8] = include_bytes!("../../plugins/adb/tests/data/adb_connect_29.0.6.bin");
const BT_HANDSHAKE: &[u8] = include_bytes!("../../plugins/bittorrent/tests/data/aria2_handshake.bin");
const BT_DHT: &[u8] = include_bytes!("../../plugins/bittorrent/tests/data/aria2_dht_query.bin");
const DNS_TCP: &[u8] = include_bytes!("../../plugins/dns/tests/data/tcp_mx.bin");
const DNS_UDP: &[u8] = include_bytes!("../../plugins/dns/tests/data/udp_a.bin");
const MQTT: &[u8] = include_bytes!("../../plugins/mqtt/tests/data/connect_v311.bin");
const OPENVPN_TCP: &[u8] = include_bytes!("../../plugins/openvpn/tests/data/tcp_plain.bin");
const OPENVPN_UDP: &[u8] = include_bytes!("../../plugins/openvpn/tests/data/udp_plain.bin");
const POSTGRES: &[u8] = include_bytes!("../../plugins/postgres/tests/data/startup.bin");
const RDP: &[u8] = include_bytes!("../../plugins/rdp/tests/data/xfreerdp_alice.bin");
const REDIS: &[u8] = include_bytes!("../../plugins/redis/tests/data/ping.bin");
const SMB: &[u8] = include_bytes!("../../plugins/smb/tests/data/smb2_negotiate.bin");
const SOCKS4: &[u8] = include_bytes!("../../plugins/socks4/tests/data/curl_socks4.bin");
const SOCKS5: &[u8] = include_bytes!("../../plugins/socks5/tests/data/curl_noauth.bin");
const SYSLOG: &[u8] = include_bytes!("../../plugins/syslog/tests/data/logger_rfc5424.bin");
const TINC: &[u8] = include_bytes!("../../plugins/tinc/tests/data/tincd_1.0.36.bin");
const XMPP: &[u8] = include_bytes!("../../plugins/xmpp/tests/data/sendxmpp_stream.bin");
const STUN: &[u8] = include_bytes!("../../plugins/stun/tests/data/turnutils_stunclient.bin");
const DTLS: &[u8] = include_bytes!("../../plugins/dtls/tests/data/openssl_dtls12.bin");
const QUIC: &[u8] = include_bytes!("../../plugins/quic/tests/data/quinn_v1.bin");
/// What the `regex` backend's pattern (`REGEX_PARAMS`) matches: a made-up banner.
const REGEX_PROBE: &[u8] = b"BENCH-PROBE/1 hello\r\n";
const REGEX_PARAMS: &str = "patterns = '^BENCH-PROBE/1 '";

/// One plugin's protocol and the bytes it is timed on.
struct Proto {
    name: &'static str,
    params: &'static str,
    /// TCP bytes it matches (None: UDP only).
    tcp: Option<Vec<u8>>,
    /// Whether it matches anything (no non-matching input exists; kept out of the routed chain).
    catch_all: bool,
    /// A datagram it matches (None: TCP only, `can_handle_message` is the default `NoMatch`).
    udp: Option<Vec<u8>>,
}

fn protos() -> Vec<Proto> {
    let p = |name, tcp: Option<&[u8]>, udp: Option<&[u8]>| Proto {
        name,
        params: if name == "regex" { REGEX_PARAMS } else { "" },
        tcp: tcp.map(<[u8]>::to_vec),
        catch_all: matches!(name, "anyprot" | "echo"),
        udp: udp.map(<[u8]>::to_vec),
    };
    vec![
        p("adb", Some(ADB), None),
        p("anyprot", Some(HTTP_GET), Some(DNS_UDP)),
        p("bittorrent", Some(BT_HANDSHAKE), Some(BT_DHT)),
        p("dns", Some(DNS_TCP), Some(DNS_UDP)),
        p("dtls", None, Some(DTLS)),
        p("echo", Some(HTTP_GET), Some(DNS_UDP)),
        p("http", Some(HTTP_GET), None),
        p("http-response", Some(HTTP_GET_PLAIN), None),
        p("mqtt", Some(MQTT), None),
        p("openvpn", Some(OPENVPN_TCP), Some(OPENVPN_UDP)),
        p("postgres", Some(POSTGRES), None),
        p("quic", None, Some(QUIC)),
        p("rdp", Some(RDP), None),
        p("redis", Some(REDIS), None),
        p("regex", Some(REGEX_PROBE), Some(REGEX_PROBE)),
        p("smb", Some(SMB), None),
        p("socks4", Some(SOCKS4), None),
        p("socks5", Some(SOCKS5), None),
        p("ssh", Some(SSH_BANNER), None),
        p("stun", Some(STUN), Some(STUN)),
        p("syslog", Some(SYSLOG), None),
        p("tinc", Some(TINC), None),
        p("tls", Some(TLS_HELLO), None),
        p("wireguard", None, Some(&wireguard_initiation())),
        p("xmpp", Some(XMPP), None),
    ]
}

/// A WireGuard handshake initiation: type 1, three zero bytes, 148 bytes in all (the plugin checks
/// the type, the reserved bytes and the length; the rest is opaque to it).
fn wireguard_initiation() -> Vec<u8> {
    let mut m = vec![0x5a; 148];
    m[..4].copy_from_slice(&[1, 0, 0, 0]);
    m
}

/// The non-matching TCP bytes of a plugin: an HTTP request, or an SSH banner for the HTTP plugins.
fn tcp_other(name: &str) -> &'static [u8] {
    if name.starts_with("http") {
        SSH_BANNER
    } else {
        HTTP_GET
    }
}

/// The non-matching datagram of a plugin: a DNS query, or a WireGuard initiation for `dns`.
fn udp_other(name: &str) -> Vec<u8> {
    if name == "dns" {
        wireguard_initiation()
    } else {
        DNS_UDP.to_vec()
    }
}

/// The bytes every plugin should refuse, for the routed `NoMatch` figures: 0x00 and then 31
/// fixed pseudo-random bytes (no protocol here starts with 0x00 followed by these).
fn nobody_bytes() -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    let mut v = vec![0u8];
    v.extend((0..31).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        (x >> 24) as u8
    }));
    v
}

const PEER: &str = "127.0.0.1:40000";
/// Local address of the routed connections: the catch-alls' matchers (`local_port = 2`) keep them out.
const LOCAL: &str = "127.0.0.1:1";
/// Local address the catch-alls accept: the fallback figure.
const LOCAL_FALLBACK: &str = "127.0.0.1:2";
/// The backend placed last in the TCP chain (the worst-case figure routes to it).
const LAST_TCP: &str = "xmpp";
/// The backend placed last in the UDP chain.
const LAST_UDP: &str = "dns";

/// The configuration: one backend per protocol in `names`, in name order but with `last` (when
/// present) after the others, then the catch-alls, only for local port 2 (as a fallback listener
/// would have them).
fn config_text(names: &[&Proto], last: &str, builtin_pass: bool) -> String {
    let mut t = String::from("[[listener]]\naddress = \"127.0.0.1:1\"\n");
    if builtin_pass {
        t += "[[backend]]\nname = \"pass\"\nprotocol = \"pass\"\ntarget = \"127.0.0.1:9\"\n";
    }
    let mut ordered: Vec<&&Proto> = names.iter().filter(|p| !p.catch_all && p.name != last).collect();
    ordered.extend(names.iter().filter(|p| p.name == last));
    ordered.extend(names.iter().filter(|p| p.catch_all));
    for p in ordered {
        t += &format!(
            "[[backend]]\nname = \"{0}\"\nprotocol = \"{0}\"\ntarget = \"127.0.0.1:9\"\n",
            p.name
        );
        if !p.params.is_empty() {
            t += &format!("[backend.params]\n{}\n", p.params);
        }
        if p.catch_all {
            t += "[backend.match]\nlocal_port = 2\n";
        }
    }
    t
}

fn registry(
    dir: &Path,
    label: &str,
    text: &str,
    plugins: &PluginSet,
    results: &mut Results,
) -> anyhow::Result<Arc<Registry>> {
    let path = dir.join(format!("detect-{label}.toml"));
    std::fs::write(&path, text)?;
    let config = config::parse(&path, text).map_err(|e| anyhow::anyhow!("{label} config: {e:?}"))?;
    let (reg, issues) = Registry::build(&config, plugins.plugins(), None);
    for i in issues {
        results.note(format!("detect: {label} registry: {i}"));
    }
    Ok(Arc::new(reg))
}

/// ns per call of `f`, one value per batch of `iters` calls (after a warm-up of a tenth of that).
fn time_calls(iters: usize, batches: usize, mut f: impl FnMut()) -> Vec<f64> {
    for _ in 0..iters / 10 {
        f();
    }
    (0..batches)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect()
}

fn verdict(r: &RResult<Detection, abi_stable::std_types::RString>) -> &'static str {
    match r {
        RResult::ROk(Detection::Match(_)) => "Match",
        RResult::ROk(Detection::NoMatch) => "NoMatch",
        RResult::ROk(Detection::NeedMore) => "NeedMore",
        RResult::RErr(_) => "error",
    }
}

/// Runs the test: per-plugin calls, then the routed decisions.
pub fn run(args: &Args, plugin_src: &Path, work: &Path, results: &mut Results) -> anyhow::Result<()> {
    let (iters, batches) = (args.detect_iters.max(1), args.detect_batches.max(1));
    let dir = work.join("detect-plugins");
    std::fs::create_dir_all(&dir)?;
    let mut copied = 0;
    for entry in std::fs::read_dir(plugin_src).with_context(|| format!("reading {}", plugin_src.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with("libpmmux_") && name.ends_with(".so") {
            std::fs::copy(&path, dir.join(name)).with_context(|| format!("copying {}", path.display()))?;
            copied += 1;
        }
    }
    let loader = Loader::new().context("creating the plugin loader")?;
    let mut set = PluginSet::default();
    let rec = set.reconcile(&loader, &dir);
    for r in &rec.refused {
        results.note(format!("detect: plugin {} refused: {}", r.file.display(), r.reason));
    }
    let _ = std::fs::remove_dir(loader.shadow_dir());
    let loaded: Vec<String> = set.plugins().iter().map(|p| p.name.clone()).collect();
    if loaded.is_empty() {
        bail!(
            "detect: no plugin loaded from {} ({copied} libpmmux_*.so copied)",
            plugin_src.display()
        );
    }
    let all = protos();
    let present: Vec<&Proto> = all
        .iter()
        .filter(|p| set.plugins().iter().any(|l| l.protocols.iter().any(|x| x == p.name)))
        .collect();
    let missing: Vec<&str> = all
        .iter()
        .filter(|p| !present.iter().any(|q| q.name == p.name))
        .map(|p| p.name)
        .collect();
    let untimed: Vec<String> = set
        .plugins()
        .iter()
        .flat_map(|l| l.protocols.clone())
        .filter(|x| !all.iter().any(|p| p.name == x))
        .collect();
    if !untimed.is_empty() {
        results.note(format!(
            "detect: loaded but not timed (no inputs in the bench for them): {}",
            untimed.join(", ")
        ));
    }
    if !missing.is_empty() {
        results.note(format!("detect: no plugin for {}: left out", missing.join(", ")));
    }
    println!(
        "== detect: {} plugins loaded through the host's loader ({} iterations x {} batches per figure)",
        loaded.len(),
        iters,
        batches
    );

    // One registry with every protocol: the per-plugin calls and the TCP chain (xmpp last: the
    // worst case matches it after everything else refused). The UDP chain: the plugins with a
    // datagram hook, dns last. The host-only reference: one built-in `pass`.
    let reg_all = registry(work, "all", &config_text(&present, LAST_TCP, false), &set, results)?;
    let udp_protos: Vec<&Proto> = present.iter().copied().filter(|p| p.udp.is_some()).collect();
    let reg_udp = registry(work, "udp", &config_text(&udp_protos, LAST_UDP, false), &set, results)?;
    let reg_pass = registry(work, "pass", &config_text(&[], "", true), &set, results)?;

    let peer: SocketAddr = PEER.parse()?;
    let local: SocketAddr = LOCAL.parse()?;
    let conn = ConnInfo {
        peer: peer.into(),
        local: local.into(),
        listener: RStr::from_str("bench"),
        properties: RSlice::from_slice(&[]),
    };

    println!(
        "{:<14} {:>10} {:<9} {:>10} {:<9} {:>10} {:<9} {:>10} {:<9}",
        "plugin", "tcp match", "", "tcp other", "", "udp match", "", "udp other", ""
    );
    let mut slow: Vec<String> = Vec::new();
    for p in &present {
        let Some(backend) = reg_all.backends.iter().find(|b| b.name() == p.name) else {
            continue;
        };
        let BackendKind::Plugin(object) = &backend.kind else {
            continue;
        };
        let mut cells: Vec<String> = Vec::new();
        let mut case = |results: &mut Results, metric: String, path: &'static str, bytes: Option<&[u8]>, udp: bool| {
            let Some(bytes) = bytes else {
                cells.push(format!("{:>10} {:<9}", "-", ""));
                return;
            };
            let call = || {
                if udp {
                    object.can_handle_message(black_box(&conn), RSlice::from_slice(black_box(bytes)))
                } else {
                    object.detect_tcp(black_box(&conn), RSlice::from_slice(black_box(bytes)))
                }
            };
            let v = verdict(&call());
            let samples = time_calls(iters, batches, || {
                black_box(call());
            });
            for s in &samples {
                results.add("detect", &metric, path, "ns", *s);
            }
            let med = crate::report::median(&samples);
            let expected = if path == "match" { "Match" } else { "NoMatch" };
            if v != expected {
                results.note(format!(
                    "detect: {metric} ({path} input) answered {v}, expected {expected}"
                ));
            }
            if path == "nomatch" && med > 500.0 {
                slow.push(format!("{metric} {med:.0} ns"));
            }
            cells.push(format!("{:>10} {:<9}", fmt_num(med), v));
        };
        let other_tcp = (!p.catch_all).then(|| tcp_other(p.name));
        case(results, format!("tcp_{}", p.name), "match", p.tcp.as_deref(), false);
        case(
            results,
            format!("tcp_{}", p.name),
            "nomatch",
            p.tcp.as_ref().and(other_tcp),
            false,
        );
        let other_udp = (!p.catch_all && p.udp.is_some()).then(|| udp_other(p.name));
        case(results, format!("udp_{}", p.name), "match", p.udp.as_deref(), true);
        case(
            results,
            format!("udp_{}", p.name),
            "nomatch",
            other_udp.as_deref(),
            true,
        );
        println!("{:<14} {}", p.name, cells.join(" "));
    }
    if !slow.is_empty() {
        results.note(format!(
            "detect: over 500 ns on non-matching input: {}",
            slow.join(", ")
        ));
    }

    // Routed decisions: Router::new + one step with `last` (or for_datagrams + step_datagrams), as the host does.
    let nobody = nobody_bytes();
    let fallback: SocketAddr = LOCAL_FALLBACK.parse()?;
    let listener: Arc<str> = Arc::from("bench");
    let index_of = |reg: &Registry, name: &str| reg.backends.iter().position(|b| b.name() == name);
    let asked = |reg: &Registry, at: SocketAddr| reg.backends.iter().filter(|b| b.matchers().matches(peer, at)).count();
    // Which plugins do not refuse the "nobody" bytes at once (NeedMore counts as NoMatch only at `last`).
    for (reg, udp) in [(&reg_all, false), (&reg_udp, true)] {
        let d = if udp {
            let mut r = Router::for_datagrams(
                Arc::clone(reg),
                Strategy::FirstAvailable,
                Arc::clone(&listener),
                peer,
                local,
            );
            r.step_datagrams(&[&nobody], false)
        } else {
            let mut r = Router::new(
                Arc::clone(reg),
                Strategy::FirstAvailable,
                Arc::clone(&listener),
                peer,
                local,
            );
            r.step(&nobody, false)
        };
        let chain = if udp { "udp" } else { "tcp" };
        if d == Decision::NoMatch {
            let hex: String = nobody.iter().map(|b| format!("{b:02x}")).collect();
            println!("== detect: {chain} chain: the NoMatch bytes {hex} are refused at once by every plugin asked");
        } else {
            results.note(format!(
                "detect: {chain} chain: the NoMatch bytes are not refused at once by every plugin (decision {d:?} before `last`)"
            ));
        }
    }
    // The last backend the routed connections may reach, and the first catch-all (fallback figure).
    let last_asked = |reg: &Registry| {
        let b = reg.backends.iter().rev().find(|b| b.matchers().matches(peer, local))?;
        all.iter().find(|p| p.name == b.name()).map(|p| p.name)
    };
    let (last_tcp, last_udp) = (last_asked(&reg_all), last_asked(&reg_udp));
    let first_catch_all = reg_all
        .backends
        .iter()
        .find(|b| !b.matchers().matches(peer, local))
        .map(|b| b.name());
    let input_of = |name: Option<&str>, udp: bool| -> Option<Vec<u8>> {
        let p = all.iter().find(|p| Some(p.name) == name)?;
        if udp {
            p.udp.clone()
        } else {
            p.tcp.clone()
        }
    };
    struct Case<'a> {
        metric: &'static str,
        reg: &'a Arc<Registry>,
        local: SocketAddr,
        bytes: Option<Vec<u8>>,
        udp: bool,
        expect: Option<&'a str>,
    }
    let cases = [
        Case {
            metric: "route_host_only_tcp",
            reg: &reg_pass,
            local,
            bytes: Some(nobody.clone()),
            udp: false,
            expect: Some("pass"),
        },
        Case {
            metric: "route_tcp_nomatch",
            reg: &reg_all,
            local,
            bytes: Some(nobody.clone()),
            udp: false,
            expect: None,
        },
        Case {
            metric: "route_tcp_last",
            reg: &reg_all,
            local,
            bytes: input_of(last_tcp, false),
            udp: false,
            expect: last_tcp,
        },
        Case {
            metric: "route_tcp_fallback",
            reg: &reg_all,
            local: fallback,
            bytes: Some(nobody.clone()),
            udp: false,
            expect: first_catch_all,
        },
        Case {
            metric: "route_host_only_udp",
            reg: &reg_pass,
            local,
            bytes: Some(nobody.clone()),
            udp: true,
            expect: Some("pass"),
        },
        Case {
            metric: "route_udp_nomatch",
            reg: &reg_udp,
            local,
            bytes: Some(nobody.clone()),
            udp: true,
            expect: None,
        },
        Case {
            metric: "route_udp_last",
            reg: &reg_udp,
            local,
            bytes: input_of(last_udp, true),
            udp: true,
            expect: last_udp,
        },
        Case {
            metric: "route_udp_all_nomatch",
            reg: &reg_all,
            local,
            bytes: Some(nobody.clone()),
            udp: true,
            expect: None,
        },
    ];
    for c in cases {
        let Some(bytes) = c.bytes else { continue };
        let decide = || {
            let reg = Arc::clone(c.reg);
            let name = Arc::clone(&listener);
            if c.udp {
                let mut r = Router::for_datagrams(reg, Strategy::FirstAvailable, name, peer, c.local);
                r.step_datagrams(&[black_box(&bytes)], true)
            } else {
                let mut r = Router::new(reg, Strategy::FirstAvailable, name, peer, c.local);
                r.step(black_box(&bytes), true)
            }
        };
        let got = match decide() {
            Decision::Route { index, .. } => c.reg.backends.get(index).map(|b| b.name().to_owned()),
            _ => None,
        };
        let want = c.expect.map(str::to_owned);
        if got != want || (want.is_some() && c.expect.and_then(|n| index_of(c.reg, n)).is_none()) {
            results.note(format!("detect: {}: decision {got:?}, expected {want:?}", c.metric));
        }
        let samples = time_calls(iters, batches, || {
            black_box(decide());
        });
        for s in &samples {
            results.add("detect", c.metric, "pmmux", "ns", *s);
        }
        let n = asked(c.reg, c.local);
        if matches!(c.metric, "route_tcp_nomatch" | "route_udp_nomatch") {
            results.add("detect", &format!("{}_asked", c.metric), "pmmux", "backends", n as f64);
        }
        println!(
            "{:<24} {:>8} ns  ({n} backend{} asked, decision {})",
            c.metric,
            fmt_num(crate::report::median(&samples)),
            if n == 1 { "" } else { "s" },
            got.as_deref().unwrap_or("NoMatch")
        );
    }
    Ok(())
}

/// The summary part: the TCP NoMatch decision against the 2 µs target, the worst case, UDP, and
/// the host-only reference.
pub fn summary(r: &Results) -> Vec<String> {
    let nomatch = r.median("detect", "route_tcp_nomatch", "pmmux");
    if !nomatch.is_finite() {
        return Vec::new();
    }
    let n = r.median("detect", "route_tcp_nomatch_asked", "pmmux");
    let verdict = if nomatch < TARGET_NS { "met" } else { "NOT met" };
    let mut s = format!(
        "detect: routing with {n:.0} plugins all NoMatch {nomatch:.0} ns (target < 2 us, absolute: {verdict}), \
         last-backend match {:.0} ns, udp {:.0} plugins NoMatch {:.0} ns / last {:.0} ns, host-only (pass) {:.0} ns",
        r.median("detect", "route_tcp_last", "pmmux"),
        r.median("detect", "route_udp_nomatch_asked", "pmmux"),
        r.median("detect", "route_udp_nomatch", "pmmux"),
        r.median("detect", "route_udp_last", "pmmux"),
        r.median("detect", "route_host_only_tcp", "pmmux"),
    );
    let slowest = r
        .series
        .iter()
        .filter(|x| x.test == "detect" && x.path == "nomatch")
        .max_by(|a, b| a.median().total_cmp(&b.median()));
    if let Some(x) = slowest {
        s += &format!(", slowest refusal {} {:.0} ns", x.metric, x.median());
    }
    vec![s]
}
