//! pmmux plugin `echo`: a catch-all serving backend that sends every byte back (RFC 862 style).
//! TCP: matches any non-empty preview and serves an [`EchoSession`] (the previewed bytes arrive
//! first, so they are echoed too), closing when the client closes. UDP: matches every datagram and
//! replies with it. Takes no params and sets no properties.

use pmmux_plugin_api::{
    export_plugin, Backend, BackendSpec, ConnInfo, Detection, Handling, Session, SessionCtl, UdpAction,
};

/// An `echo` backend.
#[derive(Debug)]
pub struct Echo;

impl Echo {
    /// Builds the backend; `echo` has no params, so any given are an error.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        spec.no_params()?;
        Ok(Echo)
    }
}

/// TCP detection: any byte at all is enough; nothing yet means ask again.
pub fn detect(preview: &[u8]) -> Detection {
    if preview.is_empty() {
        Detection::NeedMore
    } else {
        Detection::Match(Vec::new())
    }
}

impl Backend for Echo {
    fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
        detect(preview)
    }

    fn open(&self, _conn: &ConnInfo<'_>, _preview: &[u8]) -> Handling {
        Handling::Serve(Box::new(EchoSession))
    }

    fn can_handle_message(&self, _client: &ConnInfo<'_>, _message: &[u8]) -> Detection {
        Detection::Match(Vec::new())
    }

    fn handle_message(&self, _client: &ConnInfo<'_>, message: &[u8]) -> UdpAction {
        UdpAction::Reply(message.to_vec())
    }

    fn needs_target(&self) -> bool {
        false
    }
}

/// One echoed TCP connection: writes back what it reads, keeps no state.
#[derive(Debug, Default)]
pub struct EchoSession;

impl Session for EchoSession {
    fn on_data(&mut self, data: &[u8], out: &mut Vec<u8>) -> SessionCtl {
        out.extend_from_slice(data);
        SessionCtl::Continue
    }

    fn on_eof(&mut self, _out: &mut Vec<u8>) -> SessionCtl {
        SessionCtl::Close
    }
}

export_plugin! {
    name: "echo",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "echo" => Echo::new },
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmmux_plugin_testkit::{conn_port, spec};

    /// curl 7.88.1: `curl -H 'Host: A.Example:8080' http://127.0.0.1:P/api/v1/items?x=1`.
    const CURL_GET: &[u8] = include_bytes!("../tests/data/curl_get.bin");
    /// curl 7.88.1 / OpenSSL 3.0.22: TLS ClientHello of `curl -k https://a.example:P/`.
    const TLS_CLIENT_HELLO: &[u8] = include_bytes!("../tests/data/curl_tls_client_hello.bin");
    /// OpenSSH 9.2p1 (Debian 12) client identification string.
    const SSH_BANNER: &[u8] = include_bytes!("../tests/data/ssh_banner.bin");

    fn conn() -> ConnInfo<'static> {
        conn_port(7)
    }

    fn session(echo: &Echo, preview: &[u8]) -> Box<dyn Session> {
        match echo.open(&conn(), preview) {
            Handling::Serve(session) => session,
            Handling::Forward(target) => panic!("echo must serve, got forward to {target:?}"),
        }
    }

    #[test]
    fn matches_any_first_byte_and_waits_for_one() {
        assert_eq!(detect(b""), Detection::NeedMore);
        for bytes in [CURL_GET, TLS_CLIENT_HELLO, SSH_BANNER, b"\0", b"\xff"] {
            assert_eq!(detect(&bytes[..1]), Detection::Match(Vec::new()));
            assert_eq!(detect(bytes), Detection::Match(Vec::new()));
        }
    }

    #[test]
    fn echoes_captured_bytes_exactly_in_any_chunking() {
        let echo = Echo::new(&spec("echo", "")).expect("no params");
        let mut all = Vec::new();
        all.extend_from_slice(CURL_GET);
        all.extend_from_slice(TLS_CLIENT_HELLO);
        all.extend_from_slice(SSH_BANNER);
        all.extend((0..=255u8).cycle().take(70_000));
        for chunk in [1, 2, 7, 64, 1460, 16 * 1024, all.len()] {
            let mut s = session(&echo, &all[..chunk.min(all.len())]);
            let mut echoed = Vec::new();
            for piece in all.chunks(chunk) {
                assert_eq!(s.on_data(piece, &mut echoed), SessionCtl::Continue);
            }
            assert_eq!(s.on_eof(&mut echoed), SessionCtl::Close);
            assert_eq!(echoed.as_slice(), all.as_slice(), "chunk size {chunk}");
        }
    }

    #[test]
    fn empty_reads_write_nothing() {
        let mut out = Vec::new();
        assert_eq!(EchoSession.on_data(b"", &mut out), SessionCtl::Continue);
        assert!(out.is_empty());
        assert_eq!(EchoSession.on_eof(&mut out), SessionCtl::Close);
        assert!(out.is_empty());
    }

    #[test]
    fn udp_datagrams_come_back_unchanged() {
        let echo = Echo::new(&spec("echo", "")).expect("no params");
        for message in [&b""[..], b"ping", SSH_BANNER, TLS_CLIENT_HELLO] {
            assert_eq!(echo.can_handle_message(&conn(), message), Detection::Match(Vec::new()));
            assert_eq!(
                echo.handle_message(&conn(), message),
                UdpAction::Reply(message.to_vec())
            );
        }
    }

    #[test]
    fn params_are_refused() {
        let err = Echo::new(&spec("echo", "banner = \"hi\"")).expect_err("unknown param");
        assert!(err.contains("banner"), "{err}");
    }
}
