//! Limits, end to end, with the real host and the `echo` plugin on loopback: the per-IP limit
//! (the extra connection closed at once, counted, logged at most once a second under a burst),
//! listener and process-wide `max_connections` (the accept loop waits; the waiting client is
//! served when a connection closes), `max_previews` against silent clients, limits following a
//! configuration reload, and running out of file descriptors (accept backs off without spinning,
//! serving resumes when clients leave).

mod common;
mod ops_common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use ops_common::*;
use pmmux_e2e::*;

const REFUSED_LOG: &str = "connection refused by a limit";
const PAUSED_LOG: &str = "connection limit reached; not accepting";

/// One echo backend behind listener `front` (with `listener_extra` lines), an admin endpoint,
/// and `extra` top-level tables. Ports: listener, admin.
fn echo_config(p: &[u16], listener_extra: &str, extra: &str) -> String {
    format!(
        "plugin_dir = \"plugins\"\n{extra}\n[[listener]]\naddress = \"127.0.0.1:{}\"\nname = \"front\"\n{listener_extra}\n\
         [admin]\naddress = \"127.0.0.1:{}\"\n[[backend]]\nname = \"echo\"\nprotocol = \"echo\"\n",
        p[0], p[1]
    )
}

/// A client whose connection is routed to the echo backend and served (one round trip done).
fn echoing(port: u16) -> TcpStream {
    let mut s = connect(loopback(port));
    echo_exchange(&mut s, b"hello");
    s
}

/// Whether `s` stays silent (no byte, no close) for `bound`.
fn stays_silent(s: &mut TcpStream, bound: Duration) -> bool {
    s.set_read_timeout(Some(bound)).expect("set read timeout");
    let mut b = [0u8; 16];
    let silent = matches!(s.read(&mut b), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set read timeout");
    silent
}

/// Connects, sends a first byte (the kernel hands a connection to pmmux once its first bytes
/// arrived: TCP_DEFER_ACCEPT) and asserts pmmux closes the connection at once without sending
/// anything.
fn assert_refused(port: u16) {
    let mut s = connect(loopback(port));
    let _ = s.write_all(b"x");
    let (end, bytes, after) = wait_closed(&mut s, Duration::from_secs(5));
    assert_eq!(end, End::Closed, "a refused connection must be closed");
    assert!(bytes.is_empty(), "a refused connection gets no bytes");
    assert!(after < Duration::from_secs(5));
}

#[test]
fn the_connection_past_the_per_ip_limit_is_closed_counted_and_logged_at_most_once_a_second() {
    let (pm, p) = start_pmmux(2, &["echo"], |p| echo_config(p, "max_connections_per_ip = 2", ""));
    let (port, admin) = (p[0], p[1]);
    let a = echoing(port);
    let _b = echoing(port);

    let started = Instant::now();
    assert_refused(port);
    for _ in 0..200 {
        assert_refused(port);
    }
    let hits = [("limit", "max_connections_per_ip"), ("listener", "front")];
    let m = wait_value(admin, "pmmux_limit_hits_total", &hits, 201.0);
    let elapsed = started.elapsed();
    let refused = [("listener", "front"), ("backend", ""), ("outcome", "refused_limit")];
    assert_eq!(m.value("pmmux_connections_total", &refused), 201.0);
    assert_eq!(m.value("pmmux_connections_active", &[("listener", "front")]), 2.0);
    let lines = log_lines(&pm, &[REFUSED_LOG, "max_connections_per_ip"]);
    let bound = elapsed.as_secs() as usize + 1;
    assert!(
        !lines.is_empty() && lines.len() <= bound,
        "{} refusal log lines in {elapsed:?} (at most one a second):\n{}",
        lines.len(),
        lines.join("\n")
    );
    if lines.len() > 1 {
        assert!(
            lines[1].contains("held_back=") && !lines[1].contains("held_back=0"),
            "later lines say how many were held back: {}",
            lines[1]
        );
    }

    // The address's count drops when a connection closes: one more is admitted.
    drop(a);
    wait_value(admin, "pmmux_connections_active", &[("listener", "front")], 1.0);
    let _c = echoing(port);
    assert_refused(port);
}

#[test]
fn a_full_listener_stops_accepting_and_serves_the_waiting_client_when_a_connection_closes() {
    let (pm, p) = start_pmmux(2, &["echo"], |p| echo_config(p, "max_connections = 2", ""));
    let (port, admin) = (p[0], p[1]);
    let a = echoing(port);
    let _b = echoing(port);
    // The kernel completes the handshake (backlog); pmmux does not accept it yet.
    let mut c = connect(loopback(port));
    c.write_all(b"queued").expect("write");
    assert!(
        stays_silent(&mut c, Duration::from_secs(1)),
        "a third connection was served past max_connections = 2"
    );
    let m = metrics(admin);
    assert_eq!(m.value("pmmux_connections_active", &[("listener", "front")]), 2.0);
    let hits = [("limit", "listener_max_connections"), ("listener", "front")];
    assert!(m.value("pmmux_limit_hits_total", &hits) >= 1.0);
    wait_log_line(&pm, &[PAUSED_LOG, "listener_max_connections"]);

    drop(a);
    assert_eq!(
        read_n(&mut c, 6),
        b"queued",
        "the waiting client is served once a slot frees"
    );
    let closed = [("listener", "front"), ("backend", "echo"), ("outcome", "closed")];
    let m = wait_value(admin, "pmmux_connections_total", &closed, 1.0);
    assert_eq!(m.value("pmmux_connections_active", &[("listener", "front")]), 2.0);
}

#[test]
fn the_process_wide_max_connections_is_shared_by_every_listener() {
    let (pm, p) = start_pmmux(3, &["echo"], |p| {
        format!(
            "{}[[listener]]\naddress = \"127.0.0.1:{}\"\nname = \"other\"\n",
            echo_config(p, "", "[limits]\nmax_connections = 2"),
            p[2]
        )
    });
    let (front, admin, other) = (p[0], p[1], p[2]);
    let _a = echoing(front);
    let b = echoing(other);
    let mut c = connect(loopback(front));
    c.write_all(b"queued").expect("write");
    assert!(
        stays_silent(&mut c, Duration::from_secs(1)),
        "a third connection was served past [limits] max_connections = 2"
    );
    let m = metrics(admin);
    let hits = [("limit", "max_connections"), ("listener", "front")];
    assert!(m.value("pmmux_limit_hits_total", &hits) >= 1.0);
    wait_log_line(&pm, &[PAUSED_LOG, "limit=\"max_connections\""]);

    // A connection closing on the other listener frees the slot for this one.
    drop(b);
    assert_eq!(read_n(&mut c, 6), b"queued");
    let (_, body) = admin_get(admin, "/status");
    let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    assert_eq!(status["limits"]["max_connections"], 2);
    assert_eq!(status["limits"]["connections"], 2);
}

#[test]
fn silent_clients_fill_max_previews_and_the_next_connection_is_refused() {
    let (_pm, p) = start_pmmux(2, &["echo"], |p| {
        echo_config(p, "", "[limits]\nmax_previews = 3\n[routing]\nprobe_timeout_ms = 30000")
    });
    let (port, admin) = (p[0], p[1]);
    // Routed connections do not count as previews.
    let _routed: Vec<TcpStream> = (0..3).map(|_| echoing(port)).collect();
    let mut silent: Vec<TcpStream> = (0..3).map(|_| connect(loopback(port))).collect();
    wait_value(admin, "pmmux_previews_active", &[], 3.0);

    assert_refused(port);
    let hits = [("limit", "max_previews"), ("listener", "front")];
    let m = wait_value(admin, "pmmux_limit_hits_total", &hits, 1.0);
    assert_eq!(m.value("pmmux_connections_active", &[("listener", "front")]), 6.0);

    // A silent client that speaks is routed and gives its preview slot back.
    echo_exchange(&mut silent[0], b"now");
    wait_value(admin, "pmmux_previews_active", &[], 2.0);
    let _next = echoing(port);
}

#[test]
fn a_reloaded_configuration_changes_the_limits_of_a_running_listener() {
    let (pm, p) = start_pmmux(2, &["echo"], |p| echo_config(p, "max_connections_per_ip = 1", ""));
    let (port, admin) = (p[0], p[1]);
    let _a = echoing(port);
    assert_refused(port);
    pm.write_config(&echo_config(
        &p,
        "max_connections_per_ip = 3",
        "[limits]\nmax_previews = 7",
    ));
    wait_value(admin, "pmmux_config_reloads_total", &[], 1.0);
    let _b = echoing(port);
    let _c = echoing(port);
    assert_refused(port);
    let (_, body) = admin_get(admin, "/status");
    let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    let front = status["listeners"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["name"] == "front"))
        .unwrap_or_else(|| panic!("no listener front in {status}"))
        .clone();
    assert_eq!(front["max_connections_per_ip"], 3);
    assert_eq!(front["connections"], 3);
    assert_eq!(front["client_ips"], 1);
    assert_eq!(status["limits"]["max_previews"], 7, "[limits] follows the reload too");
}

/// Read whatever `s` has within `wait`, appending to `got`; false once the peer closed.
fn poll_read(s: &mut TcpStream, got: &mut Vec<u8>, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).expect("set read timeout");
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => false,
        Ok(n) => {
            got.extend_from_slice(&b[..n]);
            true
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => true,
        Err(_) => false,
    }
}

#[test]
fn out_of_file_descriptors_accept_backs_off_without_spinning_and_serving_resumes() {
    const NOFILE: u64 = 64;
    const CLIENTS: usize = 120;
    let (port, admin) = (free_port(), free_port());
    let pm = Pmmux::start_with_fd_limit(&echo_config(&[port, admin], "", ""), &["echo"], NOFILE);
    pm.wait_listening(loopback(port));
    pm.wait_listening(loopback(admin));
    let pid = pm.pid();

    // Every client connects (the kernel's backlog takes those pmmux cannot accept) and sends.
    let mut clients: Vec<(TcpStream, Vec<u8>)> = (0..CLIENTS)
        .map(|i| {
            let mut s = connect(loopback(port));
            s.write_all(format!("c{i:03}").as_bytes()).expect("write");
            (s, Vec::new())
        })
        .collect();
    wait_log_line(&pm, &["accept failed; backing off"]);

    // The episode: pmmux keeps failing to accept. It must sleep, not spin.
    let (cpu0, t0) = (cpu_time(pid).expect("cpu time"), Instant::now());
    while t0.elapsed() < Duration::from_secs(3) {
        for (s, got) in clients.iter_mut() {
            if got.len() < 4 {
                assert!(poll_read(s, got, Duration::from_millis(1)), "a client was closed");
            }
        }
    }
    let (cpu, wall) = (cpu_time(pid).expect("cpu time") - cpu0, t0.elapsed());
    assert!(
        cpu < wall / 20,
        "pmmux used {cpu:?} of CPU in {wall:?} while out of descriptors (spinning?)"
    );
    let served: Vec<usize> = (0..CLIENTS).filter(|&i| clients[i].1.len() == 4).collect();
    eprintln!(
        "out of descriptors: {} of {CLIENTS} clients served; pmmux CPU {cpu:?} in {wall:?}",
        served.len()
    );
    assert!(
        !served.is_empty() && served.len() < CLIENTS,
        "{} of {CLIENTS} clients served under a limit of {NOFILE} descriptors",
        served.len()
    );
    for &i in &served {
        assert_eq!(clients[i].1, format!("c{i:03}").as_bytes());
    }
    // Connections already accepted are still served during the episode.
    echo_exchange(&mut clients[served[0]].0, b"still here");
    assert_eq!(
        log_lines(&pm, &["accept failed; backing off"]).len(),
        1,
        "one log line per episode"
    );

    // Clients that got their answer leave; the waiting ones are accepted and served in turn.
    let mut waiting: Vec<(usize, TcpStream, Vec<u8>)> = Vec::new();
    for (i, (s, got)) in clients.into_iter().enumerate() {
        if got.len() < 4 {
            waiting.push((i, s, got));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !waiting.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} clients never served after the others left",
            waiting.len()
        );
        waiting.retain_mut(|(i, s, got)| {
            assert!(
                poll_read(s, got, Duration::from_millis(1)),
                "client {i} was closed unserved"
            );
            if got.len() < 4 {
                return true;
            }
            assert_eq!(*got, format!("c{i:03}").as_bytes());
            false
        });
        thread::sleep(Duration::from_millis(5));
    }
    wait_log_line(&pm, &["accepting again after accept errors"]);
    let m = metrics(admin);
    assert!(m.value("pmmux_accept_errors_total", &[("listener", "front")]) >= 1.0);
    let _fresh = echoing(port);
    assert!(pm.is_running());
}
