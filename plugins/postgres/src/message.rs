//! Parsing a PostgreSQL frontend's first message (protocol 3, "Message Formats" in the PostgreSQL
//! documentation): an `Int32` length that counts itself, an `Int32` request code, then the body.
//!
//! * `SSLRequest`: length 8, code 80877103;
//! * `GSSENCRequest`: length 8, code 80877104;
//! * `CancelRequest`: length 16, code 80877102, then the process ID and the secret key (protocol
//!   3.2 allows a longer key, up to 268 bytes in all);
//! * `StartupMessage`: code 196608 (protocol 3.0; any 3.x minor version is accepted), then
//!   NUL-terminated key/value pairs and a final NUL. `user` is required.
//!
//! Every check runs on the bytes seen so far, so a foreign protocol is refused as early as its
//! bytes allow: the first byte of a length is always 0, which rules out HTTP, TLS and SSH at once.

/// The server's cap on a startup packet (`MAX_STARTUP_PACKET_LENGTH` in PostgreSQL).
pub const MAX_STARTUP_LEN: usize = 10_000;
/// The longest `CancelRequest`: protocol 3.2 (PostgreSQL 18) allows a secret key of up to 256
/// bytes after the 4-byte length, code and process ID; 3.0 always sends 16 bytes.
pub const MAX_CANCEL_LEN: usize = 12 + 256;
/// `SSLRequest`'s code.
pub const SSL_REQUEST: u32 = 80_877_103;
/// `GSSENCRequest`'s code.
pub const GSSENC_REQUEST: u32 = 80_877_104;
/// `CancelRequest`'s code.
pub const CANCEL_REQUEST: u32 = 80_877_102;
/// Protocol 3.0, as a `StartupMessage` carries it.
pub const PROTOCOL_3_0: u32 = 196_608;

/// The kind of first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `SSLRequest`: TLS follows; the user and database travel inside it.
    Ssl,
    /// `GSSENCRequest`: GSSAPI encryption follows.
    GssEnc,
    /// `CancelRequest` for a running query.
    Cancel,
    /// A plaintext `StartupMessage`.
    Startup(Startup),
}

impl Request {
    /// The `postgres.request` property value.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Ssl => "ssl",
            Request::GssEnc => "gssenc",
            Request::Cancel => "cancel",
            Request::Startup(_) => "startup",
        }
    }
}

/// The parameters of a `StartupMessage` that routing cares about.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Startup {
    /// The `user` parameter (required by the protocol).
    pub user: String,
    /// The `database` parameter, when the client sent one (the server then defaults to `user`).
    pub database: Option<String>,
}

/// The result of parsing the bytes seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// A whole, valid first message.
    Complete(Request),
    /// Valid so far; more bytes are needed.
    Incomplete,
    /// Not a PostgreSQL first message, with the reason.
    Invalid(&'static str),
}

/// The four codes, big-endian, that may follow the length.
const CODES: [u32; 4] = [SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST, PROTOCOL_3_0];

fn be32(bytes: &[u8]) -> Option<u32> {
    let arr: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(arr))
}

/// Whether `code` is one we know, for a startup meaning protocol major version 3 (any minor).
fn known_code(code: u32) -> bool {
    CODES.contains(&code) || code >> 16 == 3
}

/// Whether some known code starts with `prefix` (0 to 3 bytes).
fn code_prefix_ok(prefix: &[u8]) -> bool {
    let startup_prefix: &[u8] = &[0x00, 0x03];
    CODES.iter().any(|code| code.to_be_bytes().starts_with(prefix))
        || startup_prefix.starts_with(prefix)
        || prefix.starts_with(startup_prefix)
}

/// Parses the first message from the bytes seen so far.
pub fn parse(preview: &[u8]) -> Parse {
    // The length is at most 10 000 (0x2710): its first two bytes are 0 and at most 0x27.
    match preview.first() {
        Some(0) => {}
        Some(_) => return Parse::Invalid("the length's first byte is not 0"),
        None => return Parse::Incomplete,
    }
    if preview.get(1).is_some_and(|&b| b > 0x27) {
        return Parse::Invalid("the length is over 10 000 bytes");
    }
    let code_bytes = preview.get(4..).unwrap_or_default();
    if !code_prefix_ok(code_bytes.get(..code_bytes.len().min(4)).unwrap_or_default()) {
        return Parse::Invalid("not a known request code");
    }
    let Some(len) = be32(preview) else {
        return Parse::Incomplete;
    };
    let len = len as usize;
    if !(8..=MAX_STARTUP_LEN).contains(&len) {
        return Parse::Invalid("length out of range");
    }
    let Some(code) = be32(code_bytes) else {
        return Parse::Incomplete;
    };
    if !known_code(code) {
        return Parse::Invalid("not a known request code");
    }
    match code {
        SSL_REQUEST | GSSENC_REQUEST if len != 8 => Parse::Invalid("SSLRequest/GSSENCRequest length is not 8"),
        SSL_REQUEST => Parse::Complete(Request::Ssl),
        GSSENC_REQUEST => Parse::Complete(Request::GssEnc),
        CANCEL_REQUEST if !(16..=MAX_CANCEL_LEN).contains(&len) => Parse::Invalid("CancelRequest length out of range"),
        CANCEL_REQUEST if preview.len() < len => Parse::Incomplete,
        CANCEL_REQUEST => Parse::Complete(Request::Cancel),
        _ => parse_startup(preview, len),
    }
}

/// A `StartupMessage` of `len` bytes: checks the pairs seen so far, completes on the last byte.
fn parse_startup(preview: &[u8], len: usize) -> Parse {
    let body_end = preview.len().min(len);
    let body = preview.get(8..body_end).unwrap_or_default();
    let complete = preview.len() >= len;
    let mut startup = Startup::default();
    let mut has_user = false;
    let mut fields = body.split(|&b| b == 0);
    while let Some(key) = fields.next() {
        if key.is_empty() {
            // The terminator: it must be the message's last byte.
            return match (complete, fields.next()) {
                (_, Some(rest)) if !rest.is_empty() || fields.next().is_some() => {
                    Parse::Invalid("bytes after the terminating NUL")
                }
                (true, Some(_)) if !has_user => Parse::Invalid("no `user` parameter"),
                (true, Some(_)) => Parse::Complete(Request::Startup(startup)),
                (true, None) => Parse::Invalid("startup message does not end with NUL"),
                (false, _) => Parse::Incomplete,
            };
        }
        if !key.iter().all(|b| b.is_ascii_graphic()) {
            return Parse::Invalid("a parameter name is not printable ASCII");
        }
        let Some(value) = fields.next() else {
            // The key is still arriving (or the message ends inside it).
            return if complete {
                Parse::Invalid("startup message ends inside a name")
            } else {
                Parse::Incomplete
            };
        };
        let value_done = fields.clone().next().is_some();
        if value_done {
            let text = String::from_utf8_lossy(value).into_owned();
            match key {
                b"user" => {
                    has_user = true;
                    startup.user = text;
                }
                b"database" => startup.database = Some(text),
                _ => {}
            }
        }
    }
    if complete {
        Parse::Invalid("startup message does not end with NUL")
    } else {
        Parse::Incomplete
    }
}
