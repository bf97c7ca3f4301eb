//! Per-message UDP routing, end to end: `dns` declares itself message-oriented, so each query is
//! routed on its own even when the client reuses its source port (`dig -b`), and each answer comes
//! back from the server of its name; a session backend (`pass`) keeps its client's flow; the
//! `udp_routing` key overrides what a plugin declares.

mod udp_common;

use std::net::SocketAddr;

use pmmux_e2e::*;
use udp_common::*;

/// `dig -b 127.0.0.1#<source> @127.0.0.1 -p <port> <name> A +short`: the answer lines.
fn dig_from(source: u16, port: u16, name: &str) -> Vec<String> {
    let bind = format!("127.0.0.1#{source}");
    let port = port.to_string();
    let args = [
        "-b",
        &bind,
        "@127.0.0.1",
        "-p",
        &port,
        name,
        "A",
        "+short",
        "+tries=1",
        "+time=3",
    ];
    let out = run(find_tool("dig", "bind9-dnsutils").to_str().expect("utf-8"), &args, T);
    let text = out.expect_success(&format!("dig {}", args.join(" ")));
    text.lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

fn config(p: &[u16], a: SocketAddr, b: SocketAddr, echo: SocketAddr, extra_a: &str) -> String {
    // `extra_a` goes before dns-a's [backend.params] table, as keys of the backend itself.
    let dns_a =
        dns_backend("dns-a", a, "a.example").replacen("[backend.params]", &format!("{extra_a}[backend.params]"), 1);
    format!(
        "{}{dns_a}{}[[backend]]\nname = \"rest\"\nprotocol = \"pass\"\ntarget = \"{echo}\"\npriority = \"fallback\"\n",
        udp_head(p[0], p[1]),
        dns_backend("dns-b", b, "b.example"),
    )
}

#[test]
fn a_client_reusing_its_port_gets_each_dns_answer_from_the_server_of_its_name() {
    let (a, b) = (dns_server("dns-a", 1), dns_server("dns-b", 2));
    let echo = UdpEcho::start();
    let (pm, ports) = start(&["dns"], &[Bind::Udp, Bind::Tcp], |p| {
        config(p, a.addr(), b.addr(), echo.addr(), "")
    });
    let (port, admin) = (ports[0], ports[1]);

    // The case: one source port, two names, two servers. Both servers know both names,
    // with their own addresses (10.<server>.0.x), so each answer says which server gave it.
    let source = free_udp_port();
    for (name, want) in [
        ("www.a.example", "10.1.0.1"),
        ("www.b.example", "10.2.0.2"),
        ("www.a.example", "10.1.0.1"),
    ] {
        assert_eq!(
            dig_from(source, port, name),
            [want],
            "{name} from port {source}\n{}",
            pm.log()
        );
    }
    assert_eq!((a.queries("www.a.example"), b.queries("www.b.example")), (2, 1));
    assert_eq!((a.queries("www.b.example"), b.queries("www.a.example")), (0, 0));
    // One flow per client and backend: the second query to A reused the first's flow.
    let me = format!("client=127.0.0.1:{source}");
    let created = log_lines(&pm, &["UDP flow created", &me]);
    assert_eq!(created.len(), 2, "{created:#?}");
    assert!(
        created[0].contains("backend=\"dns-a\"") && created[0].contains("routing=PerMessage"),
        "{}",
        created[0]
    );
    assert!(created[1].contains("backend=\"dns-b\""), "{}", created[1]);
    let c = udp_counters(admin, port);
    assert_eq!((c.flows, c.unmatched), (2, 0), "{c:?}");

    // A session backend keeps its flow: a client that started with bytes only the fallback takes
    // stays there, DNS query or not (the echo sends the query back unchanged).
    let s = client_socket(T);
    let to = loopback(port);
    assert_eq!(exchange(&s, to, b"hello"), b"hello");
    let query = dns_query(7, "www.a.example", QTYPE_A);
    assert_eq!(exchange(&s, to, &query), query, "a session flow was re-routed");
    assert_eq!(a.queries("www.a.example"), 2);
    assert!(pm.is_running());
}

#[test]
fn the_udp_routing_key_overrides_what_the_plugin_declares() {
    let (a, b) = (dns_server("dns-a", 1), dns_server("dns-b", 2));
    let echo = UdpEcho::start();
    let (pm, ports) = start(&["dns"], &[Bind::Udp, Bind::Tcp], |p| {
        config(p, a.addr(), b.addr(), echo.addr(), "udp_routing = \"flow\"\n")
    });
    // dns-a keeps a flow now: the second name from the same port goes to A too (A knows it, with
    // its own address), as before per-message routing.
    let source = free_udp_port();
    assert_eq!(dig_from(source, ports[0], "www.a.example"), ["10.1.0.1"]);
    assert_eq!(
        dig_from(source, ports[0], "www.b.example"),
        ["10.1.0.2"],
        "{}",
        pm.log()
    );
    assert_eq!(b.total_queries(), 0);
}
