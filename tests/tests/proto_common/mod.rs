//! Helpers shared by the real-client protocol tests (`protocols.rs`, `protocols_vpn.rs`): starting a
//! real server on a free loopback port (retrying on a lost bind race), and the decoy backends every
//! config lists before the backend under test.

#![allow(dead_code)] // each test binary uses its own subset

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use pmmux_e2e::*;

/// Start a server whose command line names its port: `make(port)` builds the command, which is
/// spawned with its output in `log`; ready once the process itself listens on `127.0.0.1:port`
/// (TCP). A port taken in between makes the server exit; then it is retried on a new port (5 times).
pub fn start_server(name: &str, log: &Path, mut make: impl FnMut(u16) -> Command) -> (ChildGuard, u16) {
    let mut errors = Vec::new();
    for _ in 0..5 {
        let port = free_port();
        let mut guard = ChildGuard::spawn_logged(name, make(port), log).unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        match guard.wait_listening(loopback(port), SERVER_START_TIMEOUT) {
            Ok(()) => return (guard, port),
            Err(e) => errors.push(format!("port {port}: {e}")),
        }
    }
    panic!("could not start {name} after 5 attempts:\n{}", errors.join("\n"))
}

/// `[[backend]]` blocks for `ssh`, `tls` and `http` backends that all forward to `decoy`: each
/// protocol test lists them before the backend under test, so its client has to go past three
/// other plugins first (and the decoy must see no connection).
pub fn decoy_backends(decoy: SocketAddr) -> String {
    let mut text = String::new();
    for (name, protocol) in [("decoy-ssh", "ssh"), ("decoy-tls", "tls"), ("decoy-http", "http")] {
        text += &format!("[[backend]]\nname = \"{name}\"\nprotocol = \"{protocol}\"\ntarget = \"{decoy}\"\n");
    }
    text
}

/// The `echo` catch-all listed last (fallback tier).
pub const ECHO_CATCH_ALL: &str = "[[backend]]\nname = \"catch-all\"\nprotocol = \"echo\"\npriority = \"fallback\"\n";

/// The plugins the decoys and the catch-all need, plus `extra`.
pub fn plugins_with<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut plugins = vec!["ssh", "tls", "http", "echo"];
    plugins.extend_from_slice(extra);
    plugins
}

/// Whether `program` is installed (in `PATH` or an sbin folder).
pub fn have_tool(program: &str) -> bool {
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(std::path::PathBuf::from));
    dirs.iter().any(|d| d.join(program).is_file())
}
