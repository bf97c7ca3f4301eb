//! Unit tests of `http-response` over requests captured from real clients on loopback (a listener on
//! 127.0.0.1 port 0 that stored the first bytes each client sent).

mod fuzz;
mod h2c;
mod params;
mod session;

use pmmux_plugin_api::{BackendSpec, ConnInfo, Session, SessionCtl};
use pmmux_plugin_testkit::conn_port;

use crate::{HttpResponse, ResponseSession};

/// curl 7.88.1: `curl http://127.0.0.1:P/`.
const CURL_GET_PLAIN: &[u8] = include_bytes!("../../tests/data/curl_get_plain.bin");
/// curl 7.88.1: `curl -I http://127.0.0.1:P/index.html`.
const CURL_HEAD: &[u8] = include_bytes!("../../tests/data/curl_head.bin");
/// curl 7.88.1: `curl -d 'name=pmmux&x=1' http://127.0.0.1:P/form` (head and 14-byte body).
const CURL_POST: &[u8] = include_bytes!("../../tests/data/curl_post.bin");
/// curl 7.88.1: `curl --http1.0 -H 'Host:' http://127.0.0.1:P/old` (HTTP/1.0, no Host field).
const CURL_HTTP10: &[u8] = include_bytes!("../../tests/data/curl_http10.bin");
/// curl 7.88.1: `printf hello | curl -H 'Transfer-Encoding: chunked' -T - http://127.0.0.1:P/upload`
/// (the head only: curl waits for `100 Continue` before the body).
const CURL_CHUNKED: &[u8] = include_bytes!("../../tests/data/curl_chunked.bin");
/// curl 7.88.1: `curl http://127.0.0.1:P/one http://127.0.0.1:P/two` on one keep-alive connection.
const CURL_KEEPALIVE: &[u8] = include_bytes!("../../tests/data/curl_keepalive.bin");
/// GNU Wget 1.21.3: `wget http://127.0.0.1:P/file.txt` (sends `Connection: Keep-Alive`).
const WGET_GET: &[u8] = include_bytes!("../../tests/data/wget_get.bin");
/// Python 3.11.7 `urllib.request.urlopen("http://127.0.0.1:P/py?q=1")` (sends `Connection: close`).
const URLLIB_GET: &[u8] = include_bytes!("../../tests/data/urllib_get.bin");
/// wrk 4.1.0 (Debian): first request of `wrk -t1 -c1 -d1s http://127.0.0.1:P/bench`.
const WRK_GET: &[u8] = include_bytes!("../../tests/data/wrk_get.bin");
/// curl 7.88.1 / OpenSSL 3.0.22: TLS ClientHello of `curl -k https://a.example:P/`.
const TLS_CLIENT_HELLO: &[u8] = include_bytes!("../../tests/data/curl_tls_client_hello.bin");
/// OpenSSH 9.2p1 (Debian 12) client identification string.
const SSH_BANNER: &[u8] = include_bytes!("../../tests/data/ssh_banner.bin");

/// curl 7.88.1 (nghttp2 1.52.0): `curl --http2-prior-knowledge http://127.0.0.1:P/` (the preface,
/// SETTINGS, WINDOW_UPDATE and HEADERS, as one read).
const CURL_H2_PRIOR_KNOWLEDGE: &[u8] = include_bytes!("../../tests/data/curl_h2_prior_knowledge.bin");

/// The body the test backends serve.
const BODY: &str = "hello\n";
/// The response to a keep-alive request.
const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\n";
/// The response to a request that closes.
const OK_CLOSE: &str =
    "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nhello\n";

fn spec(params_toml: &str) -> BackendSpec<'_> {
    BackendSpec::new("hello", "http-response", params_toml)
}

fn conn() -> ConnInfo<'static> {
    conn_port(8080)
}

/// The backend serving [`BODY`] with status 200.
fn backend() -> HttpResponse {
    HttpResponse::new(&spec(&format!("body = {BODY:?}"))).expect("valid params")
}

fn session() -> ResponseSession {
    backend().session()
}

/// Feeds `input` in pieces of `chunk` bytes; returns everything written and the last verdict.
fn feed(session: &mut ResponseSession, input: &[u8], chunk: usize) -> (String, SessionCtl) {
    let mut out = Vec::new();
    let mut ctl = SessionCtl::Continue;
    for piece in input.chunks(chunk.max(1)) {
        ctl = session.on_data(piece, &mut out);
        if ctl == SessionCtl::Close {
            break;
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), ctl)
}

/// Feeds `input` to a fresh session in one read.
fn serve(input: &[u8]) -> (String, SessionCtl) {
    feed(&mut session(), input, input.len())
}
