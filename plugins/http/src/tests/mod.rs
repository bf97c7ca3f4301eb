//! Unit tests of the `http` plugin over requests captured from real clients on loopback (a listener
//! on 127.0.0.1 port 0 that stored the first bytes each client sent).

mod detect;
mod filter;
mod fuzz;
mod h2c;
mod health;

use pmmux_plugin_api::{BackendSpec, ConnInfo, Detection};

/// curl 7.88.1 (OpenSSL 3.0.22): `curl -H 'Host: A.Example:8080' http://127.0.0.1:P/api/v1/items?x=1`.
pub(super) const CURL_GET: &[u8] = include_bytes!("../../tests/data/curl_get.bin");
/// curl 7.88.1: `curl http://127.0.0.1:P/`.
pub(super) const CURL_GET_PLAIN: &[u8] = include_bytes!("../../tests/data/curl_get_plain.bin");
/// curl 7.88.1: `curl -I http://127.0.0.1:P/index.html`.
pub(super) const CURL_HEAD: &[u8] = include_bytes!("../../tests/data/curl_head.bin");
/// curl 7.88.1: `curl -d 'name=pmmux&x=1' http://127.0.0.1:P/form` (head and body in one segment).
pub(super) const CURL_POST: &[u8] = include_bytes!("../../tests/data/curl_post.bin");
/// curl 7.88.1: `curl --http1.0 -H 'Host:' http://127.0.0.1:P/old` (HTTP/1.0, no Host field).
pub(super) const CURL_HTTP10: &[u8] = include_bytes!("../../tests/data/curl_http10.bin");
/// curl 7.88.1: `printf hello | curl -H 'Transfer-Encoding: chunked' -T - http://127.0.0.1:P/upload`
/// (the head only: curl waits for `100 Continue` before the body).
pub(super) const CURL_CHUNKED: &[u8] = include_bytes!("../../tests/data/curl_chunked.bin");
/// curl 7.88.1: `curl http://127.0.0.1:P/one http://127.0.0.1:P/two`, both requests on one
/// keep-alive connection (the listener answered each).
pub(super) const CURL_KEEPALIVE: &[u8] = include_bytes!("../../tests/data/curl_keepalive.bin");
/// GNU Wget 1.21.3: `wget http://127.0.0.1:P/file.txt`.
pub(super) const WGET_GET: &[u8] = include_bytes!("../../tests/data/wget_get.bin");
/// Python 3.11.7 `urllib.request.urlopen("http://127.0.0.1:P/py?q=1")`.
pub(super) const URLLIB_GET: &[u8] = include_bytes!("../../tests/data/urllib_get.bin");
/// wrk 4.1.0 (Debian): first request of `wrk -t1 -c1 -d1s http://127.0.0.1:P/bench`.
pub(super) const WRK_GET: &[u8] = include_bytes!("../../tests/data/wrk_get.bin");
/// curl 7.88.1 / OpenSSL 3.0.22: TLS ClientHello of `curl -k https://a.example:P/` (SNI a.example).
pub(super) const TLS_CLIENT_HELLO: &[u8] = include_bytes!("../../tests/data/curl_tls_client_hello.bin");
/// OpenSSH 9.2p1 (Debian 12) client identification string.
pub(super) const SSH_BANNER: &[u8] = include_bytes!("../../tests/data/ssh_banner.bin");

/// curl 7.88.1 (nghttp2 1.52.0): `curl --http2-prior-knowledge http://127.0.0.1:P/`: the 24-byte
/// preface, then SETTINGS, WINDOW_UPDATE and the HEADERS frame, as one read.
pub(super) const CURL_H2_PRIOR_KNOWLEDGE: &[u8] = include_bytes!("../../tests/data/curl_h2_prior_knowledge.bin");

/// Every captured HTTP request, with a name for messages.
pub(super) const HTTP_SAMPLES: &[(&str, &[u8])] = &[
    ("curl_get", CURL_GET),
    ("curl_get_plain", CURL_GET_PLAIN),
    ("curl_head", CURL_HEAD),
    ("curl_post", CURL_POST),
    ("curl_http10", CURL_HTTP10),
    ("curl_chunked", CURL_CHUNKED),
    ("curl_keepalive", CURL_KEEPALIVE),
    ("wget_get", WGET_GET),
    ("urllib_get", URLLIB_GET),
    ("wrk_get", WRK_GET),
];

/// A backend spec as the host would pass it, with these params.
pub(super) fn spec(params_toml: &str) -> BackendSpec<'_> {
    BackendSpec::new("web", "http", params_toml)
}

/// Loopback connection facts.
pub(super) fn conn() -> ConnInfo<'static> {
    ConnInfo::new(
        ([127, 0, 0, 1], 40000).into(),
        ([127, 0, 0, 1], 8080).into(),
        "test",
        &[],
    )
}

/// The value of property `key` in a match, panicking (test failure) on anything else.
pub(super) fn prop(detection: &Detection, key: &str) -> Option<String> {
    match detection {
        Detection::Match(props) => props.iter().find(|p| p.key() == key).map(|p| p.value().to_owned()),
        other => panic!("expected a match, got {other:?}"),
    }
}
