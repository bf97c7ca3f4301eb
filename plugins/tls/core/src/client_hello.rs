//! Parsing a TLS ClientHello from untrusted bytes, for detection only (nothing is decrypted, nothing
//! is answered): from the TLS record layer ([`parse_records`], what a TCP client sends) or from bare
//! handshake bytes ([`parse_handshake`], what QUIC carries in its CRYPTO frames).
//!
//! Both take everything received so far and answer [`Parse::Incomplete`] while the bytes are a
//! consistent prefix of a ClientHello, [`Parse::Invalid`] as soon as they cannot be one, and
//! [`Parse::Complete`] once the whole message is there. Every length is checked against its enclosing
//! length and its RFC 8446 / RFC 5246 bounds before use, nothing indexes out of bounds, and the work is
//! linear in the input.

/// Record content type of handshake records (RFC 8446 §5.1).
pub const CONTENT_TYPE_HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello (RFC 8446 §4).
pub const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// Largest plaintext record payload allowed (2^14, RFC 8446 §5.1).
pub const MAX_RECORD_PAYLOAD: usize = 1 << 14;
/// Smallest ClientHello body: version, random, empty session id, one cipher suite, one compression
/// method, no extensions.
pub const MIN_CLIENT_HELLO_LEN: usize = 2 + 32 + 1 + (2 + 2) + (1 + 1);
/// Largest ClientHello body the vector bounds allow (about 128 KiB): anything declaring more is not TLS.
pub const MAX_CLIENT_HELLO_LEN: usize = 2 + 32 + (1 + 32) + (2 + 0xfffe) + (1 + 0xff) + (2 + 0xffff);

/// Extension type `server_name` (RFC 6066 §3).
pub const EXT_SERVER_NAME: u16 = 0;
/// Extension type `padding` (RFC 7685).
pub const EXT_PADDING: u16 = 21;
/// Extension type `application_layer_protocol_negotiation` (RFC 7301).
pub const EXT_ALPN: u16 = 16;
/// Extension type `supported_versions` (RFC 8446 §4.2.1).
pub const EXT_SUPPORTED_VERSIONS: u16 = 43;
/// Extension type `key_share` (RFC 8446 §4.2.8).
pub const EXT_KEY_SHARE: u16 = 51;
/// Extension type `quic_transport_parameters` (RFC 9001 §8.2).
pub const EXT_QUIC_TRANSPORT_PARAMETERS: u16 = 57;

/// Protocol version number of TLS 1.3 as offered in `supported_versions`.
pub const TLS13: u16 = 0x0304;

/// The outcome of parsing a possibly incomplete input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse<T> {
    /// The whole message was there and is well formed.
    Complete(T),
    /// Everything so far is consistent; more bytes are needed to decide.
    Incomplete,
    /// The bytes cannot be (the start of) a well-formed message; the text says why.
    Invalid(&'static str),
}

/// One ClientHello extension, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// Extension type number.
    pub kind: u16,
    /// The extension's body, without its type and length.
    pub data: Vec<u8>,
}

/// The fields of a ClientHello that routing, logging and QUIC need. The well-known extensions are
/// decoded; every extension is also kept raw in [`ClientHello::extensions`], in the order sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// `legacy_version` (`client_version` before TLS 1.3): 0x0301 for TLS 1.0 ... 0x0303 for 1.2 and 1.3.
    pub legacy_version: u16,
    /// The client random.
    pub random: [u8; 32],
    /// `legacy_session_id` (0 to 32 bytes).
    pub session_id: Vec<u8>,
    /// Offered cipher suites, in the client's order (GREASE values included).
    pub cipher_suites: Vec<u16>,
    /// Offered compression methods (always include 0, "null").
    pub compression_methods: Vec<u8>,
    /// Every extension, in the order sent; types are unique.
    pub extensions: Vec<Extension>,
    /// The `host_name` of `server_name`, as sent: non-empty printable ASCII, no spaces.
    pub server_name: Option<String>,
    /// Protocols offered through ALPN, in the client's order; empty when the extension is absent.
    pub alpn: Vec<Vec<u8>>,
    /// Versions offered through `supported_versions`; empty when the extension is absent.
    pub supported_versions: Vec<u16>,
}

impl ClientHello {
    /// The body of extension `kind`, if the client sent it.
    pub fn extension(&self, kind: u16) -> Option<&[u8]> {
        self.extensions
            .iter()
            .find(|e| e.kind == kind)
            .map(|e| e.data.as_slice())
    }

    /// Whether the client offers TLS 1.3 (through `supported_versions`).
    pub fn offers_tls13(&self) -> bool {
        self.supported_versions.contains(&TLS13)
    }

    /// The best version the client offers, for the `min_version` / `max_version` params: the highest
    /// TLS version (0x0301 to 0x0304 and any later 0x03xx) in `supported_versions` when it lists one
    /// (GREASE and draft values ignored), else `legacy_version`.
    pub fn best_version(&self) -> u16 {
        self.supported_versions
            .iter()
            .copied()
            .filter(|&v| v >> 8 == 3 && v & 0xff != 0)
            .max()
            .unwrap_or(self.legacy_version)
    }

    /// The highest TLS version offered, as `"1.3"`, `"1.2"`, `"1.1"` or `"1.0"`: 1.3 when
    /// `supported_versions` offers it, otherwise from `legacy_version`.
    pub fn version(&self) -> &'static str {
        if self.offers_tls13() {
            return "1.3";
        }
        match self.legacy_version {
            0x0301 => "1.0",
            0x0302 => "1.1",
            _ => "1.2",
        }
    }
}

/// Parses a ClientHello from the start of a TCP stream: TLS records of type handshake, whose payloads
/// are concatenated (a ClientHello may be fragmented over several records, RFC 8446 §5.1) and handed to
/// [`parse_handshake`]. `preview` is everything received so far; bytes after the ClientHello (early
/// data, a ChangeCipherSpec) are ignored.
///
/// Invalid as soon as a record header is not a handshake record of version 3.x with a payload of
/// 1 to 2^14 bytes: the first byte of a non-TLS stream usually decides.
pub fn parse_records(preview: &[u8]) -> Parse<ClientHello> {
    let mut handshake: Vec<u8> = Vec::new();
    let mut rest = preview;
    let mut first = true;
    loop {
        let len = match record_header(rest, first) {
            Ok(len) => len,
            Err(stop) => {
                // The handshake bytes before this header came first: their error, if any, wins, so
                // the verdict does not depend on where the input was cut.
                if let Parse::Invalid(why) = parse_handshake(&handshake) {
                    return Parse::Invalid(why);
                }
                return match stop {
                    Stop::Invalid(why) => Parse::Invalid(why),
                    Stop::Incomplete => Parse::Incomplete,
                };
            }
        };
        let payload = rest.get(5..).unwrap_or_default();
        let received = payload.len().min(len);
        handshake.extend_from_slice(payload.get(..received).unwrap_or_default());
        if received < len || have_whole_message(&handshake) {
            break;
        }
        rest = payload.get(len..).unwrap_or_default();
        first = false;
    }
    parse_handshake(&handshake)
}

/// Parses a ClientHello handshake message (type, 24-bit length, body) from the start of `handshake`,
/// as found in the payload of TLS handshake records or in QUIC CRYPTO frames. Bytes after the message
/// are ignored.
pub fn parse_handshake(handshake: &[u8]) -> Parse<ClientHello> {
    match handshake.first() {
        None => return Parse::Incomplete,
        Some(&HANDSHAKE_CLIENT_HELLO) => {}
        Some(_) => return Parse::Invalid("handshake message is not a ClientHello"),
    }
    // Decide on the length's high byte alone when it already exceeds the maximum.
    if let Some(&high) = handshake.get(1) {
        if usize::from(high) << 16 > MAX_CLIENT_HELLO_LEN {
            return Parse::Invalid("ClientHello length exceeds what its fields allow");
        }
    }
    let Some(&[_, a, b, c]) = handshake.get(..4).and_then(|h| <&[u8; 4]>::try_from(h).ok()) else {
        return Parse::Incomplete;
    };
    let len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
    if len < MIN_CLIENT_HELLO_LEN {
        return Parse::Invalid("ClientHello shorter than its mandatory fields");
    }
    if len > MAX_CLIENT_HELLO_LEN {
        return Parse::Invalid("ClientHello length exceeds what its fields allow");
    }
    let mut body = Reader {
        buf: handshake.get(4..).unwrap_or_default(),
        pos: 0,
        end: len,
    };
    match client_hello_body(&mut body) {
        Ok(hello) => Parse::Complete(hello),
        Err(Stop::Incomplete) => Parse::Incomplete,
        Err(Stop::Invalid(why)) => Parse::Invalid(why),
    }
}

/// Decodes a whole `server_name` extension body (RFC 6066 §3): the `host_name`, if any, as sent
/// (printable ASCII); `Err` says what is malformed. For parsers with their own framing (DTLS).
pub fn decode_server_name(data: &[u8]) -> Result<Option<String>, &'static str> {
    server_name(data).map_err(Stop::reason)
}

/// Decodes a whole `application_layer_protocol_negotiation` extension body (RFC 7301 §3.1).
pub fn decode_alpn(data: &[u8]) -> Result<Vec<Vec<u8>>, &'static str> {
    alpn(data).map_err(Stop::reason)
}

/// Decodes a whole ClientHello `supported_versions` extension body (RFC 8446 §4.2.1).
pub fn decode_supported_versions(data: &[u8]) -> Result<Vec<u16>, &'static str> {
    supported_versions(data).map_err(Stop::reason)
}

/// Checks the (possibly partial) record header at the start of `rest`; returns the payload length.
fn record_header(rest: &[u8], first: bool) -> Result<usize, Stop> {
    match rest.first() {
        None => return Err(Stop::Incomplete),
        Some(&CONTENT_TYPE_HANDSHAKE) => {}
        Some(_) if first => return Err(Stop::Invalid("not a TLS handshake record")),
        Some(_) => return Err(Stop::Invalid("ClientHello interrupted by a non-handshake record")),
    }
    match rest.get(1) {
        None => return Err(Stop::Incomplete),
        Some(3) => {}
        Some(_) => return Err(Stop::Invalid("record version is not 3.x")),
    }
    match rest.get(2) {
        None => return Err(Stop::Incomplete),
        Some(0..=4) => {}
        Some(_) => return Err(Stop::Invalid("record version is not SSL 3.0 to TLS 1.3")),
    }
    let high = *rest.get(3).ok_or(Stop::Incomplete)?;
    if usize::from(high) << 8 > MAX_RECORD_PAYLOAD {
        return Err(Stop::Invalid("record longer than 2^14 bytes"));
    }
    let low = *rest.get(4).ok_or(Stop::Incomplete)?;
    let len = usize::from(u16::from_be_bytes([high, low]));
    match len {
        0 => Err(Stop::Invalid("empty handshake record")),
        1..=MAX_RECORD_PAYLOAD => Ok(len),
        _ => Err(Stop::Invalid("record longer than 2^14 bytes")),
    }
}

/// Whether `handshake` holds at least the whole message its header announces.
fn have_whole_message(handshake: &[u8]) -> bool {
    match handshake.get(..4) {
        Some(&[_, a, b, c]) => {
            let len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
            handshake.len() - 4 >= len
        }
        _ => false,
    }
}

/// Why parsing stopped short of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Ran out of received bytes before the declared end.
    Incomplete,
    /// A length or value is impossible.
    Invalid(&'static str),
}

impl Stop {
    /// Why a complete input is malformed (running out of bytes inside it is malformed too).
    fn reason(self) -> &'static str {
        match self {
            Stop::Incomplete => "truncated extension",
            Stop::Invalid(why) => why,
        }
    }
}

/// A cursor over a length-delimited region whose bytes may not all have arrived: `end` is the declared
/// end (reading past it is [`Stop::Invalid`]); `buf` holds what arrived (reading past it, but within
/// `end`, is [`Stop::Incomplete`]). Positions are relative to `buf`.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    /// A reader over a complete byte string.
    fn complete(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            end: buf.len(),
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.end
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Stop> {
        let next = self.pos.checked_add(n).ok_or(Stop::Invalid(what))?;
        if next > self.end {
            return Err(Stop::Invalid(what));
        }
        let bytes = self.buf.get(self.pos..next).ok_or(Stop::Incomplete)?;
        self.pos = next;
        Ok(bytes)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, Stop> {
        match self.take(1, what)? {
            &[b] => Ok(b),
            _ => Err(Stop::Invalid(what)),
        }
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, Stop> {
        match self.take(2, what)? {
            &[a, b] => Ok(u16::from_be_bytes([a, b])),
            _ => Err(Stop::Invalid(what)),
        }
    }

    /// A vector with a one-byte length in `min..=max`, read whole.
    fn vec8(&mut self, min: usize, max: usize, what: &'static str) -> Result<&'a [u8], Stop> {
        let len = usize::from(self.u8(what)?);
        if len < min || len > max {
            return Err(Stop::Invalid(what));
        }
        self.take(len, what)
    }

    /// A vector with a two-byte length in `min..=max`, read whole.
    fn vec16(&mut self, min: usize, max: usize, what: &'static str) -> Result<&'a [u8], Stop> {
        let len = usize::from(self.u16(what)?);
        if len < min || len > max {
            return Err(Stop::Invalid(what));
        }
        self.take(len, what)
    }

    /// A vector with a two-byte length, as a reader over its (possibly not yet received) contents.
    /// The caller must read the sub-reader to its end, which checks the bytes did arrive.
    fn sub16(&mut self, what: &'static str) -> Result<Reader<'a>, Stop> {
        let len = usize::from(self.u16(what)?);
        let end = self.pos.checked_add(len).ok_or(Stop::Invalid(what))?;
        if end > self.end {
            return Err(Stop::Invalid(what));
        }
        let sub = Reader {
            buf: self.buf,
            pos: self.pos,
            end,
        };
        self.pos = end;
        Ok(sub)
    }

    /// Fails unless every declared byte was read.
    fn finish(&self, what: &'static str) -> Result<(), Stop> {
        if self.pos == self.end {
            Ok(())
        } else {
            Err(Stop::Invalid(what))
        }
    }
}

fn client_hello_body(r: &mut Reader<'_>) -> Result<ClientHello, Stop> {
    let legacy_version = r.u16("truncated version")?;
    if legacy_version >> 8 != 3 || legacy_version & 0xff == 0 {
        return Err(Stop::Invalid("ClientHello version is not TLS 1.0 or later"));
    }
    let random = r
        .take(32, "truncated random")?
        .try_into()
        .map_err(|_| Stop::Invalid("truncated random"))?;
    let session_id = r.vec8(0, 32, "bad session id length")?.to_vec();
    let suites = r.vec16(2, 0xfffe, "bad cipher suites length")?;
    if suites.len() % 2 != 0 {
        return Err(Stop::Invalid("odd cipher suites length"));
    }
    let cipher_suites = suites
        .chunks_exact(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]))
        .collect();
    let compression_methods = r.vec8(1, 0xff, "bad compression methods length")?.to_vec();
    if !compression_methods.contains(&0) {
        return Err(Stop::Invalid("null compression not offered"));
    }
    let mut hello = ClientHello {
        legacy_version,
        random,
        session_id,
        cipher_suites,
        compression_methods,
        extensions: Vec::new(),
        server_name: None,
        alpn: Vec::new(),
        supported_versions: Vec::new(),
    };
    // Extensions are optional before TLS 1.3: the body may end after the compression methods.
    if !r.at_end() {
        let mut exts = r.sub16("bad extensions length")?;
        // The extensions must fill the body exactly: checked before reading them, to decide early.
        r.finish("bytes after the extensions")?;
        extensions(&mut exts, &mut hello)?;
    }
    Ok(hello)
}

fn extensions(r: &mut Reader<'_>, hello: &mut ClientHello) -> Result<(), Stop> {
    // One bit per extension type: duplicates are forbidden (RFC 8446 §4.2) and could make a router
    // and the real server disagree on the name.
    let mut seen = [0u64; 1024];
    while !r.at_end() {
        let kind = r.u16("truncated extension type")?;
        let data = r.vec16(0, 0xffff, "bad extension length")?;
        let slot = seen
            .get_mut(usize::from(kind >> 6))
            .ok_or(Stop::Invalid("extension type"))?;
        let bit = 1u64 << (kind & 63);
        if *slot & bit != 0 {
            return Err(Stop::Invalid("duplicate extension"));
        }
        *slot |= bit;
        match kind {
            EXT_SERVER_NAME => hello.server_name = server_name(data)?,
            EXT_ALPN => hello.alpn = alpn(data)?,
            EXT_SUPPORTED_VERSIONS => hello.supported_versions = supported_versions(data)?,
            _ => {}
        }
        hello.extensions.push(Extension {
            kind,
            data: data.to_vec(),
        });
    }
    r.finish("bad extensions length")
}

/// `server_name` (RFC 6066 §3): a list of (type, name) with at most one `host_name` (type 0), kept;
/// entries of other types are skipped.
fn server_name(data: &[u8]) -> Result<Option<String>, Stop> {
    const BAD: &str = "malformed server_name extension";
    let mut r = Reader::complete(data);
    let mut list = r.sub16(BAD)?;
    r.finish(BAD)?;
    if list.at_end() {
        return Err(Stop::Invalid(BAD));
    }
    let mut host = None;
    while !list.at_end() {
        let name_type = list.u8(BAD)?;
        let name = list.vec16(1, 0xffff, BAD)?;
        if name_type == 0 {
            if host.is_some() {
                // At most one name per type (RFC 6066 §3): two could send router and server apart.
                return Err(Stop::Invalid("more than one host_name in server_name"));
            }
            if !name.iter().all(|b| b.is_ascii_graphic()) {
                return Err(Stop::Invalid("server name is not printable ASCII"));
            }
            host = Some(name.iter().map(|&b| char::from(b)).collect());
        }
    }
    Ok(host)
}

/// `application_layer_protocol_negotiation` (RFC 7301 §3.1): a non-empty list of non-empty names.
fn alpn(data: &[u8]) -> Result<Vec<Vec<u8>>, Stop> {
    const BAD: &str = "malformed ALPN extension";
    let mut r = Reader::complete(data);
    let mut list = r.sub16(BAD)?;
    r.finish(BAD)?;
    if list.at_end() {
        return Err(Stop::Invalid(BAD));
    }
    let mut protocols = Vec::new();
    while !list.at_end() {
        protocols.push(list.vec8(1, 0xff, BAD)?.to_vec());
    }
    Ok(protocols)
}

/// `supported_versions` in a ClientHello (RFC 8446 §4.2.1): 1 to 127 two-byte versions.
fn supported_versions(data: &[u8]) -> Result<Vec<u16>, Stop> {
    const BAD: &str = "malformed supported_versions extension";
    let mut r = Reader::complete(data);
    let list = r.vec8(2, 254, BAD)?;
    r.finish(BAD)?;
    if list.len() % 2 != 0 {
        return Err(Stop::Invalid(BAD));
    }
    Ok(list.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]])).collect())
}

#[cfg(test)]
mod tests;
