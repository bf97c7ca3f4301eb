//! Metrics and status pages, end to end: real traffic through the real host (curl through the
//! `http` plugin to nginx, a client no backend matches, a client that stays silent past the probe
//! timeout, UDP datagrams through a `pass` flow to an echo server), then `/metrics` read with curl
//! and checked with a strict exposition-format reader, the HTML page, the JSON status, a slow admin
//! client, oversized heads and other methods, and the refusal of a non-loopback admin address.
//! `promtool check metrics` (Debian package `prometheus`) checks the exposition too.

mod common;
mod ops_common;
mod udp_common;

/// The UDP listener's name: quotes and a backslash, escaped in metrics labels and in HTML.
const DGRAM: &str = r#"dgram "udp" \ 1"#;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{connect, wait_closed, End};
use ops_common::*;
use pmmux_e2e::prometheus::Sample;
use pmmux_e2e::*;
use udp_common::{client_socket, exchange, start, Bind};

#[test]
fn metrics_count_real_traffic_by_listener_backend_and_outcome() {
    let web = HttpServer::start("web-a");
    let echo = UdpEcho::start();
    let (pm, p) = start(&["http"], &[Bind::Tcp, Bind::Udp, Bind::Tcp], |p| {
        format!(
            "plugin_dir = \"plugins\"\n[routing]\nprobe_timeout_ms = 1000\n\
             [[listener]]\naddress = \"127.0.0.1:{}\"\nname = \"front\"\n\
             [[listener]]\naddress = \"127.0.0.1:{}\"\nname = '{DGRAM}'\ntransport = [\"udp\"]\n\
             [admin]\naddress = \"127.0.0.1:{}\"\n\
             [[backend]]\nname = \"web\"\nprotocol = \"http\"\ntarget = \"{}\"\n\
             [[backend]]\nname = \"udp-echo\"\nprotocol = \"pass\"\ntarget = \"{}\"\n\
             [backend.match]\nlocal_port = {}\n",
            p[0],
            p[1],
            p[2],
            web.addr(),
            echo.addr(),
            p[1]
        )
    });
    let (front, dgram, admin) = (p[0], p[1], p[2]);
    let before = metrics(admin);
    assert_eq!(before.value("pmmux_detection_seconds_count", &[]), 0.0);

    // Three HTTP requests through pmmux to nginx.
    for _ in 0..3 {
        let out = run(
            "curl",
            &["-sS", "--max-time", "20", &web.url_via(front, IDENT_FILE)],
            CURL_TIMEOUT,
        );
        assert_eq!(out.expect_success("curl through pmmux").trim(), "web-a");
    }
    // A client no backend matches, and one that says nothing within the probe timeout.
    let mut garbage = connect(loopback(front));
    garbage
        .write_all(b"\x00\x01\x02 not a protocol \r\n\r\n")
        .expect("write");
    garbage.shutdown(Shutdown::Write).expect("half-close");
    assert_eq!(wait_closed(&mut garbage, Duration::from_secs(10)).0, End::Closed);
    let mut silent = connect(loopback(front));
    let (end, _, after) = wait_closed(&mut silent, Duration::from_secs(10));
    assert_eq!(end, End::Closed);
    assert!(
        after >= Duration::from_millis(900),
        "closed before the probe timeout: {after:?}"
    );
    // Five datagrams from one client: one UDP flow.
    let client = client_socket(Duration::from_secs(5));
    for i in 0..5u8 {
        assert_eq!(exchange(&client, loopback(dgram), &[b'd', i]), [b'd', i]);
    }

    let front_web = |outcome| [("listener", "front"), ("backend", "web"), ("outcome", outcome)];
    let front_none = |outcome| [("listener", "front"), ("backend", ""), ("outcome", outcome)];
    drop((garbage, silent));
    // Closed connections linger up to a second (pmmux drains what a refused client still sends).
    let m = wait_metrics(admin, "three closed web connections, none open", |m| {
        m.get("pmmux_connections_total", &front_web("closed")) == Some(3.0)
            && m.get("pmmux_connections_active", &[("listener", "front")]) == Some(0.0)
    });
    for failed in ["client_error", "upstream_error", "plugin_error", "config_error"] {
        assert_eq!(m.value("pmmux_connections_total", &front_web(failed)), 0.0);
    }
    assert_eq!(m.value("pmmux_connections_total", &front_none("no_match")), 1.0);
    assert_eq!(m.value("pmmux_connections_total", &front_none("timeout")), 1.0);
    assert_eq!(m.value("pmmux_connections_total", &front_none("refused_limit")), 0.0);
    assert_eq!(m.value("pmmux_connections_active", &[("listener", "front")]), 0.0);
    assert_eq!(m.value("pmmux_preview_timeouts_total", &[]), 1.0);

    // nginx's answers are counted down, the requests up.
    let up = m.value("pmmux_bytes_total", &[("backend", "web"), ("direction", "up")]);
    let down = m.value("pmmux_bytes_total", &[("backend", "web"), ("direction", "down")]);
    assert!(up >= 3.0 * "GET /whoami.txt HTTP/1.1\r\n".len() as f64, "up {up}");
    assert!(down >= 3.0 * "HTTP/1.1 200 OK\r\n\r\nweb-a".len() as f64, "down {down}");

    // The three requests and the no-match were decided; the silent client was not.
    assert_eq!(m.types["pmmux_detection_seconds"], "histogram");
    assert_eq!(m.value("pmmux_detection_seconds_count", &[]), 4.0);
    assert_eq!(m.value("pmmux_detection_seconds_bucket", &[("le", "+Inf")]), 4.0);
    let sum = m.value("pmmux_detection_seconds_sum", &[]);
    assert!(sum > 0.0 && sum < 4.0 * 1.0, "detection sum {sum} s");

    // Plugins: the one loaded, its versions, no errors.
    let info: Vec<&Sample> = m.samples.iter().filter(|s| s.name == "pmmux_plugin_info").collect();
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(info[0].labels["plugin"], "http");
    assert!(info[0].labels["file"].ends_with(&plugin_file_name("http")), "{info:?}");
    assert!(!info[0].labels["version"].is_empty());
    assert_eq!(info[0].value, 1.0);
    assert_eq!(m.value("pmmux_plugin_versions_mapped", &[("plugin", "http")]), 1.0);
    assert_eq!(m.sum("pmmux_plugin_errors_total", &[("backend", "web")]), 0.0);
    assert!(m.samples.iter().any(|s| s.name == "pmmux_plugin_errors_total"
        && s.labels["backend"] == "web"
        && s.labels["plugin"].starts_with("http@")));

    // UDP: one flow, five datagrams, nothing dropped; the flow is live on its backend.
    let l = [("listener", DGRAM)];
    assert_eq!(m.value("pmmux_udp_flows_total", &l), 1.0);
    assert_eq!(m.value("pmmux_udp_flows_active", &l), 1.0);
    assert_eq!(m.value("pmmux_udp_datagrams_total", &l), 5.0);
    for reason in ["unmatched", "flow_table_full"] {
        let labels = [("listener", DGRAM), ("reason", reason)];
        assert_eq!(m.value("pmmux_udp_datagrams_dropped_total", &labels), 0.0);
    }
    assert_eq!(
        m.value("pmmux_backend_connections_active", &[("backend", "udp-echo")]),
        1.0
    );
    assert_eq!(m.value("pmmux_backend_connections_active", &[("backend", "web")]), 0.0);

    // Process-wide series.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let started = m.value("pmmux_start_time_seconds", &[]);
    assert!(
        started <= now && started > now - 600.0,
        "start time {started}, now {now}"
    );
    for limit in [
        "max_connections",
        "listener_max_connections",
        "max_connections_per_ip",
        "max_previews",
    ] {
        let labels = [("limit", limit), ("listener", "front")];
        assert_eq!(m.value("pmmux_limit_hits_total", &labels), 0.0);
    }
    assert_eq!(m.value("pmmux_accept_errors_total", &[("listener", "front")]), 0.0);
    assert_eq!(m.value("pmmux_config_reloads_total", &[]), 0.0);
    assert_eq!(m.value("pmmux_config_reload_failures_total", &[]), 0.0);
    assert_eq!(m.types["pmmux_connections_total"], "counter");
    assert_eq!(m.types["pmmux_connections_active"], "gauge");
    promtool_check(admin);

    // The HTML page lists backends, plugins and listeners.
    for path in ["/", "/status.html"] {
        let (head, body) = admin_get(admin, path);
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        assert!(head.contains("Content-Type: text/html; charset=utf-8"), "{head}");
        for cell in [
            "<td>web</td>",
            "<td>udp-echo</td>",
            "<td>http</td>",
            "<td>front</td>",
            "<td>dgram &quot;udp&quot; \\ 1</td>",
        ] {
            assert!(body.contains(cell), "{path} lacks {cell}:\n{body}");
        }
    }
    // The JSON status parses and has the live counts.
    let (head, body) = admin_get(admin, "/status");
    assert!(head.contains("Content-Type: application/json"), "{head}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    let backend = |name: &str| {
        status["backends"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["name"] == name))
            .unwrap_or_else(|| panic!("no backend {name} in {status}"))
            .clone()
    };
    assert_eq!(backend("web")["routed"], 3);
    assert_eq!(backend("udp-echo")["live"], 1);
    assert_eq!(status["limits"]["max_connections"], serde_json::Value::Null);
    assert_eq!(status["limits"]["connections"], 0);
    assert!(pm.is_running());
}

#[test]
fn a_slow_admin_client_does_not_hold_the_endpoint() {
    let (pm, p) = common::start_pmmux(2, &[], |p| {
        format!(
            "plugin_dir = \"plugins\"\n[[listener]]\naddress = \"127.0.0.1:{}\"\n[admin]\naddress = \"127.0.0.1:{}\"\n",
            p[0], p[1]
        )
    });
    let admin = p[1];
    // Half a request line, then nothing.
    let mut slow = TcpStream::connect(loopback(admin)).expect("connect admin");
    slow.write_all(b"GET /metr").expect("write");
    let started = Instant::now();
    let m = metrics(admin);
    assert!(m.get("pmmux_preview_timeouts_total", &[]).is_some());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the endpoint waited for the slow client"
    );
    let (end, _, after) = wait_closed(&mut slow, Duration::from_secs(10));
    assert_eq!(end, End::Closed, "the slow client is cut off");
    assert!(after < Duration::from_secs(8), "after {after:?}");
    let (head, _) = admin_get(admin, "/nothing");
    assert!(head.starts_with("HTTP/1.0 404"), "{head}");

    // A request head past 8 KiB is refused (431), other methods than GET and HEAD too (405), and
    // HEAD has the GET head without the body.
    let curl = |extra: &[&str]| {
        let url = format!("http://127.0.0.1:{admin}/metrics");
        let mut args = vec!["-sS", "-i", "--max-time", "10"];
        args.extend_from_slice(extra);
        args.push(&url);
        run("curl", &args, CURL_TIMEOUT).expect_success("curl the admin endpoint")
    };
    let big = format!("X-Big: {}", "a".repeat(9000));
    let answer = curl(&["-H", &big]);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let answer = curl(&["-X", "POST"]);
    assert!(answer.starts_with("HTTP/1.0 405"), "{answer}");
    assert!(answer.contains("Allow: GET, HEAD\r\n"), "{answer}");
    let answer = curl(&["--head"]);
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
    assert!(
        head.starts_with("HTTP/1.0 200") && head.contains("Content-Length: "),
        "{head}"
    );
    assert_eq!(body, "", "HEAD has no body");
    assert!(pm.is_running());
}

#[test]
fn a_non_loopback_admin_address_is_refused_unless_allowed() {
    let dir = temp_dir("admin-config");
    let head = "[[listener]]\naddress = \"127.0.0.1:1\"\n[[backend]]\nname = \"n\"\nprotocol = \"noop\"\n\
                [admin]\naddress = \"0.0.0.0:9900\"\n";
    let refused = write_file_in(dir.path(), "refused.toml", head.as_bytes());
    let allowed = write_file_in(
        dir.path(),
        "allowed.toml",
        format!("{head}allow_remote = true\n").as_bytes(),
    );
    let bin = pmmux_bin();
    let bin = bin.to_str().expect("utf-8 path");
    let out = run(bin, &["check-config", refused.to_str().expect("utf-8")], CURL_TIMEOUT);
    assert!(!out.status.success(), "{}", out.stdout_str());
    let err = out.stderr_str();
    assert!(
        err.contains("refused.toml:7:")
            && err.contains("not a loopback address")
            && err.contains("allow_remote = true"),
        "{err}"
    );
    let out = run(bin, &["check-config", allowed.to_str().expect("utf-8")], CURL_TIMEOUT);
    out.expect_success("check-config with allow_remote");
}

#[test]
fn reloads_and_refused_plugin_files_are_counted() {
    let (port, admin) = (free_port(), free_port());
    let config = |extra: &str| {
        format!(
            "plugin_dir = \"plugins\"\n[[listener]]\naddress = \"127.0.0.1:{port}\"\n[admin]\naddress = \"127.0.0.1:{admin}\"\n\
             [[backend]]\nname = \"echo\"\nprotocol = \"echo\"\n{extra}"
        )
    };
    let garbage = vec![("libgarbage.so".to_owned(), b"not a library".to_vec())];
    let pm = Pmmux::start_with_files(&config(""), &[], &garbage);
    pm.wait_listening(loopback(port));
    pm.wait_listening(loopback(admin));
    let m = metrics(admin);
    assert_eq!(m.value("pmmux_plugin_load_failures_total", &[]), 1.0);
    assert!(!m.samples.iter().any(|s| s.name == "pmmux_plugin_info"));

    // A refused configuration, then an applied one.
    pm.write_config(&config("udp_idle_timeout_ms = \"soon\"\n"));
    wait_value(admin, "pmmux_config_reload_failures_total", &[], 1.0);
    pm.write_config(&config("udp_idle_timeout_ms = 1000\n"));
    wait_value(admin, "pmmux_config_reloads_total", &[], 1.0);

    // A plugin dropped in: routing rebuilt, the plugin listed with one mapped version.
    pm.install_plugin("echo");
    let m = wait_metrics(admin, "echo loaded", |m| {
        m.get("pmmux_plugin_versions_mapped", &[("plugin", "echo")]) == Some(1.0)
    });
    assert!(m.value("pmmux_plugin_reloads_total", &[]) >= 1.0);
    assert!(m
        .samples
        .iter()
        .any(|s| s.name == "pmmux_plugin_info" && s.labels["plugin"] == "echo"));
    assert_eq!(m.value("pmmux_config_reload_failures_total", &[]), 1.0);
    promtool_check(admin);
}
