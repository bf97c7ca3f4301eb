//! The socket side: reading a trusted front's header off a fresh connection (bounded by
//! [`MAX_HEADER_LEN`] and a deadline, never reading past a v2 header and at most [`V1_MAX_LEN`]
//! bytes for v1) and writing pmmux's own header to an upstream.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use pmmux_plugin_api::ConnInfo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{decode, header_for, Command, Decoded, Header, Version, V1_MAX_LEN, V1_PREFIX, V2_FIXED_LEN};

/// Whether `peer` is in one of the trusted networks.
pub(crate) fn is_trusted(trusted: &[IpNet], peer: SocketAddr) -> bool {
    let ip = peer.ip().to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
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
    /// The client this connection speaks for: the header's source, or `real` for a LOCAL command
    /// or a header without IP addresses (v1 UNKNOWN, v2 UNSPEC/UNIX).
    pub(crate) fn client(&self, real: SocketAddr) -> SocketAddr {
        match (self.header.command, self.header.source) {
            (Command::Proxy, Some(s)) => s,
            _ => real,
        }
    }
}

/// Reads and strips a PROXY header (v1 or v2) from `stream` within `limit`.
pub(crate) async fn read_header(stream: &TcpStream, limit: Duration) -> Result<Accepted, InboundError> {
    let mut buf = Vec::new();
    match tokio::time::timeout(limit, read_loop(stream, &mut buf)).await {
        Ok(result) => result,
        Err(_) => Err(InboundError::Timeout {
            ms: limit.as_millis(),
            got: buf.len(),
        }),
    }
}

async fn read_loop(stream: &TcpStream, buf: &mut Vec<u8>) -> Result<Accepted, InboundError> {
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
/// address, and the properties its detection found).
pub(crate) async fn send_header(upstream: &mut TcpStream, version: Version, conn: &ConnInfo<'_>) -> io::Result<()> {
    let header = header_for(version, conn.peer_addr(), conn.local.into(), &conn.properties);
    upstream.write_all(&header).await
}

#[cfg(test)]
mod tests;
