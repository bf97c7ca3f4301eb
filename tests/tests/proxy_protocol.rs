//! PROXY protocol, end to end, against real readers and writers of it: pmmux's outbound headers
//! (backend `proxy_protocol`) read by nginx (`listen ... proxy_protocol`) and HAProxy
//! (`accept-proxy`, which also reads the v2 authority TLV), and inbound headers (listener
//! `accept_proxy_protocol`) written by HAProxy (`send-proxy`, `send-proxy-v2`) or by hand from a
//! trusted socket. The client address each reader reports is compared with the one curl used.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use common::*;
use pmmux_e2e::*;

/// curl's `-w` suffix: a newline, then the local address curl connected from.
const CURL_LOCAL: &str = "\n%{local_ip}:%{local_port}";

/// Runs curl with `extra` arguments and [`CURL_LOCAL`]; returns (body, curl's local address).
fn curl(extra: &[&str]) -> (String, String) {
    let mut a = args(&["-sS", "--max-time", "20", "-w", CURL_LOCAL]);
    a.extend(args(extra));
    let out = client("curl", &a).expect_success(&format!("curl {extra:?}"));
    let (body, local) = out.rsplit_once('\n').unwrap_or_else(|| panic!("curl printed {out:?}"));
    (body.to_owned(), local.to_owned())
}

fn listener(port: u16, trusted: &[&str]) -> String {
    let list = trusted
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!("[[listener]]\naddress = \"127.0.0.1:{port}\"\naccept_proxy_protocol = [{list}]\n")
}

#[test]
fn outbound_v1_and_v2_give_nginx_the_address_curl_used() {
    let nginx = HttpServer::start_proxy_protocol("pp-nginx");
    let (pm, ports) = start_pmmux(2, &["http"], |p| {
        format!(
            r#"{head}
[[backend]]
name = "web-v1"
protocol = "http"
target = "{nginx}"
proxy_protocol = "v1"
[backend.match]
local_port = {p0}
[[backend]]
name = "web-v2"
protocol = "http"
target = "{nginx}"
proxy_protocol = "v2"
[backend.match]
local_port = {p1}
"#,
            head = listeners(&[format!("127.0.0.1:{}", p[0]), format!("127.0.0.1:{}", p[1])]),
            nginx = nginx.addr(),
            p0 = p[0],
            p1 = p[1],
        )
    });
    for (port, backend) in [(ports[0], "web-v1"), (ports[1], "web-v2")] {
        let (body, local) = curl(&[&nginx.url_via(port, PROXY_PROTOCOL_PATH)]);
        assert_eq!(body, local, "nginx behind {backend} saw another client than curl");
        wait_log_line(
            &pm,
            &[
                &format!("backend=\"{backend}\""),
                &format!("peer={local}"),
                "connection closed",
            ],
        );
    }
    // nginx refuses connections without a header: each request above really carried one.
    assert!(!nginx.log().contains("broken header"), "{}", nginx.log());
}

#[test]
fn v2_authority_tlv_reaches_haproxy_from_http_host_and_tls_sni() {
    let http_reader = Haproxy::pp_echo();
    let tls_reader = Haproxy::pp_echo_tls("pp.example");
    let (pm, ports) = start_pmmux(2, &["http", "tls"], |p| {
        format!(
            r#"{head}
[[backend]]
name = "http-v2"
protocol = "http"
target = "{http}"
proxy_protocol = "v2"
[backend.match]
local_port = {p0}
[[backend]]
name = "tls-v2"
protocol = "tls"
target = "{tls}"
proxy_protocol = "v2"
[backend.match]
local_port = {p1}
"#,
            head = listeners(&[format!("127.0.0.1:{}", p[0]), format!("127.0.0.1:{}", p[1])]),
            http = http_reader.addr(),
            tls = tls_reader.addr(),
            p0 = p[0],
            p1 = p[1],
        )
    });

    // HTTP: the Host header (port stripped) becomes the authority.
    let url = format!("http://127.0.0.1:{}/", ports[0]);
    let (body, local) = curl(&["-H", "Host: web.example:8080", &url]);
    assert_eq!(
        body,
        format!("authority=web.example src={local} dst=127.0.0.1:{}", ports[0]),
        "haproxy log:\n{}",
        http_reader.log()
    );

    // TLS, relayed untouched: the SNI pmmux saw in the ClientHello becomes the authority.
    let resolve = format!("pp.example:{}:127.0.0.1", ports[1]);
    let url = format!("https://pp.example:{}/", ports[1]);
    let (body, local) = curl(&["-k", "--http1.1", "--resolve", &resolve, &url]);
    assert_eq!(
        body,
        format!(
            "authority=pp.example src={local} dst=127.0.0.1:{} sni=pp.example alpn=http/1.1",
            ports[1]
        ),
        "haproxy log:\n{}",
        tls_reader.log()
    );
    // (HAProxy may reset the connection once it answered, so no "closed" line is awaited.)
    wait_log_line(&pm, &["backend=\"tls-v2\"", "routed", "tls.sni=pp.example"]);
}

/// HAProxy 2.6 cannot show the ALPN TLV, so an upstream socket reads the header by the spec's
/// layout (not with pmmux's decoder): v2 PROXY/STREAM/INET, curl's address, then PP2_TYPE_ALPN
/// with curl's first offered protocol and PP2_TYPE_AUTHORITY with the SNI, then the ClientHello.
#[test]
fn v2_header_carries_alpn_and_authority_tlvs_before_the_client_hello() {
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let tx = std::sync::Mutex::new(tx);
    let capture = TcpServer::start_with("127.0.0.1:0", move |mut s| {
        let mut fixed = [0u8; 16];
        if s.read_exact(&mut fixed).is_err() {
            return;
        }
        let len = u16::from_be_bytes([fixed[14], fixed[15]]) as usize;
        let mut rest = vec![0u8; len + 1];
        if s.read_exact(&mut rest).is_ok() {
            let mut all = fixed.to_vec();
            all.extend(rest);
            let _ = tx.lock().map(|tx| tx.send(all));
        }
    })
    .expect("capture server");
    let (_pm, port) = start_one(&["tls"], |p| {
        format!(
            "{}[[backend]]\nname = \"tls\"\nprotocol = \"tls\"\ntarget = \"{}\"\nproxy_protocol = \"v2\"\n",
            listeners(&[format!("127.0.0.1:{p}")]),
            capture.addr()
        )
    });
    let resolve = format!("alpn.example:{port}:127.0.0.1");
    let url = format!("https://alpn.example:{port}/");
    // The capture never answers: curl fails, which is expected; the header is what is checked.
    let out = client(
        "curl",
        &args(&["-sS", "-k", "--max-time", "5", "--http2", "--resolve", &resolve, &url]),
    );
    let got = rx
        .recv_timeout(CLIENT_TIMEOUT)
        .unwrap_or_else(|_| panic!("no header arrived; curl: {}", out.stderr_str()));
    assert_eq!(&got[..12], b"\r\n\r\n\0\r\nQUIT\n", "signature");
    assert_eq!(got[12], 0x21, "version 2, PROXY");
    assert_eq!(got[13], 0x11, "INET, STREAM");
    assert_eq!(&got[16..20], &[127, 0, 0, 1], "source address");
    assert_eq!(&got[20..24], &[127, 0, 0, 1], "destination address");
    assert_eq!(
        u16::from_be_bytes([got[26], got[27]]),
        port,
        "destination port: pmmux's listener"
    );
    let mut tlvs = Vec::new();
    let mut at = 28;
    while at < got.len() - 1 {
        let (kind, len) = (got[at], u16::from_be_bytes([got[at + 1], got[at + 2]]) as usize);
        tlvs.push((kind, String::from_utf8_lossy(&got[at + 3..at + 3 + len]).into_owned()));
        at += 3 + len;
    }
    assert_eq!(tlvs, vec![(0x01, "h2".to_owned()), (0x02, "alpn.example".to_owned())]);
    assert_eq!(got[got.len() - 1], 0x16, "the TLS record follows the header");
}

#[test]
fn trusted_haproxy_front_v1_and_v2_gives_nginx_the_original_client() {
    let nginx = HttpServer::start_proxy_protocol("pp-nginx");
    let (pm, port) = start_one(&["http"], |p| {
        format!(
            "plugin_dir = \"plugins\"\n{}[[backend]]\nname = \"web\"\nprotocol = \"http\"\ntarget = \"{}\"\nproxy_protocol = \"v1\"\n",
            listener(p, &["127.0.0.1/32"]),
            nginx.addr()
        )
    });
    for version in [1, 2] {
        let front = Haproxy::front(loopback(port), version);
        let (body, local) = curl(&[&nginx.url_via(front.port(), PROXY_PROTOCOL_PATH)]);
        // curl -> HAProxy -> pmmux -> nginx: nginx names curl, not HAProxy's connection to pmmux.
        assert_eq!(body, local, "send-proxy v{version}: haproxy log:\n{}", front.log());
        let line = wait_log_line(&pm, &[&format!("peer={local}"), "connection closed"]);
        assert!(
            line.contains("via=127.0.0.1:") && !line.contains(&format!("via={local}")),
            "{line}"
        );
    }
}

/// A hand-made v2 header: PROXY, TCP over IPv4.
fn v2_header(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h
}

/// Sends `bytes`, half-closes, and reads until the server closes.
fn exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = connect(loopback(port));
    s.write_all(bytes).expect("write");
    s.shutdown(Shutdown::Write).expect("half-close");
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("read to end");
    got
}

#[test]
fn trusted_header_drives_remote_ip_and_untrusted_header_is_not_believed() {
    let nginx = HttpServer::start_proxy_protocol("documentation-net");
    let echo = TcpEcho::start();
    let (pm, ports) = start_pmmux(2, &[], |p| {
        format!(
            r#"plugin_dir = "plugins"
{trusted}{untrusted}
[[backend]]
name = "doc-net"
protocol = "pass"
target = "{nginx}"
proxy_protocol = "v1"
[backend.match]
remote_ip = "192.0.2.0/24"
[[backend]]
name = "echo"
protocol = "pass"
target = "{echo}"
"#,
            trusted = listener(p[0], &["127.0.0.1/32"]),
            untrusted = listener(p[1], &["10.0.0.0/8"]),
            nginx = nginx.addr(),
            echo = echo.addr(),
        )
    });
    let request = format!("GET {PROXY_PROTOCOL_PATH} HTTP/1.0\r\n\r\n");

    // Trusted: the header's source picks the 192.0.2.0/24 backend, and nginx is told that source.
    let v1 = format!("PROXY TCP4 192.0.2.7 127.0.0.1 5555 {}\r\n{request}", ports[0]);
    let answer = String::from_utf8_lossy(&exchange(ports[0], v1.as_bytes())).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("X-Server-Name: documentation-net") && answer.ends_with("\r\n\r\n192.0.2.7:5555"),
        "{answer}"
    );
    wait_log_line(
        &pm,
        &["peer=192.0.2.7:5555", "backend=\"doc-net\"", "connection closed"],
    );
    let mut v2 = v2_header([192, 0, 2, 8], 6666, [127, 0, 0, 1], ports[0]);
    v2.extend_from_slice(request.as_bytes());
    let answer = String::from_utf8_lossy(&exchange(ports[0], &v2)).into_owned();
    assert!(answer.ends_with("\r\n\r\n192.0.2.8:6666"), "{answer}");

    // Untrusted: the same bytes are the client's own data, relayed as they are to the echo.
    let back = exchange(ports[1], v1.as_bytes());
    assert_eq!(String::from_utf8_lossy(&back), v1);
    let line = wait_log_line(&pm, &["backend=\"echo\"", "connection closed"]);
    assert!(line.contains("peer=127.0.0.1:") && !line.contains("via="), "{line}");
    assert!(log_lines(&pm, &["192.0.2.7", "backend=\"echo\""]).is_empty());
}

#[test]
fn bad_headers_from_a_trusted_source_are_closed_and_logged() {
    let echo = TcpEcho::start();
    let (pm, port) = start_one(&[], |p| {
        format!(
            "plugin_dir = \"plugins\"\n{}[routing]\nprobe_timeout_ms = 1500\n[[backend]]\nname = \"echo\"\nprotocol = \"pass\"\ntarget = \"{}\"\n",
            listener(p, &["127.0.0.1/32"]),
            echo.addr()
        )
    });
    let mut oversize_v1 = b"PROXY UNKNOWN ".to_vec();
    oversize_v1.resize(300, b'a');
    let mut oversize_v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff".to_vec();
    oversize_v2.resize(70_000, 0);
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "plain HTTP",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            "neither a PROXY v1 line nor",
        ),
        ("v1 without CRLF", oversize_v1, "without CRLF within 107 bytes"),
        ("v2 too long", oversize_v2, "announces 65535 bytes"),
        (
            "bad v1 address",
            b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n".to_vec(),
            "are not TCP4 addresses",
        ),
        ("1 MiB of noise", random_bytes(1 << 20), "PROXY header refused"),
    ];
    for (what, bytes, why) in cases {
        let mut s = connect(loopback(port));
        let writer = send_in_background(&s, bytes);
        let (end, got, _) = wait_closed(&mut s, Duration::from_secs(10));
        assert_eq!(end, End::Closed, "{what}: still open");
        assert!(got.is_empty(), "{what}: the echo was reached: {got:?}");
        let _ = writer.join();
        wait_log_line(&pm, &["PROXY header refused; closed", why]);
    }

    // Half a header, then silence: closed once the probe timeout passes.
    let mut s = connect(loopback(port));
    s.write_all(b"PROXY TCP4 1.2.3.4").expect("write");
    let (end, _, after) = wait_closed(&mut s, Duration::from_secs(15));
    assert_eq!(end, End::Closed);
    assert!(after >= Duration::from_millis(1400), "closed after {after:?}");
    wait_log_line(
        &pm,
        &["PROXY header refused; closed", "within 1500 ms (18 bytes received)"],
    );

    // Still serving: a good header is stripped, the rest reaches the echo.
    let mut s = connect(loopback(port));
    s.write_all(b"PROXY TCP4 198.51.100.1 127.0.0.1 40000 1\r\nhello")
        .expect("write");
    assert_eq!(read_n(&mut s, 5), b"hello");
    s.shutdown(Shutdown::Write).expect("half-close");
    let (end, rest, _) = wait_closed(&mut s, Duration::from_secs(10));
    assert!(end == End::Closed && rest.is_empty());
    wait_log_line(
        &pm,
        &["peer=198.51.100.1:40000", "backend=\"echo\"", "connection closed"],
    );
    assert!(pm.is_running());
}
