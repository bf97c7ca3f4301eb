//! Relaying and serving, end to end, with SHA-256 checks: bulk data through a `pass` forward, the
//! `echo` plugin serving a round trip, `noop`, IPv6 listeners and targets, several listeners in one
//! config, targets that refuse, do not accept or are named by host name, clients that send nothing
//! (`on_timeout`), and the shipped default configuration answering curl.

mod common;

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use pmmux_e2e::*;

const MIB: usize = 1024 * 1024;

#[test]
fn pass_relays_64_mib_to_a_sink_intact() {
    let sink = TcpSink::start();
    let (pm, port) = start_one(&[], |port| {
        format!(
            "{}[[backend]]\nname = \"bulk\"\nprotocol = \"pass\"\ntarget = \"{}\"\n",
            listeners(&[format!("127.0.0.1:{port}")]),
            sink.addr()
        )
    });
    let data = random_bytes(64 * MIB);
    let got = tcp_roundtrip(loopback(port), &data, Duration::from_secs(60)).expect("64 MiB through pmmux");
    assert_eq!(
        String::from_utf8_lossy(&got),
        sha256_hex(&data),
        "the sink saw other bytes"
    );
    assert_eq!(sink.connections(), 1);
    let line = wait_log_line(&pm, &["backend=\"bulk\"", "connection closed"]);
    assert!(
        line.contains(&format!("bytes_up={}", 64 * MIB)) && line.contains("bytes_down=64"),
        "{line}"
    );
}

#[test]
fn an_upstream_that_half_closes_first_still_receives_the_client_bytes() {
    // The server says goodbye and shuts its sending side, then hashes what the client still sends.
    let received: Arc<Mutex<Option<String>>> = Arc::default();
    let server = {
        let received = Arc::clone(&received);
        TcpServer::start_with("127.0.0.1:0", move |mut s| {
            use std::io::Read;
            let _ = s.write_all(b"bye");
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut all = Vec::new();
            if s.read_to_end(&mut all).is_ok() {
                *received.lock().unwrap_or_else(|p| p.into_inner()) = Some(sha256_hex(&all));
            }
        })
        .expect("start server")
    };
    let (pm, port) = start_one(&[], |port| {
        format!(
            "{}[[backend]]\nname = \"half\"\nprotocol = \"pass\"\ntarget = \"{}\"\n",
            listeners(&[format!("127.0.0.1:{port}")]),
            server.addr()
        )
    });
    let mut s = connect(loopback(port));
    let mut bye = Vec::new();
    std::io::Read::read_to_end(&mut s, &mut bye).expect("read until the server's half-close");
    assert_eq!(bye, b"bye");
    // The client's direction is still open through pmmux.
    let data = random_bytes(2 * MIB);
    s.write_all(&data).expect("write after the server's half-close");
    s.shutdown(std::net::Shutdown::Write).expect("half-close");
    let want = sha256_hex(&data);
    let got = || received.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(
        eventually(CLIENT_TIMEOUT, || got().is_some()),
        "the server never saw the client's end"
    );
    assert_eq!(got().as_deref(), Some(want.as_str()));
    let line = wait_log_line(&pm, &["backend=\"half\"", "connection closed"]);
    assert!(line.contains(&format!("bytes_up={} bytes_down=3", 2 * MIB)), "{line}");
}

#[test]
fn echo_plugin_serves_a_16_mib_round_trip() {
    let (pm, port) = start_one(&["echo"], |port| {
        format!(
            "{}[[backend]]\nname = \"echo\"\nprotocol = \"echo\"\n",
            listeners(&[format!("127.0.0.1:{port}")])
        )
    });
    let data = random_bytes(16 * MIB);
    let got = tcp_roundtrip(loopback(port), &data, Duration::from_secs(60)).expect("16 MiB echo round trip");
    assert_eq!(got.len(), data.len());
    assert_eq!(sha256_hex(&got), sha256_hex(&data));
    let line = wait_log_line(&pm, &["backend=\"echo\"", "connection closed"]);
    let n = 16 * MIB;
    assert!(line.contains(&format!("bytes_up={n} bytes_down={n}")), "{line}");
}

#[test]
fn ipv6_listener_relays_to_an_ipv6_target() {
    if !ipv6_available() {
        eprintln!("NOTE: skipping ipv6_listener_relays_to_an_ipv6_target: [::1] cannot be bound here");
        return;
    }
    let echo = TcpEcho::start_on("[::1]:0").expect("echo on [::1]");
    let sink = TcpSink::start_on("[::1]:0").expect("sink on [::1]");
    let mut last_err = String::new();
    for _ in 0..5 {
        let port = free_port_v6();
        let config = format!(
            r#"{head}
[[backend]]
name = "v6-ssh"
protocol = "ssh"
target = "{sink}"
[[backend]]
name = "v6"
protocol = "pass"
target = "{echo}"
"#,
            head = listeners(&[format!("[::1]:{port}")]),
            sink = sink.addr(),
            echo = echo.addr(),
        );
        let pm = Pmmux::start(&config, &["ssh"]);
        let addr = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
        if let Err(e) = pm.try_wait_listening(addr, PMMUX_START_TIMEOUT) {
            assert!(!pm.is_running() && e.contains("cannot listen on"), "{e}");
            last_err = e;
            continue;
        }
        // The ssh backend is first: it must see the bytes of the v6 client (NeedMore on "S").
        let mut ssh = b"SSH-2.0-v6\r\n".to_vec();
        ssh.extend(random_bytes(MIB));
        let got = tcp_roundtrip(addr, &ssh, CLIENT_TIMEOUT).expect("ssh over [::1]");
        assert_eq!(String::from_utf8_lossy(&got), sha256_hex(&ssh));
        let data = random_bytes(4 * MIB);
        let got = tcp_roundtrip(addr, &data, CLIENT_TIMEOUT).expect("round trip over [::1]");
        assert_eq!(sha256_hex(&got), sha256_hex(&data));
        assert_eq!((sink.connections(), echo.connections()), (1, 1));
        let line = wait_log_line(&pm, &["backend=\"v6\"", "connection closed"]);
        assert!(line.contains("peer=[::1]:"), "{line}");
        return;
    }
    panic!("pmmux could not bind [::1] on a fresh port 5 times: {last_err}");
}

#[test]
fn several_listeners_in_one_config_each_relay() {
    let echo = TcpEcho::start();
    let (pm, ports) = start_pmmux(3, &["echo"], |p| {
        let addrs: Vec<String> = p.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!(
            r#"{head}
[[listener]]
address = "127.0.0.1:{p3}"
name = "named"
[[backend]]
name = "hello"
protocol = "pass"
target = "{echo}"
[backend.match]
local_port = [{p1}, "{p2}-{p2}"]
[[backend]]
name = "echo-plugin"
protocol = "echo"
"#,
            head = listeners(&addrs[..2]),
            p1 = p[0],
            p2 = p[1],
            p3 = p[2],
            echo = echo.addr(),
        )
    });
    for (i, &port) in ports.iter().enumerate() {
        let data = random_bytes(2 * MIB + i);
        let got = tcp_roundtrip(loopback(port), &data, CLIENT_TIMEOUT).expect("round trip");
        assert_eq!(sha256_hex(&got), sha256_hex(&data), "listener {port}");
    }
    // Two of them forwarded to the echo server; the third was served by the echo plugin.
    assert_eq!(echo.connections(), 2);
    for p in &ports[..2] {
        wait_log_line(
            &pm,
            &[
                &format!("listener=127.0.0.1:{p}"),
                "backend=\"hello\"",
                "connection closed",
            ],
        );
    }
    wait_log_line(&pm, &["listener=named", "backend=\"echo-plugin\"", "connection closed"]);
}

#[test]
fn noop_reads_and_discards_until_the_client_closes() {
    let (pm, port) = start_one(&[], |port| {
        format!(
            "{}[[backend]]\nname = \"void\"\nprotocol = \"noop\"\n",
            listeners(&[format!("127.0.0.1:{port}")])
        )
    });
    let data = random_bytes(3 * MIB + 7);
    let got = tcp_roundtrip(loopback(port), &data, CLIENT_TIMEOUT).expect("send to noop");
    assert!(got.is_empty(), "noop sent {} bytes back", got.len());
    let line = wait_log_line(&pm, &["backend=\"void\"", "connection closed"]);
    assert!(
        line.contains(&format!("bytes_up={} bytes_down=0", data.len())),
        "{line}"
    );
}

// ---------------------------------------------------------------- targets down

#[test]
fn a_refused_target_closes_the_client_and_is_logged() {
    let refused = RefusedPort::new(); // bound, never listening: connects are refused
    let dead = refused.port();
    let (pm, port) = start_one(&[], |port| {
        format!(
            "{}[[backend]]\nname = \"down\"\nprotocol = \"pass\"\ntarget = \"127.0.0.1:{dead}\"\n",
            listeners(&[format!("127.0.0.1:{port}")])
        )
    });
    let mut s = connect(loopback(port));
    let me = s.local_addr().expect("local addr");
    let _ = send_in_background(&s, b"anybody there?\n".to_vec());
    let (end, got, _) = wait_closed(&mut s, Duration::from_secs(5));
    assert_eq!(end, End::Closed, "the client of a dead target was left open");
    assert!(got.is_empty());
    let line = wait_log_line(&pm, &[&format!("peer={me}"), "connection failed"]);
    assert!(
        line.contains(&format!("upstream 127.0.0.1:{dead}: connect failed"))
            && line.contains("backend=\"down\"")
            && line.contains("side=\"upstream\""),
        "{line}"
    );
}

#[test]
fn a_target_host_name_is_resolved_at_connect_time() {
    let sink = TcpSink::start();
    let (pm, port) = start_one(&[], |port| {
        format!(
            "{}[[backend]]\nname = \"named\"\nprotocol = \"pass\"\ntarget = \"localhost:{}\"\n",
            listeners(&[format!("127.0.0.1:{port}")]),
            sink.port()
        )
    });
    // localhost may resolve to ::1 first, where nothing listens: the next address is tried.
    let data = random_bytes(1 << 20);
    let got = tcp_roundtrip(loopback(port), &data, CLIENT_TIMEOUT).expect("round trip to localhost");
    assert_eq!(String::from_utf8_lossy(&got), sha256_hex(&data));
    wait_log_line(&pm, &["backend=\"named\"", "connection closed"]);
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so connects hang.
fn unresponsive_listener() -> (TcpListener, Vec<std::net::TcpStream>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    // SAFETY: listen(2) on a socket we own; only changes its backlog.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0, "listen backlog 0");
    let mut held = Vec::new();
    for _ in 0..16 {
        match std::net::TcpStream::connect_timeout(&l.local_addr().expect("addr"), Duration::from_millis(300)) {
            Ok(s) => held.push(s),
            Err(_) => return (l, held),
        }
    }
    panic!("the accept queue never filled after {} connections", held.len());
}

#[test]
fn a_target_that_does_not_accept_times_out_at_connect_timeout() {
    let (stuck, _held) = unresponsive_listener();
    let target = stuck.local_addr().expect("addr");
    let (pm, port) = start_one(&[], |port| {
        format!(
            "{}[routing]\nconnect_timeout_ms = 600\n[[backend]]\nname = \"stuck\"\nprotocol = \"pass\"\ntarget = \"{target}\"\n",
            listeners(&[format!("127.0.0.1:{port}")])
        )
    });
    let started = Instant::now();
    let mut s = connect(loopback(port));
    let me = s.local_addr().expect("local addr");
    let (end, _, _) = wait_closed(&mut s, Duration::from_secs(10));
    let took = started.elapsed();
    assert_eq!(end, End::Closed);
    assert!(
        took >= Duration::from_millis(550) && took < Duration::from_secs(4),
        "closed after {took:?}, connect_timeout_ms is 600"
    );
    let line = wait_log_line(&pm, &[&format!("peer={me}"), "connection failed"]);
    assert!(
        line.contains(&format!("upstream {target}: connect timed out after 600 ms")),
        "{line}"
    );
}

// ---------------------------------------------------------------- clients that send nothing

/// A server that speaks first ("220 banner\r\n"), then echoes.
fn banner_server() -> TcpServer {
    TcpServer::start_with("127.0.0.1:0", |mut s| {
        use std::io::Read;
        if s.write_all(b"220 banner\r\n").is_err() {
            return;
        }
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = s.shutdown(std::net::Shutdown::Write);
    })
    .expect("start banner server")
}

#[test]
fn a_silent_client_goes_to_the_on_timeout_backend() {
    let banner = banner_server();
    let sink = TcpSink::start();
    let (pm, port) = start_one(&["ssh"], |port| {
        format!(
            r#"{head}
[routing]
probe_timeout_ms = 300
on_timeout = "banner"
[[backend]]
name = "ssh"
protocol = "ssh"
target = "{sink}"
[[backend]]
name = "banner"
protocol = "pass"
target = "{banner}"
# In the lowest tier, so it takes nothing the ssh backend is still reading.
priority = "fallback"
"#,
            head = listeners(&[format!("127.0.0.1:{port}")]),
            sink = sink.addr(),
            banner = banner.addr(),
        )
    });
    // Server-speaks-first clients wait for a greeting: with on_timeout the kernel hands every
    // connection over at once (no TCP_DEFER_ACCEPT).
    let defer = listener_sockopt(pm.pid(), loopback(port), libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT);
    assert_eq!(defer, Some(0), "TCP_DEFER_ACCEPT on a listener with on_timeout");
    let started = Instant::now();
    let mut s = connect(loopback(port));
    let greeting = read_n(&mut s, 12);
    let waited = started.elapsed();
    assert_eq!(greeting, b"220 banner\r\n");
    assert!(
        waited >= Duration::from_millis(290) && waited < Duration::from_secs(3),
        "the banner arrived after {waited:?}; probe_timeout_ms is 300"
    );
    // Now the client talks, through the same relay.
    echo_exchange(&mut s, b"EHLO pmmux.test\r\n");
    echo_exchange(&mut s, &random_bytes(256 * 1024));
    s.shutdown(std::net::Shutdown::Write).expect("half-close");
    assert_eq!(wait_closed(&mut s, CLIENT_TIMEOUT).0, End::Closed);
    assert_eq!((banner.connections(), sink.connections()), (1, 0));
    wait_log_line(&pm, &["backend=\"banner\"", "connection closed"]);

    // An ssh client still gets the ssh backend, not the timeout one.
    let mut ssh = b"SSH-2.0-OpenSSH_9.2p1\r\n".to_vec();
    ssh.extend(random_bytes(64 * 1024));
    let got = tcp_roundtrip(loopback(port), &ssh, CLIENT_TIMEOUT).expect("ssh round trip");
    assert_eq!(String::from_utf8_lossy(&got), sha256_hex(&ssh));
    assert_eq!((banner.connections(), sink.connections()), (1, 1));
}

#[test]
fn a_silent_client_without_on_timeout_is_closed_and_logged() {
    let sink = TcpSink::start();
    let (pm, port) = start_one(&["ssh"], |port| {
        format!(
            "{}[routing]\nprobe_timeout_ms = 300\n[[backend]]\nname = \"ssh\"\nprotocol = \"ssh\"\ntarget = \"{}\"\n",
            listeners(&[format!("127.0.0.1:{port}")]),
            sink.addr()
        )
    });
    // No on_timeout: the kernel holds a connection until its first bytes (TCP_DEFER_ACCEPT), about
    // a second for one that stays silent, then pmmux's probe timeout runs.
    let defer = listener_sockopt(pm.pid(), loopback(port), libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT);
    assert!(defer.is_some_and(|s| s > 0), "TCP_DEFER_ACCEPT is {defer:?}");
    let started = Instant::now();
    let mut s = connect(loopback(port));
    let me = s.local_addr().expect("local addr");
    let (end, got, _) = wait_closed(&mut s, Duration::from_secs(8));
    let waited = started.elapsed();
    assert_eq!(end, End::Closed, "a silent client was left open");
    assert!(got.is_empty());
    assert!(
        waited >= Duration::from_millis(290) && waited < Duration::from_secs(5),
        "closed after {waited:?}; probe_timeout_ms is 300, after up to ~3 s held by the kernel"
    );
    let line = wait_log_line(
        &pm,
        &[&format!("peer={me}"), "client sent nothing within the probe timeout"],
    );
    assert!(line.contains("timeout_ms=300"), "{line}");
    assert_eq!(sink.connections(), 0);
}

// ---------------------------------------------------------------- the shipped default config

/// `config/pmmux.toml` with its listen port replaced, and the `body` it answers HTTP with.
fn default_config(port: u16) -> (String, String) {
    let path = workspace_root().join("config/pmmux.toml");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(
        text.contains("address = \"127.0.0.1:8443\""),
        "the default config moved off 8443"
    );
    let body = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("body = \""))
        .and_then(|b| b.strip_suffix('"'))
        .expect("a body line in the default config")
        .replace("\\n", "\n");
    (text.replace("127.0.0.1:8443", &format!("127.0.0.1:{port}")), body)
}

#[test]
fn the_default_config_answers_http_and_echoes_the_rest() {
    let mut body = String::new();
    let (pm, port) = start_one(&["echo", "http", "http_response", "ssh", "tls"], |port| {
        let (config, b) = default_config(port);
        body = b;
        config
    });
    let url = format!("http://127.0.0.1:{port}/");

    let out = client("curl", &args(&["-sS", "-i", "--max-time", "10", &url]));
    let text = out.expect_success("curl the default config");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let (_, got_body) = text.split_once("\r\n\r\n").expect("a head and a body");
    assert_eq!(got_body, body);

    // Three requests on one kept-alive connection: one connect, then two reuses.
    let out = client(
        "curl",
        &args(&[
            "-sS",
            "--max-time",
            "10",
            "-w",
            "[%{http_code} %{num_connects}]",
            &url,
            &url,
            &url,
        ]),
    );
    let text = out.expect_success("curl keep-alive");
    let expected = format!("{body}[200 1]{body}[200 0]{body}[200 0]");
    assert_eq!(text, expected);
    // That connection and the first: two served by `web`.
    wait_log_count(&pm, &["backend=\"web\"", "connection closed"], 2);
    assert_eq!(log_lines(&pm, &["backend=\"web\"", "connection closed"]).len(), 2);

    // Pipelined: three requests in one write, three answers in order, closed after the third.
    let mut s = connect(loopback(port));
    let req = "GET /p HTTP/1.1\r\nHost: pmmux.test\r\n\r\n";
    s.write_all(format!("{req}{req}{}", req.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")).as_bytes())
        .expect("write pipelined requests");
    let (end, got, _) = wait_closed(&mut s, CLIENT_TIMEOUT);
    assert_eq!(end, End::Closed, "not closed after `Connection: close`");
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{text}");
    assert_eq!(text.matches(body.as_str()).count(), 3, "{text}");
    assert!(text.ends_with(body.as_str()), "{text}");

    // The README's example, literally: socat's bytes come back.
    let out = run_with_input(
        "socat",
        &args(&["-t", "5", "-", &format!("TCP:127.0.0.1:{port}")]),
        b"hello\n",
        CLIENT_TIMEOUT,
    );
    assert_eq!(out.expect_success("socat to the default config"), "hello\n");

    // Any other bytes are echoed, all of them.
    let mut data = b"\x00binary ".to_vec();
    data.extend(random_bytes(4 * MIB));
    let got = tcp_roundtrip(loopback(port), &data, CLIENT_TIMEOUT).expect("echo round trip");
    assert_eq!(sha256_hex(&got), sha256_hex(&data));
    wait_log_count(&pm, &["backend=\"echo\"", "connection closed"], 2);
}
