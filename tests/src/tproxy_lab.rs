//! A transparent-proxy lab in network namespaces the test creates and deletes: a client namespace,
//! a router namespace where pmmux runs, and a server namespace, joined only by veth pairs (no
//! packet can leave them). The server's default route goes through the router, as an upstream on
//! another host must, and the router gets exactly the routing and nftables rules the README's
//! "Transparent proxying" section gives ([`TproxyLab::apply_readme_rules`]). The router does not
//! forward IP packets: a reply reaches the client only through pmmux.
//!
//! ```text
//!   CLIENT ns  eth0 10.91.1.2/24 ── c0 10.91.1.1/24  ROUTER ns (pmmux)  s0 10.91.2.1/24 ── eth0 10.91.2.2/24  SERVER ns
//!              default via 10.91.1.1                                                 default via 10.91.2.1
//! ```

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::netns::{ip, Namespaces, NatLab};
use crate::process::run_cmd;
use crate::tcp::TcpServer;

/// The client's address.
pub const CLIENT: &str = "10.91.1.2";
/// The router's address on the client side (pmmux listens here).
pub const ROUTER_CLIENT_SIDE: &str = "10.91.1.1";
/// The router's address on the server side.
pub const ROUTER_SERVER_SIDE: &str = "10.91.2.1";
/// The server's address.
pub const SERVER: &str = "10.91.2.2";

/// The routing commands of the README, run in the router namespace.
pub const README_IP_COMMANDS: [&[&str]; 2] = [
    &["rule", "add", "fwmark", "1", "lookup", "100"],
    &["route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100"],
];
/// The nftables ruleset of the README, loaded with `nft -f` in the router namespace.
pub const README_NFT: &str = "table inet pmmux {\n\
    \tchain prerouting {\n\
    \t\ttype filter hook prerouting priority mangle; policy accept;\n\
    \t\tsocket transparent 1 meta mark set 1 accept\n\
    \t}\n\
    }\n";

/// The README's extra rule for an upstream on the same host as pmmux, for a server on `port`: its
/// replies are local output, marked by their source port so they are routed to pmmux too.
pub fn readme_nft_same_host(port: u16) -> String {
    format!(
        "table inet pmmux {{\n\
         \tchain output {{\n\
         \t\ttype route hook output priority mangle; policy accept;\n\
         \t\ttcp sport {port} meta mark set 1\n\
         \t\tudp sport {port} meta mark set 1\n\
         \t}}\n\
         }}\n"
    )
}

const STEP_TIMEOUT: Duration = Duration::from_secs(20);
static NEXT: AtomicU32 = AtomicU32::new(0);

/// The three namespaces; deleted on drop (also when the test panics).
pub struct TproxyLab {
    /// Client namespace.
    pub client: String,
    /// Router namespace (pmmux runs here).
    pub router: String,
    /// Server namespace.
    pub server: String,
    created: Namespaces,
}

impl TproxyLab {
    /// Makes the namespaces and links. `Err` says why the machine cannot (not root, no netns, no
    /// veth): the caller prints it and skips.
    pub fn create() -> Result<TproxyLab, String> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = format!("pmt{}-{n}", std::process::id());
        let mut lab = TproxyLab {
            client: format!("{base}-cl"),
            router: format!("{base}-rt"),
            server: format!("{base}-sv"),
            created: Namespaces::default(),
        };
        for ns in [lab.client.clone(), lab.router.clone(), lab.server.clone()] {
            lab.created.add(&ns)?;
        }
        let (c, r, s) = (lab.client.clone(), lab.router.clone(), lab.server.clone());
        ip(&[
            "link", "add", "c0", "netns", &r, "type", "veth", "peer", "name", "eth0", "netns", &c,
        ])
        .map_err(|e| format!("cannot create a veth pair: {e}"))?;
        ip(&[
            "link", "add", "s0", "netns", &r, "type", "veth", "peer", "name", "eth0", "netns", &s,
        ])?;
        for (ns, dev, addr) in [
            (&r, "c0", "10.91.1.1/24"),
            (&r, "s0", "10.91.2.1/24"),
            (&c, "eth0", "10.91.1.2/24"),
            (&s, "eth0", "10.91.2.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        ip(&["-n", &c, "route", "add", "default", "via", ROUTER_CLIENT_SIDE])?;
        ip(&["-n", &s, "route", "add", "default", "via", ROUTER_SERVER_SIDE])?;
        Ok(lab)
    }

    /// The README's rules in the router namespace: policy routing of marked packets to the local
    /// table, and the nftables rule marking packets of transparent sockets.
    pub fn apply_readme_rules(&self) -> Result<(), String> {
        for args in README_IP_COMMANDS {
            let mut all = vec!["-n", self.router.as_str()];
            all.extend_from_slice(args);
            ip(&all)?;
        }
        self.nft(README_NFT)
    }

    /// Loads `ruleset` with `nft -f -` in the router namespace.
    pub fn nft(&self, ruleset: &str) -> Result<(), String> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.router, "nft", "-f", "-"]);
        let out = run_cmd(c, Some(ruleset.as_bytes()), STEP_TIMEOUT);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "nft -f (the README's rules): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Runs `f` on a thread inside namespace `ns` (see [`NatLab::run_in`]).
    pub fn run_in<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
        NatLab::run_in(ns, f)
    }
}

/// A TCP server (in the namespace of the thread that starts it) that answers each line with
/// `<the peer address it sees> <the line>`: what the upstream server saw, and that the reply got
/// back.
pub fn tcp_peer_reporter(bind: &str) -> io::Result<TcpServer> {
    TcpServer::start_with(bind, |stream| {
        let Ok(peer) = stream.peer_addr() else { return };
        let Ok(mut writer) = stream.try_clone() else { return };
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if writer.write_all(format!("{peer} {line}\n").as_bytes()).is_err() {
                break;
            }
        }
        // The server keeps a clone of each stream: close this one for good once the client is done.
        let _ = writer.shutdown(std::net::Shutdown::Both);
    })
}

/// The UDP counterpart of [`tcp_peer_reporter`]: each datagram is answered with
/// `<the peer address it sees> <the datagram>`.
pub struct UdpPeerReporter {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpPeerReporter {
    /// Serves on `bind` (port 0 for any).
    pub fn start(bind: &str) -> io::Result<UdpPeerReporter> {
        let socket = UdpSocket::bind(bind)?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::SeqCst) {
                if let Ok((n, peer)) = socket.recv_from(&mut buf) {
                    let mut reply = format!("{peer} ").into_bytes();
                    reply.extend_from_slice(&buf[..n]);
                    let _ = socket.send_to(&reply, peer);
                }
            }
        });
        Ok(UdpPeerReporter {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for UdpPeerReporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
