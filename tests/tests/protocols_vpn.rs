//! VPN and QUIC clients through pmmux: two real `openvpn` 2.6 processes (`--dev null`, TLS with
//! throwaway self-signed certificates pinned by `--peer-fingerprint`) complete their handshake
//! through pmmux over TCP and over UDP; WireGuard messages (no `wg` here: spec-built datagrams, as in
//! the plugin's tests) reach a UDP echo through a `wireguard` backend while other datagrams go
//! elsewhere; and `curl --http3-only`, run only where curl and nginx both support HTTP/3 (Debian 12's
//! do not: the test then prints a skip note). The TCP/UDP application protocols are in
//! `protocols.rs`.

mod common;
mod proto_common;
mod udp_common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{args, client, listeners, log_lines, start_one, wait_log_count, wait_log_line};
use pmmux_e2e::*;
use proto_common::*;
use udp_common::{client_socket, exchange, Bind};

/// Bound on an OpenVPN handshake (TLS, key exchange, data channel set-up) on loopback.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(25);
const DONE: &str = "Initialization Sequence Completed";

// ---------------------------------------------------------------- openvpn

/// A throwaway self-signed EC certificate and key `<dir>/<name>.{crt,key}`; returns its SHA-256
/// fingerprint as OpenVPN's `--peer-fingerprint` wants it (`AB:CD:...`).
fn self_signed(dir: &Path, name: &str) -> String {
    let (crt, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let mut req = Command::new("openssl");
    req.args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ])
    .args(["-days", "2", "-subj", &format!("/CN={name}")])
    .arg("-keyout")
    .arg(&key)
    .arg("-out")
    .arg(&crt);
    run_cmd(req, None, TOOL_TIMEOUT).expect_success("openssl req");
    let out = run(
        "openssl",
        &[
            "x509".as_ref(),
            "-noout".as_ref(),
            "-fingerprint".as_ref(),
            "-sha256".as_ref(),
            "-in".as_ref(),
            crt.as_os_str(),
        ],
        TOOL_TIMEOUT,
    );
    let text = out.expect_success("openssl x509 -fingerprint");
    text.trim().split_once('=').expect("fingerprint line").1.to_string()
}

/// Certificates for both ends: `(server fingerprint, client fingerprint)`.
fn openvpn_certs(dir: &Path) -> (String, String) {
    (self_signed(dir, "server"), self_signed(dir, "client"))
}

/// `openvpn` with `--dev null` (no tun device), TLS role `role` (`server` / `client`), pinning the
/// peer's certificate.
fn openvpn_cmd(dir: &Path, role: &str, peer_fingerprint: &str) -> Command {
    let mut cmd = Command::new(find_tool("openvpn", "openvpn"));
    cmd.args(["--dev", "null", "--verb", "3", "--dh", "none", &format!("--tls-{role}")])
        .arg("--cert")
        .arg(dir.join(format!("{role}.crt")))
        .arg("--key")
        .arg(dir.join(format!("{role}.key")))
        .args(["--peer-fingerprint", peer_fingerprint])
        .current_dir(dir);
    cmd
}

/// Start the client and wait until both ends say the tunnel is up; returns the client's log.
fn openvpn_handshake(server: &ChildGuard, mut client_cmd: Command, log: PathBuf) -> String {
    client_cmd.args(["--connect-retry-max", "1"]);
    let client = ChildGuard::spawn_logged("openvpn-client", client_cmd, &log).expect("spawn openvpn client");
    let done = client.wait_for_log(DONE, HANDSHAKE_TIMEOUT) && server.wait_for_log(DONE, HANDSHAKE_TIMEOUT);
    assert!(
        done,
        "no \"{DONE}\" on both ends within {HANDSHAKE_TIMEOUT:?}\n--- client ---\n{}\n--- server ---\n{}",
        client.log(),
        server.log()
    );
    let text = client.log();
    assert!(text.contains("Data Channel: cipher"), "{text}");
    assert!(
        text.contains("Peer Connection Initiated with [AF_INET]127.0.0.1:"),
        "{text}"
    );
    // The server's peer is pmmux's upstream socket, on loopback.
    assert!(
        server
            .log()
            .contains("Peer Connection Initiated with [AF_INET]127.0.0.1:"),
        "{}",
        server.log()
    );
    text
}

#[test]
fn openvpn_client_completes_its_tls_handshake_through_pmmux_over_tcp() {
    let decoy = TcpSink::start();
    let dir = temp_dir("openvpn-tcp");
    let (server_fp, client_fp) = openvpn_certs(dir.path());
    let (server, ovpn_port) = start_server("openvpn-server", &dir.path().join("server.log"), |port| {
        let mut cmd = openvpn_cmd(dir.path(), "server", &client_fp);
        cmd.args([
            "--proto",
            "tcp-server",
            "--local",
            "127.0.0.1",
            "--lport",
            &port.to_string(),
        ]);
        cmd
    });
    let (pm, port) = start_one(&plugins_with(&["openvpn"]), |port| {
        format!(
            "{head}{decoys}[[backend]]\nname = \"openvpn\"\nprotocol = \"openvpn\"\ntarget = \"127.0.0.1:{ovpn_port}\"\n{ECHO_CATCH_ALL}",
            head = listeners(&[format!("127.0.0.1:{port}")]),
            decoys = decoy_backends(decoy.addr()),
        )
    });

    let mut cmd = openvpn_cmd(dir.path(), "client", &server_fp);
    cmd.args(["--proto", "tcp-client", "--remote", "127.0.0.1", &port.to_string()]);
    openvpn_handshake(&server, cmd, dir.path().join("client.log"));

    let line = wait_log_line(&pm, &["backend=\"openvpn\"", "routed", "openvpn.opcode="]);
    assert!(line.contains("openvpn.session_id="), "{line}");
    assert_eq!(decoy.connections(), 0, "the OpenVPN client reached a decoy");
    assert!(log_lines(&pm, &["backend=\"catch-all\""]).is_empty(), "{}", pm.log());
}

#[test]
fn openvpn_client_completes_its_tls_handshake_through_pmmux_over_udp() {
    let dir = temp_dir("openvpn-udp");
    let (server_fp, client_fp) = openvpn_certs(dir.path());
    let log = dir.path().join("server.log");
    let mut errors = Vec::new();
    let mut started = None;
    for _ in 0..5 {
        let port = free_udp_port();
        let mut cmd = openvpn_cmd(dir.path(), "server", &client_fp);
        cmd.args(["--proto", "udp", "--local", "127.0.0.1", "--lport", &port.to_string()]);
        let mut guard = ChildGuard::spawn_logged("openvpn-server", cmd, &log).expect("spawn openvpn server");
        match guard.wait_udp_bound(loopback(port), SERVER_START_TIMEOUT) {
            Ok(()) => {
                started = Some((guard, port));
                break;
            }
            Err(e) => errors.push(e),
        }
    }
    let (server, ovpn_port) = started.unwrap_or_else(|| panic!("openvpn server did not start:\n{}", errors.join("\n")));
    // A UDP listener: a `dns` backend and a catch-all around the `openvpn` one.
    let decoy = UdpEcho::start();
    let (pm, ports) = udp_common::start(&["dns", "openvpn", "anyprot"], &[Bind::Udp], |p| {
        format!(
            "plugin_dir = \"plugins\"\n[[listener]]\naddress = \"127.0.0.1:{}\"\ntransport = [\"udp\"]\n\
             [[backend]]\nname = \"dns\"\nprotocol = \"dns\"\ntarget = \"{decoy}\"\n[backend.params]\nname_suffix = \".\"\n\
             [[backend]]\nname = \"openvpn\"\nprotocol = \"openvpn\"\ntarget = \"127.0.0.1:{ovpn_port}\"\n\
             [[backend]]\nname = \"catch-all\"\nprotocol = \"anyprot\"\ntarget = \"{decoy}\"\npriority = \"fallback\"\n",
            p[0],
            decoy = decoy.addr(),
        )
    });

    let mut cmd = openvpn_cmd(dir.path(), "client", &server_fp);
    cmd.args([
        "--proto",
        "udp",
        "--nobind",
        "--remote",
        "127.0.0.1",
        &ports[0].to_string(),
    ]);
    openvpn_handshake(&server, cmd, dir.path().join("client.log"));

    // UDP flows are logged without the plugin's properties: the flow line names the backend.
    wait_log_line(&pm, &["UDP flow created", "backend=\"openvpn\""]);
    assert_eq!(
        decoy.datagrams(),
        0,
        "an OpenVPN datagram reached the dns or catch-all target"
    );
}

// ---------------------------------------------------------------- wireguard

/// Deterministic filler standing in for keys, MACs and ciphertext (as in the plugin's tests).
fn filler(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// A handshake initiation built from the whitepaper (§5.4.2), byte for byte the one in
/// `plugins/wireguard/tests/detection.rs`: type 1, three zero bytes, sender index, ephemeral (32),
/// encrypted static (48), encrypted timestamp (28), mac1 (16), mac2 (16, zero) = 148 bytes.
fn initiation() -> Vec<u8> {
    let mut m = vec![1, 0, 0, 0];
    m.extend_from_slice(&0x1234_5678u32.to_le_bytes());
    m.extend_from_slice(&filler(32, 1));
    m.extend_from_slice(&filler(48, 2));
    m.extend_from_slice(&filler(28, 3));
    m.extend_from_slice(&filler(16, 4));
    m.extend_from_slice(&[0; 16]);
    assert_eq!(m.len(), 148);
    m
}

/// Transport data (§5.4.6): type 4, reserved, receiver, counter, a padded payload and its tag.
fn transport(padded: usize) -> Vec<u8> {
    let mut m = vec![4, 0, 0, 0];
    m.extend_from_slice(&filler(12 + padded + 16, 10));
    m
}

#[test]
fn wireguard_datagrams_reach_their_echo_and_other_datagrams_go_elsewhere() {
    let wg_echo = UdpEcho::start();
    let other_echo = UdpEcho::start();
    let decoy = UdpEcho::start();
    let (pm, ports) = udp_common::start(&["dns", "openvpn", "wireguard", "anyprot"], &[Bind::Udp], |p| {
        format!(
            "plugin_dir = \"plugins\"\n[[listener]]\naddress = \"127.0.0.1:{}\"\ntransport = [\"udp\"]\n\
             [[backend]]\nname = \"dns\"\nprotocol = \"dns\"\ntarget = \"{decoy}\"\n[backend.params]\nname_suffix = \".\"\n\
             [[backend]]\nname = \"openvpn\"\nprotocol = \"openvpn\"\ntarget = \"{decoy}\"\n\
             [[backend]]\nname = \"wireguard\"\nprotocol = \"wireguard\"\ntarget = \"{wg}\"\n\
             [[backend]]\nname = \"other\"\nprotocol = \"anyprot\"\ntarget = \"{other}\"\npriority = \"fallback\"\n",
            p[0],
            decoy = decoy.addr(),
            wg = wg_echo.addr(),
            other = other_echo.addr(),
        )
    });
    let to = loopback(ports[0]);

    // An initiation, then transport data on the same flow, come back intact from the WireGuard echo.
    let peer = client_socket(udp_common::T);
    let init = initiation();
    assert_eq!(exchange(&peer, to, &init), init);
    let data = transport(64);
    assert_eq!(exchange(&peer, to, &data), data);
    assert_eq!(wg_echo.datagrams(), 2);
    wait_log_line(&pm, &["UDP flow created", "backend=\"wireguard\""]);

    // A keepalive from another client is a new flow, detected as WireGuard too.
    let keepalive = transport(0);
    assert_eq!(exchange(&client_socket(udp_common::T), to, &keepalive), keepalive);
    assert_eq!(wg_echo.datagrams(), 3);

    // Not WireGuard: 148 bytes with a nonzero reserved byte, and plain text, go to the other backend.
    let mut bad = initiation();
    bad[2] = 7;
    for datagram in [bad, b"not wireguard at all".to_vec()] {
        assert_eq!(exchange(&client_socket(udp_common::T), to, &datagram), datagram);
    }
    assert_eq!(other_echo.datagrams(), 2);
    assert_eq!(
        wg_echo.datagrams(),
        3,
        "a non-WireGuard datagram reached the WireGuard echo"
    );
    assert_eq!(decoy.datagrams(), 0, "a datagram reached the dns or openvpn target");
    // One flow per client socket: two WireGuard clients, two others.
    wait_log_count(&pm, &["UDP flow created", "backend=\"wireguard\""], 2);
    wait_log_count(&pm, &["UDP flow created", "backend=\"other\""], 2);
    assert_eq!(log_lines(&pm, &["UDP flow created"]).len(), 4, "{}", pm.log());
}

// ---------------------------------------------------------------- curl --http3

/// Whether the installed curl was built with HTTP/3 (`curl --version` lists the `HTTP3` feature).
fn curl_has_http3() -> bool {
    have_tool("curl")
        && run("curl", &["--version"], TOOL_TIMEOUT)
            .stdout_str()
            .lines()
            .any(|l| l.starts_with("Features:") && l.split_whitespace().any(|f| f.eq_ignore_ascii_case("http3")))
}

/// Whether the installed nginx has the HTTP/3 module (`nginx -V` lists `--with-http_v3_module`).
fn nginx_has_http3() -> bool {
    have_tool("nginx") && {
        let out = run(
            find_tool("nginx", "nginx-light").to_string_lossy().as_ref(),
            &["-V"],
            TOOL_TIMEOUT,
        );
        out.stderr_str().contains("--with-http_v3_module") || out.stdout_str().contains("--with-http_v3_module")
    }
}

#[test]
fn curl_http3_through_a_udp_listener_to_nginx_quic_when_available() {
    if !curl_has_http3() || !nginx_has_http3() {
        eprintln!(
            "SKIPPED curl_http3...: needs curl with the HTTP3 feature and nginx with --with-http_v3_module \
             (Debian 12's curl 7.88 and nginx 1.22 have neither); nothing was tested"
        );
        return;
    }
    // nginx answering QUIC (UDP) and TLS (TCP) on one port; pmmux forwards UDP with `anyprot`.
    let dir = temp_dir("http3");
    let d = dir.path();
    let cert = self_signed_cert(d, "h3.example");
    fs::create_dir_all(d.join("www")).expect("www");
    let sum = {
        let data = random_bytes(1 << 20);
        fs::write(d.join("www/big.bin"), &data).expect("write big.bin");
        sha256_hex(&data)
    };
    let nginx = find_tool("nginx", "nginx-light");
    let mut errors = Vec::new();
    let mut started = None;
    for _ in 0..5 {
        let port = free_udp_port();
        let conf = d.join("nginx.conf");
        fs::write(
            &conf,
            format!(
                "master_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log stderr info;\n\
                 events {{ worker_connections 64; }}\nhttp {{\n access_log {d}/access.log;\n\
                 server {{\n  listen 127.0.0.1:{port} quic reuseport;\n  listen 127.0.0.1:{port} ssl;\n\
                 ssl_certificate {crt};\n  ssl_certificate_key {key};\n  root {d}/www;\n }}\n}}\n",
                d = d.display(),
                crt = cert.0.display(),
                key = cert.1.display(),
            ),
        )
        .expect("write nginx.conf");
        let mut cmd = Command::new(&nginx);
        cmd.arg("-p")
            .arg(d)
            .args(["-e", "stderr", "-c"])
            .arg(&conf)
            .args(["-g", "daemon off;"]);
        let mut guard = ChildGuard::spawn_logged("nginx-h3", cmd, &d.join("nginx.log")).expect("spawn nginx");
        match guard.wait_udp_bound(loopback(port), SERVER_START_TIMEOUT) {
            Ok(()) => {
                started = Some((guard, port));
                break;
            }
            Err(e) => errors.push(e),
        }
    }
    let (_nginx, h3_port) = started.unwrap_or_else(|| panic!("nginx (quic) did not start:\n{}", errors.join("\n")));
    let (pm, ports) = udp_common::start(&["dns", "wireguard", "anyprot"], &[Bind::Udp], |p| {
        format!(
            "plugin_dir = \"plugins\"\n[[listener]]\naddress = \"127.0.0.1:{}\"\ntransport = [\"udp\"]\n\
             [[backend]]\nname = \"dns\"\nprotocol = \"dns\"\ntarget = \"127.0.0.1:9\"\n[backend.params]\nname_suffix = \".\"\n\
             [[backend]]\nname = \"wireguard\"\nprotocol = \"wireguard\"\ntarget = \"127.0.0.1:9\"\n\
             [[backend]]\nname = \"quic\"\nprotocol = \"anyprot\"\ntarget = \"127.0.0.1:{h3_port}\"\npriority = \"fallback\"\n",
            p[0]
        )
    });
    let out = client(
        "curl",
        &args(&[
            "-sS",
            "--fail",
            "--http3-only",
            "--cacert",
            &cert.0.to_string_lossy(),
            "--resolve",
            &format!("h3.example:{}:127.0.0.1", ports[0]),
            &format!("https://h3.example:{}/big.bin", ports[0]),
        ]),
    );
    out.expect_success("curl --http3-only through pmmux");
    assert_eq!(sha256_hex(&out.stdout), sum);
    wait_log_line(&pm, &["backend=\"quic\""]);
}
