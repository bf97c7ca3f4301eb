//! Test data: random payloads, SHA-256 digests, and files dropped into server roots.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use rand::RngCore;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex SHA-256 of a file's contents (streamed).
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `len` random bytes (not compressible, so no layer can shrink them).
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::rng().fill_bytes(&mut data);
    data
}

/// Write `bytes` to `root/rel`, creating folders; returns the full path.
///
/// # Panics
/// When `rel` is absolute or climbs out of `root` (`..`), or on I/O errors.
pub fn write_file_in(root: &Path, rel: &str, bytes: &[u8]) -> PathBuf {
    let rel_path = Path::new(rel.trim_start_matches('/'));
    assert!(
        rel_path.components().all(|c| matches!(c, Component::Normal(_))),
        "{rel:?} must be a plain relative path"
    );
    let path = root.join(rel_path);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
    }
    fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// A fresh temporary folder `pmmux-e2e-<what>-XXXXXX`, mode 0755 (readable by a server that
/// drops privileges). Kept, and its path printed, when `PMMUX_E2E_KEEP` is set (for debugging).
pub fn temp_dir(what: &str) -> TempDir {
    let keep = std::env::var_os("PMMUX_E2E_KEEP").is_some_and(|v| !v.is_empty());
    let dir = tempfile::Builder::new()
        .prefix(&format!("pmmux-e2e-{what}-"))
        .disable_cleanup(keep)
        .tempdir()
        .expect("create a temporary folder");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod temporary folder");
    if keep {
        eprintln!("pmmux-e2e: keeping {}", dir.path().display());
    }
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
