//! Self-tests of the harness: each real server used directly by real clients (no pmmux), and the process guards.

use std::thread;
use std::time::{Duration, Instant};

use pmmux_e2e::*;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
const TEN_MB: usize = 10 * 1024 * 1024;

/// Poll `cond` every 20 ms for up to `timeout`.
fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------- sshd

#[test]
fn ssh_keyscan_returns_the_sshd_host_key() {
    let sshd = Sshd::start();
    let port = sshd.port().to_string();
    let out = run(
        "ssh-keyscan",
        &["-T", "10", "-p", &port, "-t", "ed25519", "127.0.0.1"],
        CLIENT_TIMEOUT,
    );
    let stdout = out.expect_success("ssh-keyscan");
    assert!(
        sshd.host_key_matches(&stdout),
        "keyscan output {stdout:?} lacks host key {:?}",
        sshd.host_public_key()
    );
    assert!(stdout.contains(&format!("[127.0.0.1]:{port} ssh-ed25519 ")));
}

#[test]
fn ssh_logs_in_with_the_client_key_and_checks_the_host_key() {
    let sshd = Sshd::start();
    let mut ssh = sshd.ssh_args(sshd.port());
    ssh.extend(args(&["echo", "pmmux-e2e-ok"]));
    let out = run("ssh", &ssh, CLIENT_TIMEOUT);
    let stdout = out.expect_success(&format!("ssh login; sshd log:\n{}", sshd.log()));
    assert_eq!(stdout.trim(), "pmmux-e2e-ok");

    // Another sshd has another host key: the strict check against this one's must refuse it.
    let other = Sshd::start();
    let mut wrong = sshd.ssh_args(other.port());
    wrong.extend(args(&["true"]));
    let out = run("ssh", &wrong, CLIENT_TIMEOUT);
    assert!(!out.status.success(), "ssh accepted a different host key");
    assert!(
        out.stderr_str().contains("HOST IDENTIFICATION HAS CHANGED")
            || out.stderr_str().contains("Host key verification failed"),
        "unexpected ssh error: {}",
        out.stderr_str()
    );
}

#[test]
fn dropping_sshd_kills_its_connection_processes() {
    let sshd = Sshd::start();
    let sshd_pid = sshd.pid();
    let mut ssh_args = sshd.ssh_args(sshd.port());
    ssh_args.extend(args(&["sleep", "120"]));
    let mut cmd = std::process::Command::new("ssh");
    cmd.args(&ssh_args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut client = ChildGuard::spawn("ssh client", cmd).expect("spawn ssh");
    // sshd's per-connection processes (in their own session) and the remote `sleep`.
    assert!(
        eventually(Duration::from_secs(20), || {
            descendants(sshd_pid)
                .iter()
                .any(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep"))
        }),
        "the remote command never started; sshd log:\n{}",
        sshd.log()
    );
    let mut tree = descendants(sshd_pid);
    tree.push(sshd_pid);
    drop(sshd);
    for pid in &tree {
        assert!(!process_exists(*pid), "pid {pid} of sshd's tree survived the guard");
    }
    // The client sees its connection closed and ends by itself.
    assert!(client.wait_timeout(Duration::from_secs(20)).is_some());
}

// ---------------------------------------------------------------- nginx

#[test]
fn nginx_serves_a_large_file_with_matching_sha256() {
    let web = HttpServer::start("web-a");
    let sum = web.add_random_file("data/big.bin", 8 * 1024 * 1024);
    let out = run(
        "curl",
        &["-sS", "--fail", "--max-time", "30", &web.url("data/big.bin")],
        CLIENT_TIMEOUT,
    );
    out.expect_success("curl big.bin");
    assert_eq!(out.stdout.len(), 8 * 1024 * 1024);
    assert_eq!(sha256_hex(&out.stdout), sum);
    assert!(web.access_log().contains("GET /data/big.bin"));
}

#[test]
fn two_nginx_servers_are_told_apart() {
    let a = HttpServer::start("web-a");
    let b = HttpServer::start("web-b");
    for server in [&a, &b] {
        let out = run(
            "curl",
            &["-sS", "--fail", "-D", "-", &server.url(IDENT_FILE)],
            CLIENT_TIMEOUT,
        );
        let text = out.expect_success("curl whoami");
        assert!(text.ends_with(&format!("\r\n\r\n{}", server.name())), "{text:?}");
        assert!(
            text.to_ascii_lowercase()
                .contains(&format!("x-server-name: {}", server.name())),
            "{text:?}"
        );
    }
    // A missing file is a 404 that still names the server.
    let out = run(
        "curl",
        &["-sS", "-o", "/dev/null", "-w", "%{http_code}", &a.url("nope")],
        CLIENT_TIMEOUT,
    );
    assert_eq!(out.stdout_str(), "404");
}

// ---------------------------------------------------------------- TLS

#[test]
fn openssl_s_client_sees_the_tls_server_certificate() {
    let tls = TlsServer::start("alpha.test");
    let out = run("openssl", &tls.s_client_args(tls.port()), CLIENT_TIMEOUT);
    let text = out.expect_success("openssl s_client");
    // OpenSSL 3.0 prints "subject=CN = alpha.test", later versions "subject=CN=alpha.test".
    assert!(text.replace(' ', "").contains("subject=CN=alpha.test"), "{text}");
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
}

#[test]
fn curl_fetches_over_tls_by_name_and_tells_servers_apart() {
    let alpha = TlsServer::start("alpha.test");
    let beta = TlsServer::start("beta.test");
    for server in [&alpha, &beta] {
        let mut curl = args(&["-sS", "--fail", "--max-time", "30"]);
        curl.extend(server.curl_args(server.port(), IDENT_FILE));
        let body = run("curl", &curl, CLIENT_TIMEOUT).expect_success("curl https whoami");
        assert_eq!(body, server.name());
    }
    // A payload with a checksum over TLS.
    let data = random_bytes(2 * 1024 * 1024);
    alpha.add_file("blob.bin", &data);
    let mut curl = args(&["-sS", "--fail", "--max-time", "30"]);
    curl.extend(alpha.curl_args(alpha.port(), "blob.bin"));
    let out = run("curl", &curl, CLIENT_TIMEOUT);
    out.expect_success("curl https blob");
    assert_eq!(sha256_hex(&out.stdout), sha256_hex(&data));
    // Asking beta's port for alpha's name fails verification: the certificate tells them apart.
    let mut curl = args(&["-sS", "--max-time", "30"]);
    curl.extend(alpha.curl_args(beta.port(), IDENT_FILE));
    let out = run("curl", &curl, CLIENT_TIMEOUT);
    assert!(!out.status.success(), "curl accepted beta's certificate for alpha");
}

// ---------------------------------------------------------------- in-process servers

#[test]
fn echo_server_round_trips_10_mb() {
    let echo = TcpEcho::start();
    let data = random_bytes(TEN_MB);
    let back = tcp_roundtrip(echo.addr(), &data, CLIENT_TIMEOUT).expect("echo round trip");
    assert_eq!(back.len(), data.len());
    assert_eq!(sha256_hex(&back), sha256_hex(&data));
    assert_eq!(echo.connections(), 1);
}

#[test]
fn sink_server_returns_the_sha256_of_10_mb() {
    let sink = TcpSink::start();
    let data = random_bytes(TEN_MB);
    let reply = tcp_roundtrip(sink.addr(), &data, CLIENT_TIMEOUT).expect("sink round trip");
    assert_eq!(String::from_utf8_lossy(&reply), sha256_hex(&data));
}

#[test]
fn echo_works_on_ipv6_loopback_and_udp() {
    let echo = TcpEcho::start_on("[::1]:0").expect("bind [::1]:0");
    let back = tcp_roundtrip(echo.addr(), b"hello v6", CLIENT_TIMEOUT).expect("v6 echo");
    assert_eq!(back, b"hello v6");

    let udp = UdpEcho::start();
    let back = udp_roundtrip(udp.addr(), b"ping", Duration::from_secs(5)).expect("udp echo");
    assert_eq!(back, b"ping");
    assert_eq!(udp.datagrams(), 1);
}

// ---------------------------------------------------------------- guards and helpers

#[test]
fn free_port_and_wait_for_port() {
    let port = free_port();
    assert_ne!(port, 0);
    assert!(!wait_for_port(loopback(port), Duration::from_millis(200)));
    let echo = TcpEcho::start();
    assert!(wait_for_port(echo.addr(), Duration::from_secs(5)));
    assert!(tcp_listening(echo.addr()));
    assert!(pid_listens_tcp(std::process::id(), echo.addr()));
}

#[test]
fn child_guard_kills_the_whole_tree_without_zombies() {
    // A shell with a background child, a child in a new session, and a foreground child.
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "sleep 300 & setsid sleep 300 & sleep 300; wait"]);
    let guard = ChildGuard::spawn("tree", cmd).expect("spawn sh");
    let leader = guard.pid();
    assert!(
        eventually(Duration::from_secs(10), || descendants(leader).len() >= 3),
        "children did not start: {:?}",
        descendants(leader)
    );
    let mut tree = descendants(leader);
    tree.push(leader);
    drop(guard);
    for pid in &tree {
        assert!(
            !process_exists(*pid),
            "pid {pid} survived (zombie: {})",
            is_zombie(*pid)
        );
    }
}

#[test]
fn run_kills_a_command_at_its_timeout() {
    let started = Instant::now();
    let out = run("sleep", &["30"], Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!out.status.success());
    assert!(out.stderr_str().contains("killed after"), "{}", out.stderr_str());

    let out = run_with_input("sha256sum", &["-"], b"abc", CLIENT_TIMEOUT);
    assert!(out.expect_success("sha256sum").starts_with(&sha256_hex(b"abc")));
}

#[test]
fn artifact_paths_point_into_the_target_folder() {
    assert!(workspace_root().join("Cargo.toml").is_file());
    assert!(debug_dir().starts_with(target_dir()));
    assert_eq!(plugin_file_name("ssh"), "libpmmux_ssh.so");
    assert_eq!(plugin_file_name("pmmux_http_response"), "libpmmux_http_response.so");
    assert_eq!(plugin_file_name("libpmmux_tls.so"), "libpmmux_tls.so");
    let missing = std::panic::catch_unwind(|| artifact("libpmmux_does_not_exist.so"));
    let message = missing.expect_err("a missing artifact panics");
    let text = message.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(text.contains("cargo build --workspace"), "{text}");
}

#[test]
fn wait_listening_fails_fast_when_the_port_is_taken() {
    let dir = temp_dir("taken");
    let (cert, key) = self_signed_cert(dir.path(), "taken.test");
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = squatter.local_addr().expect("addr");
    let mut cmd = std::process::Command::new("openssl");
    cmd.arg("s_server")
        .arg("-accept")
        .arg(addr.to_string())
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .arg("-WWW");
    let log = dir.path().join("s_server.log");
    let mut guard = ChildGuard::spawn_logged("s_server", cmd, &log).expect("spawn openssl");
    let started = Instant::now();
    let err = guard
        .wait_listening(addr, Duration::from_secs(10))
        .expect_err("someone else's listener must not count");
    assert!(started.elapsed() < Duration::from_secs(8), "{err}");
    assert!(err.contains("exited"), "{err}");
}

#[test]
fn wait_listening_ignores_a_listener_of_another_process() {
    let echo = TcpEcho::start(); // listening, but in this test process
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("30");
    let mut guard = ChildGuard::spawn("sleep", cmd).expect("spawn sleep");
    let err = guard
        .wait_listening(echo.addr(), Duration::from_millis(300))
        .expect_err("sleep does not listen");
    assert!(err.contains("did not listen"), "{err}");
}
