//! systemd socket activation end to end: `systemd-socket-activate` binds the listening sockets and
//! starts the real `pmmux` on the first connection with `LISTEN_FDS`; pmmux serves curl (through the
//! http plugin, to nginx) on the inherited socket without binding it, closes an inherited socket no
//! listener names, and hands the inherited socket on at a binary upgrade.

mod common;

use std::time::Duration;

use common::*;
use pmmux_e2e::*;

#[test]
fn socket_activated_pmmux_serves_curl_on_the_inherited_socket_and_keeps_it_across_an_upgrade() {
    let web = HttpServer::start("web-a");
    let (port, unused) = (free_port(), free_port());
    let dir = temp_dir("socket-activation");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugin folder");
    let lib = plugin_lib("http");
    std::fs::copy(&lib, plugins.join(lib.file_name().expect("file name"))).expect("copy the http plugin");
    let config = dir.path().join("pmmux.toml");
    std::fs::write(
        &config,
        format!(
            "plugin_dir = \"plugins\"\n[[listener]]\naddress = \"127.0.0.1:{port}\"\n\
             [[backend]]\nname = \"web\"\nprotocol = \"http\"\ntarget = \"{}\"\n",
            web.addr()
        ),
    )
    .expect("write the config");
    let listens = [format!("127.0.0.1:{port}"), format!("127.0.0.1:{unused}")];
    let mut guard = socket_activated(&listens, &config, dir.path());
    // Seen in /proc, not by connecting: the first connection is what starts pmmux.
    assert!(
        eventually(SERVER_START_TIMEOUT, || tcp_listening(loopback(port))),
        "systemd-socket-activate did not listen"
    );

    // The first connection starts pmmux (systemd-socket-activate execs it in place: same PID).
    let out = run(
        "curl",
        &["-sS", "--max-time", "20", &web.url_via(port, IDENT_FILE)],
        CLIENT_TIMEOUT,
    );
    assert_eq!(
        out.expect_success("curl through socket-activated pmmux").trim(),
        "web-a"
    );
    let log = guard.log();
    assert!(log.contains("socket activation: 2 socket(s) from systemd"), "{log}");
    assert!(
        log.contains(&format!(
            "using an inherited socket instead of binding address=127.0.0.1:{port}"
        )) && log.contains("from=\"systemd\""),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "an inherited socket matches no configured listener; closing it address=127.0.0.1:{unused}"
        )),
        "{log}"
    );
    let pid = guard.pid();
    assert!(pid_listens_tcp(pid, loopback(port)));
    for _ in 0..3 {
        let out = run(
            "curl",
            &["-sS", "--max-time", "20", &web.url_via(port, IDENT_FILE)],
            CLIENT_TIMEOUT,
        );
        assert_eq!(out.expect_success("curl").trim(), "web-a");
    }

    // A binary upgrade hands the systemd socket on like any other.
    guard.signal(libc::SIGUSR2);
    assert!(
        guard.wait_for_log("stops accepting and drains", LOG_TIMEOUT),
        "{}",
        guard.log()
    );
    let needle = format!(" started by PID {pid};");
    let new: u32 = guard
        .log()
        .lines()
        .find_map(|l| l[..l.find(&needle)?].rsplit("PID ").next()?.trim().parse().ok())
        .expect("the new process's PID in the log");
    let _new_guard = PidGuard(new);
    let status = guard
        .wait_timeout(Duration::from_secs(10))
        .expect("the old process exits");
    assert!(status.success(), "{status}");
    assert!(pid_listens_tcp(new, loopback(port)));
    let out = run(
        "curl",
        &["-sS", "--max-time", "20", &web.url_via(port, IDENT_FILE)],
        CLIENT_TIMEOUT,
    );
    assert_eq!(out.expect_success("curl after the upgrade").trim(), "web-a");
    let status = stop_pid(new, Duration::from_secs(10)).expect("the new process stops");
    assert!(status.success(), "{status}");
}

#[test]
fn example_socket_unit_passes_systemd_analyze_verify() {
    let analyze = find_tool("systemd-analyze", "systemd");
    let root = workspace_root().join("config");
    let socket = std::fs::read_to_string(root.join("pmmux.socket")).expect("read config/pmmux.socket");
    assert!(socket.lines().any(|l| l.starts_with("ListenStream=")), "{socket}");
    let service = std::fs::read_to_string(root.join("pmmux.service")).expect("read config/pmmux.service");
    let dir = temp_dir("socket-unit");
    std::fs::write(dir.path().join("pmmux.socket"), &socket).expect("write");
    std::fs::write(
        dir.path().join("pmmux.service"),
        service.replace("/usr/local/bin/pmmux", &pmmux_bin().to_string_lossy()),
    )
    .expect("write");
    let out = run(
        &analyze.to_string_lossy(),
        &["verify", &dir.path().join("pmmux.socket").to_string_lossy()],
        CLIENT_TIMEOUT,
    );
    assert!(
        out.status.success() && out.stderr_str().trim().is_empty(),
        "systemd-analyze verify: {}\n{}",
        out.status,
        out.stderr_str()
    );
}
