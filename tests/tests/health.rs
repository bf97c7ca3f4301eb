//! Health checks, failover and property matchers, end to end with the real `pmmux` binary and real
//! upstreams: nginx stopped by PID under continuous clients (failover within the connection, then
//! the checker marks it down, then it recovers and takes traffic again), an nginx answering 503 on
//! `/` (the `http` plugin's own check says down although TCP connects), a plugin built against
//! plugin-api 1.0 checked by TCP connect, a vip backend out of routing while unhealthy, `tls.sni`
//! property regexes choosing between two real TLS servers, checkers following reloads, a panicking
//! health hook, the failover cap, and UDP checks of DNS backends against dnsmasq.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use pmmux_e2e::*;

/// Bound on a health transition the test caused (checks run every few hundred ms).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(20);

/// `plugin_dir`, one listener and the admin endpoint.
fn head(port: u16, admin: u16) -> String {
    format!(
        "{}[admin]\naddress = \"127.0.0.1:{admin}\"\n",
        listeners(&[format!("127.0.0.1:{port}")])
    )
}

/// Starts pmmux with `config(port, admin)` on fresh ports and waits until both listen.
fn start(plugins: &[&str], files: &[(String, Vec<u8>)], config: impl Fn(u16, u16) -> String) -> (Pmmux, u16, u16) {
    let mut errors = Vec::new();
    for _ in 0..5 {
        let (port, admin) = (free_port(), free_port());
        let pm = Pmmux::start_with_files(&config(port, admin), plugins, files);
        let ready = pm
            .try_wait_listening(loopback(port), PMMUX_START_TIMEOUT)
            .and_then(|()| pm.try_wait_listening(loopback(admin), PMMUX_START_TIMEOUT));
        match ready {
            Ok(()) => return (pm, port, admin),
            Err(e) if !pm.is_running() && e.contains("cannot listen on") => errors.push(e),
            Err(e) => panic!("{e}"),
        }
    }
    panic!("pmmux could not bind fresh ports 5 times:\n{}", errors.join("\n"))
}

/// `GET /status` from the admin endpoint, parsed.
fn status(admin: u16) -> serde_json::Value {
    let mut s = connect(loopback(admin));
    s.write_all(b"GET /status HTTP/1.0\r\n\r\n")
        .expect("send status request");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read status");
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("status JSON: {e}: {answer}"))
}

/// A backend's `health` object in `/status`.
fn health_of(admin: u16, backend: &str) -> serde_json::Value {
    let st = status(admin);
    let list = st["backends"].as_array().cloned().unwrap_or_default();
    list.into_iter()
        .find(|b| b["name"] == backend)
        .map(|b| b["health"].clone())
        .unwrap_or_else(|| panic!("no backend {backend} in /status: {st}"))
}

/// Waits until `/status` shows `backend` in `state` (`up`, `down`).
fn wait_health(pm: &Pmmux, admin: u16, backend: &str, state: &str) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let ok = eventually(HEALTH_TIMEOUT, || {
        last = health_of(admin, backend);
        last["state"] == state
    });
    assert!(
        ok,
        "{backend} not {state} within {HEALTH_TIMEOUT:?}: {last}; log:\n{}",
        pm.log()
    );
    last
}

/// One HTTP/1.0 request for [`IDENT_FILE`] through `addr`: the name of the server that answered.
fn whoami(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET /{IDENT_FILE} HTTP/1.0\r\nHost: web\r\n\r\n").as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
        _ => Err(format!("bad answer: {text:?}")),
    }
}

/// One client request's record: when it started and what it got.
type Record = (Instant, Result<String, String>);

/// Clients requesting [`whoami`] in a loop on `threads` threads until stopped.
struct Clients {
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<Record>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Clients {
    fn start(addr: SocketAddr, threads: usize) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let records: Arc<Mutex<Vec<Record>>> = Arc::default();
        let threads = (0..threads)
            .map(|_| {
                let (stop, records) = (Arc::clone(&stop), Arc::clone(&records));
                thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let started = Instant::now();
                        let got = whoami(addr);
                        records.lock().expect("records").push((started, got));
                        thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        Clients { stop, records, threads }
    }

    fn records(&self) -> Vec<Record> {
        self.records.lock().expect("records").clone()
    }

    /// Waits until `n` requests that started after `since` were answered by `server`.
    fn wait_served_by(&self, server: &str, since: Instant, n: usize, pm: &Pmmux) {
        let ok = eventually(HEALTH_TIMEOUT, || {
            self.records()
                .iter()
                .filter(|(t, r)| *t >= since && r.as_deref() == Ok(server))
                .count()
                >= n
        });
        assert!(
            ok,
            "{server} did not answer {n} requests within {HEALTH_TIMEOUT:?}; log:\n{}",
            pm.log()
        );
    }

    fn finish(mut self) -> Vec<Record> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            t.join().expect("client thread");
        }
        self.records()
    }
}

/// Health settings fast enough for tests.
const FAST_HEALTH: &str =
    "[backend.health]\ninterval_ms = 300\ntimeout_ms = 1000\nfailure_threshold = 3\nrecovery_threshold = 2\n";

#[test]
fn failover_within_the_connection_then_down_then_recovery_under_continuous_clients() {
    let mut web_a = HttpServer::start("web-a");
    let web_b = HttpServer::start("web-b");
    let (pm, port, admin) = start(&["http"], &[], |port, admin| {
        format!(
            "{head}[[backend]]\nname = \"a\"\nprotocol = \"http\"\ntarget = \"{a}\"\n{FAST_HEALTH}\
             [[backend]]\nname = \"b\"\nprotocol = \"http\"\ntarget = \"{b}\"\n{FAST_HEALTH}",
            head = head(port, admin),
            a = web_a.addr(),
            b = web_b.addr(),
        )
    });
    let addr = loopback(port);
    wait_health(&pm, admin, "a", "up");
    let clients = Clients::start(addr, 3);
    clients.wait_served_by("web-a", Instant::now(), 20, &pm);

    // Stop the first server: every request that starts from now on must still succeed.
    let a_pid = web_a.pid();
    web_a.stop();
    assert!(
        !process_exists(a_pid) || is_zombie(a_pid),
        "nginx {a_pid} still running"
    );
    let stopped = Instant::now();
    clients.wait_served_by("web-b", stopped, 30, &pm);
    let down = wait_health(&pm, admin, "a", "down");
    assert!(
        down["last_failure"].as_str().is_some_and(|r| r.contains("connect")),
        "{down}"
    );
    wait_log_line(&pm, &["backend=\"a\"", "backend unhealthy: out of routing"]);
    // Clients were running when it stopped: some connection was routed to `a` before health
    // noticed and failed over to `b` within the same connection.
    wait_log_line(&pm, &["failed=\"a\"", "to=\"b\"", "connect failed; failing over"]);
    assert_eq!(
        log_lines(&pm, &["backend unhealthy: out of routing"]).len(),
        1,
        "one log line per transition"
    );

    // Back up on the same port: after recovery_threshold good checks, `a` takes traffic again.
    web_a.restart();
    let restarted = Instant::now();
    wait_health(&pm, admin, "a", "up");
    wait_log_line(&pm, &["backend=\"a\"", "backend healthy again: back in routing"]);
    clients.wait_served_by("web-a", restarted, 20, &pm);
    let records = clients.finish();

    let failed: Vec<_> = records.iter().filter(|(t, r)| *t >= stopped && r.is_err()).collect();
    let after = records.iter().filter(|(t, _)| *t >= stopped).count();
    assert!(
        failed.is_empty(),
        "{} of {after} requests after the stop failed: {failed:?}",
        failed.len()
    );
    assert!(after >= 50, "only {after} requests after the stop");
    // First-available: once `a` is back, new requests go to it, not to `b`.
    let up_at = records
        .iter()
        .filter(|(t, r)| *t >= restarted && r.as_deref() == Ok("web-a"))
        .map(|(t, _)| *t)
        .min()
        .expect("web-a served after restart");
    let to_b_after: Vec<_> = records
        .iter()
        .filter(|(t, r)| *t > up_at + Duration::from_millis(500) && r.as_deref() == Ok("web-b"))
        .collect();
    assert!(
        to_b_after.is_empty(),
        "b still got requests after a was back: {}",
        to_b_after.len()
    );
}

#[test]
fn http_check_marks_a_503_server_down_although_tcp_connects() {
    let bad = HttpServer::start_with_root_status("web-bad", 503);
    let good = HttpServer::start("web-good");
    let (pm, port, admin) = start(&["http"], &[], |port, admin| {
        format!(
            "{head}[health.http]\ninterval_ms = 200\nfailure_threshold = 2\n\
             [[backend]]\nname = \"bad\"\nprotocol = \"http\"\ntarget = \"{bad}\"\n\
             [[backend]]\nname = \"good\"\nprotocol = \"http\"\ntarget = \"{good}\"\n",
            head = head(port, admin),
            bad = bad.addr(),
            good = good.addr(),
        )
    });
    let down = wait_health(&pm, admin, "bad", "down");
    assert!(
        down["last_failure"].as_str().is_some_and(|r| r.contains("503")),
        "{down}"
    );
    let line = wait_log_line(&pm, &["backend=\"bad\"", "backend unhealthy"]);
    assert!(line.contains("503"), "{line}");
    assert_eq!(health_of(admin, "good")["state"], "up");
    // The checks reached nginx (HEAD /), and clients now go to the healthy one.
    assert!(
        bad.access_log().contains("\"HEAD / HTTP/1.0\" 503"),
        "{}",
        bad.access_log()
    );
    for _ in 0..5 {
        assert_eq!(whoami(loopback(port)).as_deref(), Ok("web-good"));
    }
}

#[test]
fn a_plugin_api_1_0_backend_is_checked_by_tcp_connect() {
    let lib = std::fs::read(api_1_0_fixture()).expect("read the api-1.0 fixture");
    let echo = TcpEcho::start();
    let target = echo.addr();
    let files = [("libfixture_api_1_0.so".to_owned(), lib)];
    let (pm, port, admin) = start(&[], &files, |port, admin| {
        format!(
            "{head}[[backend]]\nname = \"old\"\nprotocol = \"old\"\ntarget = \"{target}\"\n\
             [backend.health]\ninterval_ms = 200\nfailure_threshold = 2\nrecovery_threshold = 1\n",
            head = head(port, admin),
        )
    });
    wait_log_line(&pm, &["plugin loaded", "old"]);
    // Checks are plain connections to the target (nothing sent): the echo server counts them.
    let counted = eventually(HEALTH_TIMEOUT, || echo.connections() >= 3);
    assert!(counted, "no TCP checks reached the target; log:\n{}", pm.log());
    assert_eq!(health_of(admin, "old")["state"], "up");
    let got = tcp_roundtrip(loopback(port), b"OLD and still here", CLIENT_TIMEOUT).expect("round trip");
    assert_eq!(got, b"OLD and still here");

    drop(echo); // stops the server: connects are refused
    let down = wait_health(&pm, admin, "old", "down");
    assert!(
        down["last_failure"]
            .as_str()
            .is_some_and(|r| r.contains("connect failed")),
        "{down}"
    );
    assert!(pm.is_running());
}

#[test]
fn an_unhealthy_vip_leaves_routing_and_the_normal_tier_serves() {
    // The vip's target accepts connections but is no Redis server (an echo answers `PING` with
    // `PING`): only the redis plugin's own check can tell.
    let not_redis = TcpEcho::start();
    let sink = TcpSink::start();
    let (pm, port, admin) = start(&["redis"], &[], |port, admin| {
        format!(
            "{head}[[backend]]\nname = \"normal\"\nprotocol = \"redis\"\ntarget = \"{sink}\"\n\
             [[backend]]\nname = \"vip\"\nprotocol = \"redis\"\npriority = \"vip\"\ntarget = \"{echo}\"\n\
             [backend.health]\ninterval_ms = 200\nfailure_threshold = 2\n",
            head = head(port, admin),
            sink = sink.addr(),
            echo = not_redis.addr(),
        )
    });
    let down = wait_health(&pm, admin, "vip", "down");
    assert!(
        down["last_failure"].as_str().is_some_and(|r| r.contains("`PING`")),
        "{down}"
    );
    let mut data = b"*1\r\n$4\r\nPING\r\n".to_vec();
    data.extend(random_bytes(64 * 1024));
    for _ in 0..3 {
        let got = tcp_roundtrip(loopback(port), &data, CLIENT_TIMEOUT).expect("round trip");
        assert_eq!(
            String::from_utf8_lossy(&got),
            sha256_hex(&data),
            "not served by the normal tier"
        );
    }
    assert_eq!(sink.connections(), 3);
    // Out of routing, not failed over: no client connection went to the vip.
    assert!(log_lines(&pm, &["failing over"]).is_empty(), "{}", pm.log());
    assert!(log_lines(&pm, &["backend=\"vip\"", "connection closed"]).is_empty());
    // The sink is not checked (it would never answer PING): no table, no checks.
    assert_eq!(health_of(admin, "normal")["state"], "unchecked");
}

#[test]
fn tls_sni_property_regexes_choose_between_two_tls_servers() {
    let a = TlsServer::start("a.example");
    let b = TlsServer::start("b.example");
    let internal = TlsServer::start("internal.example");
    let (pm, port) = start_one(&["tls"], |port| {
        format!(
            "{head}[[backend]]\nname = \"to-a\"\nprotocol = \"tls\"\ntarget = \"{a}\"\n\
             [backend.match]\nproperty = {{ \"tls.sni\" = \"^a\\\\.\" }}\n\
             [[backend]]\nname = \"public\"\nprotocol = \"tls\"\ntarget = \"{b}\"\n\
             [backend.match]\nproperty = {{ \"tls.sni\" = [\"\\\\.example$\", \"!^internal\\\\.\"] }}\n",
            head = listeners(&[format!("127.0.0.1:{port}")]),
            a = a.addr(),
            b = b.addr(),
        )
    });
    let out = client("curl", &{
        let mut v = args(&["-sS"]);
        v.extend(a.curl_args(port, IDENT_FILE));
        v
    });
    assert_eq!(out.expect_success("curl a.example"), "a.example");
    let out = client("curl", &{
        let mut v = args(&["-sS"]);
        v.extend(b.curl_args(port, IDENT_FILE));
        v
    });
    assert_eq!(out.expect_success("curl b.example"), "b.example");
    wait_log_line(&pm, &["backend=\"to-a\"", "connection closed"]);
    wait_log_line(&pm, &["backend=\"public\"", "connection closed"]);

    // The negated regex keeps internal.example out of `public`, and no other backend matches.
    let out = run_with_input("openssl", &internal.s_client_args(port), b"", CLIENT_TIMEOUT);
    assert!(
        !out.status.success(),
        "internal.example got a TLS session through pmmux"
    );
    wait_log_line(&pm, &["no backend matched"]);
}

#[test]
fn health_checkers_follow_configuration_reloads_and_keep_their_state_by_name() {
    let refused = RefusedPort::new(); // bound, never listening: connects are refused
    let closed = refused.port();
    let other = TcpEcho::start();
    let config = |port: u16, admin: u16, backends: &str| {
        format!(
            "{head}[reload]\nquiet_period_ms = 100\n{backends}\
             [[backend]]\nname = \"other\"\nprotocol = \"pass\"\ntarget = \"{other}\"\npriority = \"fallback\"\n",
            head = head(port, admin),
            other = other.addr(),
        )
    };
    let backend = |health: &str| {
        format!("[[backend]]\nname = \"e\"\nprotocol = \"pass\"\ntarget = \"127.0.0.1:{closed}\"\n{health}")
    };
    let (pm, port, admin) = start(&[], &[], |port, admin| config(port, admin, &backend("")));
    assert_eq!(health_of(admin, "e")["state"], "unchecked");

    // A health table added: a checker starts and finds the target down.
    let checked = "[backend.health]\ninterval_ms = 200\nfailure_threshold = 1\n";
    pm.write_config(&config(port, admin, &backend(checked)));
    wait_health(&pm, admin, "e", "down");
    wait_log_count(&pm, &["backend=e", "health checker started"], 1);

    // Its settings changed: the checker restarts, with a long initial delay, and the state carries
    // over by name (still down, not reset to up until a check).
    let changed = "[backend.health]\ninterval_ms = 250\ninitial_delay_ms = 60000\nfailure_threshold = 1\n";
    pm.write_config(&config(port, admin, &backend(changed)));
    wait_log_count(&pm, &["backend=e", "health checker started"], 2);
    assert_eq!(health_of(admin, "e")["state"], "down");
    // Down: clients go to the fallback without trying `e`.
    assert_eq!(
        tcp_roundtrip(loopback(port), b"hi", CLIENT_TIMEOUT).expect("round trip"),
        b"hi"
    );
    assert!(log_lines(&pm, &["failing over"]).is_empty(), "{}", pm.log());

    // The table removed: checks stop and the backend is back in routing (failing over when its
    // target refuses).
    pm.write_config(&config(port, admin, &backend("")));
    wait_log_line(&pm, &["backend=e", "health checks stopped"]);
    wait_log_line(
        &pm,
        &["backend=\"e\"", "health checks removed: backend back in routing"],
    );
    assert_eq!(health_of(admin, "e")["state"], "unchecked");
    assert_eq!(
        tcp_roundtrip(loopback(port), b"hi", CLIENT_TIMEOUT).expect("round trip"),
        b"hi"
    );
    wait_log_line(&pm, &["failed=\"e\"", "to=\"other\"", "failing over"]);

    // Checked again, then the backend leaves: its checker stops.
    pm.write_config(&config(port, admin, &backend(checked)));
    wait_log_count(&pm, &["backend=e", "health checker started"], 3);
    pm.write_config(&config(port, admin, ""));
    wait_log_line(&pm, &["backend=e", "health checker stopped: backend left"]);
}

#[test]
fn a_panic_in_a_plugin_health_hook_counts_as_unhealthy_and_the_host_keeps_serving() {
    let echo = TcpEcho::start();
    let (pm, port, admin) = start(&["libfixture_panic_hooks.so", "echo"], &[], |port, admin| {
        format!(
            "{head}[[backend]]\nname = \"panicky\"\nprotocol = \"panicky\"\ntarget = \"{echo}\"\n\
             [backend.params]\npanic_in_health = true\n\
             [backend.health]\ninterval_ms = 200\nfailure_threshold = 2\n\
             [[backend]]\nname = \"echo\"\nprotocol = \"echo\"\npriority = \"fallback\"\n",
            head = head(port, admin),
            echo = echo.addr(),
        )
    });
    let down = wait_health(&pm, admin, "panicky", "down");
    let reason = down["last_failure"].as_str().unwrap_or_default().to_owned();
    assert!(
        reason.contains("health_verdict") && reason.contains("panics on purpose"),
        "{down}"
    );
    // Down by health, not disabled as a broken plugin; the host serves on.
    assert!(log_lines(&pm, &["backend disabled"]).is_empty(), "{}", pm.log());
    let got = tcp_roundtrip(loopback(port), b"OK then echo", CLIENT_TIMEOUT).expect("round trip");
    assert_eq!(got, b"OK then echo", "the fallback echo serves while panicky is down");
    assert!(pm.is_running());
}

#[test]
fn failover_is_capped_by_max_failovers_and_ends_at_a_lower_tier() {
    let (refused1, refused2) = (RefusedPort::new(), RefusedPort::new()); // connects are refused
    let (dead1, dead2) = (refused1.port(), refused2.port());
    let config = |port: u16, admin: u16, routing: &str| {
        format!(
            "{head}[reload]\nquiet_period_ms = 100\n[routing]\n{routing}\n\
             [[backend]]\nname = \"dead1\"\nprotocol = \"pass\"\ntarget = \"127.0.0.1:{dead1}\"\n\
             [[backend]]\nname = \"dead2\"\nprotocol = \"pass\"\ntarget = \"127.0.0.1:{dead2}\"\n\
             [[backend]]\nname = \"echo\"\nprotocol = \"echo\"\npriority = \"standby\"\n",
            head = head(port, admin),
        )
    };
    let (pm, port, admin) = start(&["echo"], &[], |port, admin| config(port, admin, "max_failovers = 1"));
    // dead1 fails, one failover to dead2, which fails too: the client is closed unanswered.
    let got = tcp_roundtrip(loopback(port), b"hello", CLIENT_TIMEOUT).expect("closed cleanly");
    assert_eq!(got, b"");
    wait_log_line(&pm, &["failed=\"dead1\"", "to=\"dead2\"", "attempt=1", "failing over"]);
    wait_log_line(&pm, &["failed=\"dead2\"", "max_failovers=1", "no failover left"]);

    // The default (3): dead1, dead2, then the standby echo serves within the same connection.
    pm.write_config(&config(port, admin, ""));
    wait_log_line(&pm, &["configuration reloaded", "routing changed"]);
    let got = tcp_roundtrip(loopback(port), b"hello again", CLIENT_TIMEOUT).expect("round trip");
    assert_eq!(got, b"hello again");
    wait_log_line(&pm, &["failed=\"dead2\"", "to=\"echo\"", "attempt=2", "failing over"]);
    // Unchecked backends take no health verdict from failed connects.
    assert_eq!(health_of(admin, "dead1")["state"], "unchecked");
}

#[test]
fn dns_backends_are_checked_over_udp() {
    let dns = DnsServer::start("dns-a", &["host-record=www.a.example,10.1.1.1"]);
    let dead = free_udp_port(); // nothing bound: the query is refused (ICMP port unreachable)
    let (pm, _, admin) = start(&["dns"], &[], |port, admin| {
        format!(
            "{head}[health.dns]\ninterval_ms = 200\nfailure_threshold = 2\n\
             [[backend]]\nname = \"live\"\nprotocol = \"dns\"\ntarget = \"{live}\"\n\
             [[backend]]\nname = \"dead\"\nprotocol = \"dns\"\ntarget = \"127.0.0.1:{dead}\"\n",
            head = head(port, admin),
            live = dns.addr(),
        )
    });
    let down = wait_health(&pm, admin, "dead", "down");
    assert!(
        down["last_failure"].as_str().is_some_and(|r| r.contains("refused")),
        "{down}"
    );
    // The live one answered the checks' queries (dnsmasq logs each) and stays up.
    assert!(eventually(HEALTH_TIMEOUT, || dns.total_queries() >= 3), "{}", dns.log());
    let live = health_of(admin, "live");
    assert_eq!(live["state"], "up", "{live}");
    assert!(live.get("last_failure").is_none(), "{live}");
    assert!(pm.is_running());
}
