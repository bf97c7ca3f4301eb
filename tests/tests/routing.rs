//! Routing, end to end: the real `pmmux` binary with real plugins between real clients and real
//! servers on loopback. `ssh-keyscan` / `ssh` → sshd past TLS and HTTP backends, `curl` → two nginx
//! by Host and path, `openssl s_client` / `curl` → two `openssl s_server` by SNI, unmatched clients
//! and the preview limit. Host-side matchers, tiers and strategies are in `strategies.rs`. Bytes are
//! checked end to end with SHA-256.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use pmmux_e2e::*;

// ---------------------------------------------------------------- ssh

#[test]
fn ssh_goes_past_tls_and_http_backends_to_sshd() {
    let sshd = Sshd::start();
    let decoy = TcpSink::start();
    let (pm, port) = start_one(&["tls", "http", "ssh", "echo"], |port| {
        format!(
            r#"{head}
[routing]
# ssh-keyscan waits for the server's banner before sending its own (server speaks first).
probe_timeout_ms = 500
on_timeout = "ssh"
[[backend]]
name = "tls"
protocol = "tls"
target = "{decoy}"
[backend.params]
sni = "ssh.example"
[[backend]]
name = "web"
protocol = "http"
target = "{decoy}"
[backend.params]
host = "ssh.example"
[[backend]]
name = "ssh"
protocol = "ssh"
target = "{sshd}"
[[backend]]
name = "echo"
protocol = "echo"
"#,
            head = listeners(&[format!("127.0.0.1:{port}")]),
            decoy = decoy.addr(),
            sshd = sshd.addr(),
        )
    });

    // The host key printed through pmmux is sshd's own.
    let out = client(
        "ssh-keyscan",
        &args(&["-T", "10", "-p", &port.to_string(), "-t", "ed25519", "127.0.0.1"]),
    );
    let keys = out.expect_success("ssh-keyscan through pmmux");
    assert!(
        sshd.host_key_matches(&keys),
        "keyscan through pmmux printed {keys:?}, not sshd's key {:?}",
        sshd.host_public_key()
    );
    assert!(keys.contains(&format!("[127.0.0.1]:{port} ssh-ed25519 ")), "{keys}");
    wait_log_line(&pm, &["backend=\"ssh\"", "connection closed"]);

    // A real login running a command; the value comes back.
    let mut ssh = sshd.ssh_args(port);
    ssh.extend(args(&["echo", "pmmux-routed-ssh-42"]));
    let out = client("ssh", &ssh);
    let stdout = out.expect_success(&format!("ssh login through pmmux; sshd log:\n{}", sshd.log()));
    assert_eq!(stdout.trim(), "pmmux-routed-ssh-42");
    // ssh speaks first: detected by the ssh plugin (keyscan went by the probe timeout).
    let routed = wait_log_line(&pm, &["backend=\"ssh\"", "routed", "ssh.banner=SSH-2.0-OpenSSH"]);
    assert!(routed.contains("plugin=\"ssh@"), "{routed}");

    // 1 MiB of random stdin through the encrypted session, checksummed by the remote side.
    let data = random_bytes(1 << 20);
    let mut ssh = sshd.ssh_args(port);
    ssh.push("sha256sum".into());
    let out = run_with_input("ssh", &ssh, &data, CLIENT_TIMEOUT);
    let stdout = out.expect_success("ssh sha256sum through pmmux");
    assert_eq!(stdout.split_whitespace().next(), Some(sha256_hex(&data).as_str()));

    assert_eq!(decoy.connections(), 0, "an ssh client reached the tls/http target");
    wait_log_count(&pm, &["backend=\"ssh\"", "connection closed"], 3);
    assert!(log_lines(&pm, &["backend=\"echo\""]).is_empty(), "{}", pm.log());
}

// ---------------------------------------------------------------- http

#[test]
fn http_routes_by_host_and_path_prefix_to_two_nginx() {
    let a = HttpServer::start("web-a");
    let b = HttpServer::start("web-b");
    let sum_a = a.add_random_file("big.bin", 8 << 20);
    let sum_b = b.add_random_file("big.bin", 8 << 20);
    a.add_file("pp/id.txt", b"path-prefix-a");
    let (pm, port) = start_one(&["http"], |port| {
        format!(
            r#"{head}
[[backend]]
name = "by-path"
protocol = "http"
target = "{a}"
[backend.params]
path_prefix = "/pp/"
[[backend]]
name = "host-a"
protocol = "http"
target = "{a}"
[backend.params]
host = "a.example"
[[backend]]
name = "host-b"
protocol = "http"
target = "{b}"
[backend.params]
host = "b.example"
"#,
            head = listeners(&[format!("127.0.0.1:{port}")]),
            a = a.addr(),
            b = b.addr(),
        )
    });
    let url = |path: &str| a.url_via(port, path);
    let curl = |host: &str, path: &str| {
        client(
            "curl",
            &args(&["-sS", "--max-time", "20", "-H", &format!("Host: {host}"), &url(path)]),
        )
    };

    for (host, server) in [("a.example", &a), ("b.example", &b)] {
        let body = curl(host, IDENT_FILE).expect_success(&format!("curl {host}"));
        assert_eq!(body, server.name(), "Host {host} reached the wrong server");
    }
    for (host, sum) in [("a.example", &sum_a), ("b.example", &sum_b)] {
        let out = curl(host, "big.bin");
        assert!(out.status.success(), "curl {host} big.bin: {}", out.stderr_str());
        assert_eq!(out.stdout.len(), 8 << 20, "{host}: length");
        assert_eq!(&sha256_hex(&out.stdout), sum, "{host}: checksum");
    }
    // Host with a port matches a pattern without one.
    let body = curl(&format!("b.example:{port}"), IDENT_FILE).expect_success("curl b.example:port");
    assert_eq!(body, "web-b");

    // The path backend is asked first: it wins even for Host b.example.
    let body = curl("b.example", "pp/id.txt").expect_success("curl /pp/ with Host b.example");
    assert_eq!(body, "path-prefix-a");
    assert!(
        !b.access_log().contains("/pp/"),
        "b saw a /pp/ request:\n{}",
        b.access_log()
    );
    wait_log_line(
        &pm,
        &["backend=\"by-path\"", "http.path=/pp/id.txt", "http.host=b.example"],
    );

    // Three requests reached each server (nginx logs a request just after answering it).
    let counts = || (a.access_log().lines().count(), b.access_log().lines().count());
    assert!(
        eventually(LOG_TIMEOUT, || counts() == (3, 3)),
        "access log lines: {:?}",
        counts()
    );

    // A Host nobody serves: closed with nothing sent back, the backends asked named.
    let out = curl("c.example", IDENT_FILE);
    assert!(
        !out.status.success(),
        "curl with an unserved Host succeeded: {}",
        out.stdout_str()
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout_str());
    let line = wait_log_line(&pm, &["no backend matched"]);
    assert!(line.contains(r#"asked=["by-path", "host-a", "host-b"]"#), "{line}");
    assert_eq!(counts(), (3, 3), "an unmatched request reached nginx");
}

// ---------------------------------------------------------------- tls

#[test]
fn tls_routes_by_sni_without_terminating() {
    let a = TlsServer::start("a.example");
    let b = TlsServer::start("b.example");
    let data_a = random_bytes(2 << 20);
    let data_b = random_bytes(2 << 20);
    a.add_file("blob.bin", &data_a);
    b.add_file("blob.bin", &data_b);
    let (pm, port) = start_one(&["tls"], |port| {
        format!(
            r#"{head}
[[backend]]
name = "tls-a"
protocol = "tls"
target = "{a}"
[backend.params]
sni = "a.example"
[[backend]]
name = "tls-b"
protocol = "tls"
target = "{b}"
[backend.params]
sni = ["b.example", "*.b.example"]
"#,
            head = listeners(&[format!("127.0.0.1:{port}")]),
            a = a.addr(),
            b = b.addr(),
        )
    });

    // openssl s_client with SNI a.example sees a's certificate, verified against it.
    let out = client("openssl", &a.s_client_args(port));
    let text = out.stdout_str();
    assert!(
        out.status.success(),
        "s_client a.example: {}\n{}",
        text,
        out.stderr_str()
    );
    assert!(
        text.contains("CN = a.example") || text.contains("CN=a.example"),
        "{text}"
    );
    assert!(!text.contains("b.example"), "{text}");
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    wait_log_line(&pm, &["backend=\"tls-a\"", "routed", "tls.sni=a.example"]);

    // curl verifying b's certificate by name gets b's files, byte for byte.
    let mut curl_b = b.curl_args(port, IDENT_FILE);
    curl_b.insert(0, "-sS".into());
    assert_eq!(client("curl", &curl_b).expect_success("curl b.example"), "b.example");
    for (server, data) in [(&a, &data_a), (&b, &data_b)] {
        let mut curl = server.curl_args(port, "blob.bin");
        curl.insert(0, "-sS".into());
        let out = client("curl", &curl);
        assert!(
            out.status.success(),
            "curl {} blob: {}",
            server.name(),
            out.stderr_str()
        );
        assert_eq!(
            sha256_hex(&out.stdout),
            sha256_hex(data),
            "{} blob checksum",
            server.name()
        );
    }
    wait_log_line(&pm, &["backend=\"tls-b\"", "routed", "tls.sni=b.example"]);

    // A one-label wildcard: x.b.example goes to b (whose certificate does not name it: -k).
    let resolve = format!("x.b.example:{port}:127.0.0.1");
    let url = format!("https://x.b.example:{port}/{IDENT_FILE}");
    let out = client("curl", &args(&["-sS", "-k", "--resolve", &resolve, &url]));
    assert_eq!(out.expect_success("curl x.b.example"), "b.example");
    wait_log_line(&pm, &["backend=\"tls-b\"", "routed", "tls.sni=x.b.example"]);

    // Two labels below b.example are not `*.b.example`; nor is another name: closed.
    for name in ["y.x.b.example", "c.example"] {
        let resolve = format!("{name}:{port}:127.0.0.1");
        let url = format!("https://{name}:{port}/{IDENT_FILE}");
        let out = client("curl", &args(&["-sS", "-k", "--resolve", &resolve, &url]));
        assert!(!out.status.success(), "SNI {name} was served: {}", out.stdout_str());
    }
    wait_log_count(&pm, &["no backend matched", r#"asked=["tls-a", "tls-b"]"#], 2);
    assert!(log_lines(&pm, &["tls.sni=y.x.b.example"]).is_empty(), "{}", pm.log());
}

// ---------------------------------------------------------------- unmatched, preview limit

#[test]
fn a_client_no_backend_matches_is_closed_with_the_backends_named() {
    let sink = TcpSink::start();
    let (pm, port) = start_one(&["ssh"], |port| {
        format!(
            "{}[[backend]]\nname = \"ssh\"\nprotocol = \"ssh\"\ntarget = \"{}\"\n",
            listeners(&[format!("127.0.0.1:{port}")]),
            sink.addr()
        )
    });
    let mut s = connect(loopback(port));
    let me = s.local_addr().expect("local addr");
    s.write_all(b"hello\n").expect("client write");
    let (end, got, _) = wait_closed(&mut s, Duration::from_secs(5));
    assert_eq!(end, End::Closed, "an unmatched client was not closed");
    assert!(got.is_empty(), "an unmatched client got {got:?}");
    let line = wait_log_line(&pm, &[&format!("peer={me}"), "no backend matched"]);
    assert!(
        line.contains(r#"asked=["ssh"]"#) && line.contains("preview_bytes=6"),
        "{line}"
    );
    assert_eq!(sink.connections(), 0);
}

#[test]
fn the_preview_stops_at_its_limit_and_undecided_backends_count_as_no_match() {
    let sink = TcpSink::start();
    let (pm, port) = start_one(&["http"], |port| {
        format!(
            "{}[routing]\npreview_limit = 4096\nprobe_timeout_ms = 1000\n[[backend]]\nname = \"web\"\nprotocol = \"http\"\ntarget = \"{}\"\n",
            listeners(&[format!("127.0.0.1:{port}")]),
            sink.addr()
        )
    });
    // A request line that never ends: the http backend keeps answering NeedMore.
    let mut s = connect(loopback(port));
    let me = s.local_addr().expect("local addr");
    let mut data = b"GET /".to_vec();
    data.extend(std::iter::repeat_n(b'a', 64 * 1024));
    let writer = send_in_background(&s, data);
    let (end, got, _) = wait_closed(&mut s, Duration::from_secs(5));
    assert_eq!(end, End::Closed, "a client filling the preview was not closed");
    assert!(got.is_empty());
    let _ = writer.join();
    let line = wait_log_line(&pm, &[&format!("peer={me}"), "no backend matched"]);
    assert!(line.contains(r#"asked=["web"]"#), "{line}");
    assert!(
        line.contains("preview_bytes=4096"),
        "more than the limit was buffered: {line}"
    );

    // A client that stops sending mid-request line: undecided at the probe timeout, closed.
    let started = Instant::now();
    let mut s = connect(loopback(port));
    let me = s.local_addr().expect("local addr");
    s.write_all(b"GET /").expect("client write");
    let (end, _, _) = wait_closed(&mut s, Duration::from_secs(5));
    let took = started.elapsed();
    assert_eq!(end, End::Closed, "a client that stopped sending was left open");
    assert!(
        took >= Duration::from_millis(990),
        "closed after {took:?}, before the 1000 ms probe timeout"
    );
    let line = wait_log_line(&pm, &[&format!("peer={me}"), "no backend matched"]);
    assert!(line.contains("preview_bytes=5"), "{line}");

    // One that half-closes mid-request line: decided at once.
    let started = Instant::now();
    let mut s = connect(loopback(port));
    let me = s.local_addr().expect("local addr");
    s.write_all(b"GET /").expect("client write");
    s.shutdown(std::net::Shutdown::Write).expect("half-close");
    assert_eq!(wait_closed(&mut s, Duration::from_secs(5)).0, End::Closed);
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(700),
        "closed after {took:?}: not at once (probe timeout 1000 ms)"
    );
    let line = wait_log_line(&pm, &[&format!("peer={me}"), "no backend matched"]);
    assert!(line.contains("preview_bytes=5"), "{line}");
    assert_eq!(sink.connections(), 0);
}
