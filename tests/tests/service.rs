//! Service life, end to end with the real `pmmux`: systemd readiness notifications over a real unix
//! datagram socket, a path or an abstract name, reached after `--user` too (and the unit file
//! checked by `systemd-analyze verify`), two processes sharing one port with `reuse_port`, and
//! `--user nobody` dropping root after binding a port below 1024.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::*;
use pmmux_e2e::*;

const ECHO: &str = "[[backend]]\nname = \"echo\"\nprotocol = \"echo\"\n";

fn listener(port: u16, extra: &str) -> String {
    format!("plugin_dir = \"plugins\"\n[[listener]]\naddress = \"127.0.0.1:{port}\"\n{extra}")
}

/// Receives the next notification that is not a watchdog ping, counting those in `pings`; `None`
/// when pmmux exited first.
fn try_next_state(sock: &UnixDatagram, pings: &mut usize, pm: &Pmmux) -> Option<String> {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + LOG_TIMEOUT * 2;
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if msg != "WATCHDOG=1" {
                    return Some(msg);
                }
                *pings += 1;
            }
            Err(e) if Instant::now() >= deadline => panic!("no notification from pmmux: {e}; log:\n{}", pm.log()),
            Err(_) if !pm.is_running() => return None,
            Err(_) => {}
        }
    }
}

fn next_state(sock: &UnixDatagram, pings: &mut usize, pm: &Pmmux) -> String {
    try_next_state(sock, pings, pm).unwrap_or_else(|| panic!("pmmux exited; log:\n{}", pm.log()))
}

/// Starts pmmux (the echo plugin on a fresh port) with `env` and `args`, and returns it with the
/// port and its first notification on `sock`. Retried on a new port when another process takes the
/// probed one before pmmux binds it.
fn start_notified(sock: &UnixDatagram, env: &[(&str, &str)], args: &[&str], pings: &mut usize) -> (Pmmux, u16, String) {
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("read timeout on the notification socket");
    (0..5)
        .find_map(|_| {
            let port = free_port();
            let pm = Pmmux::start_opts(&StartOptions {
                config: Some(&format!("{}{ECHO}", listener(port, ""))),
                plugins: &["echo"],
                env,
                args,
                ..StartOptions::default()
            });
            match try_next_state(sock, pings, &pm) {
                Some(first) => Some((pm, port, first)),
                None if pm.log().contains("cannot listen on") => None,
                None => panic!("pmmux exited; log:\n{}", pm.log()),
            }
        })
        .expect("pmmux could not bind a fresh port 5 times")
}

/// SIGTERM, then `STOPPING=1` and a clean exit.
fn stop_notified(pm: &Pmmux, sock: &UnixDatagram, pings: &mut usize) {
    pm.signal(libc::SIGTERM);
    let stopping = next_state(sock, pings, pm);
    assert!(stopping.starts_with("STOPPING=1\n"), "{stopping:?}");
    let status = pm
        .wait_exit(Duration::from_secs(10))
        .expect("pmmux exits after SIGTERM");
    assert!(status.success(), "{status}");
}

#[test]
fn systemd_notify_ready_when_serving_then_reloading_ready_and_stopping() {
    let dir = temp_dir("notify");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind the notification socket");
    let mut pings = 0;
    let env = [("NOTIFY_SOCKET", path.to_str().unwrap()), ("WATCHDOG_USEC", "400000")];
    let (pm, port, ready) = start_notified(&sock, &env, &[], &mut pings);

    // At READY=1 the port already accepts and the plugin serves: no polling needed.
    let got = tcp_roundtrip(loopback(port), b"ready?", CLIENT_TIMEOUT).expect("round trip at READY=1");
    assert_eq!(got, b"ready?");
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");
    assert!(ready.contains("STATUS=serving 1 listening socket(s)"), "{ready:?}");

    pm.signal(libc::SIGHUP);
    let reloading = next_state(&sock, &mut pings, &pm);
    assert!(reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{reloading:?}");
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC number in {reloading:?}"));
    assert!(usec > 0);
    let ready = next_state(&sock, &mut pings, &pm);
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");

    // Watchdog pings at half of WATCHDOG_USEC: several within a second.
    let started = Instant::now();
    while pings < 2 {
        let mut buf = [0u8; 64];
        let n = sock.recv(&mut buf).expect("watchdog ping");
        assert_eq!(&buf[..n], b"WATCHDOG=1");
        pings += 1;
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    stop_notified(&pm, &sock, &mut pings);
}

#[test]
fn systemd_notify_reaches_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    let name = format!("pmmux-e2e-notify-{}-{nanos}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
    let sock = UnixDatagram::bind_addr(&addr).expect("bind the abstract notification socket");
    let mut pings = 0;
    let (pm, port, ready) = start_notified(&sock, &[("NOTIFY_SOCKET", &format!("@{name}"))], &[], &mut pings);
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");
    // A reload the moment readiness is announced: the SIGHUP handler is already there.
    pm.signal(libc::SIGHUP);
    let reloading = next_state(&sock, &mut pings, &pm);
    assert!(reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{reloading:?}");
    let ready = next_state(&sock, &mut pings, &pm);
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");
    let got = tcp_roundtrip(loopback(port), b"abstract", CLIENT_TIMEOUT).expect("round trip at READY=1");
    assert_eq!(got, b"abstract");
    stop_notified(&pm, &sock, &mut pings);
    assert_eq!(pings, 0, "no WATCHDOG_USEC, no pings");
}

/// The socket is connected once, as root, before `--user` takes effect: a socket only root may
/// reach (in a 0700 folder) still gets `READY=1`, sent after the drop, and `STOPPING=1`.
#[test]
fn systemd_notify_reaches_a_root_only_socket_after_dropping_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: --user needs the test to run as root");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("notify-private");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod 0700");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind the notification socket");
    let mut pings = 0;
    let env = [("NOTIFY_SOCKET", path.to_str().unwrap())];
    let (pm, port, ready) = start_notified(&sock, &env, &["--user", "nobody"], &mut pings);
    assert!(ready.starts_with("READY=1\n"), "{ready:?}\n{}", pm.log());
    let (uid, _) = ids("nobody");
    assert_eq!(proc_ids(pm.pid(), "Uid:"), vec![uid; 4], "READY=1 comes after the drop");
    let got = tcp_roundtrip(loopback(port), b"as nobody", CLIENT_TIMEOUT).expect("round trip");
    assert_eq!(got, b"as nobody");
    stop_notified(&pm, &sock, &mut pings);
}

#[test]
fn systemd_unit_file_passes_systemd_analyze_verify() {
    let analyze = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/bin".into(), "/bin".into()])
        .map(|d| d.join("systemd-analyze"))
        .find(|p| p.is_file());
    let Some(analyze) = analyze else {
        eprintln!("skipped: systemd-analyze is not installed (Debian package systemd)");
        return;
    };
    let unit = std::fs::read_to_string(workspace_root().join("config/pmmux.service")).expect("read the unit");
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "DynamicUser=yes",
        "LimitNOFILE=",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(line)),
            "the unit has no `{line}` line"
        );
    }
    // verify insists that ExecStart exists: point it at the binary just built.
    let exec = "/usr/local/bin/pmmux";
    assert!(unit.contains(&format!("ExecStart={exec} --config")));
    let dir = temp_dir("unit");
    let copy = dir.path().join("pmmux.service");
    std::fs::write(&copy, unit.replace(exec, &pmmux_bin().to_string_lossy())).unwrap();
    let out = run(
        &analyze.to_string_lossy(),
        &["verify", &copy.to_string_lossy()],
        CLIENT_TIMEOUT,
    );
    // Unknown keys and bad values are only warnings: the unit is clean when stderr is empty.
    assert!(
        out.status.success() && out.stderr_str().trim().is_empty(),
        "systemd-analyze verify: {}\n{}",
        out.status,
        out.stderr_str()
    );
}

/// One HTTP request over a new connection; returns the response body.
fn http_body(port: u16) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&loopback(port), Duration::from_secs(5)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set read timeout");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    s.read_to_string(&mut response).map_err(|e| e.to_string())?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .ok_or_else(|| format!("no HTTP response: {response:?}"))
}

fn answering(port: u16, body: &str, reuse: bool) -> Pmmux {
    let config = format!(
        "{}reuse_port = {reuse}\n[[backend]]\nname = \"r\"\nprotocol = \"http-response\"\n[backend.params]\nbody = \"{body}\"\n",
        listener(port, "")
    );
    Pmmux::start(&config, &["http_response"])
}

#[test]
fn reuse_port_two_processes_share_a_port_and_one_survives_the_other() {
    // Retried on a new port when another process takes the probed one before A binds it.
    let (a, port) = (0..5)
        .find_map(|_| {
            let port = free_port();
            let a = answering(port, "A", true);
            match a.try_wait_listening(loopback(port), PMMUX_START_TIMEOUT) {
                Ok(()) => Some((a, port)),
                Err(e) if e.contains("cannot listen on") => None,
                Err(e) => panic!("{e}"),
            }
        })
        .expect("pmmux could not bind a fresh port 5 times");
    let b = answering(port, "B", true);
    b.wait_listening(loopback(port));

    // The kernel spreads new connections over both processes.
    let (mut seen_a, mut seen_b) = (0, 0);
    for _ in 0..500 {
        match http_body(port).as_deref() {
            Ok("A") => seen_a += 1,
            Ok("B") => seen_b += 1,
            other => panic!("unexpected answer {other:?}"),
        }
        if seen_a >= 3 && seen_b >= 3 {
            break;
        }
    }
    assert!(seen_a >= 3 && seen_b >= 3, "A answered {seen_a}, B {seen_b} times");

    // A third without reuse_port cannot join.
    let c = answering(port, "C", false);
    let status = c.wait_exit(PMMUX_START_TIMEOUT).expect("the third pmmux exits");
    assert!(!status.success());
    assert!(c.log().contains("cannot listen on"), "{}", c.log());

    // A stops: B takes every new connection.
    assert!(a.stop().is_some_and(|s| s.success()));
    for i in 0..50 {
        assert_eq!(http_body(port).as_deref(), Ok("B"), "connection {i} after A stopped");
    }
}

/// A TCP port below 1024 on 127.0.0.1 that is free now.
fn free_low_port() -> Option<u16> {
    (600..1000u16)
        .rev()
        .find(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
}

/// `(uid, gid)` of `user`, from `id`.
fn ids(user: &str) -> (String, String) {
    let id = |flag: &str| {
        run("id", &[flag, user], CLIENT_TIMEOUT)
            .expect_success("id")
            .trim()
            .to_owned()
    };
    (id("-u"), id("-g"))
}

/// The values of a `Uid:` / `Gid:` line of /proc/PID/status.
fn proc_ids(pid: u32, key: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} line"));
    line[key.len()..].split_whitespace().map(str::to_owned).collect()
}

#[test]
fn user_nobody_binds_a_low_port_as_root_then_serves_and_reloads_as_nobody() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: --user needs the test to run as root");
        return;
    }
    let Some(port) = free_low_port() else {
        eprintln!("skipped: no free port below 1024 on 127.0.0.1");
        return;
    };
    let config = listener(
        port,
        &format!("[reload]\nquiet_period_ms = 150\nrescan_interval_ms = 500\n{ECHO}"),
    );
    let pm = Pmmux::start_opts(&StartOptions {
        config: Some(&config),
        plugins: &["echo"],
        args: &["--user", "nobody"],
        ..StartOptions::default()
    });
    pm.wait_listening(loopback(port));
    wait_log_line(&pm, &["dropped root privileges", "user=nobody"]);
    let (uid, gid) = ids("nobody");
    assert_eq!(proc_ids(pm.pid(), "Uid:"), vec![uid.clone(); 4]);
    assert_eq!(proc_ids(pm.pid(), "Gid:"), vec![gid.clone(); 4]);
    assert_eq!(proc_ids(pm.pid(), "Groups:"), vec![gid]);
    let got = tcp_roundtrip(loopback(port), b"as nobody", CLIENT_TIMEOUT).expect("round trip");
    assert_eq!(got, b"as nobody");

    // A replaced plugin is loaded by the unprivileged process (its shadow folder is its own).
    pm.install_plugin("echo");
    wait_log_count(&pm, &["plugin loaded", "libpmmux_echo.so"], 2);
    assert!(!pm.log().contains("plugin refused"), "{}", pm.log());
    let got = tcp_roundtrip(loopback(port), b"after reload", CLIENT_TIMEOUT).expect("round trip");
    assert_eq!(got, b"after reload");
    assert!(pm.stop().is_some_and(|s| s.success()), "{}", pm.log());
}

#[test]
fn user_without_root_or_unknown_user_fails_before_binding() {
    let port = free_port();
    let pm = Pmmux::start_opts(&StartOptions {
        config: Some(&format!("{}{ECHO}", listener(port, ""))),
        args: &["--user", "no-such-user-pmmux-e2e"],
        ..StartOptions::default()
    });
    let status = pm.wait_exit(PMMUX_START_TIMEOUT).expect("pmmux exits");
    assert!(!status.success());
    // SAFETY: geteuid has no preconditions.
    let want = if unsafe { libc::geteuid() } == 0 {
        "pmmux: --user no-such-user-pmmux-e2e: no such user"
    } else {
        "not root"
    };
    assert!(pm.log().contains(want), "{}", pm.log());
    assert!(!pm.log().contains("listening"), "{}", pm.log());
}
