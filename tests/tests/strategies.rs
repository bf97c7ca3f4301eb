//! Choosing among backends, end to end, with the real `pmmux` binary: host-side matchers
//! (`local_port`, `remote_ip` exclusions), priority tiers beating configuration order, a catch-all
//! that waits for an earlier backend still reading, and the `least-requests` strategy (globally and
//! per listener), and the balancing strategies `round-robin`, `weighted`, `random` and
//! `source-hash` (each keeping to the best tier; `source-hash` keeping each client on its backend
//! and moving only the clients of a backend that goes). Which backend got a connection is told by real servers' connection counts and by
//! SHA-256 of the bytes they saw.

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use common::*;
use pmmux_e2e::*;

// ---------------------------------------------------------------- host-side matchers

#[test]
fn local_port_matcher_splits_two_listeners_between_two_backends() {
    let sink = TcpSink::start();
    let echo = TcpEcho::start();
    let (pm, ports) = start_pmmux(2, &[], |p| {
        format!(
            r#"{head}
[[backend]]
name = "first-port"
protocol = "pass"
target = "{sink}"
[backend.match]
local_port = {p1}
[[backend]]
name = "rest"
protocol = "pass"
target = "{echo}"
"#,
            head = listeners(&[format!("127.0.0.1:{}", p[0]), format!("127.0.0.1:{}", p[1])]),
            p1 = p[0],
            sink = sink.addr(),
            echo = echo.addr(),
        )
    });
    let data = random_bytes(1 << 20);
    let got = tcp_roundtrip(loopback(ports[0]), &data, CLIENT_TIMEOUT).expect("round trip via listener 1");
    assert_eq!(
        String::from_utf8_lossy(&got),
        sha256_hex(&data),
        "listener 1 did not reach the sink"
    );
    let got = tcp_roundtrip(loopback(ports[1]), &data, CLIENT_TIMEOUT).expect("round trip via listener 2");
    assert_eq!(sha256_hex(&got), sha256_hex(&data), "listener 2 did not reach the echo");
    assert_eq!((sink.connections(), echo.connections()), (1, 1));
    wait_log_line(
        &pm,
        &[&format!("listener=127.0.0.1:{}", ports[0]), "backend=\"first-port\""],
    );
    wait_log_line(&pm, &[&format!("listener=127.0.0.1:{}", ports[1]), "backend=\"rest\""]);
}

#[test]
fn remote_ip_exclusion_keeps_loopback_clients_out() {
    let sink = TcpSink::start();
    let echo = TcpEcho::start();
    let (pm, port) = start_one(&[], |port| {
        format!(
            r#"{head}
[[backend]]
name = "not-local"
protocol = "pass"
target = "{sink}"
[backend.match]
remote_ip = "!127.0.0.1"
[[backend]]
name = "rest"
protocol = "pass"
target = "{echo}"
"#,
            head = listeners(&[format!("127.0.0.1:{port}")]),
            sink = sink.addr(),
            echo = echo.addr(),
        )
    });
    let data = random_bytes(256 * 1024);
    let got = tcp_roundtrip(loopback(port), &data, CLIENT_TIMEOUT).expect("round trip from 127.0.0.1");
    assert_eq!(sha256_hex(&got), sha256_hex(&data), "a 127.0.0.1 client was not echoed");
    assert_eq!((sink.connections(), echo.connections()), (0, 1));

    // Another loopback address (127.0.0.2) is not excluded: it reaches the sink.
    let out = run_with_input(
        "socat",
        &args(&["-t", "10", "-", &format!("TCP:127.0.0.1:{port},bind=127.0.0.2")]),
        &data,
        CLIENT_TIMEOUT,
    );
    assert_eq!(out.expect_success("socat from 127.0.0.2"), sha256_hex(&data));
    assert_eq!((sink.connections(), echo.connections()), (1, 1));
    wait_log_line(&pm, &["peer=127.0.0.2:", "backend=\"not-local\"", "connection closed"]);
}

// ---------------------------------------------------------------- tiers, strategies

#[test]
fn a_higher_tier_beats_configuration_order() {
    let sink = TcpSink::start();
    let (pm, port) = start_one(&["echo", "ssh"], |port| {
        format!(
            r#"{head}
[routing]
probe_timeout_ms = 600
[[backend]]
name = "catch-all"
protocol = "echo"
priority = "fallback"
[[backend]]
name = "ssh"
protocol = "ssh"
target = "{sink}"
"#,
            head = listeners(&[format!("127.0.0.1:{port}")]),
            sink = sink.addr(),
        )
    });
    // An SSH banner split over two segments: after "SS" the fallback already matches, but the
    // normal-tier ssh backend still says NeedMore and must be waited for.
    let mut s = connect(loopback(port));
    s.write_all(b"SS").expect("client write");
    std::thread::sleep(Duration::from_millis(150));
    let mut rest = b"H-2.0-OpenSSH_9.2p1\r\n".to_vec();
    rest.extend(random_bytes(512 * 1024));
    let mut whole = b"SS".to_vec();
    whole.extend(&rest);
    let writer = send_in_background(&s, rest);
    let (end, got, _) = wait_closed(&mut s, CLIENT_TIMEOUT);
    writer.join().expect("writer thread").expect("send the ssh stream");
    assert_eq!(end, End::Closed);
    assert_eq!(
        String::from_utf8_lossy(&got),
        sha256_hex(&whole),
        "the ssh stream did not reach the sink intact"
    );
    assert_eq!(sink.connections(), 1);

    // Anything else goes to the fallback.
    let mut other = b"hello, ".to_vec();
    other.extend(random_bytes(512 * 1024));
    let got = tcp_roundtrip(loopback(port), &other, CLIENT_TIMEOUT).expect("fallback round trip");
    assert_eq!(sha256_hex(&got), sha256_hex(&other));
    assert_eq!(sink.connections(), 1);
    wait_log_line(&pm, &["backend=\"catch-all\"", "connection closed"]);

    // "SS" and then silence: ssh never decides; at the probe timeout it counts as NoMatch and
    // the fallback, which matched all along, gets the connection (and the two bytes).
    let started = Instant::now();
    let mut s = connect(loopback(port));
    s.write_all(b"SS").expect("client write");
    assert_eq!(read_n(&mut s, 2), b"SS");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(590) && took < Duration::from_secs(3),
        "echoed after {took:?}; probe_timeout_ms is 600"
    );
    echo_exchange(&mut s, b"H-2.0-too late\r\n");
    assert_eq!(sink.connections(), 1);
}

#[test]
fn a_listener_strategy_overrides_the_routing_strategy() {
    let e1 = TcpEcho::start();
    let e2 = TcpEcho::start();
    let (_pm, ports) = start_pmmux(2, &[], |p| {
        format!(
            r#"plugin_dir = "plugins"
[[listener]]
address = "127.0.0.1:{p0}"
strategy = "least-requests"
[[listener]]
address = "127.0.0.1:{p1}"
[routing]
strategy = "first-available"
[[backend]]
name = "e1"
protocol = "pass"
target = "{e1}"
[[backend]]
name = "e2"
protocol = "pass"
target = "{e2}"
"#,
            p0 = p[0],
            p1 = p[1],
            e1 = e1.addr(),
            e2 = e2.addr(),
        )
    });
    let open = |port: u16| {
        let mut s = connect(loopback(port));
        echo_exchange(&mut s, &random_bytes(1024));
        s
    };
    let counts = || (e1.connections(), e2.connections());
    // First-available on the second listener: both to e1, however loaded.
    let b1 = open(ports[1]);
    let b2 = open(ports[1]);
    assert_eq!(counts(), (2, 0));
    // Least-requests on the first: to e2, which has none.
    let a1 = open(ports[0]);
    assert_eq!(counts(), (2, 1));
    let b3 = open(ports[1]);
    assert_eq!(counts(), (3, 1));
    drop((a1, b1, b2, b3));
}

#[test]
fn a_catch_all_listed_last_waits_for_an_earlier_backend_still_reading() {
    let sink = TcpSink::start();
    let (pm, port) = start_one(&["http", "echo"], |port| {
        format!(
            r#"{head}
[[backend]]
name = "web"
protocol = "http"
target = "{sink}"
[backend.params]
host = "a.example"
[[backend]]
name = "echo"
protocol = "echo"
"#,
            head = listeners(&[format!("127.0.0.1:{port}")]),
            sink = sink.addr(),
        )
    });
    // The request line alone: echo (later, same tier) matches already, http needs the Host.
    let mut s = connect(loopback(port));
    let first = b"POST /upload HTTP/1.1\r\n".to_vec();
    s.write_all(&first).expect("client write");
    std::thread::sleep(Duration::from_millis(200));
    let mut rest = b"Host: a.example\r\nContent-Length: 262144\r\n\r\n".to_vec();
    rest.extend(random_bytes(256 * 1024));
    let whole = [first, rest.clone()].concat();
    let writer = send_in_background(&s, rest);
    let (end, got, _) = wait_closed(&mut s, CLIENT_TIMEOUT);
    writer.join().expect("writer thread").expect("send the request");
    assert_eq!(end, End::Closed);
    assert_eq!(
        String::from_utf8_lossy(&got),
        sha256_hex(&whole),
        "the request did not reach the http target intact"
    );
    assert_eq!(sink.connections(), 1);
    wait_log_line(&pm, &["backend=\"web\"", "routed", "http.host=a.example"]);
    wait_log_line(&pm, &["backend=\"web\"", "connection closed"]);
    assert!(log_lines(&pm, &["backend=\"echo\""]).is_empty(), "{}", pm.log());
}

#[test]
fn least_requests_picks_the_backend_with_fewer_live_connections() {
    let e1 = TcpEcho::start();
    let e2 = TcpEcho::start();
    let (pm, port) = start_one(&[], |port| {
        format!(
            r#"{head}
[routing]
strategy = "least-requests"
[[backend]]
name = "e1"
protocol = "pass"
target = "{e1}"
[[backend]]
name = "e2"
protocol = "pass"
target = "{e2}"
"#,
            head = listeners(&[format!("127.0.0.1:{port}")]),
            e1 = e1.addr(),
            e2 = e2.addr(),
        )
    });
    let counts = || (e1.connections(), e2.connections());
    // Each connection is proven routed and relaying (an echo round trip) before the next opens.
    let open = || {
        let mut s = connect(loopback(port));
        echo_exchange(&mut s, &random_bytes(1024));
        s
    };
    let c1 = open();
    let c2 = open();
    assert_eq!(counts(), (1, 1), "two connections did not spread over two backends");
    let c3 = open();
    let c4 = open();
    assert_eq!(counts(), (2, 2));
    // Close both of e1's connections; e2 keeps two live ones.
    let closed_before = log_lines(&pm, &["backend=\"e1\"", "connection closed"]).len();
    for mut s in [c1, c3] {
        s.shutdown(std::net::Shutdown::Write).expect("half-close");
        assert_eq!(wait_closed(&mut s, CLIENT_TIMEOUT).0, End::Closed);
    }
    wait_log_count(&pm, &["backend=\"e1\"", "connection closed"], closed_before + 2);
    // The close line is written just before the connection's live count drops: give it a moment.
    std::thread::sleep(Duration::from_millis(100));
    // Now e1 has none and e2 two: the next two both go to e1 (not round robin).
    let c5 = open();
    let c6 = open();
    assert_eq!(
        counts(),
        (4, 2),
        "new connections did not go to the less loaded backend"
    );
    // A tie (two each) goes to the first in configuration order.
    let c7 = open();
    assert_eq!(counts(), (5, 2));
    drop((c2, c4, c5, c6, c7));
}

// ---------------------------------------------------------------- balancing strategies

/// pmmux with one listener using `strategy` over `pass` backends to `targets` (each given as
/// `(address, extra TOML lines)`), all in the normal tier, plus a standby echo that must never be
/// used while a normal one matches.
fn balanced(strategy: &str, targets: &[(SocketAddr, &str)], standby: &TcpServer) -> (Pmmux, u16) {
    start_one(&[], |port| {
        let mut text = format!(
            "{head}[routing]\nstrategy = \"{strategy}\"\n",
            head = listeners(&[format!("127.0.0.1:{port}")])
        );
        for (i, (addr, extra)) in targets.iter().enumerate() {
            text += &format!("[[backend]]\nname = \"e{i}\"\nprotocol = \"pass\"\ntarget = \"{addr}\"\n{extra}\n");
        }
        text += &format!(
            "[[backend]]\nname = \"spare\"\nprotocol = \"pass\"\npriority = \"standby\"\ntarget = \"{}\"\n",
            standby.addr()
        );
        text
    })
}

/// A TCP connection to `to` from the loopback address `from` (any port).
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    // SAFETY: plain socket calls on a descriptor this function owns until `from_raw_fd` takes it.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let SocketAddr::V4(to4) = to else {
        panic!("{to} is not IPv4")
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `fd` is a fresh socket; the addresses live across the calls.
    let stream = unsafe {
        let local = sockaddr(from, 0);
        let rc = libc::bind(fd, std::ptr::addr_of!(local).cast(), len);
        let err = std::io::Error::last_os_error();
        let stream = TcpStream::from_raw_fd(fd);
        assert_eq!(rc, 0, "bind {from}: {err}");
        let remote = sockaddr(*to4.ip(), to4.port());
        let rc = libc::connect(fd, std::ptr::addr_of!(remote).cast(), len);
        assert_eq!(rc, 0, "connect {from} -> {to}: {}", std::io::Error::last_os_error());
        stream
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
}

/// Which of `servers` got one echoed connection from `from` (closed again before returning).
fn route_once(port: u16, from: Ipv4Addr, servers: &[&TcpServer]) -> usize {
    let before: Vec<usize> = servers.iter().map(|s| s.connections()).collect();
    let mut s = connect_from(from, loopback(port));
    echo_exchange(&mut s, &random_bytes(512));
    let after: Vec<usize> = servers.iter().map(|s| s.connections()).collect();
    let hit: Vec<usize> = (0..servers.len()).filter(|&i| after[i] != before[i]).collect();
    assert_eq!(hit.len(), 1, "one connection reached {hit:?} ({before:?} -> {after:?})");
    hit[0]
}

#[test]
fn round_robin_takes_the_backends_in_turn() {
    let echoes = [TcpEcho::start(), TcpEcho::start(), TcpEcho::start()];
    let spare = TcpEcho::start();
    let targets: Vec<_> = echoes.iter().map(|e| (e.addr(), "")).collect();
    let (_pm, port) = balanced("round-robin", &targets, &spare);
    let servers: Vec<&TcpServer> = echoes.iter().collect();
    let order: Vec<usize> = (0..9)
        .map(|_| route_once(port, Ipv4Addr::LOCALHOST, &servers))
        .collect();
    // Whichever backend starts the rotation, each follows the one before it.
    let first = order[0];
    let expect: Vec<usize> = (0..9).map(|i| (first + i) % 3).collect();
    assert_eq!(order, expect, "connections did not rotate over the three backends");
    assert_eq!(
        spare.connections(),
        0,
        "the standby backend served while normal ones matched"
    );
}

#[test]
fn weighted_gives_each_backend_its_weight() {
    let heavy = TcpEcho::start();
    let light = TcpEcho::start();
    let spare = TcpEcho::start();
    let (_pm, port) = balanced("weighted", &[(heavy.addr(), "weight = 3"), (light.addr(), "")], &spare);
    let servers = [&heavy, &light];
    let picks: Vec<usize> = (0..12)
        .map(|_| route_once(port, Ipv4Addr::LOCALHOST, &servers))
        .collect();
    assert_eq!((heavy.connections(), light.connections()), (9, 3), "order: {picks:?}");
    // Interleaved, not in runs: the light backend turns up in every window of four.
    assert!(picks.windows(4).all(|w| w.contains(&1)), "order: {picks:?}");
    assert_eq!(spare.connections(), 0);
}

#[test]
fn random_uses_every_backend_without_a_fixed_order() {
    let echoes = [TcpEcho::start(), TcpEcho::start()];
    let spare = TcpEcho::start();
    let (_pm, port) = balanced("random", &[(echoes[0].addr(), ""), (echoes[1].addr(), "")], &spare);
    let servers: Vec<&TcpServer> = echoes.iter().collect();
    let picks: Vec<usize> = (0..40)
        .map(|_| route_once(port, Ipv4Addr::LOCALHOST, &servers))
        .collect();
    let first = picks.iter().filter(|&&p| p == 0).count();
    // Binomial(40, 1/2): below 8 or above 32 has probability about 1e-5.
    assert!(
        (8..=32).contains(&first),
        "{first} of 40 to the first backend: {picks:?}"
    );
    // Not round robin in disguise: some backend gets two in a row.
    assert!(picks.windows(2).any(|w| w[0] == w[1]), "strict alternation: {picks:?}");
    assert_eq!(spare.connections(), 0);
}

#[test]
fn source_hash_keeps_each_client_on_its_backend_and_moves_only_the_lost_ones() {
    let mut echoes = vec![TcpEcho::start(), TcpEcho::start(), TcpEcho::start()];
    let spare = TcpEcho::start();
    let targets: Vec<_> = echoes.iter().map(|e| (e.addr(), "")).collect();
    let (_pm, port) = balanced("source-hash", &targets, &spare);
    let clients: Vec<Ipv4Addr> = (10..40).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
    let servers: Vec<&TcpServer> = echoes.iter().collect();
    let home: Vec<usize> = clients.iter().map(|&c| route_once(port, c, &servers)).collect();
    for _ in 0..2 {
        for (c, h) in clients.iter().zip(&home) {
            assert_eq!(route_once(port, *c, &servers), *h, "client {c} changed backend");
        }
    }
    let used = |b: usize| home.iter().filter(|&&h| h == b).count();
    assert!(
        (0..3).all(|b| used(b) > 0),
        "30 clients did not spread over 3 backends: {home:?}"
    );

    // The last backend goes away: its connections fail over (the next in each client's ranking);
    // every other client stays where it was.
    let gone = echoes.pop().expect("three echoes");
    drop(gone);
    let servers: Vec<&TcpServer> = echoes.iter().collect();
    for (c, h) in clients.iter().zip(&home) {
        let now = route_once(port, *c, &servers);
        if *h != 2 {
            assert_eq!(now, *h, "client {c} moved off a backend that is still there");
        }
    }
    assert_eq!(spare.connections(), 0);
}
