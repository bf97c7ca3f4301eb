//! A real HTTP server (nginx, single process, foreground) on a free loopback port, serving a folder tests can drop files into.
//!
//! A server can be stopped and started again on the same port ([`HttpServer::stop`],
//! [`HttpServer::restart`]), and made to answer an error status on `/` ([`HttpServer::start_with_root_status`]).
//!
//! Which server answered is told by the body of [`crate::IDENT_FILE`] (the server's name) and by
//! the `X-Server-Name` header it adds to every response.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::data::{random_bytes, sha256_hex, temp_dir, write_file_in};
use crate::net::{loopback, with_free_port};
use crate::paths::find_tool;
use crate::process::ChildGuard;
use crate::{IDENT_FILE, SERVER_START_TIMEOUT};

/// The response header naming the server.
pub const SERVER_NAME_HEADER: &str = "X-Server-Name";

/// On a server from [`HttpServer::start_proxy_protocol`]: answers `<addr>:<port>` of the client
/// named by the PROXY header the connection began with (`$proxy_protocol_addr:$proxy_protocol_port`).
pub const PROXY_PROTOCOL_PATH: &str = "/proxy-protocol";

/// The socket file of a server from [`HttpServer::start_unix`], in its folder.
const UNIX_SOCKET: &str = "nginx.sock";

/// How a test nginx differs from the plain one.
#[derive(Clone, Copy, Default)]
struct Variant {
    /// `/` itself answers this status (files are still served).
    root_status: Option<u16>,
    /// `listen ... proxy_protocol`, with [`PROXY_PROTOCOL_PATH`].
    proxy_protocol: bool,
    /// Also `listen unix:<dir>/nginx.sock` (see [`HttpServer::unix_path`]).
    unix: bool,
}

/// A running nginx; killed on drop.
pub struct HttpServer {
    guard: ChildGuard,
    dir: TempDir,
    name: String,
    port: u16,
}

fn nginx_config(dir: &Path, port: u16, name: &str, variant: Variant) -> String {
    let root = match variant.root_status {
        Some(code) => format!("        location = / {{ return {code}; }}\n"),
        None => String::new(),
    };
    let (listen_pp, location_pp) = if variant.proxy_protocol {
        (
            " proxy_protocol",
            format!(
                "location = {PROXY_PROTOCOL_PATH} {{ default_type text/plain; \
                 return 200 \"$proxy_protocol_addr:$proxy_protocol_port\"; }}"
            ),
        )
    } else {
        ("", String::new())
    };
    let d = dir.display();
    let listen_unix = if variant.unix {
        format!("        listen unix:{d}/{UNIX_SOCKET}{listen_pp};\n")
    } else {
        String::new()
    };
    format!(
        "# pmmux-e2e test server {name}\n\
         master_process off;\n\
         worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         error_log stderr info;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
         \x20   access_log {d}/access.log;\n\
         \x20   client_body_temp_path {d}/tmp/client_body;\n\
         \x20   proxy_temp_path {d}/tmp/proxy;\n\
         \x20   fastcgi_temp_path {d}/tmp/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/tmp/uwsgi;\n\
         \x20   scgi_temp_path {d}/tmp/scgi;\n\
         \x20   default_type application/octet-stream;\n\
         \x20   sendfile on;\n\
         \x20   keepalive_timeout 15s;\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{port}{listen_pp};\n\
         {listen_unix}\
         \x20       server_name {name};\n\
         \x20       root {d}/www;\n\
         \x20       add_header {SERVER_NAME_HEADER} \"{name}\" always;\n\
         \x20       location / {{ autoindex on; }}\n\
         \x20       {location_pp}\n\
         {root}\
         \x20   }}\n\
         }}\n"
    )
}

impl HttpServer {
    /// Start nginx serving a fresh folder that holds [`IDENT_FILE`] with body `name`.
    ///
    /// # Panics
    /// When nginx is missing or does not come up.
    pub fn start(name: &str) -> HttpServer {
        Self::start_inner(name, Variant::default())
    }

    /// Like [`HttpServer::start`], but nginx expects a PROXY header (v1 or v2) on every connection
    /// (`listen ... proxy_protocol`) and tells what it said at [`PROXY_PROTOCOL_PATH`].
    pub fn start_proxy_protocol(name: &str) -> HttpServer {
        Self::start_inner(
            name,
            Variant {
                proxy_protocol: true,
                ..Variant::default()
            },
        )
    }

    /// Like [`HttpServer::start`], also listening on a Unix socket ([`HttpServer::unix_path`]);
    /// with `proxy_protocol`, both listeners expect a PROXY header as for
    /// [`HttpServer::start_proxy_protocol`].
    pub fn start_unix(name: &str, proxy_protocol: bool) -> HttpServer {
        Self::start_inner(
            name,
            Variant {
                unix: true,
                proxy_protocol,
                ..Variant::default()
            },
        )
    }

    /// The Unix socket nginx listens on (a server from [`HttpServer::start_unix`]).
    pub fn unix_path(&self) -> PathBuf {
        self.dir.path().join(UNIX_SOCKET)
    }

    /// Like [`HttpServer::start`], but `/` itself answers `status` (e.g. 503, for health checks);
    /// files are still served.
    pub fn start_with_root_status(name: &str, status: u16) -> HttpServer {
        Self::start_inner(
            name,
            Variant {
                root_status: Some(status),
                ..Variant::default()
            },
        )
    }

    fn start_inner(name: &str, variant: Variant) -> HttpServer {
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)),
            "server name {name:?}: use letters, digits, '-', '.', '_'"
        );
        let dir = temp_dir("http");
        let d = dir.path();
        fs::create_dir_all(d.join("tmp")).expect("create nginx temp folder");
        write_file_in(&d.join("www"), IDENT_FILE, name.as_bytes());
        let (guard, port) = with_free_port("nginx", |port| {
            fs::write(d.join("nginx.conf"), nginx_config(d, port, name, variant)).map_err(|e| e.to_string())?;
            Ok((spawn_nginx(d, port)?, port))
        });
        HttpServer {
            guard,
            dir,
            name: name.to_string(),
            port,
        }
    }

    /// Stops nginx (SIGKILL, reaped): its port refuses connections until [`HttpServer::restart`].
    pub fn stop(&mut self) {
        self.guard.kill();
    }

    /// Starts nginx again on the same port with the same folder and configuration, and waits
    /// until it listens.
    ///
    /// # Panics
    /// When it does not come up (e.g. another process took the port meanwhile).
    pub fn restart(&mut self) {
        self.guard.kill();
        self.guard = spawn_nginx(self.dir.path(), self.port).unwrap_or_else(|e| panic!("restart nginx: {e}"));
    }

    /// The server's name (body of [`IDENT_FILE`], [`SERVER_NAME_HEADER`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// nginx's own port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// The doc root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("www")
    }

    /// Put a file in the doc root; returns its path.
    pub fn add_file(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        write_file_in(&self.root(), rel, bytes)
    }

    /// Put `len` random bytes at `rel` in the doc root; returns their SHA-256 (hex).
    pub fn add_random_file(&self, rel: &str, len: usize) -> String {
        let data = random_bytes(len);
        self.add_file(rel, &data);
        sha256_hex(&data)
    }

    /// `http://127.0.0.1:<port>/<path>` on nginx's own port.
    pub fn url(&self, path: &str) -> String {
        self.url_via(self.port, path)
    }

    /// `http://127.0.0.1:<port>/<path>` for another port (a multiplexer in front of nginx).
    pub fn url_via(&self, port: u16, path: &str) -> String {
        format!("http://127.0.0.1:{port}/{}", path.trim_start_matches('/'))
    }

    /// nginx's error log (stderr) so far.
    pub fn log(&self) -> String {
        self.guard.log()
    }

    /// The access log so far (one line per request).
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// nginx's pid.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// The temporary folder (config, logs, doc root).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Starts nginx on the configuration in `dir` and waits until it listens on `port`.
fn spawn_nginx(dir: &Path, port: u16) -> Result<ChildGuard, String> {
    let nginx = find_tool("nginx", "nginx-light");
    let mut cmd = Command::new(&nginx);
    cmd.arg("-p")
        .arg(dir)
        .arg("-e")
        .arg("stderr") // the log before the config is read (default: /var/log/nginx)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-g")
        .arg("daemon off;");
    let mut guard = ChildGuard::spawn_logged("nginx", cmd, &dir.join("nginx.log"))
        .map_err(|e| format!("spawn {}: {e}", nginx.display()))?;
    guard.wait_listening(loopback(port), SERVER_START_TIMEOUT)?;
    Ok(guard)
}
