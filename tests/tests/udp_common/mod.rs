//! Helpers shared by the UDP end-to-end tests (`udp.rs`, `udp_flows.rs`): starting pmmux on ports
//! free for both TCP and UDP, reading its UDP counters through `pmmux status --json`, client
//! sockets, DNS over a raw socket, and `dig`.

#![allow(dead_code)] // each test binary uses its own subset

use std::collections::HashSet;
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

use pmmux_e2e::*;

/// Bound on one client program (dig, pmmux status) or one datagram's reply.
pub const T: Duration = Duration::from_secs(10);
/// How long a client waits before concluding that no reply is coming.
pub const NO_REPLY: Duration = Duration::from_millis(300);

/// What pmmux must bind on one port of a config, for [`start`] to wait for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bind {
    /// A `transport = ["udp"]` listener.
    Udp,
    /// A `transport = ["tcp", "udp"]` listener.
    Both,
    /// A TCP listener or the admin endpoint.
    Tcp,
}

/// A port on 127.0.0.1 free a moment ago for both UDP and TCP, not in `taken`.
fn free_dual_port(taken: &HashSet<u16>) -> u16 {
    loop {
        let port = free_udp_port();
        if !taken.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn wait_bound(pm: &Pmmux, port: u16, bind: Bind) -> Result<(), String> {
    let addr = loopback(port);
    let deadline = Instant::now() + PMMUX_START_TIMEOUT;
    loop {
        let udp_ok = bind == Bind::Tcp || pid_bound_udp(pm.pid(), addr);
        let tcp_ok = bind == Bind::Udp || pid_listens_tcp(pm.pid(), addr);
        if udp_ok && tcp_ok {
            return Ok(());
        }
        if !pm.is_running() {
            return Err(format!("pmmux exited before binding {addr} ({bind:?}):\n{}", pm.log()));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "pmmux did not bind {addr} ({bind:?}) within {PMMUX_START_TIMEOUT:?}:\n{}",
                pm.log()
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Start pmmux with `config(ports)`, one fresh port (free for TCP and UDP) per entry of `binds`,
/// and wait until it holds each as `binds` says. A port another process took in between makes pmmux
/// exit; the whole start is then retried on new ports (up to 5 times).
pub fn start(plugins: &[&str], binds: &[Bind], config: impl FnMut(&[u16]) -> String) -> (Pmmux, Vec<u16>) {
    start_with_files(plugins, &[], binds, config)
}

/// Like [`start`], also writing `files` (`(file name, bytes)`) into the plugin folder: fixture plugins.
pub fn start_with_files(
    plugins: &[&str],
    files: &[(String, Vec<u8>)],
    binds: &[Bind],
    mut config: impl FnMut(&[u16]) -> String,
) -> (Pmmux, Vec<u16>) {
    let mut errors = Vec::new();
    for _ in 0..5 {
        let mut taken = HashSet::new();
        let ports: Vec<u16> = binds
            .iter()
            .map(|_| {
                let p = free_dual_port(&taken);
                taken.insert(p);
                p
            })
            .collect();
        let pm = Pmmux::start_with_files(&config(&ports), plugins, files);
        match ports.iter().zip(binds).try_for_each(|(&p, &b)| wait_bound(&pm, p, b)) {
            Ok(()) => return (pm, ports),
            Err(e) if !pm.is_running() => errors.push(e),
            Err(e) => panic!("{e}"),
        }
    }
    panic!("pmmux could not bind fresh ports 5 times:\n{}", errors.join("\n"))
}

/// The `[[listener]]` and `[admin]` part of a config: one UDP-only listener, one admin endpoint.
pub fn udp_head(udp: u16, admin: u16) -> String {
    format!(
        "plugin_dir = \"plugins\"\n\
         [[listener]]\naddress = \"127.0.0.1:{udp}\"\ntransport = [\"udp\"]\n\
         [admin]\naddress = \"127.0.0.1:{admin}\"\n"
    )
}

/// One UDP listener's counters from `pmmux status --json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UdpCounters {
    pub flows: u64,
    pub datagrams: u64,
    pub unmatched: u64,
    pub rejected: u64,
    pub expired: u64,
    /// Clients whose datagrams are held while detection is undecided.
    pub pending: u64,
    /// Datagrams of new undecided clients dropped because `max_udp_pending` clients were pending.
    pub pending_rejected: u64,
}

/// `json` without the whitespace outside strings, so fields read the same however it is printed.
fn minify(json: &str) -> String {
    let (mut out, mut in_string, mut escaped) = (String::with_capacity(json.len()), false, false);
    for ch in json.chars() {
        if in_string {
            out.push(ch);
            match ch {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if !ch.is_whitespace() {
            in_string = ch == '"';
            out.push(ch);
        }
    }
    out
}

/// The status document, as `pmmux status --admin ADDR --json` prints it (minified).
pub struct StatusJson(pub String);

impl StatusJson {
    /// Runs the real `pmmux status --admin 127.0.0.1:<admin> --json`.
    pub fn fetch(admin: u16) -> StatusJson {
        let bin = pmmux_bin();
        let out = run(
            bin.to_str().expect("utf-8 path"),
            &["status", "--admin", &format!("127.0.0.1:{admin}"), "--json"],
            T,
        );
        StatusJson(minify(&out.expect_success("pmmux status --json")))
    }

    /// The numeric field `key` of the first object at or after byte `from`.
    fn number(&self, from: usize, key: &str) -> u64 {
        let needle = format!("\"{key}\":");
        let at = self.0[from..]
            .find(&needle)
            .unwrap_or_else(|| panic!("no {needle} in the status: {}", self.0))
            + from
            + needle.len();
        let digits: String = self.0[at..].chars().take_while(char::is_ascii_digit).collect();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("{key} is not a number in the status: {}", self.0))
    }

    /// A top-level number (`mapped_versions`, `old_versions_mapped`, `pid`).
    pub fn top(&self, key: &str) -> u64 {
        self.number(0, key)
    }

    /// The counters of the UDP listener bound to `127.0.0.1:<port>`.
    pub fn udp(&self, port: u16) -> UdpCounters {
        let section = self
            .0
            .find("\"udp\":[")
            .unwrap_or_else(|| panic!("no udp section in the status: {}", self.0));
        let addr = format!("\"address\":\"127.0.0.1:{port}\"");
        let at = self.0[section..]
            .find(&addr)
            .unwrap_or_else(|| panic!("no UDP listener on port {port} in the status: {}", self.0))
            + section;
        // The object holding it: from its `{` (objects in this array have no nested objects).
        let start = self.0[..at].rfind('{').expect("object start");
        UdpCounters {
            flows: self.number(start, "flows"),
            datagrams: self.number(start, "datagrams"),
            unmatched: self.number(start, "unmatched"),
            rejected: self.number(start, "rejected"),
            expired: self.number(start, "expired"),
            pending: self.number(start, "pending"),
            pending_rejected: self.number(start, "pending_rejected"),
        }
    }

    /// `(live, routed)` of the backend named `name` in routing now.
    pub fn backend(&self, name: &str) -> (u64, u64) {
        let section = self
            .0
            .find("\"backends\":[")
            .unwrap_or_else(|| panic!("no backends section in the status: {}", self.0));
        let needle = format!("\"name\":\"{name}\"");
        let at = self.0[section..]
            .find(&needle)
            .unwrap_or_else(|| panic!("no backend {name} in the status: {}", self.0))
            + section;
        (self.number(at, "live"), self.number(at, "routed"))
    }
}

/// The UDP counters of listener `port`, through `pmmux status --json` on `admin`.
pub fn udp_counters(admin: u16, port: u16) -> UdpCounters {
    StatusJson::fetch(admin).udp(port)
}

/// Poll the counters every 20 ms until `cond` holds, for up to `bound`; returns the last counters
/// and when they were read, or panics with them.
pub fn wait_counters(
    admin: u16,
    port: u16,
    bound: Duration,
    what: &str,
    mut cond: impl FnMut(&UdpCounters) -> bool,
) -> (UdpCounters, Instant) {
    let deadline = Instant::now() + bound;
    loop {
        let c = udp_counters(admin, port);
        let seen = Instant::now();
        if cond(&c) {
            return (c, seen);
        }
        assert!(seen < deadline, "not {what} within {bound:?}: last counters {c:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A client socket on 127.0.0.1 (kernel-chosen port, fixed for its life) with a read timeout.
pub fn client_socket(read_timeout: Duration) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind client socket");
    s.set_read_timeout(Some(read_timeout)).expect("set read timeout");
    s
}

/// Wait (up to the socket's read timeout) for one datagram; `None` on timeout.
pub fn recv(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 65_536];
    match s.recv_from(&mut buf) {
        Ok((n, from)) => {
            buf.truncate(n);
            Some((buf, from))
        }
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => None,
        Err(e) => panic!("recv_from: {e}"),
    }
}

/// Send `data` to `to` and wait up to [`T`] for the reply, which must come from `to`.
pub fn exchange(s: &UdpSocket, to: SocketAddr, data: &[u8]) -> Vec<u8> {
    s.set_read_timeout(Some(T)).expect("set read timeout");
    s.send_to(data, to)
        .unwrap_or_else(|e| panic!("send {} bytes to {to}: {e}", data.len()));
    let (reply, from) = recv(s).unwrap_or_else(|| panic!("no reply to {} bytes within {T:?}", data.len()));
    assert_eq!(
        from, to,
        "the reply came from another address than the one the client sent to"
    );
    reply
}

/// A DNS query for `name` (A) sent from `s` through `to`: the reply must carry the same id, be a
/// NOERROR response for `name`, and hold exactly the A record `want`.
pub fn dns_a_via(s: &UdpSocket, to: SocketAddr, id: u16, name: &str, want: &str) {
    let reply = exchange(s, to, &dns_query(id, name, QTYPE_A));
    let reply = parse_dns_reply(&reply).unwrap_or_else(|e| panic!("reply to {name}: {e}"));
    assert_eq!(reply.id, id, "reply id");
    assert_eq!(reply.rcode, 0, "rcode of the reply for {name}: {reply:?}");
    assert_eq!(reply.qname, name);
    let got: Vec<String> = reply.a_records().iter().map(|a| a.to_string()).collect();
    assert_eq!(got, [want], "A records for {name}");
}

/// dnsmasq records for server number `n` named `name`: both servers know both names, with other
/// addresses, so the address in an answer tells which server gave it.
pub fn records(name: &str, n: u8) -> Vec<String> {
    vec![
        format!("host-record=www.a.example,10.{n}.0.1"),
        format!("host-record=www.b.example,10.{n}.0.2"),
        format!("txt-record=id.a.example,{name}"),
        format!("txt-record=id.b.example,{name}"),
    ]
}

pub fn dns_server(name: &str, n: u8) -> DnsServer {
    let recs = records(name, n);
    let recs: Vec<&str> = recs.iter().map(String::as_str).collect();
    DnsServer::start(name, &recs)
}

pub fn dns_backend(name: &str, target: SocketAddr, suffix: &str) -> String {
    format!(
        "[[backend]]\nname = \"{name}\"\nprotocol = \"dns\"\ntarget = \"{target}\"\n\
         [backend.params]\nname_suffix = \"{suffix}\"\n"
    )
}

fn dig_bin() -> PathBuf {
    find_tool("dig", "bind9-dnsutils")
}

/// `dig @127.0.0.1 -p <port> <name> <qtype> +short +tries=1 +time=2 [+tcp]`; returns the trimmed
/// answer lines, or panics with dig's output.
pub fn dig(port: u16, name: &str, qtype: &str, tcp: bool) -> Vec<String> {
    let mut args = vec![
        "@127.0.0.1".to_string(),
        "-p".into(),
        port.to_string(),
        name.into(),
        qtype.into(),
        "+short".into(),
        "+tries=1".into(),
        "+time=2".into(),
    ];
    if tcp {
        args.push("+tcp".into());
    }
    let out: Output = run(dig_bin().to_str().expect("utf-8 path"), &args, T);
    let text = out.expect_success(&format!("dig {}", args.join(" ")));
    text.lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Waits (up to 10 s) until pmmux's log has at least `n` lines containing every one of `needles`:
/// the log is written by its own thread, a moment after what it tells.
pub fn wait_log_count(pm: &Pmmux, needles: &[&str], n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while log_lines(pm, needles).len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "fewer than {n} log line(s) with {needles:?}:\n{}",
            pm.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The lines of pmmux's log containing every one of `needles`.
pub fn log_lines(pm: &Pmmux, needles: &[&str]) -> Vec<String> {
    pm.log()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_owned)
        .collect()
}
