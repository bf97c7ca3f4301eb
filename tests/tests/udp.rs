//! UDP, end to end, with real clients and servers on loopback: `dig` routed by query name through
//! the `dns` plugin to two dnsmasq servers (over UDP, and over TCP on a TCP+UDP listener), many
//! concurrent clients each getting back only their own datagrams (through a `pass` forward and the
//! `echo` plugin's reply path), datagrams up to the 65,507-byte maximum, and random garbage dropped
//! and counted. Flow lifetime (idle expiry, the flow cap, hot reload) is in `udp_flows.rs`.

mod udp_common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use pmmux_e2e::*;
use rand::Rng;
use udp_common::*;

#[test]
fn dig_is_routed_by_query_name_to_two_dnsmasq_servers_over_udp_and_tcp() {
    let a = dns_server("server-a", 1);
    let b = dns_server("server-b", 2);
    let (pm, ports) = start(&["dns", "echo"], &[Bind::Udp, Bind::Both, Bind::Tcp], |p| {
        format!(
            "{}[[listener]]\naddress = \"127.0.0.1:{}\"\ntransport = [\"tcp\", \"udp\"]\n{}{}\
             [[backend]]\nname = \"rest\"\nprotocol = \"echo\"\npriority = \"fallback\"\n",
            udp_head(p[0], p[2]),
            p[1],
            dns_backend("dns-a", a.addr(), "a.example"),
            dns_backend("dns-b", b.addr(), "b.example"),
        )
    });
    let (udp, both, admin) = (ports[0], ports[1], ports[2]);

    for (port, tcp) in [(udp, false), (both, false), (both, true)] {
        let how = format!("port {port}{}", if tcp { " over TCP" } else { "" });
        assert_eq!(dig(port, "www.a.example", "A", tcp), ["10.1.0.1"], "{how}");
        assert_eq!(dig(port, "www.b.example", "A", tcp), ["10.2.0.2"], "{how}");
        assert_eq!(dig(port, "id.a.example", "TXT", tcp), ["\"server-a\""], "{how}");
        assert_eq!(dig(port, "id.b.example", "TXT", tcp), ["\"server-b\""], "{how}");
    }
    // Each server saw exactly its own names: three times each (UDP, TCP+UDP listener by UDP, by TCP).
    for (server, mine, other) in [(&a, "a", "b"), (&b, "b", "a")] {
        for prefix in ["www", "id"] {
            let (m, o) = (format!("{prefix}.{mine}.example"), format!("{prefix}.{other}.example"));
            assert_eq!(
                server.queries(&m),
                3,
                "{} queries for {m}:\n{}",
                server.name(),
                server.log()
            );
            assert_eq!(
                server.queries(&o),
                0,
                "{} queries for {o}:\n{}",
                server.name(),
                server.log()
            );
        }
    }

    // A name neither dns backend claims goes to the catch-all after them, which echoes it back as is.
    let client = client_socket(T);
    let query = dns_query(0x5151, "www.c.example", QTYPE_A);
    assert_eq!(exchange(&client, loopback(udp), &query), query);
    assert_eq!(a.queries("www.c.example") + b.queries("www.c.example"), 0);

    // Each dig used a new source port: one flow per UDP query (plus the echoed one on the UDP-only listener).
    let c = udp_counters(admin, udp);
    assert_eq!((c.datagrams, c.flows, c.unmatched), (5, 5, 0), "{c:?}");
    let c = udp_counters(admin, both);
    assert_eq!((c.datagrams, c.flows, c.unmatched), (4, 4, 0), "{c:?}");
    assert!(pm.is_running());
}

/// One client's session: `count` distinct datagrams of random sizes, each sent after the previous
/// one came back; every reply must come from `to` and be exactly the datagram just sent.
fn client_session(c: usize, to: SocketAddr, count: usize, start: &Barrier) -> Result<(), String> {
    let mut rng = rand::rng();
    let payloads: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let mut p = format!("client {c:03} datagram {i:03} ").into_bytes();
            p.extend_from_slice(&random_bytes(rng.random_range(0..1200)));
            p
        })
        .collect();
    let s = client_socket(T);
    start.wait();
    for (i, p) in payloads.iter().enumerate() {
        s.send_to(p, to).map_err(|e| format!("client {c}: send {i}: {e}"))?;
        let (reply, from) = recv(&s).ok_or_else(|| format!("client {c}: no reply to datagram {i} within {T:?}"))?;
        if from != to {
            return Err(format!("client {c}: reply from {from}, not from {to}"));
        }
        if reply != *p {
            let head = String::from_utf8_lossy(&reply[..reply.len().min(27)]).into_owned();
            return Err(format!(
                "client {c}: datagram {i} came back as {} other bytes starting {head:?}",
                reply.len()
            ));
        }
    }
    // Nothing else may arrive: no duplicate, nobody else's datagram.
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    match recv(&s) {
        Some((extra, _)) => Err(format!("client {c}: an extra datagram of {} bytes", extra.len())),
        None => Ok(()),
    }
}

/// `clients` concurrent clients, `count` datagrams each, against `to`; panics with every failure.
fn many_clients(to: SocketAddr, clients: usize, count: usize) -> Duration {
    let start = Arc::new(Barrier::new(clients + 1));
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let start = Arc::clone(&start);
            thread::spawn(move || client_session(c, to, count, &start))
        })
        .collect();
    start.wait();
    let began = Instant::now();
    let failures: Vec<String> = threads
        .into_iter()
        .filter_map(|t| t.join().expect("client thread").err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} clients failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    began.elapsed()
}

const CLIENTS: usize = 50;
const EACH: usize = 20;

#[test]
fn fifty_concurrent_clients_through_pass_each_get_only_their_own_datagrams() {
    let echo = UdpEcho::start();
    let (pm, ports) = start(&[], &[Bind::Udp, Bind::Tcp], |p| {
        format!(
            "{}[[backend]]\nname = \"fwd\"\nprotocol = \"pass\"\ntarget = \"{}\"\n",
            udp_head(p[0], p[1]),
            echo.addr()
        )
    });
    let took = many_clients(loopback(ports[0]), CLIENTS, EACH);
    println!("{CLIENTS} clients x {EACH} datagrams through pass in {took:?}");
    assert_eq!(echo.datagrams(), CLIENTS * EACH, "datagrams the upstream saw");
    let c = udp_counters(ports[1], ports[0]);
    assert_eq!(
        (c.datagrams, c.flows, c.unmatched, c.rejected),
        ((CLIENTS * EACH) as u64, CLIENTS as u64, 0, 0),
        "{c:?}"
    );
    // The log is written by its own thread: wait for the lines, then count them.
    wait_log_count(&pm, &["UDP flow created", "backend=\"fwd\""], CLIENTS);
    assert_eq!(log_lines(&pm, &["UDP flow created", "backend=\"fwd\""]).len(), CLIENTS);
}

#[test]
fn fifty_concurrent_clients_through_the_echo_plugin_each_get_only_their_own_datagrams() {
    let (pm, ports) = start(&["echo"], &[Bind::Udp, Bind::Tcp], |p| {
        format!(
            "{}[[backend]]\nname = \"echo\"\nprotocol = \"echo\"\n",
            udp_head(p[0], p[1])
        )
    });
    let took = many_clients(loopback(ports[0]), CLIENTS, EACH);
    println!("{CLIENTS} clients x {EACH} datagrams through the echo plugin in {took:?}");
    let c = udp_counters(ports[1], ports[0]);
    assert_eq!(
        (c.datagrams, c.flows, c.unmatched, c.rejected),
        ((CLIENTS * EACH) as u64, CLIENTS as u64, 0, 0),
        "{c:?}"
    );
    // The log is written by its own thread: wait for the lines, then count them.
    wait_log_count(&pm, &["UDP flow created", "backend=\"echo\""], CLIENTS);
    assert_eq!(log_lines(&pm, &["UDP flow created", "backend=\"echo\""]).len(), CLIENTS);
}

#[test]
fn datagrams_up_to_the_65507_byte_maximum_come_back_intact_through_pass_and_echo() {
    let echo = UdpEcho::start();
    let (pm, ports) = start(&["echo"], &[Bind::Udp, Bind::Udp, Bind::Tcp], |p| {
        format!(
            "{}[[listener]]\naddress = \"127.0.0.1:{}\"\ntransport = [\"udp\"]\n\
             [[backend]]\nname = \"fwd\"\nprotocol = \"pass\"\ntarget = \"{}\"\n\
             [backend.match]\nlocal_port = {}\n\
             [[backend]]\nname = \"echo\"\nprotocol = \"echo\"\n\
             [backend.match]\nlocal_port = {}\n",
            udp_head(p[0], p[2]),
            p[1],
            echo.addr(),
            p[0],
            p[1]
        )
    });
    for (port, via) in [(ports[0], "pass"), (ports[1], "echo")] {
        let s = client_socket(T);
        for len in [60_000, 65_507, 1, 32_768, 60_000] {
            let data = random_bytes(len);
            let got = exchange(&s, loopback(port), &data);
            assert_eq!(got.len(), len, "{len} bytes through {via}");
            assert_eq!(sha256_hex(&got), sha256_hex(&data), "{len} bytes through {via}");
        }
    }
    assert_eq!(echo.datagrams(), 5, "only the pass listener reaches the upstream");
    for port in [ports[0], ports[1]] {
        let c = udp_counters(ports[2], port);
        assert_eq!((c.datagrams, c.flows, c.unmatched), (5, 1, 0), "{c:?}");
    }
    assert!(pm.is_running());
}

#[test]
fn garbage_datagrams_are_dropped_and_counted_and_dns_still_answers() {
    let dns = dns_server("server-a", 1);
    let (pm, ports) = start(&["dns"], &[Bind::Udp, Bind::Tcp], |p| {
        format!(
            "{}{}",
            udp_head(p[0], p[1]),
            dns_backend("dns", dns.addr(), "a.example")
        )
    });
    let (port, admin) = (ports[0], ports[1]);
    let to = loopback(port);
    let sockets: Vec<UdpSocket> = (0..4).map(|_| client_socket(NO_REPLY)).collect();
    let mut rng = rand::rng();
    let mut sizes: Vec<usize> = (0..1000).map(|_| rng.random_range(0..2000)).collect();
    sizes.extend([0, 0, 65_000, 65_000, 65_000, 65_507]);
    let total = sizes.len() as u64;
    // Sent in small batches, each received by pmmux before the next, so the kernel drops nothing
    // (the listening socket's receive buffer is the default ~200 KiB: three 65,000-byte datagrams).
    let mut sent = 0u64;
    for batch in sizes.chunks(20) {
        for (i, &len) in batch.iter().enumerate() {
            let big = len > 10_000;
            let s = &sockets[(sent as usize + i) % sockets.len()];
            s.send_to(&random_bytes(len), to)
                .unwrap_or_else(|e| panic!("send {len} bytes: {e}"));
            if big {
                // One big datagram at a time.
                let want = sent + i as u64 + 1;
                wait_counters(admin, port, T, "the big datagram received", |c| c.datagrams >= want);
            }
        }
        sent += batch.len() as u64;
        wait_counters(admin, port, T, "the batch received", |c| c.datagrams >= sent);
    }
    for s in &sockets {
        if let Some((reply, from)) = recv(s) {
            panic!("garbage got a reply: {} bytes from {from}", reply.len());
        }
    }
    assert!(pm.is_running(), "pmmux died:\n{}", pm.log());
    let c = udp_counters(admin, port);
    assert_eq!(
        (c.datagrams, c.unmatched, c.flows, c.rejected),
        (total, total, 0, 0),
        "every garbage datagram is counted as unmatched: {c:?}"
    );
    assert_eq!(dns.total_queries(), 0, "garbage reached the DNS server:\n{}", dns.log());
    // The drop is logged, rate-limited (one line per 5 s at most).
    let dropped = log_lines(&pm, &["UDP datagram matched no backend; dropped"]);
    assert!(
        !dropped.is_empty() && dropped.len() <= 3,
        "{} drop lines",
        dropped.len()
    );

    // Real queries still work, from the garbage senders' own sockets too.
    dns_a_via(&sockets[0], to, 0x0a0a, "www.a.example", "10.1.0.1");
    assert_eq!(dig(port, "www.a.example", "A", false), ["10.1.0.1"]);
    assert_eq!(dig(port, "id.a.example", "TXT", false), ["\"server-a\""]);
    assert_eq!(dns.total_queries(), 3);
    let c = udp_counters(admin, port);
    assert_eq!((c.unmatched, c.flows), (total, 3), "{c:?}");
}
