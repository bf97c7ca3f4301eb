//! NAT port mapping against a real gateway: miniupnpd (nftables backend) in a gateway namespace
//! between a LAN namespace running pmmux and a WAN namespace with the client (see
//! `pmmux_e2e::netns`). For UPnP IGD, NAT-PMP and PCP: the mapping appears in the gateway's
//! nftables DNAT chain, a WAN client reaches a LAN backend through the external address and the
//! public port (TCP and UDP), `?` gets a port, the mapping is renewed before `lifetime_s`, a
//! crashed-and-restarted gateway gets it back, and it is gone after a reload drops the listener
//! and after SIGTERM. Skips (saying why) where the kernel refuses namespaces or nftables NAT.

use std::net::SocketAddr;
use std::time::Duration;

use pmmux_e2e::netns::{in_ns, GatewayProtocols, NatLab, WAN_GATEWAY};
use pmmux_e2e::*;

const MAP_TIMEOUT: Duration = Duration::from_secs(30);
/// Lifetime asked for in these tests: short, so renewals happen within the test.
const LIFETIME_S: u64 = 12;
const TCP_PUBLIC: u16 = 18080;
const ADMIN: u16 = 9990;

/// One datagram to `to` and its answer, from the WAN client's address (the harness's
/// `udp_roundtrip` binds loopback, which cannot reach the gateway).
fn wan_udp_roundtrip(to: SocketAddr, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 1500];
    for _ in 0..5 {
        s.send_to(data, to)?;
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            return Ok(buf[..n].to_vec());
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "no UDP answer through the gateway",
    ))
}

fn lab(protocols: GatewayProtocols) -> Option<NatLab> {
    match NatLab::create(protocols) {
        Ok(l) => Some(l),
        Err(why) => {
            eprintln!("SKIPPED: port mapping tests need network namespaces with nftables NAT: {why}");
            None
        }
    }
}

/// `GET path` on the admin endpoint inside the LAN namespace.
fn admin_get(lab: &NatLab, path: &str) -> String {
    let url = format!("http://127.0.0.1:{ADMIN}{path}");
    let out = in_ns(&lab.lan, "curl", &["-sS", "--max-time", "10", &url]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status(lab: &NatLab) -> serde_json::Value {
    serde_json::from_str(&admin_get(lab, "/status")).unwrap_or(serde_json::Value::Null)
}

fn mapping<'a>(s: &'a serde_json::Value, listener: &str) -> Option<&'a serde_json::Value> {
    s["port_mapping"]["mappings"]
        .as_array()?
        .iter()
        .find(|m| m["listener"] == listener)
}

fn config(protocol: &str, tcp_local: u16, udp_local: u16, echo_tcp: u16, echo_udp: u16, with_tcp: bool) -> String {
    let tcp = if with_tcp {
        format!(
            "[[listener]]\nname = \"web\"\naddress = \"0.0.0.0:{tcp_local}\"\ntransport = [\"tcp\"]\npublic_port = {TCP_PUBLIC}\n"
        )
    } else {
        String::new()
    };
    format!(
        "plugin_dir = \"plugins\"\n{tcp}\
         [[listener]]\nname = \"game\"\naddress = \"0.0.0.0:{udp_local}\"\ntransport = [\"udp\"]\npublic_port = \"?\"\n\
         [port_mapping]\nprotocol = \"{protocol}\"\nlifetime_s = {LIFETIME_S}\nrenewal_lead_s = 4\n\
         [admin]\naddress = \"127.0.0.1:{ADMIN}\"\n\
         [reload]\nwatch_config = false\n\
         [[backend]]\nname = \"tcp-echo\"\nprotocol = \"pass\"\ntarget = \"127.0.0.1:{echo_tcp}\"\n\
         [backend.match]\nlocal_port = {tcp_local}\n\
         [[backend]]\nname = \"udp-echo\"\nprotocol = \"pass\"\ntarget = \"127.0.0.1:{echo_udp}\"\n\
         [backend.match]\nlocal_port = {udp_local}\n"
    )
}

/// The whole life of two mappings (TCP fixed port, UDP `?`) through one protocol.
fn scenario(protocol: &str, gateway: GatewayProtocols) {
    let Some(mut lab) = lab(gateway) else { return };
    lab.start_gateway().unwrap_or_else(|e| panic!("{e}"));
    // Backends on the LAN host's loopback: reachable only through pmmux.
    let echo_tcp = NatLab::run_in(&lab.lan, TcpEcho::start).expect("tcp echo in the LAN namespace");
    let echo_udp = NatLab::run_in(&lab.lan, UdpEcho::start).expect("udp echo in the LAN namespace");
    let (tcp_local, udp_local) = (20080, 20053);
    let text = config(protocol, tcp_local, udp_local, echo_tcp.port(), echo_udp.port(), true);
    let pm = Pmmux::start_opts(&StartOptions {
        config: Some(&text),
        netns: Some(&lab.lan),
        ..StartOptions::default()
    });

    // The mappings appear on the gateway.
    let mapped = lab.wait_for(MAP_TIMEOUT, || {
        lab.has_redirect("tcp", TCP_PUBLIC, tcp_local) && !lab.redirected_ports("udp").is_empty()
    });
    assert!(
        mapped,
        "{protocol}: no mapping on the gateway:\n{}\n--- pmmux ---\n{}\n--- miniupnpd ---\n{}",
        lab.redirects(),
        pm.log(),
        lab.gateway_log()
    );
    let udp_public = lab.redirected_ports("udp")[0];
    assert!(lab.has_redirect("udp", udp_public, udp_local), "{}", lab.redirects());

    // A WAN client reaches the LAN backends through the external address and the public ports.
    let tcp_to: SocketAddr = format!("{WAN_GATEWAY}:{TCP_PUBLIC}").parse().expect("address");
    let udp_to: SocketAddr = format!("{WAN_GATEWAY}:{udp_public}").parse().expect("address");
    let got = NatLab::run_in(&lab.wan, move || {
        tcp_roundtrip(tcp_to, b"hello over tcp", Duration::from_secs(10))
    })
    .expect("wan thread");
    assert_eq!(got.expect("tcp through the gateway"), b"hello over tcp");
    let got = NatLab::run_in(&lab.wan, move || wan_udp_roundtrip(udp_to, b"hello over udp")).expect("wan thread");
    assert_eq!(got.expect("udp through the gateway"), b"hello over udp");

    // /status, pmmux status and /metrics show them.
    let s = status(&lab);
    let pmap = &s["port_mapping"];
    assert_eq!(pmap["protocol"], protocol, "{s}");
    assert_eq!(pmap["external_address"], WAN_GATEWAY, "{s}");
    let web = mapping(&s, "web").expect("web mapping in /status");
    assert_eq!(
        (web["state"].as_str(), web["public_port"].as_u64()),
        (Some("active"), Some(u64::from(TCP_PUBLIC)))
    );
    let game = mapping(&s, "game").expect("game mapping in /status");
    assert_eq!(
        game["public_port"].as_u64(),
        Some(u64::from(udp_public)),
        "`?` got the port the gateway shows"
    );
    assert_eq!(game["requested_public_port"], "?");
    let text_status = in_ns(
        &lab.lan,
        pmmux_bin().to_str().expect("path"),
        &["status", "--admin", &format!("127.0.0.1:{ADMIN}")],
    );
    let text_status = String::from_utf8_lossy(&text_status.stdout);
    assert!(
        text_status.contains(&format!("port mapping: {protocol} gateway"))
            && text_status.contains(&format!("public {TCP_PUBLIC}")),
        "{text_status}"
    );
    let metrics = admin_get(&lab, "/metrics");
    assert!(
        metrics.contains(&format!(
            "pmmux_port_mapping_public_port{{listener=\"game\",transport=\"udp\"}} {udp_public}"
        )),
        "{metrics}"
    );
    let html = admin_get(&lab, "/status.html");
    assert!(
        html.contains("<h2>Mappings</h2>") && html.contains(&udp_public.to_string()),
        "{html}"
    );

    // A renewal comes before the lifetime ends, and the mapping outlives its first lifetime.
    let renewed = lab.wait_for(Duration::from_secs(LIFETIME_S), || {
        mapping(&status(&lab), "web")
            .and_then(|m| m["renewals"].as_u64())
            .unwrap_or(0)
            >= 1
    });
    assert!(renewed, "{protocol}: no renewal within {LIFETIME_S}s:\n{}", pm.log());
    std::thread::sleep(Duration::from_secs(LIFETIME_S / 2 + 1));
    assert!(
        lab.has_redirect("tcp", TCP_PUBLIC, tcp_local),
        "{protocol}: expired despite renewals"
    );

    // A gateway that crashes and comes back without its mappings gets them again.
    lab.crash_gateway();
    assert!(!lab.has_redirect("tcp", TCP_PUBLIC, tcp_local));
    lab.start_gateway().unwrap_or_else(|e| panic!("{e}"));
    let back = lab.wait_for(MAP_TIMEOUT, || lab.has_redirect("tcp", TCP_PUBLIC, tcp_local));
    assert!(
        back,
        "{protocol}: mapping not made again after the gateway restarted:\n{}",
        pm.log()
    );

    // A reload that drops the TCP listener removes its mapping; the UDP one stays.
    pm.write_config(&config(
        protocol,
        tcp_local,
        udp_local,
        echo_tcp.port(),
        echo_udp.port(),
        false,
    ));
    pm.signal(libc::SIGHUP);
    let gone = lab.wait_for(MAP_TIMEOUT, || !lab.has_redirect("tcp", TCP_PUBLIC, tcp_local));
    assert!(
        gone,
        "{protocol}: mapping kept after its listener was removed:\n{}",
        lab.redirects()
    );
    assert!(!lab.redirected_ports("udp").is_empty(), "the UDP mapping must stay");

    // SIGTERM removes the rest before pmmux exits.
    let exit = pm.stop();
    assert!(
        exit.is_some_and(|s| s.success()),
        "pmmux did not stop cleanly: {exit:?}\n{}",
        pm.log()
    );
    assert!(
        lab.redirected_ports("udp").is_empty() && lab.redirected_ports("tcp").is_empty(),
        "{protocol}: mappings left after SIGTERM:\n{}",
        lab.redirects()
    );
}

#[test]
fn upnp_igd_maps_renews_remaps_and_removes() {
    scenario(
        "upnp",
        GatewayProtocols {
            upnp: true,
            natpmp_pcp: false,
        },
    );
}

#[test]
fn nat_pmp_maps_renews_remaps_and_removes() {
    scenario(
        "pmp",
        GatewayProtocols {
            upnp: false,
            natpmp_pcp: true,
        },
    );
}

#[test]
fn pcp_maps_renews_remaps_and_removes() {
    scenario(
        "pcp",
        GatewayProtocols {
            upnp: false,
            natpmp_pcp: true,
        },
    );
}

/// `-p PUBLIC:LOCAL` with `protocol = auto` (the default): on a UPnP-only gateway PCP and NAT-PMP
/// are refused at once and UPnP maps; LOCAL `?` maps the port the OS chose.
#[test]
fn quick_start_binding_maps_through_auto() {
    let Some(mut lab) = lab(GatewayProtocols {
        upnp: true,
        natpmp_pcp: false,
    }) else {
        return;
    };
    lab.start_gateway().unwrap_or_else(|e| panic!("{e}"));
    let pm = Pmmux::start_opts(&StartOptions {
        config: None,
        plugins: &["echo"],
        args: &["-p", "18443:?:tcp", "-b", "e:echo"],
        netns: Some(&lab.lan),
        ..StartOptions::default()
    });
    let mapped = lab.wait_for(MAP_TIMEOUT, || !lab.redirected_ports("tcp").is_empty());
    assert!(mapped, "no mapping:\n{}\n{}", pm.log(), lab.gateway_log());
    assert_eq!(lab.redirected_ports("tcp"), vec![18443]);
    assert!(
        pm.log().contains("protocol=\"upnp\"") || pm.log().contains("protocol=upnp"),
        "{}",
        pm.log()
    );
    let to: SocketAddr = format!("{WAN_GATEWAY}:18443").parse().expect("address");
    let got = NatLab::run_in(&lab.wan, move || tcp_roundtrip(to, b"ping", Duration::from_secs(10))).expect("thread");
    assert_eq!(got.expect("echo through the gateway"), b"ping");
    pm.stop();
    assert!(lab.redirected_ports("tcp").is_empty(), "{}", lab.redirects());
}

/// No gateway at all: a warning, and the listener serves anyway.
#[test]
fn an_absent_gateway_is_a_warning_not_a_failure() {
    let Some(lab) = lab(GatewayProtocols {
        upnp: true,
        natpmp_pcp: true,
    }) else {
        return;
    };
    let echo = NatLab::run_in(&lab.lan, TcpEcho::start).expect("echo");
    let text = format!(
        "plugin_dir = \"plugins\"\n[[listener]]\naddress = \"0.0.0.0:20081\"\npublic_port = 18081\n\
         [admin]\naddress = \"127.0.0.1:{ADMIN}\"\n\
         [[backend]]\nname = \"fwd\"\nprotocol = \"pass\"\ntarget = \"127.0.0.1:{}\"\n",
        echo.port()
    );
    let pm = Pmmux::start_opts(&StartOptions {
        config: Some(&text),
        netns: Some(&lab.lan),
        ..StartOptions::default()
    });
    assert!(
        pm.wait_for_log("no gateway to map ports on; serving goes on", MAP_TIMEOUT),
        "{}",
        pm.log()
    );
    let to: SocketAddr = "10.77.0.2:20081".parse().expect("address");
    let got = NatLab::run_in(&lab.lan, move || {
        tcp_roundtrip(to, b"still serving", Duration::from_secs(10))
    })
    .expect("thread");
    assert_eq!(got.expect("served without a gateway"), b"still serving");
    let s = status(&lab);
    assert_eq!(
        mapping(&s, "0.0.0.0:20081").map(|m| m["state"].clone()),
        Some("failed".into()),
        "{s}"
    );
    assert!(
        s["port_mapping"]["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{s}"
    );
    assert!(pm.is_running());
}
