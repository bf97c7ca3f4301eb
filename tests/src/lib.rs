//! Harness for pmmux's end-to-end tests: real servers and real clients on loopback.
//!
//! Everything here starts real programs (OpenSSH's `sshd`, `openssl s_server`, nginx, the built
//! `pmmux` host) or real sockets (the in-process TCP/UDP servers); nothing stands in for them.
//!
//! # Rules the harness keeps, and tests should too
//! - Bind only 127.0.0.1 or [::1], on port 0 or on a port [`free_port`] just found. Servers
//!   retry on a new port when their bind loses a race.
//! - Every process is owned by a guard ([`ChildGuard`], [`Pmmux`], [`Sshd`], [`TlsServer`], [`DnsServer`],
//!   [`HttpServer`], [`Haproxy`]) that kills it with its whole process tree and reaps it on drop, so a
//!   panicking test leaves nothing behind; a guard dropped during a panic prints its log tail.
//!   Keep guards in the test's locals: a guard in a `static` is never dropped.
//! - Every wait is bounded; readiness is read from `/proc` (the process itself holds a listening
//!   socket on the address), not guessed with sleeps.
//! - `PMMUX_E2E_KEEP=1` keeps the temporary folders (configs, keys, logs) for inspection.
//!
//! # Example
//! ```no_run
//! use pmmux_e2e::*;
//! use std::time::Duration;
//!
//! let web = HttpServer::start("web-a");
//! let sum = web.add_random_file("big.bin", 1 << 20);
//! let port = free_port();
//! let pm = Pmmux::start(
//!     &format!("plugin_dir = \"plugins\"\n# ... listener on 127.0.0.1:{port} -> {}\n", web.addr()),
//!     &["http"],
//! );
//! pm.wait_listening(loopback(port));
//! let out = run("curl", &["-sS", &web.url_via(port, "big.bin")], Duration::from_secs(30));
//! assert_eq!(sha256_hex(&out.stdout), sum);
//! ```
//!
//! # What must be installed
//! Built artefacts: `cargo build --workspace` (debug) for `target/debug/pmmux` and the
//! `libpmmux_*.so` plugins ([`artifact`] panics with that advice otherwise).
//! Debian packages: `openssh-server` (`/usr/sbin/sshd`), `openssh-client` (`ssh`, `ssh-keygen`,
//! `ssh-keyscan`), `openssl`, `nginx-light` (`/usr/sbin/nginx`), `curl`, `dnsmasq-base`
//! (`/usr/sbin/dnsmasq`), `bind9-dnsutils` (`dig`), `haproxy`, `prometheus` (`promtool`, to check
//! `/metrics`); and Linux (`/proc`,
//! `PR_SET_CHILD_SUBREAPER`). sshd needs root (it creates `/run/sshd` if missing).
//!
//! # Modules
//! - [`paths`]: workspace, target folder, built artefacts, external tools.
//! - [`process`]: [`ChildGuard`], [`run`] with a timeout, process-tree helpers.
//! - [`net`]: [`free_port`], [`wait_for_port`], socket ownership via `/proc`.
//! - [`pmmux`]: the [`Pmmux`] host guard.
//! - [`sshd`], [`tls`], [`http`], [`dns`], [`haproxy`]: real servers; [`tcp`]: in-process echo / SHA-256 servers;
//!   [`quic`]: in-process QUIC servers and client (quinn).
//! - [`tproxy_lab`]: client / router / server namespaces for transparent proxying.
//! - [`data`]: [`sha256_hex`], random payloads, files in server roots.
//! - [`upgrade`]: following a binary upgrade: the new PID, stopping and reaping it.
//! - [`prometheus`]: a strict reader of the Prometheus text format ([`Exposition`]).

use std::time::Duration;

pub mod data;
pub mod dns;
pub mod fixtures;
pub mod haproxy;
pub mod http;
pub mod loopback_ns;
pub mod net;
pub mod netns;
pub mod paths;
pub mod pmmux;
pub mod process;
pub mod prometheus;
pub mod quic;
pub mod sshd;
pub mod tcp;
pub mod tls;
pub mod tproxy_lab;
pub mod upgrade;

pub use data::{random_bytes, sha256_file, sha256_hex, temp_dir, write_file_in};
pub use dns::{dns_query, parse_dns_reply, DnsRecord, DnsReply, DnsServer, QTYPE_A, QTYPE_TXT};
pub use fixtures::{abi_fixture, api_1_0_fixture, build_fixture, versioned_fixture};
pub use haproxy::Haproxy;
pub use http::{HttpServer, PROXY_PROTOCOL_PATH, SERVER_NAME_HEADER};
pub use loopback_ns::LoopbackNs;
pub use net::{
    free_port, free_port_v6, free_udp_port, listener_sockopt, loopback, pid_bound_udp, pid_has_tcp_connection,
    pid_listens_tcp, tcp_listening, wait_for_port, RefusedPort,
};
pub use paths::{
    artifact, debug_dir, find_tool, plugin_file_name, plugin_lib, pmmux_bin, socket_activated, target_dir,
    workspace_root,
};
pub use pmmux::{Pmmux, StartOptions, PMMUX_START_TIMEOUT, PMMUX_STOP_GRACE};
pub use process::{
    cpu_time, descendants, is_zombie, process_exists, run, run_cmd, run_with_input, ChildGuard, OutputExt,
};
pub use prometheus::Exposition;
pub use quic::{quic_request, QuicServer, QUIC_TEST_ALPN};
pub use sshd::{Sshd, HOST_KEY_ALIAS};
pub use tcp::{tcp_roundtrip, tcp_roundtrip_from, udp_roundtrip, TcpEcho, TcpServer, TcpSink, UdpEcho};
pub use tls::{self_signed_cert, TlsServer};
pub use upgrade::{pid_alive, signal_pid, stop_pid, wait_new_pid, wait_pid_exit, PidGuard};

/// How long a server started by the harness may take to listen.
pub const SERVER_START_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on helper tools the harness runs itself (ssh-keygen, openssl req, id).
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(30);
/// A file in the doc root of [`HttpServer`] and [`TlsServer`] whose body is the server's name,
/// so a test can tell which server answered: `GET /whoami.txt`.
pub const IDENT_FILE: &str = "whoami.txt";
