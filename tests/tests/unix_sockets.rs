//! Unix-domain sockets end to end, with the real `pmmux`: curl `--unix-socket` through a `unix:`
//! listener, routed by Host by the http plugin to nginx listening on a Unix socket and to nginx on
//! TCP; the socket file's mode and owner (stat); a stale file replaced, a live socket or another
//! file refusing the start; `openssl s_client -unix` and ssh (through socat) to TCP targets; a PROXY
//! v2 header from HAProxy arriving over a Unix listener, relayed as v1 and v2 (to a Unix target)
//! to nginx, which reports curl's own address; a Unix client sent upstream as v1 UNKNOWN / v2
//! LOCAL; failover and health checks against a missing socket; reload adding and removing a Unix
//! listener, and a binary upgrade handing it over. Sockets live in temporary folders under /tmp;
//! everything is stopped by PID.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use pmmux_e2e::*;

/// The socket file of a pmmux started with `config_in(dir)`: `{DIR}/<name>`.
fn sock(pm: &Pmmux, name: &str) -> PathBuf {
    pm.dir().join(name)
}

/// Waits until something accepts on the Unix socket `path`.
fn wait_unix(pm: &Pmmux, path: &Path) {
    let up = eventually(PMMUX_START_TIMEOUT, || {
        std::os::unix::net::UnixStream::connect(path).is_ok()
    });
    assert!(up, "nothing accepts on {} in time; log:\n{}", path.display(), pm.log());
}

/// curl through the Unix socket `path` with `Host: host`, fetching `/path_part`.
fn curl_unix(path: &Path, host: &str, url_path: &str) -> std::process::Output {
    client(
        "curl",
        &args(&[
            "-sS",
            "--max-time",
            "20",
            "--unix-socket",
            &path.to_string_lossy(),
            "-H",
            &format!("Host: {host}"),
            &format!("http://{host}/{url_path}"),
        ]),
    )
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

#[test]
fn curl_over_a_unix_listener_reaches_nginx_on_a_unix_socket_by_host_and_the_file_has_its_mode_and_owner() {
    let a = HttpServer::start_unix("web-a", false);
    let b = HttpServer::start("web-b");
    let sum_a = a.add_random_file("big.bin", 4 << 20);
    // Owner and group need root (chown); as another user the file keeps the process's own.
    let root = euid() == 0;
    let owner = if root {
        "owner = \"4242\"\ngroup = \"4243\"\n"
    } else {
        ""
    };
    if !root {
        eprintln!("unix_sockets: not root, so the socket file's owner and group are not set or checked");
    }
    let admin = loopback(free_port());
    let pm = Pmmux::start(
        &format!(
            "plugin_dir = \"plugins\"\n[admin]\naddress = \"{admin}\"\n\
             [[listener]]\nname = \"sock\"\naddress = \"unix:{{DIR}}/in.sock\"\nmode = \"0660\"\n{owner}\
             [[backend]]\nname = \"host-a\"\nprotocol = \"http\"\ntarget = \"unix:{a}\"\n[backend.params]\nhost = \"a.example\"\n\
             [[backend]]\nname = \"rest\"\nprotocol = \"pass\"\ntarget = \"{b}\"\n",
            a = a.unix_path().display(),
            b = b.addr(),
        ),
        &["http"],
    );
    let path = sock(&pm, "in.sock");
    wait_unix(&pm, &path);

    let meta = std::fs::symlink_metadata(&path).expect("stat the socket file");
    assert!(meta.file_type().is_socket(), "{meta:?}");
    assert_eq!(meta.mode() & 0o777, 0o660, "mode {:o}", meta.mode());
    if root {
        assert_eq!((meta.uid(), meta.gid()), (4242, 4243));
    }

    // Routed by Host: a.example to nginx's Unix socket, the rest to nginx on TCP.
    let body = curl_unix(&path, "a.example", IDENT_FILE).expect_success("curl a.example");
    assert_eq!(body, "web-a");
    let body = curl_unix(&path, "other.example", IDENT_FILE).expect_success("curl other.example");
    assert_eq!(body, "web-b");
    let out = curl_unix(&path, "a.example", "big.bin");
    assert!(out.status.success(), "curl big.bin: {}", out.stderr_str());
    assert_eq!(
        sha256_hex(&out.stdout),
        sum_a,
        "4 MiB through two Unix sockets, byte for byte"
    );
    assert!(a.access_log().contains("GET /big.bin"), "{}", a.access_log());
    // The client of a Unix socket is named as such in the connection's log span.
    wait_log_line(&pm, &["peer=unix:(unnamed)", "backend=\"host-a\"", "connection closed"]);
    wait_log_line(&pm, &["peer=unix:(unnamed)", "backend=\"rest\"", "connection closed"]);
    // Counted per listener and backend as for TCP.
    let url = format!("http://{admin}/metrics");
    let counted = eventually(LOG_TIMEOUT, || {
        let text = client("curl", &args(&["-sS", "--max-time", "10", &url])).stdout_str();
        let m = Exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let closed = |backend| {
            m.value(
                "pmmux_connections_total",
                &[("listener", "sock"), ("backend", backend), ("outcome", "closed")],
            )
        };
        closed("host-a") == 2.0 && closed("rest") == 1.0
    });
    assert!(counted, "{}", client("curl", &args(&["-sS", &url])).stdout_str());

    // A clean stop removes the file.
    assert!(pm.stop().is_some_and(|s| s.success()), "{}", pm.log());
    assert!(!path.exists(), "socket file left behind; log:\n{}", pm.log());
    assert!(pm.log().contains("socket file removed"), "{}", pm.log());
}

/// A pmmux with one Unix listener at `path` passing everything to `target`.
fn pass_at(path: &Path, target: &str) -> String {
    format!(
        "plugin_dir = \"plugins\"\n[[listener]]\naddress = \"unix:{}\"\n\
         [[backend]]\nname = \"web\"\nprotocol = \"pass\"\ntarget = \"{target}\"\n",
        path.display()
    )
}

/// Starts pmmux on `config`, which must refuse to start; returns its log.
fn refused_start(config: &str) -> String {
    let pm = Pmmux::start(config, &[]);
    let status = pm.wait_exit(PMMUX_START_TIMEOUT);
    assert!(
        status.is_some_and(|s| !s.success()),
        "pmmux should have refused to start; log:\n{}",
        pm.log()
    );
    pm.log()
}

#[test]
fn a_stale_socket_file_is_replaced_while_a_live_socket_or_another_file_refuses_the_start() {
    let web = HttpServer::start("web-a");
    let dir = temp_dir("unix");
    let path = dir.path().join("s.sock");
    // Left behind by a process that is gone: bound, then closed without removing the file.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind a socket to leave behind"));
    assert!(path.exists());

    let pm = Pmmux::start(&pass_at(&path, &web.addr().to_string()), &[]);
    wait_unix(&pm, &path);
    wait_log_line(&pm, &["removed a stale socket file nobody listened on"]);
    assert_eq!(curl_unix(&path, "x", IDENT_FILE).expect_success("curl"), "web-a");

    // A second pmmux on the same path: the first one answers, so it refuses and says where.
    let log = refused_start(&pass_at(&path, &web.addr().to_string()));
    let shown = path.display().to_string();
    assert!(log.contains(&format!("cannot listen on unix:{shown}")), "{log}");
    assert!(
        log.contains(&format!("a process is listening on {shown} already")),
        "{log}"
    );
    // ... and leaves the first one's file and service alone.
    assert_eq!(
        curl_unix(&path, "x", IDENT_FILE).expect_success("curl after the refusal"),
        "web-a"
    );
    assert!(pm.stop().is_some_and(|s| s.success()), "{}", pm.log());
    assert!(!path.exists());

    // A file that is not a socket is never removed.
    std::fs::write(&path, b"not a socket").expect("write a plain file");
    let log = refused_start(&pass_at(&path, &web.addr().to_string()));
    assert!(log.contains(&format!("{shown} exists and is not a socket")), "{log}");
    assert_eq!(std::fs::read(&path).expect("the file is still there"), b"not a socket");
}

#[test]
fn openssl_and_ssh_through_a_unix_listener_reach_their_tcp_targets() {
    let tls = TlsServer::start("a.example");
    let sshd = Sshd::start();
    let pm = Pmmux::start(
        &format!(
            "plugin_dir = \"plugins\"\n[[listener]]\naddress = \"unix:{{DIR}}/in.sock\"\n\
             [[backend]]\nname = \"ssh\"\nprotocol = \"ssh\"\ntarget = \"{ssh}\"\n\
             [[backend]]\nname = \"tls-a\"\nprotocol = \"tls\"\ntarget = \"{tls}\"\n[backend.params]\nsni = \"a.example\"\n",
            ssh = sshd.addr(),
            tls = tls.addr(),
        ),
        &["ssh", "tls"],
    );
    let path = sock(&pm, "in.sock");
    wait_unix(&pm, &path);

    // openssl s_client over the Unix socket, SNI a.example, verifying the server's certificate.
    let mut s_client = tls.s_client_args(0);
    let at = s_client.iter().position(|a| a == "-connect").expect("-connect");
    s_client[at] = "-unix".into();
    s_client[at + 1] = path.to_string_lossy().into_owned();
    let out = client("openssl", &s_client);
    let text = out.stdout_str();
    assert!(out.status.success(), "s_client: {text}\n{}", out.stderr_str());
    assert!(
        text.contains("CN = a.example") || text.contains("CN=a.example"),
        "{text}"
    );
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    wait_log_line(&pm, &["peer=unix:(unnamed)", "backend=\"tls-a\"", "tls.sni=a.example"]);

    // ssh through socat to the Unix socket, host key checked strictly.
    // The port is never used: the ProxyCommand makes the connection.
    let mut ssh = sshd.ssh_args(22);
    let host = ssh.pop().expect("user@host");
    ssh.extend([
        "-o".into(),
        format!("ProxyCommand=socat - UNIX-CONNECT:{}", path.display()),
        host,
        "echo".into(),
        "over-unix".into(),
    ]);
    let out = client("ssh", &ssh);
    assert!(out.status.success(), "ssh: {}\nsshd:\n{}", out.stderr_str(), sshd.log());
    assert_eq!(out.stdout_str().trim(), "over-unix");
    wait_log_line(&pm, &["peer=unix:(unnamed)", "backend=\"ssh\"", "connection closed"]);
}

#[test]
fn a_proxy_v2_header_over_a_unix_listener_names_the_tcp_client_and_a_unix_client_goes_upstream_as_local() {
    // nginx reading PROXY headers on TCP and on a Unix socket, answering who they named.
    let web = HttpServer::start_unix("web-pp", true);
    let pm = Pmmux::start(
        &format!(
            "plugin_dir = \"plugins\"\n\
             [[listener]]\naddress = \"unix:{{DIR}}/front.sock\"\naccept_proxy_protocol = [\"user:{uid}\"]\n\
             [[listener]]\naddress = \"unix:{{DIR}}/plain.sock\"\n\
             [[backend]]\nname = \"pp-v1\"\nprotocol = \"http\"\ntarget = \"{tcp}\"\nproxy_protocol = \"v1\"\n\
             [backend.params]\nhost = \"v1.example\"\n\
             [[backend]]\nname = \"pp-v2\"\nprotocol = \"http\"\ntarget = \"unix:{unix}\"\nproxy_protocol = \"v2\"\n\
             [backend.params]\nhost = \"v2.example\"\n",
            uid = euid(),
            tcp = web.addr(),
            unix = web.unix_path().display(),
        ),
        &["http"],
    );
    let (front, plain) = (sock(&pm, "front.sock"), sock(&pm, "plain.sock"));
    wait_unix(&pm, &front);
    wait_unix(&pm, &plain);

    // curl → HAProxy (TCP) → PROXY v2 over front.sock → pmmux → PROXY v1 / v2 → nginx: nginx
    // names curl's own address and port (curl binds a port in a known range).
    let haproxy = Haproxy::front_to(&format!("unix@{}", front.display()), 2);
    for host in ["v1.example", "v2.example"] {
        let out = client(
            "curl",
            &args(&[
                "-sS",
                "--max-time",
                "20",
                "--local-port",
                "31000-31999",
                "-H",
                &format!("Host: {host}"),
                &format!("http://127.0.0.1:{}{PROXY_PROTOCOL_PATH}", haproxy.port()),
            ]),
        );
        let body = out.expect_success(&format!("curl {host} via haproxy"));
        let (ip, port) = body
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{host}: answer {body:?}"));
        let port: u16 = port.parse().unwrap_or_else(|_| panic!("{host}: answer {body:?}"));
        assert_eq!(ip, "127.0.0.1", "{host}: {body}");
        assert!(
            (31000..=31999).contains(&port),
            "{host}: nginx saw port {port}, not curl's"
        );
        let peer = format!("peer=127.0.0.1:{port}");
        wait_log_line(&pm, &[peer.as_str(), "via=unix:(unnamed)", "connection closed"]);
    }

    // A client of plain.sock itself has no address: v1 goes as `PROXY UNKNOWN`, v2 as LOCAL, and
    // nginx accepts both, with no client address.
    for host in ["v1.example", "v2.example"] {
        let body = curl_unix(&plain, host, PROXY_PROTOCOL_PATH.trim_start_matches('/'))
            .expect_success(&format!("curl {host} over plain.sock"));
        assert_eq!(
            body, ":",
            "{host}: nginx should have no PROXY address for a Unix client"
        );
    }

    // plain.sock trusts nobody: a PROXY header there is the client's own bytes, which no backend
    // takes; curl gets nothing.
    let untrusted = Haproxy::front_to(&format!("unix@{}", plain.display()), 2);
    let out = client(
        "curl",
        &args(&[
            "-sS",
            "--max-time",
            "10",
            "-H",
            "Host: v1.example",
            &format!("http://127.0.0.1:{}/", untrusted.port()),
        ]),
    );
    assert!(
        !out.status.success(),
        "an untrusted PROXY header was accepted: {}",
        out.stdout_str()
    );
    wait_log_line(&pm, &["peer=unix:(unnamed)", "no backend matched"]);
}

#[test]
fn failover_and_health_checks_work_against_unix_targets() {
    let web = HttpServer::start_unix("web-a", false);
    let pm = Pmmux::start(
        &format!(
            "plugin_dir = \"plugins\"\n[[listener]]\naddress = \"unix:{{DIR}}/in.sock\"\n\
             [[backend]]\nname = \"gone\"\nprotocol = \"pass\"\ntarget = \"unix:{{DIR}}/missing.sock\"\n\
             [[backend]]\nname = \"web\"\nprotocol = \"pass\"\ntarget = \"unix:{unix}\"\n\
             [[backend]]\nname = \"checked\"\nprotocol = \"pass\"\npriority = \"fallback\"\n\
             target = \"unix:{{DIR}}/later.sock\"\n\
             [backend.health]\ninterval_ms = 200\nfailure_threshold = 2\nrecovery_threshold = 1\n",
            unix = web.unix_path().display(),
        ),
        &[],
    );
    let path = sock(&pm, "in.sock");
    wait_unix(&pm, &path);
    // The first backend's socket does not exist: the same connection fails over to the next one.
    assert_eq!(curl_unix(&path, "x", IDENT_FILE).expect_success("curl"), "web-a");
    wait_log_line(
        &pm,
        &[
            "failed=\"gone\"",
            "to=\"web\"",
            "connect failed; failing over",
            "missing.sock",
        ],
    );
    // Health checks connect to the Unix target: down while its socket is missing, up once it listens.
    wait_log_line(
        &pm,
        &["backend unhealthy: out of routing", "backend=\"checked\"", "later.sock"],
    );
    let _later = std::os::unix::net::UnixListener::bind(sock(&pm, "later.sock")).expect("bind later.sock");
    wait_log_line(&pm, &["backend healthy again", "backend=\"checked\""]);
}

#[test]
fn reload_adds_and_removes_a_unix_listener_and_an_upgrade_hands_it_over() {
    let web = HttpServer::start("web-a");
    let config = |extra: &str, mode: &str| {
        format!(
            "plugin_dir = \"plugins\"\n[[listener]]\naddress = \"unix:{{DIR}}/in.sock\"\nmode = \"{mode}\"\n{extra}\
             [routing]\ndrain_timeout_ms = 2000\n\
             [[backend]]\nname = \"web\"\nprotocol = \"pass\"\ntarget = \"{}\"\n",
            web.addr()
        )
    };
    let pm = Pmmux::start(&config("", "0600"), &[]);
    let (path, second) = (sock(&pm, "in.sock"), sock(&pm, "second.sock"));
    wait_unix(&pm, &path);
    let mode = |p: &Path| std::fs::symlink_metadata(p).map(|m| m.mode() & 0o777).unwrap_or(0);
    assert_eq!(mode(&path), 0o600);

    // Reload: a second Unix listener appears, the first one's mode changes in place.
    pm.write_config(&config("[[listener]]\naddress = \"unix:{DIR}/second.sock\"\n", "0640"));
    pm.signal(libc::SIGHUP);
    wait_unix(&pm, &second);
    assert!(
        eventually(LOG_TIMEOUT, || mode(&path) == 0o640),
        "mode {:o}",
        mode(&path)
    );
    assert_eq!(
        curl_unix(&second, "x", IDENT_FILE).expect_success("curl second"),
        "web-a"
    );
    // Reload without it: its file goes, the first one stays.
    pm.write_config(&config("", "0640"));
    pm.signal(libc::SIGHUP);
    assert!(eventually(LOG_TIMEOUT, || !second.exists()), "{}", pm.log());
    assert!(path.exists());

    // Binary upgrade: the new process takes the socket over; the old one exits without removing
    // the file, and the new one serves on it.
    let old = pm.pid();
    signal_pid(old, libc::SIGUSR2);
    let new = wait_new_pid(&pm, old, LOG_TIMEOUT).unwrap_or_else(|| panic!("no new process; log:\n{}", pm.log()));
    let new_guard = PidGuard(new);
    wait_log_line(&pm, &["using an inherited socket instead of binding", "unix:"]);
    assert!(
        pm.wait_exit(Duration::from_secs(20)).is_some(),
        "the old process did not exit"
    );
    assert!(path.exists(), "the old process removed the socket file it handed over");
    assert_eq!(
        curl_unix(&path, "x", IDENT_FILE).expect_success("curl after the upgrade"),
        "web-a"
    );
    // The new process removes the file at its clean stop.
    assert!(stop_pid(new, Duration::from_secs(10)).is_some_and(|s| s.success()));
    drop(new_guard);
    assert!(!path.exists(), "{}", pm.log());
}

#[test]
fn a_socket_activated_unix_listener_is_matched_by_path_and_its_file_left_to_systemd() {
    let web = HttpServer::start("web-a");
    let dir = temp_dir("unix-activation");
    let path = dir.path().join("act.sock");
    let config = dir.path().join("pmmux.toml");
    std::fs::create_dir_all(dir.path().join("plugins")).expect("plugin folder");
    std::fs::write(
        &config,
        pass_at(&path, &web.addr().to_string()).replace("[[backend]]", "mode = \"0600\"\n[[backend]]"),
    )
    .expect("write the config");
    let mut guard = socket_activated(&[path.display().to_string()], &config, dir.path());
    assert!(
        eventually(SERVER_START_TIMEOUT, || path.exists()),
        "systemd-socket-activate did not bind {}",
        path.display()
    );
    // The first connection starts pmmux, which serves it on the inherited socket.
    assert_eq!(curl_unix(&path, "x", IDENT_FILE).expect_success("curl"), "web-a");
    let log = guard.log();
    assert!(
        log.contains(&format!(
            "using an inherited socket instead of binding address=unix:{}",
            path.display()
        )) && log.contains("from=\"systemd\""),
        "{log}"
    );
    let mode = std::fs::symlink_metadata(&path).expect("stat").mode() & 0o777;
    assert_eq!(
        mode, 0o600,
        "the configured mode applies to the inherited socket's file"
    );
    assert_eq!(curl_unix(&path, "x", IDENT_FILE).expect_success("curl again"), "web-a");
    let status = guard.terminate(Duration::from_secs(10)).expect("pmmux stops");
    assert!(status.success(), "{status}\n{}", guard.log());
    assert!(path.exists(), "pmmux removed a socket file systemd made");
    assert!(!guard.log().contains("socket file removed"), "{}", guard.log());
}
