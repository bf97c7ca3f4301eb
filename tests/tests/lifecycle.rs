//! Shutdown, end to end: on SIGTERM / SIGINT the real `pmmux` stops accepting at once, lets open
//! relayed connections go on until they finish or `drain_timeout_ms` passes, and exits 0.

mod common;

use std::io::ErrorKind;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use pmmux_e2e::*;

fn pass_to(echo: &TcpServer, drain_ms: u64) -> (Pmmux, u16) {
    start_one(&[], |port| {
        format!(
            "{}[routing]\ndrain_timeout_ms = {drain_ms}\n[[backend]]\nname = \"echo\"\nprotocol = \"pass\"\ntarget = \"{}\"\n",
            listeners(&[format!("127.0.0.1:{port}")]),
            echo.addr()
        )
    })
}

/// Wait up to 3 s until a new connection to `port` is refused; panics otherwise.
fn assert_refused_soon(port: u16) -> Duration {
    let started = Instant::now();
    let refused = eventually(Duration::from_secs(3), || {
        matches!(
            TcpStream::connect_timeout(&loopback(port), Duration::from_millis(500)),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused
        )
    });
    assert!(refused, "new connections were still accepted 3 s after the signal");
    started.elapsed()
}

#[test]
fn sigterm_drains_an_open_connection_then_exits_0_when_it_closes() {
    let echo = TcpEcho::start();
    let (pm, port) = pass_to(&echo, 5000);
    let mut s = connect(loopback(port));
    echo_exchange(&mut s, b"before the signal");

    let signalled = Instant::now();
    pm.signal(libc::SIGTERM);
    wait_log_line(&pm, &["shutting down: draining open connections", "open=1"]);
    let refused_after = assert_refused_soon(port);
    assert!(pm.is_running(), "pmmux exited with a connection open");

    // The open connection keeps relaying, checksummed, for a while after the signal.
    let data = random_bytes(1 << 20);
    echo_exchange(&mut s, &data);
    std::thread::sleep(Duration::from_millis(300));
    echo_exchange(&mut s, b"still here");
    assert!(pm.is_running());

    // The client finishes: pmmux exits 0, well before the 5 s drain timeout.
    s.shutdown(Shutdown::Write).expect("half-close");
    assert_eq!(wait_closed(&mut s, CLIENT_TIMEOUT).0, End::Closed);
    let closed = Instant::now();
    let status = pm.wait_exit(Duration::from_secs(4)).unwrap_or_else(|| {
        panic!(
            "pmmux still running 4 s after its last connection closed; log:\n{}",
            pm.log()
        )
    });
    assert!(status.success(), "exit status {status}; log:\n{}", pm.log());
    assert!(
        closed.elapsed() < Duration::from_secs(2),
        "exit took {:?} after the close",
        closed.elapsed()
    );
    assert!(
        signalled.elapsed() < Duration::from_millis(4500),
        "{:?}",
        signalled.elapsed()
    );
    assert!(
        refused_after < Duration::from_secs(1),
        "refusing took {refused_after:?}"
    );
    let log = pm.log();
    assert!(log.contains("all connections finished"), "{log}");
    assert!(!log.contains("drain timeout reached"), "{log}");
}

#[test]
fn sigterm_with_a_client_that_never_closes_exits_0_at_the_drain_timeout() {
    let echo = TcpEcho::start();
    let (pm, port) = pass_to(&echo, 1000);
    let mut s = connect(loopback(port));
    echo_exchange(&mut s, &random_bytes(64 * 1024));

    let signalled = Instant::now();
    pm.signal(libc::SIGTERM);
    let status = pm
        .wait_exit(Duration::from_secs(6))
        .unwrap_or_else(|| panic!("pmmux still running 6 s after SIGTERM; log:\n{}", pm.log()));
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}; log:\n{}", pm.log());
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(4),
        "exited {took:?} after SIGTERM; drain_timeout_ms is 1000"
    );
    wait_log_line(&pm, &["drain timeout reached", "open=1"]);
    // The connection was cut with the process.
    assert_eq!(wait_closed(&mut s, Duration::from_secs(5)).0, End::Closed);
}

#[test]
fn sigint_with_nothing_open_exits_0_at_once() {
    let echo = TcpEcho::start();
    let (pm, port) = pass_to(&echo, 30_000);
    let data = random_bytes(256 * 1024);
    let got = tcp_roundtrip(loopback(port), &data, CLIENT_TIMEOUT).expect("round trip");
    assert_eq!(sha256_hex(&got), sha256_hex(&data));
    wait_log_line(&pm, &["backend=\"echo\"", "connection closed"]);

    let signalled = Instant::now();
    pm.signal(libc::SIGINT);
    let status = pm
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("pmmux still running 5 s after SIGINT; log:\n{}", pm.log()));
    assert!(status.success(), "exit status {status}");
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "{:?}",
        signalled.elapsed()
    );
    assert!(pm.log().contains("signal=\"SIGINT\""), "{}", pm.log());
    assert!(!tcp_listening(loopback(port)), "the port is still listening after exit");
}
