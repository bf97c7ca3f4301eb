//! Transparent proxying (`transparent = true`) end to end, in namespaces the test creates
//! (`pmmux_e2e::tproxy_lab`): a client in one namespace talks to pmmux in the router namespace,
//! which forwards to a server in a third namespace whose default route goes back through the
//! router. With the README's routing and nftables rules applied, the server sees the client's own
//! address and port (a backend without `transparent` beside it shows the router's address), and
//! its replies reach the client, over TCP and over UDP; so does an upstream on the router itself
//! with the README's extra rule for that case; `pmmux check-transparent` reports the
//! rules missing before and present after. All of it again with `--user nobody`, where one thread
//! keeps CAP_NET_ADMIN (and no other thread any capability). Without CAP_NET_ADMIN (dropped with `setpriv`), start-up
//! and a reload that adds a transparent backend fail with a clear error while the rest serves.
//! Skips, saying why, where namespaces, veth or nftables are not available.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use pmmux_e2e::tproxy_lab::{self, TproxyLab, UdpPeerReporter, CLIENT, ROUTER_CLIENT_SIDE, ROUTER_SERVER_SIDE, SERVER};
use pmmux_e2e::*;

const IO_TIMEOUT: Duration = Duration::from_secs(5);
const SERVER_PORT: u16 = 7001;
/// pmmux's listener whose backend is transparent, and the one whose backend is not.
const TRANSPARENT_PORT: u16 = 20001;
const PLAIN_PORT: u16 = 20002;
/// pmmux's listener whose transparent backend is a server on the router itself.
const SAME_HOST_PORT: u16 = 20003;
const SAME_HOST_SERVER_PORT: u16 = 7002;

fn lab_config() -> String {
    format!(
        "plugin_dir = \"plugins\"\n\
         [reload]\nwatch_config = false\n\
         [[listener]]\naddress = \"{ROUTER_CLIENT_SIDE}:{TRANSPARENT_PORT}\"\ntransport = [\"tcp\", \"udp\"]\n\
         [[listener]]\naddress = \"{ROUTER_CLIENT_SIDE}:{PLAIN_PORT}\"\ntransport = [\"tcp\", \"udp\"]\n\
         [[listener]]\naddress = \"{ROUTER_CLIENT_SIDE}:{SAME_HOST_PORT}\"\ntransport = [\"tcp\", \"udp\"]\n\
         [[backend]]\nname = \"as-client\"\nprotocol = \"pass\"\ntarget = \"{SERVER}:{SERVER_PORT}\"\ntransparent = true\n\
         [backend.match]\nlocal_port = {TRANSPARENT_PORT}\n\
         [[backend]]\nname = \"as-pmmux\"\nprotocol = \"pass\"\ntarget = \"{SERVER}:{SERVER_PORT}\"\n\
         [backend.match]\nlocal_port = {PLAIN_PORT}\n\
         [[backend]]\nname = \"same-host\"\nprotocol = \"pass\"\ntarget = \"{ROUTER_SERVER_SIDE}:{SAME_HOST_SERVER_PORT}\"\n\
         transparent = true\n[backend.match]\nlocal_port = {SAME_HOST_PORT}\n"
    )
}

/// From the client namespace: one line over TCP to pmmux's `port`; the client's own address and
/// the server's answer (`<peer the server saw> <line>`).
fn tcp_from_client(lab: &TproxyLab, port: u16) -> (SocketAddr, String) {
    let to: SocketAddr = format!("{ROUTER_CLIENT_SIDE}:{port}").parse().expect("address");
    TproxyLab::run_in(&lab.client, move || -> std::io::Result<(SocketAddr, String)> {
        let mut s = TcpStream::connect_timeout(&to, IO_TIMEOUT)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        let me = s.local_addr()?;
        s.write_all(b"hello over tcp\n")?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line)?;
        Ok((me, line.trim_end().to_owned()))
    })
    .expect("client thread")
    .unwrap_or_else(|e| panic!("TCP through pmmux's port {port}: {e}"))
}

/// From the client namespace: one datagram to pmmux's `port` (resent up to 5 times) and the answer.
fn udp_from_client(lab: &TproxyLab, port: u16) -> (SocketAddr, String) {
    let to: SocketAddr = format!("{ROUTER_CLIENT_SIDE}:{port}").parse().expect("address");
    TproxyLab::run_in(&lab.client, move || -> std::io::Result<(SocketAddr, String)> {
        let s = UdpSocket::bind(format!("{CLIENT}:0"))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.connect(to)?;
        let me = s.local_addr()?;
        let mut buf = [0u8; 1500];
        for _ in 0..5 {
            s.send(b"hello over udp")?;
            if let Ok(n) = s.recv(&mut buf) {
                return Ok((me, String::from_utf8_lossy(&buf[..n]).into_owned()));
            }
        }
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no UDP answer"))
    })
    .expect("client thread")
    .unwrap_or_else(|e| panic!("UDP through pmmux's port {port}: {e}"))
}

fn check_transparent_in(ns: &str) -> std::process::Output {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(pmmux_bin()).arg("check-transparent");
    run_cmd(c, None, Duration::from_secs(30))
}

#[test]
fn the_upstream_sees_the_client_address_and_replies_get_back_over_tcp_and_udp() {
    let lab = match TproxyLab::create() {
        Ok(lab) => lab,
        Err(why) => {
            eprintln!("SKIP transparent proxying end to end: {why}");
            return;
        }
    };
    // Before the rules: the check names what is missing and how to fix it.
    let before = check_transparent_in(&lab.router);
    let text = String::from_utf8_lossy(&before.stdout).into_owned();
    assert!(
        !before.status.success(),
        "nothing set up yet, yet check-transparent passed:\n{text}"
    );
    assert!(text.contains("ok      capability to set IP_TRANSPARENT"), "{text}");
    for fix in [
        "fix: ip -4 rule add fwmark 1 lookup 100",
        "fix: ip -4 route add local 0.0.0.0/0 dev lo table 100",
        "socket transparent 1 meta mark set 1 accept",
    ] {
        assert!(text.contains(fix), "`{fix}` missing from:\n{text}");
    }
    if let Err(why) = lab.apply_readme_rules() {
        eprintln!("SKIP transparent proxying end to end: cannot apply the README's rules: {why}");
        return;
    }
    let after = check_transparent_in(&lab.router);
    let text = String::from_utf8_lossy(&after.stdout).into_owned();
    assert!(after.status.success(), "the README's rules are applied, yet:\n{text}");
    assert!(
        !text.contains("MISSING IPv4") && !text.contains("MISSING nftables"),
        "{text}"
    );

    let bind = format!("{SERVER}:{SERVER_PORT}");
    let (tcp_server, udp_server) = TproxyLab::run_in(&lab.server, move || {
        (tproxy_lab::tcp_peer_reporter(&bind), UdpPeerReporter::start(&bind))
    })
    .expect("server thread");
    let (tcp_server, udp_server) = (tcp_server.expect("TCP server"), udp_server.expect("UDP server"));

    // An upstream on the router itself, with the README's extra rule for that case.
    let bind = format!("{ROUTER_SERVER_SIDE}:{SAME_HOST_SERVER_PORT}");
    let (local_tcp, local_udp) = TproxyLab::run_in(&lab.router, move || {
        (tproxy_lab::tcp_peer_reporter(&bind), UdpPeerReporter::start(&bind))
    })
    .expect("router thread");
    let (local_tcp, local_udp) = (local_tcp.expect("TCP server"), local_udp.expect("UDP server"));
    lab.nft(&tproxy_lab::readme_nft_same_host(SAME_HOST_SERVER_PORT))
        .expect("the README's rule for an upstream on the same host");

    // As root, then dropping to nobody with one thread keeping CAP_NET_ADMIN.
    let pm = exercise(&lab, &[]);
    assert!(pm.stop().is_some_and(|s| s.success()), "{}", pm.log());
    let pm = exercise(&lab, &["--user", "nobody"]);
    assert!(pm.log().contains("kept CAP_NET_ADMIN in one thread"), "{}", pm.log());
    let caps = thread_capabilities(pm.pid());
    let holders: Vec<&(String, u64)> = caps.iter().filter(|(_, c)| *c != 0).collect();
    assert_eq!(
        holders.len(),
        1,
        "exactly one thread holds a capability after --user: {caps:?}"
    );
    assert_eq!(holders[0].1, 1 << 12, "and it is CAP_NET_ADMIN alone: {caps:?}");
    assert!(pm.stop().is_some_and(|s| s.success()), "{}", pm.log());
    drop((tcp_server, udp_server, local_tcp, local_udp));
}

/// Each thread of `pid` with its effective capabilities (`CapEff` in /proc).
fn thread_capabilities(pid: u32) -> Vec<(String, u64)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task");
    tasks
        .flatten()
        .filter_map(|t| {
            let status = std::fs::read_to_string(t.path().join("status")).ok()?;
            let name = status.lines().find_map(|l| l.strip_prefix("Name:"))?.trim().to_owned();
            let eff = status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_owned();
            Some((name, u64::from_str_radix(&eff, 16).ok()?))
        })
        .collect()
}

/// Starts pmmux in the router namespace with `args` and checks every path: the transparent
/// backend's server sees the client (TCP, UDP), the plain one sees the router, and an upstream
/// on the router itself sees the client too. Returns the running host.
fn exercise(lab: &TproxyLab, args: &[&str]) -> Pmmux {
    let text = lab_config();
    let pm = Pmmux::start_opts(&StartOptions {
        config: Some(&text),
        netns: Some(&lab.router),
        args,
        ..StartOptions::default()
    });
    // Its sockets are in the router namespace, which the harness's /proc reading does not see.
    assert!(pm.wait_for_log("pmmux started", PMMUX_START_TIMEOUT), "{}", pm.log());
    assert!(pm.log().contains("transparent backends"), "{}", pm.log());

    type FromClient = fn(&TproxyLab, u16) -> (SocketAddr, String);
    for (proto, from_client) in [("tcp", tcp_from_client as FromClient), ("udp", udp_from_client)] {
        // The server saw the client's own address and port; the reply came back.
        let (me, answer) = from_client(lab, TRANSPARENT_PORT);
        assert_eq!(answer, format!("{me} hello over {proto}"), "{}", pm.log());
        // The control: without `transparent`, the server sees the router.
        let (me, answer) = from_client(lab, PLAIN_PORT);
        assert!(
            answer.starts_with("10.91.2.1:") && answer.ends_with(&format!(" hello over {proto}")),
            "{answer}"
        );
        assert!(!answer.starts_with(&me.to_string()));
    }

    // The upstream on pmmux's own host: the same, with its replies marked by source port.
    let (me, answer) = tcp_from_client(lab, SAME_HOST_PORT);
    assert_eq!(answer, format!("{me} hello over tcp"), "{}", pm.log());
    let (me, answer) = udp_from_client(lab, SAME_HOST_PORT);
    assert_eq!(answer, format!("{me} hello over udp"), "{}", pm.log());
    pm
}

/// A command that runs pmmux without CAP_NET_ADMIN and CAP_NET_RAW (newer kernels accept either
/// for IP_TRANSPARENT): a script that execs it under `setpriv` with both out of the bounding set
/// (the process id stays pmmux's).
fn without_net_admin(dir: &std::path::Path) -> Option<PathBuf> {
    let setpriv = find_tool("setpriv", "util-linux");
    let script = dir.join("pmmux-no-net-admin");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec {} --bounding-set=-net_admin,-net_raw --inh-caps=-net_admin,-net_raw {} \"$@\"\n",
            setpriv.display(),
            pmmux_bin().display()
        ),
    )
    .ok()?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).ok()?;
    Some(script)
}

fn transparent_backend(port: u16) -> String {
    format!(
        "[[backend]]\nname = \"tp\"\nprotocol = \"pass\"\ntarget = \"127.0.0.1:{port}\"\ntransparent = true\n\
         [backend.match]\nlocal_port = 1\n"
    )
}

#[test]
fn without_cap_net_admin_start_up_check_config_and_reload_say_what_is_missing() {
    let dir = temp_dir("transparent-nocap");
    let program = without_net_admin(dir.path()).expect("write the setpriv script");
    let probe = run(
        program.to_str().unwrap_or_default(),
        &["--version"],
        Duration::from_secs(10),
    );
    if !probe.status.success() {
        eprintln!(
            "SKIP transparent without CAP_NET_ADMIN: cannot drop it here: {}",
            String::from_utf8_lossy(&probe.stderr).trim()
        );
        return;
    }
    let echo = TcpEcho::start();
    let port = free_port();
    let base = format!(
        "plugin_dir = \"plugins\"\n[reload]\nwatch_config = false\n\
         [[listener]]\naddress = \"127.0.0.1:{port}\"\n\
         [[backend]]\nname = \"echo\"\nprotocol = \"pass\"\ntarget = \"{}\"\n",
        echo.addr()
    );
    let with_tp = format!("{base}{}", transparent_backend(echo.port()));

    // Start-up: refused, naming the backend and the capability.
    let pm = Pmmux::start_opts(&StartOptions {
        config: Some(&with_tp),
        program: Some(&program),
        ..StartOptions::default()
    });
    let status = pm.wait_exit(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| !s.success()),
        "started without CAP_NET_ADMIN:\n{}",
        pm.log()
    );
    let log = pm.log();
    assert!(
        log.contains("backend `tp` has transparent = true") && log.contains("CAP_NET_ADMIN"),
        "{log}"
    );

    // check-config says the same.
    let file = dir.path().join("tp.toml");
    std::fs::write(&file, &with_tp).expect("write config");
    let out = run(
        program.to_str().unwrap_or_default(),
        &["check-config", file.to_str().unwrap_or_default()],
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("backend `tp` has transparent = true"),
        "{err}"
    );

    // A reload adding a transparent backend is refused; the running configuration keeps serving.
    let pm = Pmmux::start_opts(&StartOptions {
        config: Some(&base),
        program: Some(&program),
        ..StartOptions::default()
    });
    pm.wait_listening(loopback(port));
    pm.write_config(&with_tp);
    pm.signal(libc::SIGHUP);
    assert!(
        pm.wait_for_log("configuration refused", Duration::from_secs(10)),
        "{}",
        pm.log()
    );
    assert!(pm.log().contains("backend `tp` has transparent = true"), "{}", pm.log());
    let got = tcp_roundtrip(loopback(port), b"still served", IO_TIMEOUT).expect("echo through pmmux");
    assert_eq!(got, b"still served");
    assert!(pm.stop().is_some_and(|s| s.success()), "{}", pm.log());
}
