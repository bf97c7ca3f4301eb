//! The socket side: reading a trusted front's header off a fresh connection (bounded by
//! [`MAX_HEADER_LEN`] and a deadline, never reading past a v2 header and at most [`V1_MAX_LEN`]
//! bytes for v1) and writing pmmux's own header to an upstream.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use pmmux_plugin_api::ConnInfo;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use super::encode::header_for_unix_client;
use super::{decode, header_for, Command, Decoded, Header, Version, V1_MAX_LEN, V1_PREFIX, V2_FIXED_LEN};
use crate::config::listen::PeerTrust;
use crate::tcp::stream::{Client, Stream};

/// Whether `peer` is in one of the trusted networks.
pub(crate) fn is_trusted(trusted: &[IpNet], peer: SocketAddr) -> bool {
    let ip = peer.ip().to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
}

/// Whether the peer of a Unix connection is trusted: by `"any"`, or by the uid or gid the kernel
/// reports for it (SO_PEERCRED: the credentials it had when it connected).
pub(crate) fn is_trusted_peer(trusted: &[PeerTrust], stream: &UnixStream) -> bool {
    if trusted.is_empty() {
        return false;
    }
    if trusted.contains(&PeerTrust::Any) {
        return true;
    }
    match stream.peer_cred() {
        Ok(cred) => trusted.iter().any(|t| t.admits(cred.uid(), cred.gid())),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the peer's credentials; not trusted");
            false
        }
    }
}

/// Why a trusted source's connection is closed without routing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InboundError {
    /// Nothing complete arrived in time.
    #[error("trusted source sent no complete PROXY header within {ms} ms ({got} bytes received)")]
    Timeout {
        /// The limit.
        ms: u128,
        /// Bytes received by then.
        got: usize,
    },
    /// The source closed first.
    #[error("trusted source closed before a complete PROXY header ({got} bytes received)")]
    Closed {
        /// Bytes received.
        got: usize,
    },
    /// The bytes cannot be a header.
    #[error("trusted source sent no valid PROXY header: {0}")]
    Invalid(String),
    /// Reading failed.
    #[error("client I/O error while reading the PROXY header: {0}")]
    Io(#[from] io::Error),
}

/// A header read off a connection.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// The decoded header.
    pub header: Header,
    /// Bytes read past the header (v1 only): the start of the client's stream, for the preview.
    pub rest: Vec<u8>,
}

impl Accepted {
    /// The client this connection speaks for: the header's source (an IP address, or for the v2
    /// UNIX family the path it names, unnamed when empty), or `real` for a LOCAL command or a
    /// header without addresses (v1 UNKNOWN, v2 UNSPEC).
    pub(crate) fn client(&self, real: Client) -> Client {
        match (self.header.command, self.header.source, &self.header.unix) {
            (Command::Proxy, Some(s), _) => Client::Ip(s),
            (Command::Proxy, None, Some((path, _))) if path.is_empty() => Client::Unix(None),
            (Command::Proxy, None, Some((path, _))) => {
                use std::os::unix::ffi::OsStrExt;
                Client::Unix(Some(std::path::Path::new(std::ffi::OsStr::from_bytes(path)).into()))
            }
            _ => real,
        }
    }
}

/// Reads and strips a PROXY header (v1 or v2) from `stream` within `limit`.
pub(crate) async fn read_header(stream: &Stream, limit: Duration) -> Result<Accepted, InboundError> {
    let mut buf = Vec::new();
    match tokio::time::timeout(limit, read_loop(stream, &mut buf)).await {
        Ok(result) => result,
        Err(_) => Err(InboundError::Timeout {
            ms: limit.as_millis(),
            got: buf.len(),
        }),
    }
}

async fn read_loop(stream: &Stream, buf: &mut Vec<u8>) -> Result<Accepted, InboundError> {
    loop {
        match decode(buf) {
            Decoded::Complete(header) => {
                let rest = buf.split_off(header.len.min(buf.len()));
                return Ok(Accepted { header, rest });
            }
            Decoded::Invalid(why) => return Err(InboundError::Invalid(why)),
            Decoded::NeedMore => {}
        }
        let want = wanted(buf).max(buf.len() + 1);
        stream.readable().await?;
        let old = buf.len();
        buf.resize(want, 0);
        match stream.try_read(&mut buf[old..]) {
            Ok(0) => {
                buf.truncate(old);
                return Err(InboundError::Closed { got: old });
            }
            Ok(n) => buf.truncate(old + n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => buf.truncate(old),
            Err(e) => {
                buf.truncate(old);
                return Err(e.into());
            }
        }
    }
}

/// How far to fill the buffer next: enough to tell the version and a v2 length, then exactly a v2
/// header, or at most a longest v1 line (whatever follows a v1 line goes to the preview).
fn wanted(buf: &[u8]) -> usize {
    if buf.starts_with(V1_PREFIX) {
        return V1_MAX_LEN;
    }
    if buf.len() < V2_FIXED_LEN {
        // Until the version is known, no more than a v2 fixed part (a v1 line is longer).
        return V2_FIXED_LEN;
    }
    V2_FIXED_LEN + u16::from_be_bytes([buf[14], buf[15]]) as usize
}

/// Writes the header `version` to `upstream` for the connection `conn` (its peer and local
/// address, and the properties its detection found); `unix_client`: the client came in over a
/// Unix socket and has no address to name.
pub(crate) async fn send_header(
    upstream: &mut Stream,
    version: Version,
    conn: &ConnInfo<'_>,
    unix_client: bool,
) -> io::Result<()> {
    let header = if unix_client {
        header_for_unix_client(version)
    } else {
        header_for(version, conn.peer_addr(), conn.local.into(), &conn.properties)
    };
    upstream.write_all(&header).await
}

#[cfg(test)]
mod tests;
