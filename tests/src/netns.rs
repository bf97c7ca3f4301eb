//! A NAT lab in network namespaces the test creates and deletes: a gateway namespace running a
//! real miniupnpd (nftables backend) between a LAN namespace (where pmmux runs) and a WAN
//! namespace (where a client stands). Nothing is connected to the machine's own network: the
//! three namespaces are joined only by veth pairs to each other, so no packet can leave them.
//!
//! ```text
//!   LAN ns  eth0 10.77.0.2/24 ──── lan0 10.77.0.1/24  GATEWAY ns  wan0 100.128.40.1/24 ──── eth0 100.128.40.2/24  WAN ns
//!           default via 10.77.0.1               miniupnpd, nft (table inet filter)
//! ```
//!
//! The WAN side needs an address miniupnpd does not count as private or reserved (it refuses to
//! forward otherwise, and Debian 12's 2.3.1 has no switch for it): 100.128.40.0/24 lies just past
//! the shared CGNAT block and exists only inside these namespaces.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::process::{run_cmd, ChildGuard};

/// The gateway's LAN address.
pub const LAN_GATEWAY: &str = "10.77.0.1";
/// pmmux's address in the LAN namespace.
pub const LAN_HOST: &str = "10.77.0.2";
/// The gateway's external (WAN) address.
pub const WAN_GATEWAY: &str = "100.128.40.1";
/// The WAN client's address.
pub const WAN_CLIENT: &str = "100.128.40.2";

const STEP_TIMEOUT: Duration = Duration::from_secs(20);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Which protocols the lab's miniupnpd speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayProtocols {
    /// UPnP IGD.
    pub upnp: bool,
    /// NAT-PMP and PCP (one switch in miniupnpd).
    pub natpmp_pcp: bool,
}

/// The three namespaces and the gateway daemon; all deleted on drop.
pub struct NatLab {
    /// LAN namespace name.
    pub lan: String,
    /// Gateway namespace name.
    pub gateway: String,
    /// WAN namespace name.
    pub wan: String,
    dir: TempDir,
    miniupnpd: Option<ChildGuard>,
    protocols: GatewayProtocols,
    created: Namespaces,
}

/// Network namespaces a test made, each with its loopback up; deleted on drop (also when the test
/// panics).
#[derive(Default)]
pub(crate) struct Namespaces(Vec<String>);

impl Namespaces {
    /// Makes namespace `name` with its loopback up.
    pub(crate) fn add(&mut self, name: &str) -> Result<(), String> {
        ip(&["netns", "add", name]).map_err(|e| format!("cannot create a network namespace: {e}"))?;
        self.0.push(name.to_owned());
        ip(&["-n", name, "link", "set", "lo", "up"])
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in self.0.drain(..) {
            let _ = ip(&["netns", "del", &ns]);
        }
    }
}

/// Runs `ip args`; the error quotes the command and what `ip` said.
pub(crate) fn ip(args: &[&str]) -> Result<(), String> {
    let mut c = Command::new("ip");
    c.args(args);
    let out = run_cmd(c, None, STEP_TIMEOUT);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `program args` inside namespace `ns` and returns its output.
pub fn in_ns(ns: &str, program: &str, args: &[&str]) -> std::process::Output {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, program]).args(args);
    run_cmd(c, None, STEP_TIMEOUT)
}

impl NatLab {
    /// Makes the namespaces and links. `Err` says why the machine cannot (no root, no netns, no
    /// nftables NAT, no miniupnpd): the caller prints it and skips.
    pub fn create(protocols: GatewayProtocols) -> Result<NatLab, String> {
        if !std::path::Path::new("/usr/sbin/miniupnpd").exists() {
            return Err("miniupnpd is not installed (Debian package miniupnpd-nftables)".into());
        }
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = format!("pmx{}-{n}", std::process::id());
        let mut lab = NatLab {
            lan: format!("{base}-lan"),
            gateway: format!("{base}-gw"),
            wan: format!("{base}-wan"),
            dir: crate::data::temp_dir("natlab"),
            miniupnpd: None,
            protocols,
            created: Namespaces::default(),
        };
        for ns in [lab.lan.clone(), lab.gateway.clone(), lab.wan.clone()] {
            lab.created.add(&ns)?;
        }
        let (g, l, w) = (lab.gateway.clone(), lab.lan.clone(), lab.wan.clone());
        ip(&[
            "link", "add", "lan0", "netns", &g, "type", "veth", "peer", "name", "eth0", "netns", &l,
        ])?;
        ip(&[
            "link", "add", "wan0", "netns", &g, "type", "veth", "peer", "name", "eth0", "netns", &w,
        ])?;
        for (ns, dev, addr) in [
            (&g, "lan0", "10.77.0.1/24"),
            (&g, "wan0", "100.128.40.1/24"),
            (&l, "eth0", "10.77.0.2/24"),
            (&w, "eth0", "100.128.40.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        ip(&["-n", &l, "route", "add", "default", "via", LAN_GATEWAY])?;
        let out = in_ns(&g, "sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        if !out.status.success() {
            return Err(format!(
                "cannot enable forwarding: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        lab.nft_init()?;
        Ok(lab)
    }

    /// The chains miniupnpd fills (its nft_init.sh, which Debian ships without its helper): the
    /// forward chain drops what no mapping allows, so a WAN client gets through only by a mapping.
    fn nft_init(&self) -> Result<(), String> {
        let rules = "table inet filter {\n\
             chain forward { type filter hook forward priority 0; policy drop; ct state established,related accept; iifname \"lan0\" accept; jump miniupnpd; }\n\
             chain miniupnpd { }\n\
             chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }\n\
             chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }\n\
             chain prerouting_miniupnpd { }\n\
             chain postrouting_miniupnpd { }\n\
             }\n";
        let file = self.dir.path().join("init.nft");
        fs::write(&file, rules).map_err(|e| e.to_string())?;
        let out = in_ns(&self.gateway, "nft", &["-f", file.to_str().unwrap_or_default()]);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "nftables NAT is not available: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn lease_path(&self) -> PathBuf {
        self.dir.path().join("upnp.leases")
    }

    /// Starts miniupnpd in the gateway namespace and waits until it serves.
    pub fn start_gateway(&mut self) -> Result<(), String> {
        let conf = format!(
            "ext_ifname=wan0\nlistening_ip=lan0\nhttp_port=0\nenable_natpmp={}\nenable_upnp={}\n\
             min_lifetime=10\nmax_lifetime=86400\nsecure_mode=yes\nsystem_uptime=no\nnotify_interval=60\n\
             clean_ruleset_interval=0\nuuid=3b2c6a4e-1f0a-4c5e-9d11-1c2b3a4d5e6f\nlease_file={}\n\
             allow 1-65535 10.77.0.0/24 1-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n",
            if self.protocols.natpmp_pcp { "yes" } else { "no" },
            if self.protocols.upnp { "yes" } else { "no" },
            self.lease_path().display()
        );
        let conf_path = self.dir.path().join("miniupnpd.conf");
        fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.gateway, "/usr/sbin/miniupnpd", "-d", "-f"])
            .arg(&conf_path)
            .arg("-P")
            .arg(self.dir.path().join("miniupnpd.pid"));
        let guard = ChildGuard::spawn_logged("miniupnpd", c, &self.dir.path().join("miniupnpd.log"))
            .map_err(|e| format!("cannot start miniupnpd: {e}"))?;
        let ready = if self.protocols.natpmp_pcp {
            "Listening for NAT-PMP/PCP"
        } else {
            "HTTP listening on port"
        };
        let ok = guard.wait_for_log(ready, STEP_TIMEOUT);
        self.miniupnpd = Some(guard);
        if ok {
            Ok(())
        } else {
            Err(format!("miniupnpd did not start: {}", self.gateway_log()))
        }
    }

    /// Kills miniupnpd (SIGKILL, as a power cut) and empties its chains and lease file: what a
    /// gateway that restarts remembers of our mappings is nothing.
    pub fn crash_gateway(&mut self) {
        if let Some(mut g) = self.miniupnpd.take() {
            g.kill();
        }
        for chain in ["miniupnpd", "prerouting_miniupnpd", "postrouting_miniupnpd"] {
            in_ns(&self.gateway, "nft", &["flush", "chain", "inet", "filter", chain]);
        }
        let _ = fs::remove_file(self.lease_path());
    }

    /// miniupnpd's log.
    pub fn gateway_log(&self) -> String {
        self.miniupnpd.as_ref().map(|g| g.log()).unwrap_or_default()
    }

    /// The gateway's DNAT rules (miniupnpd's prerouting chain) as `nft` prints them.
    pub fn redirects(&self) -> String {
        let out = in_ns(
            &self.gateway,
            "nft",
            &["list", "chain", "inet", "filter", "prerouting_miniupnpd"],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether the gateway forwards `public_port` (`tcp`/`udp`) to pmmux's `internal_port`.
    pub fn has_redirect(&self, transport: &str, public_port: u16, internal_port: u16) -> bool {
        let proto = if transport == "tcp" { "0x6" } else { "0x11" };
        self.redirects().lines().any(|l| {
            l.contains(&format!("@nh,72,8 {proto}"))
                && l.contains(&format!("dport {public_port} "))
                && l.contains(&format!("dnat ip to {LAN_HOST}:{internal_port}"))
        })
    }

    /// The public ports the gateway forwards to pmmux for `transport`.
    pub fn redirected_ports(&self, transport: &str) -> Vec<u16> {
        let proto = if transport == "tcp" { "0x6" } else { "0x11" };
        self.redirects()
            .lines()
            .filter(|l| l.contains(&format!("@nh,72,8 {proto}")) && l.contains(LAN_HOST))
            .filter_map(|l| l.split("dport ").nth(1)?.split_whitespace().next()?.parse().ok())
            .collect()
    }

    /// miniupnpd's lease file (`PROTO:EPORT:IADDR:IPORT:EXPIRY:DESC` per mapping).
    pub fn leases(&self) -> String {
        fs::read_to_string(self.lease_path()).unwrap_or_default()
    }

    /// Waits up to `timeout` for `check`, polling.
    pub fn wait_for(&self, timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if check() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `f` on a thread inside namespace `ns`: sockets it makes live there (also after the
    /// thread ends, so a server started in `f` keeps serving in the namespace).
    pub fn run_in<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
        let path = format!("/var/run/netns/{ns}");
        std::thread::spawn(move || -> io::Result<T> {
            let file = fs::File::open(&path)?;
            // SAFETY: setns on a namespace file this thread opened; it changes only this thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .map_err(|_| io::Error::other("namespace thread panicked"))?
    }
}

impl Drop for NatLab {
    fn drop(&mut self) {
        if let Some(mut g) = self.miniupnpd.take() {
            if std::thread::panicking() {
                eprintln!("--- miniupnpd log ---\n{}", g.log());
            }
            g.kill();
        }
        // The namespaces go when `created` drops, after this.
    }
}
