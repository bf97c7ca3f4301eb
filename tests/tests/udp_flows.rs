//! UDP flows over their lifetime, end to end: an idle flow ended by its timer (no packet needed to
//! notice) and counted, the flow cap refusing new clients with one rate-limited log line until flows
//! expire, and a flow through the `dns` plugin surviving two hot reloads of the plugin file while new
//! clients route through the new version. Status is read with the real `pmmux status --json`.

mod udp_common;

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use pmmux_e2e::*;
use udp_common::*;

#[test]
fn an_idle_flow_is_ended_by_its_timer_and_counted_as_expired() {
    let echo = UdpEcho::start();
    let (pm, ports) = start(&[], &[Bind::Udp, Bind::Tcp], |p| {
        format!(
            "{}[[backend]]\nname = \"fwd\"\nprotocol = \"pass\"\ntarget = \"{}\"\nudp_idle_timeout_ms = 500\n",
            udp_head(p[0], p[1]),
            echo.addr()
        )
    });
    let (port, admin) = (ports[0], ports[1]);
    let to = loopback(port);
    let s = client_socket(T);
    let me = format!("client={}", s.local_addr().expect("client address"));

    // Traffic keeps the flow alive: five round trips 150 ms apart outlast one idle timeout.
    let first = Instant::now();
    let mut last_sent = first;
    for i in 0..5u8 {
        if i > 0 {
            thread::sleep(Duration::from_millis(150));
        }
        last_sent = Instant::now();
        assert_eq!(exchange(&s, to, &[b'k', i]), [b'k', i]);
    }
    assert!(first.elapsed() >= Duration::from_millis(600));
    let c = udp_counters(admin, port);
    assert_eq!((c.flows, c.expired), (1, 0), "the flow is alive while used: {c:?}");
    assert_eq!(
        log_lines(&pm, &["UDP flow created", &me]).len(),
        1,
        "one flow, never re-created"
    );

    // Silence. Not expired too early: still there a quarter of a second later (unless this status
    // call itself was so slow that its answer could legitimately show it gone).
    thread::sleep(Duration::from_millis(250).saturating_sub(last_sent.elapsed()));
    let c = udp_counters(admin, port);
    if last_sent.elapsed() < Duration::from_millis(500) {
        assert_eq!(c.flows, 1, "expired before its 500 ms idle timeout: {c:?}");
    }
    // Then the timer ends it, with no datagram from anyone to trigger it.
    let (c, seen) = wait_counters(admin, port, Duration::from_secs(5), "expired", |c| c.flows == 0);
    let idle = seen.duration_since(last_sent);
    println!("flow with a 500 ms idle timeout seen gone {idle:?} after its last datagram");
    assert!(
        idle >= Duration::from_millis(500) && idle <= Duration::from_millis(1500),
        "gone after {idle:?}: {c:?}"
    );
    assert_eq!((c.expired, c.datagrams), (1, 5), "{c:?}");
    assert_eq!(echo.datagrams(), 5);
    assert_eq!(log_lines(&pm, &["UDP flow expired", &me, "backend=\"fwd\""]).len(), 1);

    // The same client again: a new flow, which works.
    assert_eq!(exchange(&s, to, b"again"), b"again");
    assert_eq!(log_lines(&pm, &["UDP flow created", &me]).len(), 2);
    let c = udp_counters(admin, port);
    assert_eq!((c.flows, c.expired), (1, 1), "{c:?}");
}

#[test]
fn a_full_flow_table_drops_new_clients_with_one_log_line_until_flows_expire() {
    const FULL: &str = "UDP flow table full";
    let (pm, ports) = start(&["echo"], &[Bind::Udp, Bind::Tcp], |p| {
        format!(
            "{}[routing]\nmax_udp_flows = 5\n\
             [[backend]]\nname = \"echo\"\nprotocol = \"echo\"\nudp_idle_timeout_ms = 3000\n",
            udp_head(p[0], p[1])
        )
    });
    let (port, admin) = (ports[0], ports[1]);
    let to = loopback(port);
    let started = Instant::now();
    let five: Vec<_> = (0..5).map(|_| client_socket(T)).collect();
    for (i, s) in five.iter().enumerate() {
        let msg = format!("client {i}");
        assert_eq!(exchange(s, to, msg.as_bytes()), msg.as_bytes());
    }
    let c = udp_counters(admin, port);
    assert_eq!((c.flows, c.rejected), (5, 0), "{c:?}");
    assert!(!pm.log().contains(FULL));

    // The sixth client is dropped, each of its datagrams counted; so is a seventh. Nothing comes
    // back within 300 ms (the replies above took milliseconds).
    let (sixth, seventh) = (client_socket(NO_REPLY), client_socket(NO_REPLY));
    for i in 0..3 {
        sixth.send_to(format!("sixth {i}").as_bytes(), to).expect("send");
    }
    seventh.send_to(b"seventh", to).expect("send");
    for s in [&sixth, &seventh] {
        if let Some((reply, _)) = recv(s) {
            panic!("a client beyond max_udp_flows got a reply of {} bytes", reply.len());
        }
    }
    // The clients with a flow still get through.
    assert_eq!(exchange(&five[0], to, b"still here"), b"still here");
    let c = udp_counters(admin, port);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "too slow to test the cap before the flows could expire ({:?})",
        started.elapsed()
    );
    assert_eq!((c.flows, c.rejected, c.expired), (5, 4, 0), "{c:?}");
    assert!(pm.wait_for_log(FULL, T), "no `{FULL}` line:\n{}", pm.log());
    let full = log_lines(&pm, &[FULL]);
    assert_eq!(full.len(), 1, "the line is rate-limited: {full:#?}");
    assert!(full[0].contains("max_udp_flows=5"), "{}", full[0]);

    // When the flows expire (3 s idle), the sixth client gets a flow.
    wait_counters(admin, port, Duration::from_secs(8), "all flows expired", |c| {
        c.flows == 0
    });
    assert_eq!(exchange(&sixth, to, b"my turn"), b"my turn");
    assert_eq!(exchange(&seventh, to, b"and mine"), b"and mine");
    let c = udp_counters(admin, port);
    assert_eq!((c.flows, c.rejected, c.expired), (2, 4, 5), "{c:?}");
    assert_eq!(log_lines(&pm, &[FULL]).len(), 1);
}

#[test]
fn a_dns_flow_survives_hot_reloads_of_its_plugin_and_new_clients_use_the_new_version() {
    let dns = dns_server("server-a", 1);
    let (pm, ports) = start(&["dns"], &[Bind::Udp, Bind::Tcp], |p| {
        format!(
            "{}[reload]\nquiet_period_ms = 150\nrescan_interval_ms = 2000\n{}",
            udp_head(p[0], p[1]),
            // DNS is routed per message by default (each query detected by the version current
            // then); `udp_routing = "flow"` makes it a session flow, whose pinning this test is about.
            dns_backend("dns", dns.addr(), "a.example").replacen(
                "[backend.params]",
                "udp_routing = \"flow\"\n[backend.params]",
                1
            )
        )
    });
    let (port, admin) = (ports[0], ports[1]);
    let to = loopback(port);
    let old = client_socket(T);
    let old_me = format!("client={}", old.local_addr().expect("client address"));
    dns_a_via(&old, to, 1, "www.a.example", "10.1.0.1");
    let st = StatusJson::fetch(admin);
    assert_eq!((st.top("mapped_versions"), st.top("old_versions_mapped")), (1, 0));
    assert_eq!(st.backend("dns"), (1, 1), "(live, routed) of the dns backend");

    let lib = pm.plugin_dir().join(plugin_file_name("dns"));
    let mut id = 2;
    for (round, how) in [(1u64, "rename over it"), (2, "cp over it")] {
        if round == 1 {
            pm.install_plugin("dns");
        } else {
            fs::copy(plugin_lib("dns"), &lib).expect("cp the plugin over itself");
        }
        let reloaded = Instant::now();
        while (log_lines(&pm, &["plugin loaded plugin=dns", "replaced=\"1.0.0\""]).len() as u64) < round {
            assert!(reloaded.elapsed() < T, "no reload after {how}:\n{}", pm.log());
            thread::sleep(Duration::from_millis(20));
        }
        let want = (round + 1, round);
        let (mut mapped, t0) = ((0, 0), Instant::now());
        while mapped != want && t0.elapsed() < T {
            let st = StatusJson::fetch(admin);
            mapped = (st.top("mapped_versions"), st.top("old_versions_mapped"));
            if mapped != want {
                thread::sleep(Duration::from_millis(20));
            }
        }
        assert_eq!(mapped, want, "(mapped, old) versions after {how}");

        // The old flow goes on, pinned to the backend it started with: no new detection (the
        // backend's counters, kept across the rebuild, route nothing new).
        let before = StatusJson::fetch(admin).backend("dns");
        for _ in 0..3 {
            dns_a_via(&old, to, id, "www.a.example", "10.1.0.1");
            id += 1;
        }
        assert_eq!(
            log_lines(&pm, &["UDP flow created", &old_me]).len(),
            1,
            "the old client's flow was re-created after {how}"
        );
        assert_eq!(
            StatusJson::fetch(admin).backend("dns"),
            before,
            "(live, routed) after {how}"
        );

        // A new client is detected by the new version and works too.
        let new = client_socket(T);
        let new_me = format!("client={}", new.local_addr().expect("client address"));
        dns_a_via(&new, to, 0x7000 + id, "www.a.example", "10.1.0.1");
        // Log lines reach the file from the log's writer thread, shortly after the reply.
        wait_log_count(&pm, &["UDP flow created", &new_me, "plugin=dns@1.0.0"], 1);
        assert_eq!(
            log_lines(&pm, &["UDP flow created", &new_me, "plugin=dns@1.0.0"]).len(),
            1
        );
        assert_eq!(
            StatusJson::fetch(admin).backend("dns"),
            (before.0 + 1, before.1 + 1),
            "(live, routed) after a new client, after {how}"
        );
        assert_eq!(dig(port, "id.a.example", "TXT", false), ["\"server-a\""]);
    }
    let c = udp_counters(admin, port);
    // Three flows from our own sockets, plus one per distinct source port dig chose: dig picks its
    // port at random, and a second dig that lands on the first one's port reuses its live flow.
    assert!((4..=5).contains(&c.flows), "{c:?}");
    assert_eq!((c.expired, c.unmatched), (0, 0), "{c:?}");
    assert_eq!(dns.queries("www.a.example"), 1 + 2 * 4);
    assert!(pm.is_running());
}
