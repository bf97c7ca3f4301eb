//! Real QUIC endpoints (quinn over rustls with the ring provider): [`QuicServer`], a server with its
//! own self-signed certificate that answers every bidirectional stream with its name, the server
//! name (SNI) and ALPN it saw and the stream's bytes; and [`quic_request`], a client that completes
//! a handshake, sends one stream and reads the answer.
//!
//! Each runs its own tokio runtime on its own thread (the server) or for the call (the client), so a
//! test stays plain synchronous code. Everything binds 127.0.0.1, port chosen by the kernel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use quinn::crypto::rustls::{HandshakeData, QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use tokio::sync::oneshot;

/// The ALPN protocol every [`QuicServer`] speaks.
pub const QUIC_TEST_ALPN: &[u8] = b"pmmux-test";
/// Most bytes read from one stream.
const MAX_STREAM: usize = 1 << 20;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A QUIC server on 127.0.0.1 with a self-signed certificate for one name; stopped on drop.
pub struct QuicServer {
    name: String,
    addr: SocketAddr,
    cert: CertificateDer<'static>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl QuicServer {
    /// Starts a server called `name` whose certificate is for `server_name`. Every bidirectional
    /// stream is answered with `<name> sni=<server name seen> alpn=<protocol>|` and the stream's bytes.
    ///
    /// # Panics
    /// When the certificate cannot be made or the endpoint cannot bind.
    pub fn start(name: &str, server_name: &str) -> QuicServer {
        let certified =
            rcgen::generate_simple_self_signed(vec![server_name.to_string()]).expect("self-signed certificate");
        let cert = certified.cert.der().clone();
        let key = PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key.into())
            .expect("server certificate");
        tls.alpn_protocols = vec![QUIC_TEST_ALPN.to_vec()];
        let crypto = QuicServerConfig::try_from(tls).expect("QUIC server crypto");
        let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));

        let (stop, stopped) = oneshot::channel::<()>();
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let label = name.to_string();
        let thread = thread::Builder::new()
            .name(format!("quic-{name}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(serve(label, config, bound_tx, stopped));
            })
            .expect("spawn QUIC server thread");
        let addr = bound_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("QUIC server bound")
            .unwrap_or_else(|e| panic!("QUIC server {name}: {e}"));
        QuicServer {
            name: name.to_string(),
            addr,
            cert,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's name, which starts every answer.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The certificate a client must trust.
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }
}

impl Drop for QuicServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    name: String,
    config: quinn::ServerConfig,
    bound: std::sync::mpsc::Sender<Result<SocketAddr, String>>,
    stopped: oneshot::Receiver<()>,
) {
    let bind: SocketAddr = ([127, 0, 0, 1], 0).into();
    let endpoint = match quinn::Endpoint::server(config, bind) {
        Ok(e) => e,
        Err(e) => return drop(bound.send(Err(e.to_string()))),
    };
    let _ = bound.send(endpoint.local_addr().map_err(|e| e.to_string()));
    let name: Arc<str> = Arc::from(name);
    let accepting = async {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(answer(Arc::clone(&name), incoming));
        }
    };
    tokio::select! {
        _ = accepting => {}
        _ = stopped => {}
    }
    endpoint.close(0u32.into(), b"server stopped");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
}

/// Serves one connection: each bidirectional stream gets the server's identity and its own bytes.
async fn answer(name: Arc<str>, incoming: quinn::Incoming) {
    let Ok(conn) = incoming.await else { return };
    let (sni, alpn) = conn
        .handshake_data()
        .and_then(|h| h.downcast::<HandshakeData>().ok())
        .map(|h| {
            let alpn = h.protocol.map(|p| String::from_utf8_lossy(&p).into_owned());
            (h.server_name, alpn)
        })
        .unwrap_or_default();
    let head = format!(
        "{name} sni={} alpn={}|",
        sni.as_deref().unwrap_or("-"),
        alpn.as_deref().unwrap_or("-")
    );
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        let Ok(data) = recv.read_to_end(MAX_STREAM).await else {
            return;
        };
        if send.write_all(head.as_bytes()).await.is_err() || send.write_all(&data).await.is_err() {
            return;
        }
        let _ = send.finish();
    }
}

/// One QUIC exchange as a client: connect to `to` for `server_name` (trusting only `trust`),
/// offering `alpn` (the server speaks [`QUIC_TEST_ALPN`]), send `payload` on one bidirectional
/// stream and return the server's answer and the client's own address. Everything within `timeout`.
pub fn quic_request(
    to: SocketAddr,
    server_name: &str,
    trust: &CertificateDer<'static>,
    alpn: &[Vec<u8>],
    payload: &[u8],
    timeout: Duration,
) -> Result<(Vec<u8>, SocketAddr), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.clone()).map_err(|e| format!("trust: {e}"))?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = alpn.to_vec();
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
    let config = quinn::ClientConfig::new(Arc::new(crypto));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let bind: SocketAddr = ([127, 0, 0, 1], 0).into();
        let endpoint = quinn::Endpoint::client(bind).map_err(|e| format!("client endpoint: {e}"))?;
        let local = endpoint.local_addr().map_err(|e| format!("client address: {e}"))?;
        let exchange = async {
            let conn = endpoint
                .connect_with(config, to, server_name)
                .map_err(|e| format!("connect: {e}"))?
                .await
                .map_err(|e| format!("handshake with {server_name} via {to}: {e}"))?;
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| format!("open stream: {e}"))?;
            send.write_all(payload).await.map_err(|e| format!("send: {e}"))?;
            send.finish().map_err(|e| format!("finish: {e}"))?;
            let reply = recv
                .read_to_end(MAX_STREAM)
                .await
                .map_err(|e| format!("read answer: {e}"))?;
            conn.close(0u32.into(), b"done");
            Ok::<_, String>(reply)
        };
        let result = tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no QUIC answer from {server_name} via {to} within {timeout:?}")));
        let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
        result.map(|reply| (reply, local))
    })
}
