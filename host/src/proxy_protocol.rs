//! The PROXY protocol (HAProxy's `proxy-protocol.txt`, versions 1 and 2), sans I/O: [`encode`]
//! builds the header pmmux sends to an upstream (backend `proxy_protocol = "v1" | "v2"`), [`decode`]
//! reads one sent by a trusted front (listener `accept_proxy_protocol`), and [`io`] does the socket
//! side of both: the bounded, timed read on a fresh connection and the write to an upstream.

use std::net::SocketAddr;

use serde::Deserialize;

pub(crate) mod config;
pub(crate) mod decode;
pub(crate) mod encode;
pub(crate) mod io;

pub use decode::{decode, Decoded};
pub(crate) use encode::header_for;
pub use encode::{encode_v1, encode_v2};

/// Bytes of each address of the v2 UNIX family (`sun_path`), source and destination.
pub(crate) const V2_UNIX_PATH_LEN: usize = 108;
/// The 12 bytes every version 2 header starts with.
pub(crate) const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// What every version 1 header starts with.
pub(crate) const V1_PREFIX: &[u8] = b"PROXY ";
/// Longest version 1 header, CRLF included (the spec's bound).
pub(crate) const V1_MAX_LEN: usize = 107;
/// Fixed part of a version 2 header: signature, version/command, family/transport, length.
pub const V2_FIXED_LEN: usize = 16;
/// Most address-and-TLV bytes pmmux accepts after the fixed part of a version 2 header (the spec
/// allows 65535; HAProxy itself keeps headers within one buffer). Longer is refused as invalid.
pub const V2_MAX_PAYLOAD: usize = 4096;
/// Most bytes a header of either version may take.
pub const MAX_HEADER_LEN: usize = V2_FIXED_LEN + V2_MAX_PAYLOAD;

/// TLV type: the application protocol (ALPN).
pub(crate) const PP2_TYPE_ALPN: u8 = 0x01;
/// TLV type: the host name the client asked for (TLS SNI, HTTP Host).
pub(crate) const PP2_TYPE_AUTHORITY: u8 = 0x02;

/// Which version a backend sends (`proxy_protocol = "v1" | "v2"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    /// The text line, `PROXY TCP4 ...\r\n`.
    V1,
    /// The binary header, with TLVs.
    V2,
}

/// A version 2 header's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The connection was made by the front itself (health check): use the real endpoints.
    Local,
    /// The connection is relayed on behalf of the client named in the header.
    Proxy,
}

/// The transport named by a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Unknown or unspecified (v1 `UNKNOWN`, v2 `UNSPEC`, or `LOCAL`).
    Unspec,
    /// TCP (v1 `TCP4`/`TCP6`, v2 `STREAM`).
    Stream,
    /// UDP (v2 `DGRAM`).
    Dgram,
}

/// One type-length-value field of a version 2 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlv {
    /// The type (`PP2_TYPE_*`).
    pub kind: u8,
    /// The value (at most 65535 bytes).
    pub value: Vec<u8>,
}

/// A decoded header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Bytes the header took; what follows belongs to the relayed stream.
    pub len: usize,
    /// 1 or 2.
    pub version: Version,
    /// `Local` for v2 LOCAL; v1 is always `Proxy`.
    pub command: Command,
    /// The transport the header names.
    pub transport: Transport,
    /// The original client, when the header carries an IPv4 or IPv6 address for a `Proxy` command.
    pub source: Option<SocketAddr>,
    /// The address the client reached, with `source`.
    pub dest: Option<SocketAddr>,
    /// For a v2 `Proxy` command of family UNIX: the client's socket path (the bytes of the
    /// 108-byte field before its first NUL; empty for an unnamed or abstract client), and the path
    /// it reached.
    pub unix: Option<(Vec<u8>, Vec<u8>)>,
    /// Version 2 TLVs, in order (empty for version 1).
    pub tlvs: Vec<Tlv>,
}

#[cfg(test)]
mod tests;
