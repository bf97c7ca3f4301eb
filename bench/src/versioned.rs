//! The `versioned` fixture plugin as the reload test uses it: finding its two release builds,
//! replacing the live library file (atomic rename or `cp` over it), and the clients — a blocking
//! probe that reads which version greets it, and the async exchange of the connection-rate workers.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What every client sends first: the fixture matches it.
const MAGIC: &[u8] = b"HELLO";
/// What a rate worker sends after [`MAGIC`]; the fixture echoes all of it after its greeting.
const PAYLOAD: &[u8] = b"pmmux-bench reload: 48 bytes of payload, echoed\n";
/// Longest a probe or an exchange may take before it counts as a failure.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The library's name in the plugin folder.
pub const LIVE_NAME: &str = "libfixture_versioned.so";
/// Where a replacement is written before the rename (a dotfile, and not a library name: the host
/// ignores it).
const STAGING_NAME: &str = ".staging-versioned.so.tmp";

/// The two builds of the fixture (`PMMUX_FIXTURE_VERSION` 1 and 2).
#[derive(Debug, Clone)]
pub struct Fixtures {
    v1: PathBuf,
    v2: PathBuf,
}

impl Fixtures {
    /// The given paths, or `<target>/bench-fixtures/libfixture_versioned_v{1,2}.so` (where
    /// bench/run.sh puts them) next to the `release` folder holding `bin_dir`; an error naming what
    /// is missing.
    pub fn find(v1: Option<&Path>, v2: Option<&Path>, bin_dir: &Path) -> Result<Fixtures, String> {
        let default = |v: u8| {
            bin_dir
                .parent()
                .unwrap_or(bin_dir)
                .join("bench-fixtures")
                .join(format!("libfixture_versioned_v{v}.so"))
        };
        let v1 = v1.map_or_else(|| default(1), Path::to_owned);
        let v2 = v2.map_or_else(|| default(2), Path::to_owned);
        let missing: Vec<String> = [&v1, &v2]
            .into_iter()
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        if missing.is_empty() {
            Ok(Fixtures { v1, v2 })
        } else {
            Err(format!(
                "versioned fixture not found: {} (bash bench/run.sh builds both; or pass --versioned-v1/--versioned-v2)",
                missing.join(", ")
            ))
        }
    }

    /// The build of `version` (1 or 2).
    pub fn path(&self, version: u32) -> &Path {
        if version == 1 {
            &self.v1
        } else {
            &self.v2
        }
    }
}

/// How the live library file is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Copied beside it under a dotfile name, then renamed over it (one atomic rename).
    Rename,
    /// `cp` over it: the same inode truncated and rewritten in place.
    Cp,
}

impl How {
    /// Parses `rename` or `cp`.
    pub fn parse(s: &str) -> Result<How, String> {
        match s {
            "rename" => Ok(How::Rename),
            "cp" => Ok(How::Cp),
            other => Err(format!("`{other}`: expected rename or cp")),
        }
    }

    /// The name used in metric names and messages.
    pub fn name(self) -> &'static str {
        match self {
            How::Rename => "rename",
            How::Cp => "cp",
        }
    }
}

/// Replaces `live` with a copy of `from`. With [`How::Rename`] the copy is complete before the
/// rename, so the file "lands" when this returns, in both cases.
pub fn replace(how: How, from: &Path, live: &Path) -> io::Result<()> {
    match how {
        How::Rename => {
            let staging = live.with_file_name(STAGING_NAME);
            fs::copy(from, &staging)?;
            fs::rename(&staging, live)
        }
        How::Cp => fs::copy(from, live).map(|_| ()),
    }
}

/// Parses a greeting line (`v2`) into its version.
fn version_of(line: &[u8]) -> Option<u32> {
    std::str::from_utf8(line).ok()?.strip_prefix('v')?.parse().ok()
}

/// One probe: connect, send `HELLO`, read the greeting line and the echo of `HELLO`, close.
/// Returns the version that greeted and when its greeting arrived; any connect or I/O error, a
/// timeout, a missing or malformed greeting or a wrong echo is an error.
pub fn probe(addr: SocketAddr) -> Result<(u32, Instant), String> {
    let mut s = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(CLIENT_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(CLIENT_TIMEOUT)))
        .and_then(|()| s.set_nodelay(true))
        .map_err(|e| format!("socket options: {e}"))?;
    s.write_all(MAGIC).map_err(|e| format!("send: {e}"))?;
    let mut buf = [0u8; 64];
    let mut len = 0;
    let mut greeted: Option<(usize, Instant)> = None;
    loop {
        if let Some((nl, at)) = greeted {
            // Read the echo too: closing with unread bytes would reset the connection.
            if len >= nl + 1 + MAGIC.len() {
                let version = version_of(&buf[..nl])
                    .ok_or_else(|| format!("malformed greeting {:?}", String::from_utf8_lossy(&buf[..nl])))?;
                if &buf[nl + 1..nl + 1 + MAGIC.len()] != MAGIC {
                    return Err("wrong echo".into());
                }
                return Ok((version, at));
            }
        }
        if len == buf.len() {
            return Err(format!(
                "no greeting line in {len} bytes: {:?}",
                String::from_utf8_lossy(&buf)
            ));
        }
        let n = s.read(&mut buf[len..]).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!("closed after {len} bytes, before the greeting and echo"));
        }
        len += n;
        if greeted.is_none() {
            if let Some(nl) = buf[..len].iter().position(|&b| b == b'\n') {
                greeted = Some((nl, Instant::now()));
            }
        }
    }
}

/// One rate-worker exchange: connect, send `HELLO` and a small payload, read the greeting of
/// version 1 or 2 and the byte-exact echo, close.
pub async fn exchange(addr: SocketAddr) -> io::Result<()> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut sent = MAGIC.to_vec();
    sent.extend_from_slice(PAYLOAD);
    s.write_all(&sent).await?;
    // "vN\n" then the echo of everything sent.
    let mut buf = [0u8; 160];
    let want = 3 + sent.len();
    let mut len = 0;
    while len < want {
        let n = s.read(&mut buf[len..]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("closed after {len} of {want} bytes"),
            ));
        }
        len += n;
    }
    let bad = |what: String| Err(io::Error::new(io::ErrorKind::InvalidData, what));
    match version_of(&buf[..2]) {
        Some(1 | 2) if buf[2] == b'\n' => {}
        _ => return bad(format!("wrong greeting {:?}", String::from_utf8_lossy(&buf[..3]))),
    }
    if len != want || buf[3..len] != sent[..] {
        return bad(format!("wrong echo ({} bytes after the greeting)", len - 3));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_versions() {
        assert_eq!(version_of(b"v2"), Some(2));
        assert_eq!(version_of(b"v10"), Some(10));
        assert_eq!(version_of(b"2"), None);
        assert_eq!(version_of(b"vx"), None);
    }

    #[test]
    fn replace_by_rename_and_cp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b, live) = (dir.path().join("a"), dir.path().join("b"), dir.path().join(LIVE_NAME));
        fs::write(&a, "one").expect("write");
        fs::write(&b, "two").expect("write");
        replace(How::Rename, &a, &live).expect("rename");
        assert_eq!(fs::read(&live).expect("read"), b"one");
        replace(How::Cp, &b, &live).expect("cp");
        assert_eq!(fs::read(&live).expect("read"), b"two");
        assert!(!live.with_file_name(STAGING_NAME).exists());
    }
}
