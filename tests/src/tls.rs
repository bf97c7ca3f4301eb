//! A real TLS server (`openssl s_server -WWW`) with a self-signed certificate for one name, serving files over HTTPS.
//!
//! Which server answered is told two ways: the certificate subject (`CN = <name>`, seen by
//! `openssl s_client`) and the file [`crate::IDENT_FILE`] in its doc root, whose body is the name.
//!
//! `s_server` handles one connection at a time: a client that connects and then idles blocks
//! the next one until it leaves, so tests should close their connections (curl and `s_client`
//! with closed stdin do).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::data::{temp_dir, write_file_in};
use crate::net::{loopback, with_free_port};
use crate::paths::find_tool;
use crate::process::{run, ChildGuard, OutputExt};
use crate::{IDENT_FILE, SERVER_START_TIMEOUT, TOOL_TIMEOUT};

/// Write a self-signed P-256 certificate for `name` (CN and subjectAltName DNS) and its key
/// into `dir`, valid for 2 days. Returns `(cert.pem, key.pem)`.
pub fn self_signed_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let openssl = find_tool("openssl", "openssl");
    let cert = dir.join(format!("{name}.cert.pem"));
    let key = dir.join(format!("{name}.key.pem"));
    let subj = format!("/CN={name}");
    let san = format!("subjectAltName=DNS:{name}");
    let (cert_s, key_s) = (cert.to_string_lossy(), key.to_string_lossy());
    run(
        &openssl.to_string_lossy(),
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &subj,
            "-addext",
            &san,
            "-days",
            "2",
            "-keyout",
            &key_s,
            "-out",
            &cert_s,
        ],
        TOOL_TIMEOUT,
    )
    .expect_success("openssl req (self-signed certificate)");
    (cert, key)
}

/// A running `openssl s_server -WWW`; killed on drop.
pub struct TlsServer {
    guard: ChildGuard,
    dir: TempDir,
    name: String,
    port: u16,
    cert: PathBuf,
    key: PathBuf,
}

impl TlsServer {
    /// Make a certificate for `cn`, start the server on a free port and wait until it listens.
    ///
    /// # Panics
    /// When openssl is missing or the server does not come up.
    pub fn start(cn: &str) -> TlsServer {
        let openssl = find_tool("openssl", "openssl");
        let dir = temp_dir("tls");
        let (cert, key) = self_signed_cert(dir.path(), cn);
        let root = dir.path().join("www");
        write_file_in(&root, IDENT_FILE, cn.as_bytes());
        let (guard, port) = with_free_port("openssl s_server", |port| {
            let mut cmd = Command::new(&openssl);
            cmd.current_dir(&root) // -WWW serves paths relative to the working folder
                .arg("s_server")
                .arg("-accept")
                .arg(format!("127.0.0.1:{port}"))
                .arg("-cert")
                .arg(&cert)
                .arg("-key")
                .arg(&key)
                .arg("-WWW");
            let log = dir.path().join("s_server.log");
            let mut guard =
                ChildGuard::spawn_logged("openssl s_server", cmd, &log).map_err(|e| format!("spawn openssl: {e}"))?;
            guard.wait_listening(loopback(port), SERVER_START_TIMEOUT)?;
            Ok((guard, port))
        });
        TlsServer {
            guard,
            dir,
            name: cn.to_string(),
            port,
            cert,
            key,
        }
    }

    /// The certificate's name (CN and DNS SAN).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's own port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// The certificate (PEM), for `curl --cacert` / `openssl s_client -CAfile`.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// The private key (PEM).
    pub fn key_path(&self) -> &Path {
        &self.key
    }

    /// The doc root: `https://<name>:<port>/<rel>` serves `<root>/<rel>`.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("www")
    }

    /// Put a file in the doc root; returns its path.
    pub fn add_file(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        write_file_in(&self.root(), rel, bytes)
    }

    /// curl arguments fetching `path` from this server by its name through `127.0.0.1:port`
    /// (its own port or a multiplexer's), verifying the certificate: `--cacert`, `--resolve`, URL.
    pub fn curl_args(&self, port: u16, path: &str) -> Vec<String> {
        vec![
            "--cacert".into(),
            self.cert.to_string_lossy().into_owned(),
            "--resolve".into(),
            format!("{}:{port}:127.0.0.1", self.name),
            format!("https://{}:{port}/{}", self.name, path.trim_start_matches('/')),
        ]
    }

    /// `openssl` arguments for `s_client` to `127.0.0.1:port` with SNI `name` and certificate
    /// verification against this server's certificate (failing on a mismatch).
    pub fn s_client_args(&self, port: u16) -> Vec<String> {
        vec![
            "s_client".into(),
            "-connect".into(),
            format!("127.0.0.1:{port}"),
            "-servername".into(),
            self.name.clone(),
            "-CAfile".into(),
            self.cert.to_string_lossy().into_owned(),
            "-verify_return_error".into(),
        ]
    }

    /// The server's output so far (one `FILE:` line per request served, errors).
    pub fn log(&self) -> String {
        self.guard.log()
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// The temporary folder (certificate, key, doc root, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
