//! A real HAProxy (foreground, `-db`) on a free loopback port, in one of two roles around pmmux's
//! PROXY protocol support:
//! - a **reader** ([`Haproxy::pp_echo`], [`Haproxy::pp_echo_tls`]): `bind ... accept-proxy` in
//!   `mode http`, answering every request with what the PROXY header told it
//!   (`authority=<PP2_TYPE_AUTHORITY> src=<addr>:<port> dst=<addr>:<port>`, plus `sni=` and
//!   `alpn=` of its own TLS session for the TLS one);
//! - a **front** ([`Haproxy::front`]): `mode tcp`, relaying every connection to a target with
//!   `send-proxy` (v1) or `send-proxy-v2`.
//!
//! HAProxy 2.6 (Debian 12) has `fc_pp_authority` but no `fc_pp_tlv`, so the ALPN TLV cannot be
//! read back through it.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

use crate::data::temp_dir;
use crate::net::{loopback, with_free_port};
use crate::paths::find_tool;
use crate::process::ChildGuard;
use crate::tls::self_signed_cert;
use crate::SERVER_START_TIMEOUT;

/// A running HAProxy; killed on drop.
pub struct Haproxy {
    guard: ChildGuard,
    dir: TempDir,
    port: u16,
}

const HEAD: &str = "global\n\
    \x20   log stderr format raw local0 info\n\
    defaults\n\
    \x20   log global\n\
    \x20   option dontlognull\n\
    \x20   timeout connect 5s\n\
    \x20   timeout client 30s\n\
    \x20   timeout server 30s\n";

/// What the readers answer: the PROXY header's authority TLV, source and destination.
const PP_ANSWER: &str = "authority=%[fc_pp_authority] src=%[src]:%[src_port] dst=%[dst]:%[dst_port]";

impl Haproxy {
    /// A plain-HTTP reader of PROXY headers (v1 or v2); see the module documentation.
    ///
    /// # Panics
    /// When haproxy is missing or does not come up.
    pub fn pp_echo() -> Haproxy {
        Self::start(|port, _| {
            format!(
                "{HEAD}frontend fe\n    mode http\n    bind 127.0.0.1:{port} accept-proxy\n    \
                 http-request return status 200 content-type text/plain lf-string \"{PP_ANSWER}\"\n"
            )
        })
    }

    /// Like [`Haproxy::pp_echo`], terminating TLS with a self-signed certificate for `name`
    /// (after the PROXY header, as `bind ... accept-proxy ssl` reads it).
    pub fn pp_echo_tls(name: &str) -> Haproxy {
        let name = name.to_owned();
        Self::start(move |port, dir| {
            let (cert, key) = self_signed_cert(dir, &name);
            let pem = dir.join("haproxy.pem");
            let mut both = fs::read(&cert).expect("read certificate");
            both.extend(fs::read(&key).expect("read key"));
            fs::write(&pem, both).expect("write haproxy.pem");
            format!(
                "{HEAD}frontend fe\n    mode http\n    \
                 bind 127.0.0.1:{port} accept-proxy ssl crt {} alpn h2,http/1.1\n    \
                 http-request return status 200 content-type text/plain lf-string \
                 \"{PP_ANSWER} sni=%[ssl_fc_sni] alpn=%[ssl_fc_alpn]\"\n",
                pem.display()
            )
        })
    }

    /// A TCP front relaying to `target` and opening each upstream connection with a PROXY header
    /// of `version` 1 (`send-proxy`) or 2 (`send-proxy-v2`).
    pub fn front(target: SocketAddr, version: u8) -> Haproxy {
        Self::front_to(&target.to_string(), version)
    }

    /// Like [`Haproxy::front`], to a target as HAProxy writes a server address (`IP:PORT`, or
    /// `unix@/path` for a Unix socket).
    pub fn front_to(target: &str, version: u8) -> Haproxy {
        let target = target.to_owned();
        let send = match version {
            1 => "send-proxy",
            2 => "send-proxy-v2",
            v => panic!("PROXY protocol version {v}: HAProxy sends 1 or 2"),
        };
        Self::start(move |port, _| {
            format!(
                "{HEAD}frontend fe\n    mode tcp\n    bind 127.0.0.1:{port}\n    default_backend be\n\
                 backend be\n    mode tcp\n    server s {target} {send}\n"
            )
        })
    }

    fn start(config: impl Fn(u16, &Path) -> String) -> Haproxy {
        let haproxy = find_tool("haproxy", "haproxy");
        let dir = temp_dir("haproxy");
        let d = dir.path();
        let file = d.join("haproxy.cfg");
        let (guard, port) = with_free_port("haproxy", |port| {
            fs::write(&file, config(port, d)).map_err(|e| e.to_string())?;
            let mut cmd = Command::new(&haproxy);
            cmd.arg("-db").arg("-f").arg(&file);
            let mut guard = ChildGuard::spawn_logged("haproxy", cmd, &d.join("haproxy.log"))
                .map_err(|e| format!("spawn {}: {e}", haproxy.display()))?;
            guard.wait_listening(loopback(port), SERVER_START_TIMEOUT)?;
            Ok((guard, port))
        });
        Haproxy { guard, dir, port }
    }

    /// HAProxy's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// HAProxy's log (stderr) so far.
    pub fn log(&self) -> String {
        self.guard.log()
    }

    /// The temporary folder (config, certificate, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
