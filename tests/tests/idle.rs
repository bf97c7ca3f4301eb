//! Idle TCP connections, end to end: a relayed connection with no byte either way for
//! `[routing] idle_timeout_ms` is closed by pmmux (logged with its reason, counted in `/metrics` as
//! `outcome="idle_timeout"`), a backend's own `idle_timeout_ms` overrides it, a connection that
//! keeps talking is never cut, a half-closed one is closed after `half_closed_timeout_ms`, and both
//! sockets of a relayed connection carry TCP keepalive (seen with `ss`; the upstream's from the
//! relay's first second on).

mod ops_common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use ops_common::*;
use pmmux_e2e::*;

const IDLE_MS: u64 = 1500;
const OVERRIDE_MS: u64 = 3000;
const HALF_MS: u64 = 600;
/// Slack for a loaded machine on top of a timeout.
const SLACK: Duration = Duration::from_millis(1500);

/// Connects, checks one echo, then waits for pmmux to close; returns how long the quiet lasted.
fn quiet_until_closed(addr: std::net::SocketAddr) -> Duration {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("read timeout");
    s.write_all(b"hello").expect("write");
    let mut got = [0u8; 5];
    s.read_exact(&mut got).expect("echo");
    assert_eq!(&got, b"hello");
    let quiet = Instant::now();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("closed by pmmux, not timed out");
    quiet.elapsed()
}

#[test]
fn idle_and_half_closed_connections_are_closed_with_a_reason_and_counted_and_talkers_are_not() {
    let echo = TcpEcho::start();
    // Holds each connection open after the client's FIN, without a byte.
    let holder = TcpServer::start_with("127.0.0.1:0", |mut s| {
        let mut buf = [0u8; 1024];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        std::thread::sleep(Duration::from_secs(20));
    })
    .expect("holding server");
    let (p1, p2, p3, admin) = (free_port(), free_port(), free_port(), free_port());
    let config = format!(
        "plugin_dir = \"plugins\"\n\
         [routing]\nidle_timeout_ms = {IDLE_MS}\nhalf_closed_timeout_ms = {HALF_MS}\n\
         [admin]\naddress = \"127.0.0.1:{admin}\"\n\
         [[listener]]\naddress = \"127.0.0.1:{p1}\"\n\
         [[listener]]\naddress = \"127.0.0.1:{p2}\"\n\
         [[listener]]\naddress = \"127.0.0.1:{p3}\"\n\
         [[backend]]\nname = \"default\"\nprotocol = \"pass\"\ntarget = \"{echo}\"\n\
         [backend.match]\nlocal_port = {p1}\n\
         [[backend]]\nname = \"patient\"\nprotocol = \"pass\"\ntarget = \"{echo}\"\nidle_timeout_ms = {OVERRIDE_MS}\n\
         [backend.match]\nlocal_port = {p2}\n\
         [[backend]]\nname = \"holder\"\nprotocol = \"pass\"\ntarget = \"{holder}\"\n\
         [backend.match]\nlocal_port = {p3}\n",
        echo = echo.addr(),
        holder = holder.addr(),
    );
    let pm = Pmmux::start(&config, &[]);
    for p in [p1, p2, p3, admin] {
        pm.wait_listening(loopback(p));
    }

    // Keepalive on both sockets of a relayed connection: the client's (inherited from the
    // listener) and the upstream one.
    let mut talker = TcpStream::connect(loopback(p1)).expect("connect");
    talker.write_all(b"x").expect("write");
    let mut one = [0u8; 1];
    talker.read_exact(&mut one).expect("echo");
    let ss = run("ss", &["-tnoH", "state", "established"], Duration::from_secs(10)).expect_success("ss");
    let me = talker.local_addr().expect("address").to_string();
    let client_side = ss
        .lines()
        // pmmux's side: the listener's address is the local one (3rd column), the client the peer;
        // the client's own socket lists the same two addresses the other way round.
        .find(|l| {
            let mut cols = l.split_whitespace().skip(2);
            cols.next() == Some(format!("127.0.0.1:{p1}").as_str()) && cols.next() == Some(me.as_str())
        })
        .unwrap_or_else(|| panic!("no socket of pmmux towards {me}:\n{ss}"));
    assert!(
        client_side.contains("timer:(keepalive"),
        "client socket without keepalive: {client_side}"
    );
    // The upstream socket gets it once the relay has lasted a second (the first probe is due after
    // a minute; a shorter connection skips the system calls).
    let upstream_keepalive = || {
        let ss = run("ss", &["-tnoH", "state", "established"], Duration::from_secs(10)).expect_success("ss");
        let upstream_side = ss
            .lines()
            .filter(|l| l.contains(&echo.addr().to_string()))
            // pmmux's side: the echo server's address is the peer (4th column), not the local one.
            .filter(|l| {
                l.split_whitespace()
                    .nth(3)
                    .is_some_and(|peer| peer == echo.addr().to_string())
            })
            .map(str::to_owned)
            .collect::<Vec<_>>();
        (
            upstream_side.iter().any(|l| l.contains("timer:(keepalive")),
            upstream_side,
        )
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut armed, mut upstream_side) = upstream_keepalive();
    while !armed && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        (armed, upstream_side) = upstream_keepalive();
    }
    assert!(armed, "upstream socket without keepalive after 5 s: {upstream_side:#?}");
    // (That took a second of the idle timeout: talk once to start the next part afresh.)
    talker.write_all(b"y").expect("still open");
    talker.read_exact(&mut one).expect("still echoing");

    // A connection that talks every 500 ms for twice the idle timeout is never cut.
    for i in 0..(2 * IDLE_MS / 500) {
        std::thread::sleep(Duration::from_millis(500));
        talker.write_all(&[i as u8]).expect("still open");
        talker.read_exact(&mut one).expect("still echoing");
        assert_eq!(one[0], i as u8);
    }
    drop(talker);

    // Quiet: closed after the idle timeout, or the backend's own.
    let waited = quiet_until_closed(loopback(p1));
    println!("idle connection closed after {waited:?} (idle_timeout_ms = {IDLE_MS})");
    assert!(waited >= Duration::from_millis(IDLE_MS - 100), "{waited:?}");
    assert!(waited < Duration::from_millis(IDLE_MS) + SLACK, "{waited:?}");
    let waited = quiet_until_closed(loopback(p2));
    println!("idle connection of `patient` closed after {waited:?} (its idle_timeout_ms = {OVERRIDE_MS})");
    assert!(waited >= Duration::from_millis(OVERRIDE_MS - 100), "{waited:?}");
    assert!(waited < Duration::from_millis(OVERRIDE_MS) + SLACK, "{waited:?}");

    // Half-closed (the client finished, the server holds its side without a byte): closed after
    // the half-closed timeout, well before the idle timeout.
    let mut half = TcpStream::connect(loopback(p3)).expect("connect");
    half.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    half.write_all(b"request").expect("write");
    half.shutdown(Shutdown::Write).expect("half-close");
    let started = Instant::now();
    let mut rest = Vec::new();
    half.read_to_end(&mut rest).expect("closed by pmmux");
    let waited = started.elapsed();
    println!("half-closed connection closed after {waited:?} (half_closed_timeout_ms = {HALF_MS})");
    assert!(waited >= Duration::from_millis(HALF_MS - 100), "{waited:?}");
    assert!(waited < Duration::from_millis(IDLE_MS), "{waited:?}");

    // The close lines are written by the log's own thread, a moment after the close.
    let cut_lines = || -> Vec<String> {
        pm.log()
            .lines()
            .filter(|l| l.contains("connection closed by pmmux"))
            .map(str::to_owned)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while cut_lines().len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let lines = cut_lines();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("backend=\"default\"") && l.contains("reason=\"idle timeout\"")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("backend=\"patient\"") && l.contains("reason=\"idle timeout\"")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("backend=\"holder\"") && l.contains("reason=\"half-closed timeout\"")),
        "{lines:#?}"
    );
    let m = wait_metrics(admin, "three idle closes", |m| {
        m.sum("pmmux_connections_total", &[("outcome", "idle_timeout")]) == 3.0
    });
    for backend in ["default", "patient", "holder"] {
        let n = m.sum(
            "pmmux_connections_total",
            &[("backend", backend), ("outcome", "idle_timeout")],
        );
        assert_eq!(n, 1.0, "{backend}");
    }
    assert!(pm.is_running());
}
