//! `accept_proxy_protocol` and `proxy_protocol` as read from a configuration file, and what they
//! mean for routing.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::config::{parse, Strategy};
use crate::proxy_protocol::io::is_trusted;
use crate::proxy_protocol::Version;
use crate::routing::registry::Registry;
use crate::routing::router::{Decision, Router};

fn errors(text: &str) -> String {
    match parse(Path::new("/t.toml"), text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn trusted_sources_are_parsed_and_compared_canonically() {
    let text = r#"[[listener]]
address = "127.0.0.1:1"
accept_proxy_protocol = ["10.0.0.0/8", "127.0.0.1", "::ffff:192.0.2.0/120", "2001:db8::/32"]
"#;
    let config = parse(Path::new("/t.toml"), text).unwrap();
    let trusted = &config.listeners[0].accept_proxy_protocol;
    assert_eq!(trusted.len(), 4);
    let yes = [
        "10.9.8.7:1",
        "127.0.0.1:5",
        "[::ffff:127.0.0.1]:5",
        "192.0.2.44:1",
        "[2001:db8::5]:1",
    ];
    let no = ["127.0.0.2:5", "11.0.0.1:1", "[::1]:1", "192.0.3.1:1"];
    for a in yes {
        assert!(is_trusted(trusted, a.parse().unwrap()), "{a}");
    }
    for a in no {
        assert!(!is_trusted(trusted, a.parse().unwrap()), "{a}");
    }
    // No key: nobody is trusted.
    let config = parse(Path::new("/t.toml"), "[[listener]]\naddress = \"127.0.0.1:1\"\n").unwrap();
    assert!(config.listeners[0].accept_proxy_protocol.is_empty());
}

#[test]
fn bad_trusted_sources_are_refused_with_their_place() {
    let e = errors("[[listener]]\naddress = \"127.0.0.1:1\"\naccept_proxy_protocol = [\"10.0.0.0/33\"]\n");
    assert!(
        e.contains("/t.toml:3:") && e.contains("`10.0.0.0/33` is not an IP network"),
        "{e}"
    );
    let e = errors("[[listener]]\naddress = \"127.0.0.1:1\"\naccept_proxy_protocol = []\n");
    assert!(e.contains("empty list"), "{e}");
    let e = errors(
        "[[listener]]\naddress = \"127.0.0.1:1\"\ntransport = [\"udp\"]\naccept_proxy_protocol = [\"127.0.0.1/32\"]\n",
    );
    assert!(e.contains("/t.toml:4:") && e.contains("TCP only"), "{e}");
    // On a listener with both transports it applies to TCP.
    let both = "[[listener]]\naddress = \"127.0.0.1:1\"\ntransport = [\"tcp\", \"udp\"]\naccept_proxy_protocol = [\"127.0.0.1/32\"]\n";
    assert_eq!(
        parse(Path::new("/t.toml"), both).unwrap().listeners[0]
            .accept_proxy_protocol
            .len(),
        1
    );
}

#[test]
fn backend_proxy_protocol_values() {
    let backend = |v: &str| {
        format!("[[listener]]\naddress = \"127.0.0.1:1\"\n[[backend]]\nname = \"b\"\nprotocol = \"pass\"\ntarget = \"127.0.0.1:2\"\nproxy_protocol = {v}\n")
    };
    for (v, want) in [("\"v1\"", Version::V1), ("\"v2\"", Version::V2)] {
        let config = parse(Path::new("/t.toml"), &backend(v)).unwrap();
        assert_eq!(config.backends[0].proxy_protocol, Some(want));
    }
    for v in ["\"v3\"", "\"V1\"", "2", "true"] {
        let e = errors(&backend(v));
        assert!(e.contains("/t.toml:7:"), "{v}: {e}");
    }
}

/// A datagram never goes to a backend that sends PROXY headers; a TCP connection does.
#[test]
fn proxy_protocol_backends_take_no_datagrams() {
    let text = r#"[[listener]]
address = "127.0.0.1:1"
[[backend]]
name = "pp"
protocol = "pass"
target = "127.0.0.1:2"
proxy_protocol = "v2"
[[backend]]
name = "plain"
protocol = "pass"
target = "127.0.0.1:3"
"#;
    let config = parse(Path::new("/t.toml"), text).unwrap();
    let (registry, issues) = Registry::build(&config, Vec::new(), None);
    assert!(issues.is_empty());
    let registry = Arc::new(registry);
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let router = || {
        Router::new(
            Arc::clone(&registry),
            Strategy::FirstAvailable,
            Arc::from("l"),
            addr,
            addr,
        )
    };
    let udp_router = || {
        Router::for_datagrams(
            Arc::clone(&registry),
            Strategy::FirstAvailable,
            Arc::from("l"),
            addr,
            addr,
        )
    };
    let index = |d: Decision| match d {
        Decision::Route { index, .. } => index,
        other => panic!("{other:?}"),
    };
    assert_eq!(index(udp_router().step_datagrams(&[b"x"], true)), 1);
    // Nor across several datagrams (a client whose detection needed more than one).
    assert_eq!(index(udp_router().step_datagrams(&[b"x", b"y"], true)), 1);
    assert_eq!(index(router().step(b"x", false)), 0);
}
