//! UDP detection across several datagrams, end to end. With the plugin built against plugin-api 1.0
//! (protocol `old`: a strict prefix of `OLD` is `NeedMore`), a client's datagrams are held while
//! undecided and all reach the target in order once it matches, an undecided client is dropped (or
//! given to a lower tier that matched) at the probe timeout, and the pending-client cap holds. With
//! real QUIC (quinn client and servers, the `quic` plugin routing on SNI), each name reaches its own
//! server through one UDP listener, also when the ClientHello spans several Initial datagrams, while DNS
//! through the same listener is unaffected.

mod udp_common;

use std::fs;
use std::time::{Duration, Instant};

use pmmux_e2e::*;
use udp_common::*;

/// The probe timeout of the fallback test: short enough to wait for.
const PROBE_MS: u64 = 2000;
/// The probe timeout of the test that holds clients while it reads the status several times
/// (each `pmmux status` call takes a while on a loaded machine).
const HOLD_MS: u64 = 5000;

fn old_plugin_files() -> Vec<(String, Vec<u8>)> {
    let lib = api_1_0_fixture();
    vec![(
        "libfixture_api_1_0.so".into(),
        fs::read(&lib).expect("read the 1.0 fixture plugin"),
    )]
}

fn old_backend(name: &str, target: std::net::SocketAddr) -> String {
    format!("[[backend]]\nname = \"{name}\"\nprotocol = \"old\"\ntarget = \"{target}\"\n")
}

/// Sends `data` from `s` to `to` without waiting for anything.
fn send(s: &std::net::UdpSocket, to: std::net::SocketAddr, data: &[u8]) {
    s.send_to(data, to)
        .unwrap_or_else(|e| panic!("send {} bytes to {to}: {e}", data.len()));
}

/// The next datagram on `s` within [`T`], which must come from `to`.
fn next_reply(s: &std::net::UdpSocket, to: std::net::SocketAddr) -> Vec<u8> {
    s.set_read_timeout(Some(T)).expect("set read timeout");
    let (reply, from) = recv(s).unwrap_or_else(|| panic!("no datagram within {T:?}"));
    assert_eq!(from, to, "a reply from another address than the listener");
    reply
}

#[test]
fn a_1_0_plugin_saying_need_more_gets_the_next_datagram_and_both_reach_the_target_in_order() {
    let echo = UdpEcho::start();
    let (pm, ports) = start_with_files(&[], &old_plugin_files(), &[Bind::Udp, Bind::Tcp], |p| {
        format!(
            "{}[routing]\nprobe_timeout_ms = {HOLD_MS}\nmax_udp_pending = 2\n{}",
            udp_head(p[0], p[1]),
            old_backend("old", echo.addr())
        )
    });
    let (port, admin) = (ports[0], ports[1]);
    let to = loopback(port);

    // "OL" is a strict prefix of OLD: held, nothing forwarded yet.
    let s = client_socket(T);
    let me = format!("client={}", s.local_addr().expect("client address"));
    send(&s, to, b"OL");
    wait_counters(admin, port, T, "one client pending", |c| c.pending == 1);
    assert_eq!(echo.datagrams(), 0, "a held datagram was forwarded before the decision");
    // "OLDx" decides (the 1.0 plugin's default detect_datagrams judges the newest datagram): both
    // reach the target, in the order sent, and both echoes come back.
    send(&s, to, b"OLDx");
    assert_eq!(next_reply(&s, to), b"OL");
    assert_eq!(next_reply(&s, to), b"OLDx");
    assert_eq!(echo.datagrams(), 2);
    wait_log_count(&pm, &["UDP flow created", &me], 1);
    let created = log_lines(&pm, &["UDP flow created", &me]);
    assert_eq!(created.len(), 1, "{created:#?}");
    assert!(
        created[0].contains("datagrams=2") && created[0].contains("old.api=1.0.0"),
        "{}",
        created[0]
    );
    // Later datagrams use the flow at once.
    assert_eq!(exchange(&s, to, b"third"), b"third");
    let c = udp_counters(admin, port);
    assert_eq!((c.flows, c.pending, c.unmatched, c.datagrams), (1, 0, 0, 3), "{c:?}");

    // A client that never completes OLD is dropped at the probe timeout, counted as unmatched.
    let quiet = client_socket(NO_REPLY);
    let sent = Instant::now();
    send(&quiet, to, b"O");
    send(&quiet, to, b"O");
    let (c, seen) = wait_counters(
        admin,
        port,
        Duration::from_secs(15),
        "the undecided client dropped",
        |c| c.unmatched == 2,
    );
    let waited = seen.duration_since(sent);
    println!("undecided client with a {HOLD_MS} ms probe timeout dropped after {waited:?}");
    assert!(waited >= Duration::from_millis(HOLD_MS), "dropped after {waited:?}");
    assert_eq!((c.pending, c.flows), (0, 1), "{c:?}");
    assert!(recv(&quiet).is_none(), "the dropped client got an answer");
    assert_eq!(echo.datagrams(), 3);

    // A datagram no backend wants is dropped at once, without being held.
    let garbage = client_socket(NO_REPLY);
    send(&garbage, to, b"xyz");
    wait_counters(admin, port, T, "garbage dropped", |c| {
        c.unmatched == 3 && c.pending == 0
    });

    // At most max_udp_pending = 2 clients are held: a third undecided client is dropped and counted
    // (one log line), while the two held ones still complete.
    let (a, b, third) = (client_socket(T), client_socket(T), client_socket(NO_REPLY));
    send(&a, to, b"O");
    send(&b, to, b"OL");
    wait_counters(admin, port, T, "two clients pending", |c| c.pending == 2);
    send(&third, to, b"O");
    let (c, _) = wait_counters(admin, port, T, "the third undecided client refused", |c| {
        c.pending_rejected == 1
    });
    assert_eq!(c.pending, 2, "{c:?}");
    const TOO_MANY: &str = "too many undecided UDP clients";
    assert!(pm.wait_for_log(TOO_MANY, T), "no `{TOO_MANY}` line:\n{}", pm.log());
    assert!(log_lines(&pm, &[TOO_MANY])[0].contains("max_udp_pending=2"));
    send(&a, to, b"OLD-a");
    assert_eq!(next_reply(&a, to), b"O");
    assert_eq!(next_reply(&a, to), b"OLD-a");
    send(&b, to, b"OLD-b");
    assert_eq!(next_reply(&b, to), b"OL");
    assert_eq!(next_reply(&b, to), b"OLD-b");
    assert!(recv(&third).is_none(), "the refused client's datagram was forwarded");
    // The refused client is not pending: its next datagram starts a detection of its own.
    third.set_read_timeout(Some(T)).expect("set read timeout");
    assert_eq!(exchange(&third, to, b"OLD-3"), b"OLD-3");
    let c = udp_counters(admin, port);
    assert_eq!(
        (c.flows, c.pending, c.pending_rejected, c.unmatched),
        (4, 0, 1, 3),
        "{c:?}"
    );
    assert_eq!(echo.datagrams(), 3 + 4 + 1);
    assert!(pm.is_running());
}

#[test]
fn at_the_probe_timeout_a_lower_tier_that_matched_gets_the_undecided_client() {
    let (old_target, fallback_target) = (UdpEcho::start(), UdpEcho::start());
    let (pm, ports) = start_with_files(&[], &old_plugin_files(), &[Bind::Udp, Bind::Tcp], |p| {
        format!(
            "{}[routing]\nprobe_timeout_ms = {PROBE_MS}\n{}\
             [[backend]]\nname = \"rest\"\nprotocol = \"pass\"\ntarget = \"{}\"\npriority = \"fallback\"\n",
            udp_head(p[0], p[1]),
            old_backend("old", old_target.addr()),
            fallback_target.addr()
        )
    });
    let (port, admin) = (ports[0], ports[1]);
    let to = loopback(port);

    // Not OLD at all: the fallback at once.
    let other = client_socket(T);
    let started = Instant::now();
    assert_eq!(exchange(&other, to, b"hello"), b"hello");
    assert!(
        started.elapsed() < Duration::from_millis(PROBE_MS),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((old_target.datagrams(), fallback_target.datagrams()), (0, 1));

    // Undecided: the fallback matched but waits for the normal tier until the probe timeout, then
    // gets both held datagrams, in order.
    let slow = client_socket(T);
    let sent = Instant::now();
    send(&slow, to, b"O");
    send(&slow, to, b"OL");
    assert_eq!(next_reply(&slow, to), b"O");
    let waited = sent.elapsed();
    assert_eq!(next_reply(&slow, to), b"OL");
    println!("undecided client given to the fallback {waited:?} after its first datagram");
    assert!(waited >= Duration::from_millis(PROBE_MS), "decided after {waited:?}");
    assert_eq!((old_target.datagrams(), fallback_target.datagrams()), (0, 3));
    let me = format!("client={}", slow.local_addr().expect("client address"));
    wait_log_count(&pm, &["UDP flow created", &me, "backend=\"rest\""], 1);
    let created = log_lines(&pm, &["UDP flow created", &me, "backend=\"rest\""]);
    assert_eq!(created.len(), 1, "{}", pm.log());

    // Completing OLD goes to the normal tier, with everything held.
    let fast = client_socket(T);
    send(&fast, to, b"OL");
    send(&fast, to, b"OLD");
    assert_eq!(next_reply(&fast, to), b"OL");
    assert_eq!(next_reply(&fast, to), b"OLD");
    assert_eq!((old_target.datagrams(), fallback_target.datagrams()), (2, 3));
    let c = udp_counters(admin, port);
    assert_eq!((c.flows, c.pending, c.unmatched), (3, 0, 0), "{c:?}");
}

// ---- real QUIC ----

/// A ClientHello offering this many long ALPN names (plus the one the servers speak) does not fit
/// one Initial datagram: about 40 × 61 bytes.
const MANY_ALPN: usize = 40;

fn quic_backend(name: &str, target: std::net::SocketAddr, sni: &str) -> String {
    format!(
        "[[backend]]\nname = \"{name}\"\nprotocol = \"quic\"\ntarget = \"{target}\"\n\
         [backend.params]\nsni = \"{sni}\"\n"
    )
}

/// The `datagrams=N` field of the "UDP flow created" line of `client`.
fn held_datagrams(pm: &Pmmux, client: std::net::SocketAddr, backend: &str) -> usize {
    let me = format!("client={client}");
    let lines = log_lines(pm, &["UDP flow created", &me]);
    assert_eq!(lines.len(), 1, "one flow for {client}:\n{}", pm.log());
    assert!(
        lines[0].contains(&format!("backend=\"{backend}\"")),
        "{client} went elsewhere: {}",
        lines[0]
    );
    let at = lines[0].find("datagrams=").expect("datagrams field") + "datagrams=".len();
    lines[0][at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .expect("datagrams count")
}

#[test]
fn quic_clients_reach_the_server_of_their_name_also_when_the_client_hello_spans_several_datagrams() {
    let a = QuicServer::start("server-a", "a.example");
    let b = QuicServer::start("server-b", "b.example");
    let dns = dns_server("dns-a", 1);
    let (pm, ports) = start(&["quic", "dns"], &[Bind::Udp, Bind::Tcp], |p| {
        format!(
            "{}{}{}{}",
            udp_head(p[0], p[1]),
            dns_backend("dns", dns.addr(), "a.example"),
            quic_backend("quic-a", a.addr(), "a.example"),
            quic_backend("quic-b", b.addr(), "b.example"),
        )
    });
    let (port, admin) = (ports[0], ports[1]);
    let to = loopback(port);
    let timeout = Duration::from_secs(15);
    let one = [QUIC_TEST_ALPN.to_vec()];

    let dns_client = client_socket(T);
    dns_a_via(&dns_client, to, 1, "www.a.example", "10.1.0.1");

    for (server, name) in [(&a, "a.example"), (&b, "b.example"), (&a, "a.example")] {
        let (reply, me) = quic_request(to, name, server.cert(), &one, b"ping", timeout)
            .unwrap_or_else(|e| panic!("{e}\n{}", pm.log()));
        let want = format!("{} sni={name} alpn=pmmux-test|ping", server.name());
        assert_eq!(String::from_utf8_lossy(&reply), want);
        let backend = if name == "a.example" { "quic-a" } else { "quic-b" };
        assert_eq!(
            held_datagrams(&pm, me, backend),
            1,
            "a small ClientHello fits one Initial"
        );
        wait_log_count(&pm, &["UDP flow created", &format!("client={me}")], 1);
        let created = log_lines(&pm, &["UDP flow created", &format!("client={me}")]);
        assert!(created[0].contains(&format!("quic.sni={name}")), "{}", created[0]);
    }

    // A ClientHello with many ALPN names spans three Initial datagrams: all are held until the
    // ClientHello is whole, then all are forwarded, in order, and the handshake completes.
    let mut many: Vec<Vec<u8>> = (0..MANY_ALPN)
        .map(|i| format!("x-{i:02}-{}", "p".repeat(56)).into_bytes())
        .collect();
    many.push(QUIC_TEST_ALPN.to_vec());
    for (server, name, backend) in [(&b, "b.example", "quic-b"), (&a, "a.example", "quic-a")] {
        let payload = random_bytes(100_000);
        let (reply, me) = quic_request(to, name, server.cert(), &many, &payload, timeout)
            .unwrap_or_else(|e| panic!("{e}\n{}", pm.log()));
        let head = format!("{} sni={name} alpn=pmmux-test|", server.name());
        assert_eq!(&reply[..head.len()], head.as_bytes());
        assert_eq!(sha256_hex(&reply[head.len()..]), sha256_hex(&payload));
        let held = held_datagrams(&pm, me, backend);
        println!(
            "ClientHello with {} ALPN names to {name}: {held} datagrams held before routing",
            many.len()
        );
        assert!(held >= 2, "the large ClientHello was decided on {held} datagram(s)");
    }

    // DNS through the same listener still works, and nothing was dropped.
    dns_a_via(&dns_client, to, 2, "www.a.example", "10.1.0.1");
    assert_eq!(dig(port, "id.a.example", "TXT", false), ["\"dns-a\""]);
    let c = wait_counters(admin, port, T, "no client pending", |c| c.pending == 0).0;
    assert_eq!((c.unmatched, c.pending_rejected), (0, 0), "{c:?}");
    assert!(pm.is_running());
}

/// A `quic` backend that reassembles the ClientHello (`alpn` set) and so decides over several
/// datagrams when it is large, with extra backend keys (`proxy_protocol`, `priority`) and
/// `[backend.match]` lines.
fn quic_alpn_backend(name: &str, target: std::net::SocketAddr, extra: &str, matchers: &str) -> String {
    format!(
        "[[backend]]\nname = \"{name}\"\nprotocol = \"quic\"\ntarget = \"{target}\"\n{extra}\
         [backend.params]\nalpn = \"pmmux-test\"\n{matchers}"
    )
}

#[test]
fn a_client_hello_spanning_several_datagrams_obeys_property_regexes_and_never_reaches_a_proxy_protocol_backend() {
    // Each server's certificate decides who may answer: a client routed anywhere else fails its
    // handshake. `pp` (first, TCP-only by its PROXY header) and `guarded` both hold a.example
    // certificates; `guarded` refuses b.example by its `quic.sni` regex; `open` (fallback) holds
    // b.example's.
    let pp = QuicServer::start("server-pp", "a.example");
    let guarded = QuicServer::start("server-guarded", "a.example");
    let open = QuicServer::start("server-open", "b.example");
    let (pm, ports) = start(&["quic"], &[Bind::Udp, Bind::Tcp], |p| {
        format!(
            "{}{}{}{}",
            udp_head(p[0], p[1]),
            quic_alpn_backend("pp", pp.addr(), "proxy_protocol = \"v2\"\n", ""),
            quic_alpn_backend(
                "guarded",
                guarded.addr(),
                "",
                "[backend.match]\nproperty = { \"quic.sni\" = \"!^b\\\\.example$\" }\n"
            ),
            quic_alpn_backend("open", open.addr(), "priority = \"fallback\"\n", ""),
        )
    });
    let to = loopback(ports[0]);
    let timeout = Duration::from_secs(15);
    let mut many: Vec<Vec<u8>> = (0..MANY_ALPN)
        .map(|i| format!("x-{i:02}-{}", "p".repeat(56)).into_bytes())
        .collect();
    many.push(QUIC_TEST_ALPN.to_vec());
    for (server, name, backend) in [(&open, "b.example", "open"), (&guarded, "a.example", "guarded")] {
        for alpn in [&many[..], &many[MANY_ALPN..]] {
            let (reply, me) = quic_request(to, name, server.cert(), alpn, b"ping", timeout)
                .unwrap_or_else(|e| panic!("{name} with {} ALPN names: {e}\n{}", alpn.len(), pm.log()));
            let want = format!("{} sni={name} alpn=pmmux-test|ping", server.name());
            assert_eq!(String::from_utf8_lossy(&reply), want);
            let held = held_datagrams(&pm, me, backend);
            println!(
                "{name}, {} ALPN names: {held} datagram(s) held, routed to {backend}",
                alpn.len()
            );
            if alpn.len() > 1 {
                assert!(held >= 2, "the large ClientHello was decided on {held} datagram(s)");
            }
        }
    }
    let wrong = log_lines(&pm, &["UDP flow created", "backend=\"pp\""]);
    assert!(
        wrong.is_empty(),
        "datagrams reached the proxy_protocol backend: {wrong:#?}"
    );
    assert!(pm.is_running());
}
