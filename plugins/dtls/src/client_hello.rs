//! Parsing the DTLS ClientHello at the start of a datagram, from untrusted bytes, for detection only.
//!
//! The datagram starts with a DTLSPlaintext record (RFC 6347 §4.1, RFC 9147 §4): content type 22
//! (handshake), version 0xFEFF (DTLS 1.0) or 0xFEFD (1.2; also the legacy record version of DTLS 1.3),
//! epoch 0, a 48-bit sequence number and a 16-bit length that fits in the datagram. Its payload starts
//! with a DTLS handshake header (RFC 6347 §4.2.2): type 1 (ClientHello), 24-bit length, message_seq
//! 0 or 1 (1 is the ClientHello repeated with a cookie after a HelloVerifyRequest), fragment_offset 0,
//! fragment_length at most the length. Then the ClientHello body (RFC 6347 §4.2.1): client_version,
//! random, session_id, **cookie**, cipher_suites, compression_methods, extensions.
//!
//! When fragment_length is the whole length, the body must be well formed to its last byte. When it
//! is shorter (a ClientHello larger than the path MTU, RFC 6347 §4.2.3), only the first fragment is
//! at hand: it matches on its headers, and the body is read as far as the fragment goes — the server
//! name and ALPN are reported when they are complete inside it. Records after the first are ignored.
//!
//! The DTLS framing, the cookie and the first-fragment reading are this module's; the bodies of the
//! `server_name`, ALPN and `supported_versions` extensions are decoded by the TLS ClientHello
//! parser's decoders (`pmmux-tls-core`), so both plugins accept and refuse the same names.

use pmmux_tls_core::client_hello::{decode_alpn, decode_server_name, decode_supported_versions};

/// Record content type of handshake records.
pub const CONTENT_TYPE_HANDSHAKE: u8 = 22;
/// Handshake type ClientHello.
pub const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// DTLS 1.0 on the wire.
pub const DTLS10: u16 = 0xFEFF;
/// DTLS 1.2 on the wire.
pub const DTLS12: u16 = 0xFEFD;
/// DTLS 1.3 as offered in `supported_versions` (RFC 9147 §5.3).
pub const DTLS13: u16 = 0xFEFC;
/// Size of a DTLS record header.
pub const RECORD_HEADER_LEN: usize = 13;
/// Size of a DTLS handshake header.
pub const HANDSHAKE_HEADER_LEN: usize = 12;
/// Smallest ClientHello body: version, random, empty session id, empty cookie, one cipher suite, one
/// compression method.
pub const MIN_BODY_LEN: usize = 2 + 32 + 1 + 1 + (2 + 2) + (1 + 1);
/// Extension `server_name` (RFC 6066 §3).
pub const EXT_SERVER_NAME: u16 = 0;
/// Extension `application_layer_protocol_negotiation` (RFC 7301).
pub const EXT_ALPN: u16 = 16;
/// Extension `supported_versions` (RFC 8446 §4.2.1).
pub const EXT_SUPPORTED_VERSIONS: u16 = 43;

/// What the first datagram's ClientHello tells.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    /// `client_version`: [`DTLS10`] or [`DTLS12`].
    pub client_version: u16,
    /// The `host_name` of `server_name`, as sent (printable ASCII, no spaces), if seen.
    pub server_name: Option<String>,
    /// Protocols offered through ALPN, in the client's order; empty when absent or not seen.
    pub alpn: Vec<Vec<u8>>,
    /// Versions offered through `supported_versions`; empty when absent or not seen.
    pub supported_versions: Vec<u16>,
    /// False when the datagram holds only the first fragment of the ClientHello.
    pub complete: bool,
}

impl ClientHello {
    /// `"1.3"` when `supported_versions` offers DTLS 1.3, else `"1.2"` or `"1.0"` from
    /// `client_version`.
    pub fn version(&self) -> &'static str {
        if self.supported_versions.contains(&DTLS13) {
            "1.3"
        } else if self.client_version == DTLS10 {
            "1.0"
        } else {
            "1.2"
        }
    }
}

/// Why reading stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The bytes ran out (fine in a first fragment, fatal in a whole message).
    End,
    /// Not a well-formed ClientHello.
    Invalid(&'static str),
}

/// A bounds-checked cursor.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Stop> {
        match (self.buf.get(..n), self.buf.get(n..)) {
            (Some(head), Some(rest)) => {
                self.buf = rest;
                Ok(head)
            }
            _ => Err(Stop::End),
        }
    }

    fn u8(&mut self) -> Result<u8, Stop> {
        self.take(1)?.first().copied().ok_or(Stop::End)
    }

    fn u16(&mut self) -> Result<u16, Stop> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([
            *b.first().ok_or(Stop::End)?,
            *b.get(1).ok_or(Stop::End)?,
        ]))
    }

    fn u24(&mut self) -> Result<usize, Stop> {
        let b = self.take(3)?;
        let byte = |i: usize| b.get(i).map(|&v| usize::from(v)).ok_or(Stop::End);
        Ok(byte(0)? << 16 | byte(1)? << 8 | byte(2)?)
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Parses the ClientHello at the start of a datagram; the error says why it is not one.
pub fn parse_datagram(datagram: &[u8]) -> Result<ClientHello, &'static str> {
    let mut record = Reader { buf: datagram };
    let header = |r: &mut Reader<'_>| -> Result<(u8, u16, u16, usize), Stop> {
        let kind = r.u8()?;
        let version = r.u16()?;
        let epoch = r.u16()?;
        r.take(6)?; // sequence number
        let len = usize::from(r.u16()?);
        Ok((kind, version, epoch, len))
    };
    let (kind, version, epoch, len) = header(&mut record).map_err(|_| "shorter than a DTLS record header")?;
    if kind != CONTENT_TYPE_HANDSHAKE {
        return Err("not a DTLS handshake record");
    }
    if version != DTLS10 && version != DTLS12 {
        return Err("record version is not DTLS 1.0 or 1.2");
    }
    if epoch != 0 {
        return Err("epoch is not 0");
    }
    let payload = record.take(len).map_err(|_| "record longer than the datagram")?;
    let mut hs = Reader { buf: payload };
    let fields = |r: &mut Reader<'_>| -> Result<(u8, usize, u16, usize, usize), Stop> {
        Ok((r.u8()?, r.u24()?, r.u16()?, r.u24()?, r.u24()?))
    };
    let (msg_type, length, message_seq, fragment_offset, fragment_length) =
        fields(&mut hs).map_err(|_| "record shorter than a handshake header")?;
    if msg_type != HANDSHAKE_CLIENT_HELLO {
        return Err("handshake message is not a ClientHello");
    }
    if message_seq > 1 {
        return Err("message_seq is not that of a first ClientHello");
    }
    if fragment_offset != 0 {
        return Err("not the first fragment");
    }
    if length < MIN_BODY_LEN {
        return Err("ClientHello shorter than its mandatory fields");
    }
    if fragment_length > length {
        return Err("fragment longer than the message");
    }
    let fragment = hs
        .take(fragment_length)
        .map_err(|_| "fragment longer than the record")?;
    let complete = fragment_length == length;
    if complete && fragment_length < MIN_BODY_LEN {
        return Err("ClientHello shorter than its mandatory fields");
    }
    let mut hello = ClientHello {
        complete,
        ..ClientHello::default()
    };
    match body(&mut Reader { buf: fragment }, &mut hello) {
        Ok(()) => Ok(hello),
        Err(Stop::End) if !complete => Ok(hello),
        Err(Stop::End) => Err("ClientHello fields overrun its length"),
        Err(Stop::Invalid(why)) => Err(why),
    }
}

/// Reads the body into `hello`, as far as the bytes go.
fn body(r: &mut Reader<'_>, hello: &mut ClientHello) -> Result<(), Stop> {
    let version = r.u16()?;
    if version != DTLS10 && version != DTLS12 {
        return Err(Stop::Invalid("client_version is not DTLS 1.0 or 1.2"));
    }
    hello.client_version = version;
    r.take(32)?; // random
    let session_id = r.u8()?;
    if session_id > 32 {
        return Err(Stop::Invalid("session id longer than 32 bytes"));
    }
    r.take(usize::from(session_id))?;
    let cookie = r.u8()?;
    r.take(usize::from(cookie))?;
    let suites = r.u16()?;
    if suites < 2 || suites % 2 != 0 {
        return Err(Stop::Invalid("cipher suite list is empty or odd"));
    }
    r.take(usize::from(suites))?;
    let compression = r.u8()?;
    if compression < 1 {
        return Err(Stop::Invalid("no compression method"));
    }
    r.take(usize::from(compression))?;
    if r.is_empty() && hello.complete {
        return Ok(()); // no extensions
    }
    let total = usize::from(r.u16()?);
    let (mut ext, whole) = match r.take(total) {
        Ok(all) => (Reader { buf: all }, true),
        Err(_) if !hello.complete => (Reader { buf: r.buf }, false),
        Err(_) => return Err(Stop::Invalid("extensions overrun the ClientHello")),
    };
    if whole && hello.complete && !r.is_empty() {
        return Err(Stop::Invalid("bytes after the extensions"));
    }
    let mut seen: Vec<u16> = Vec::new();
    while !ext.is_empty() {
        let kind = ext.u16()?;
        let len = usize::from(ext.u16()?);
        let data = ext.take(len).map_err(|_| {
            if whole {
                Stop::Invalid("extension overruns the extension list")
            } else {
                Stop::End
            }
        })?;
        if seen.contains(&kind) {
            return Err(Stop::Invalid("duplicate extension"));
        }
        seen.push(kind);
        extension(kind, data, hello)?;
    }
    Ok(())
}

/// Decodes the extensions routing needs, with the decoders of the TLS ClientHello parser
/// (`pmmux-tls-core`): the extension bodies are the same in DTLS.
fn extension(kind: u16, data: &[u8], hello: &mut ClientHello) -> Result<(), Stop> {
    match kind {
        EXT_SERVER_NAME => hello.server_name = decode_server_name(data).map_err(Stop::Invalid)?,
        EXT_ALPN => hello.alpn = decode_alpn(data).map_err(Stop::Invalid)?,
        EXT_SUPPORTED_VERSIONS => hello.supported_versions = decode_supported_versions(data).map_err(Stop::Invalid)?,
        _ => {}
    }
    Ok(())
}
