//! The client bytes captured for the plugins' own tests (`plugins/*/tests/data/*.bin`), each
//! labelled with the protocol it is, so a detector can be run over every other protocol's bytes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// One captured first packet or first bytes of a connection.
#[derive(Debug, Clone)]
pub struct Capture {
    /// `plugin/file` without `.bin`, e.g. `dns/udp_a`.
    pub name: String,
    /// The protocol the bytes are: the plugin folder's name, or the protocol of a copy another
    /// plugin keeps for its own negative tests (see [`protocol_of`]).
    pub protocol: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// The repository's `plugins/` folder.
pub fn plugins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins")
}

/// The protocol of a capture kept as `plugins/<dir>/tests/data/<file>.bin`. Plugins keep copies of
/// other protocols' bytes to test that they refuse them (the `http` folder holds a TLS ClientHello
/// and an SSH banner, `regex` holds an HTTP request): those are named by what they are.
pub fn protocol_of(dir: &str, file: &str) -> String {
    if file.contains("client_hello") {
        "tls".into()
    } else if file.contains("ssh_banner") {
        "ssh".into()
    } else if matches!(dir, "echo" | "http-response" | "regex") {
        "http".into()
    } else {
        dir.into()
    }
}

/// Every capture under `plugins/*/tests/data`, sorted by name, byte-identical copies kept once
/// (under the first name).
pub fn load() -> Vec<Capture> {
    let mut captures = Vec::new();
    let dirs = std::fs::read_dir(plugins_dir()).expect("plugins/ is readable");
    for plugin in dirs.flatten() {
        let dir = plugin.file_name().to_string_lossy().into_owned();
        let Ok(files) = std::fs::read_dir(plugin.path().join("tests/data")) else {
            continue;
        };
        for file in files.flatten() {
            let path = file.path();
            if path.extension().is_none_or(|e| e != "bin") {
                continue;
            }
            let stem = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            captures.push(Capture {
                name: format!("{dir}/{stem}"),
                protocol: protocol_of(&dir, &stem),
                bytes,
            });
        }
    }
    captures.sort_by(|a, b| a.name.cmp(&b.name));
    let mut seen = HashSet::new();
    captures.retain(|c| seen.insert(c.bytes.clone()));
    captures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_captures_of_many_protocols() {
        let captures = load();
        let protocols: HashSet<_> = captures.iter().map(|c| c.protocol.as_str()).collect();
        for p in ["dns", "openvpn", "quic", "tls", "ssh", "http", "wireguard"] {
            if p == "wireguard" {
                // No capture: its tests build messages from the whitepaper.
                assert!(!protocols.contains(p));
                continue;
            }
            assert!(protocols.contains(p), "no {p} capture among {protocols:?}");
        }
        assert!(captures.len() >= 60, "{} captures", captures.len());
        assert!(captures.iter().all(|c| !c.bytes.is_empty()));
    }

    #[test]
    fn copies_are_named_by_what_they_are() {
        assert_eq!(protocol_of("http", "curl_tls_client_hello"), "tls");
        assert_eq!(protocol_of("echo", "ssh_banner"), "ssh");
        assert_eq!(protocol_of("regex", "curl_http"), "http");
        assert_eq!(protocol_of("regex", "openssl_client_hello"), "tls");
        assert_eq!(protocol_of("dns", "udp_a"), "dns");
    }
}
