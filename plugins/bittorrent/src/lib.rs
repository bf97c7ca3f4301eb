//! pmmux plugin `bittorrent`: matches BitTorrent clients. Takes no params.
//!
//! * TCP: the peer wire handshake (BEP 3): `\x13BitTorrent protocol`, 8 reserved bytes, the 20-byte
//!   info hash (then the 20-byte peer id, not waited for). `NeedMore` until the 48 bytes up to the
//!   info hash are there; `NoMatch` from the first byte that differs from the protocol string.
//!   Encrypted connections (MSE/PE) look random and are not recognised.
//! * UDP, one whole datagram: a UDP tracker connect request (BEP 15: the protocol id
//!   `0x41727101980`, action 0, a transaction id; exactly 16 bytes); a DHT KRPC message (BEP 5: one
//!   canonical bencoded dictionary with `y` = `q` (with a `q` name and an `a` dictionary holding a
//!   20-byte `id`), `r` (an `r` dictionary holding a 20-byte `id`) or `e` (an `e` list), and a `t`
//!   string); or a uTP connection request (BEP 29: version 1, type `ST_SYN`, a valid 20-byte header
//!   and extension chain).
//!
//! Properties: `bittorrent.kind` = `handshake`, `tracker`, `dht` or `utp`; for a handshake also
//! `bittorrent.info_hash` (40 lowercase hex digits).

pub mod bencode;

use pmmux_plugin_api::{export_plugin, Backend, BackendSpec, ConnInfo, Detection, Property};

use bencode::Value;

/// The handshake's first 20 bytes: the length 19 and the protocol string.
pub const PROTOCOL: &[u8] = b"\x13BitTorrent protocol";
/// Bytes needed to decide a handshake: protocol, 8 reserved bytes and the info hash.
pub const HANDSHAKE_DECIDES_AT: usize = 20 + 8 + 20;
/// The magic constant opening a BEP 15 connect request.
pub const TRACKER_PROTOCOL_ID: u64 = 0x0417_2710_1980;
/// uTP header length (BEP 29).
pub const UTP_HEADER: usize = 20;

/// A `bittorrent` backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct BitTorrent;

impl BitTorrent {
    /// Builds the backend; `bittorrent` has no params, so any given are an error.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        spec.no_params()?;
        Ok(BitTorrent)
    }
}

/// TCP detection over the bytes previewed so far.
pub fn detect_stream(preview: &[u8]) -> Detection {
    let n = preview.len().min(PROTOCOL.len());
    if preview.get(..n) != PROTOCOL.get(..n) {
        return Detection::NoMatch;
    }
    match preview.get(28..HANDSHAKE_DECIDES_AT) {
        None => Detection::NeedMore,
        Some(info_hash) => Detection::Match(vec![
            Property::new("bittorrent.kind", "handshake"),
            Property::new("bittorrent.info_hash", hex(info_hash)),
        ]),
    }
}

/// What a datagram is, if it is BitTorrent.
pub fn classify_message(message: &[u8]) -> Option<&'static str> {
    if is_tracker_connect(message) {
        Some("tracker")
    } else if is_dht(message) {
        Some("dht")
    } else if is_utp_syn(message) {
        Some("utp")
    } else {
        None
    }
}

/// UDP detection over one whole datagram: `Match` or `NoMatch`, never `NeedMore`.
pub fn detect_message(message: &[u8]) -> Detection {
    match classify_message(message) {
        Some(kind) => Detection::Match(vec![Property::new("bittorrent.kind", kind)]),
        None => Detection::NoMatch,
    }
}

/// BEP 15 connect request: `u64 protocol_id, u32 action = 0, u32 transaction_id`.
pub fn is_tracker_connect(message: &[u8]) -> bool {
    let Some((id, rest)) = message.split_first_chunk::<8>() else {
        return false;
    };
    u64::from_be_bytes(*id) == TRACKER_PROTOCOL_ID && rest.len() == 8 && rest.get(..4) == Some(&[0, 0, 0, 0][..])
}

/// BEP 5 KRPC message: a canonical bencoded dictionary of the shape a DHT node sends.
pub fn is_dht(message: &[u8]) -> bool {
    if message.first() != Some(&b'd') {
        return false;
    }
    let Some(dict) = bencode::parse(message) else {
        return false;
    };
    let has_node_id = |v: Option<&Value<'_>>| matches!(v, Some(d @ Value::Dict(_)) if d.get(b"id").and_then(Value::bytes).is_some_and(|id| id.len() == 20));
    if dict.get(b"t").and_then(Value::bytes).is_none() {
        return false;
    }
    match dict.get(b"y").and_then(Value::bytes) {
        Some(b"q") => {
            dict.get(b"q").and_then(Value::bytes).is_some_and(|q| !q.is_empty()) && has_node_id(dict.get(b"a"))
        }
        Some(b"r") => has_node_id(dict.get(b"r")),
        Some(b"e") => matches!(dict.get(b"e"), Some(Value::List(_))),
        _ => false,
    }
}

/// BEP 29 connection request: `type = ST_SYN (4)` in the high nibble and `version = 1` in the low
/// nibble of byte 0, then an extension chain that ends inside the datagram.
pub fn is_utp_syn(message: &[u8]) -> bool {
    if message.first() != Some(&0x41) || message.len() < UTP_HEADER {
        return false;
    }
    // Byte 1 is the first extension type; each extension is (next type, length, data).
    let mut next = message.get(1).copied().unwrap_or(0);
    let mut pos = UTP_HEADER;
    while next != 0 {
        if next > 2 {
            return false; // BEP 29 defines selective ack (1); libutp also sends extension bits (2)
        }
        let (Some(&following), Some(&len)) = (message.get(pos), message.get(pos + 1)) else {
            return false;
        };
        pos += 2 + usize::from(len);
        if pos > message.len() {
            return false;
        }
        next = following;
    }
    true
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

impl Backend for BitTorrent {
    fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
        detect_stream(preview)
    }

    fn can_handle_message(&self, _client: &ConnInfo<'_>, message: &[u8]) -> Detection {
        detect_message(message)
    }
}

export_plugin! {
    name: "bittorrent",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "bittorrent" => BitTorrent::new },
}
