//! pmmux plugin `openvpn`: matches an OpenVPN client's first packet, a `P_CONTROL_HARD_RESET_CLIENT_V2`
//! or `_V3` control packet, over TCP (after OpenVPN's 2-byte big-endian packet length) and over UDP
//! (the first datagram, no length prefix). Takes no params.
//!
//! The packet starts with one opcode byte: the opcode in the high 5 bits (7 = `HARD_RESET_CLIENT_V2`,
//! 10 = `HARD_RESET_CLIENT_V3`, used with `--tls-crypt-v2`) and the key id in the low 3 bits, which is
//! always 0 for the hard reset that opens a session; then the client's 8-byte session id. What follows
//! depends on the control channel's wrapping, and one of these layouts must fit (checking only the
//! opcode would match one random datagram in 128):
//!
//! * none: an empty ack array (one 0 byte) and message packet id 0 (`00 00 00 00`), 14 bytes, or more
//!   with a payload;
//! * `--tls-auth`: an HMAC of 16, 20, 28, 32, 48 or 64 bytes (MD5 to SHA-512), the replay packet id
//!   (1 on the first send, one more on each resend, so 1 to [`MAX_RESEND_ID`]; OpenVPN 2.6 sets its
//!   high byte to 0x0f to offer early negotiation), a 4-byte time, then the empty ack array and
//!   message packet id 0;
//! * `--tls-crypt` (V2): the replay packet id as above, a time, a 32-byte tag and at least 5 bytes of
//!   encrypted body: 54 bytes or more;
//! * `--tls-crypt-v2` (V3): the same, followed by the wrapped client key, whose last 2 bytes give its
//!   length (the tag, the encrypted key and themselves).
//!
//! Anything over [`MAX_PACKET`] bytes is refused.
//!
//! Over TCP the backend answers `NeedMore` until the whole first packet is there, and `NoMatch` as
//! soon as a byte rules it out: an HTTP request, a TLS ClientHello or an SSH banner are refused from
//! their first byte (a length above [`MAX_PACKET`]).
//!
//! Properties on a match:
//! * `openvpn.opcode`: `P_CONTROL_HARD_RESET_CLIENT_V2` or `P_CONTROL_HARD_RESET_CLIENT_V3`;
//! * `openvpn.session_id`: the client's session id, 16 lowercase hex digits.
//!
//! Not matched: OpenVPN's obsolete V1 resets, and the data packets (`P_DATA_V2`) of a UDP session that
//! was already running when pmmux started; such a client sends a new hard reset once its
//! `ping-restart` timer fires.

use std::fmt::Write as _;

use pmmux_plugin_api::{export_plugin, Backend, BackendSpec, ConnInfo, Detection, Property};

/// `P_CONTROL_HARD_RESET_CLIENT_V2`: a client's first packet.
pub const P_CONTROL_HARD_RESET_CLIENT_V2: u8 = 7;
/// `P_CONTROL_HARD_RESET_CLIENT_V3`: a client's first packet with `--tls-crypt-v2`.
pub const P_CONTROL_HARD_RESET_CLIENT_V3: u8 = 10;
/// The shortest hard reset: opcode (1), session id (8), ack array length (1), packet id (4).
pub const MIN_PACKET: usize = 14;
/// The longest hard reset accepted. The largest real one is `--tls-crypt-v2`'s, which carries the
/// wrapped client key (at most 1024 bytes in OpenVPN) after 54 bytes of header and tag.
pub const MAX_PACKET: usize = 2048;
/// Opcode byte and session id.
const HEADER: usize = 9;
/// The largest replay packet id accepted in a hard reset: the first send carries 1, and each resend
/// of the reset (every 2 s, doubling, within `--hand-window`'s 60 s) one more.
pub const MAX_RESEND_ID: u32 = 255;
/// OpenVPN 2.6 clients that can negotiate early (with `--tls-crypt-v2`) start their replay packet ids
/// at `0x0f000000` instead of 0, so their hard reset carries `0x0f000001`.
pub const EARLY_NEG_START: u32 = 0x0f00_0000;
/// The part of a replay packet id that [`EARLY_NEG_START`] sets.
const EARLY_NEG_MASK: u32 = 0xff00_0000;
/// The HMAC sizes `--tls-auth` uses with `--auth` MD5, SHA-1, SHA-224, SHA-256, SHA-384, SHA-512.
const HMAC_SIZES: [usize; 6] = [16, 20, 28, 32, 48, 64];
/// `--tls-crypt`: header, replay packet id and time (8), tag (32), and the encrypted empty ack array
/// and message packet id (5).
const TLS_CRYPT_MIN: usize = HEADER + 8 + 32 + 5;
/// The smallest wrapped client key of `--tls-crypt-v2`: its 32-byte tag and 2-byte length.
const WKC_MIN: usize = 34;

/// An `openvpn` backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenVpn;

impl OpenVpn {
    /// Builds the backend; `openvpn` has no params, so any given are an error.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        spec.no_params()?;
        Ok(OpenVpn)
    }
}

/// Why the bytes are not an OpenVPN hard reset, or what is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A client hard reset: its opcode and session id.
    Reset {
        /// [`P_CONTROL_HARD_RESET_CLIENT_V2`] or [`P_CONTROL_HARD_RESET_CLIENT_V3`].
        opcode: u8,
        /// The client's session id.
        session_id: [u8; 8],
    },
    /// More bytes are needed (TCP only).
    Incomplete,
    /// Not a client hard reset, with the reason.
    Invalid(&'static str),
}

/// Checks the opcode byte: opcode 7 or 10 with key id 0.
fn check_opcode(byte: u8) -> Result<u8, &'static str> {
    let opcode = byte >> 3;
    if opcode != P_CONTROL_HARD_RESET_CLIENT_V2 && opcode != P_CONTROL_HARD_RESET_CLIENT_V3 {
        return Err("opcode is not a client hard reset (V2 or V3)");
    }
    if byte & 0x07 != 0 {
        return Err("key id of a hard reset is not 0");
    }
    Ok(opcode)
}

/// Parses one whole packet (a UDP datagram, or a TCP packet without its length prefix).
pub fn parse_packet(packet: &[u8]) -> Verdict {
    let Some(&first) = packet.first() else {
        return Verdict::Invalid("empty packet");
    };
    let opcode = match check_opcode(first) {
        Ok(opcode) => opcode,
        Err(why) => return Verdict::Invalid(why),
    };
    if packet.len() < MIN_PACKET {
        return Verdict::Invalid("packet shorter than a hard reset");
    }
    if packet.len() > MAX_PACKET {
        return Verdict::Invalid("packet longer than a hard reset");
    }
    if !fits_a_wrapping(opcode, packet) {
        return Verdict::Invalid("no control-channel wrapping fits the packet");
    }
    match packet.get(1..HEADER).and_then(|s| <[u8; 8]>::try_from(s).ok()) {
        Some(session_id) => Verdict::Reset { opcode, session_id },
        None => Verdict::Invalid("packet shorter than a hard reset"),
    }
}

/// Whether the bytes after the session id fit one of the wrappings (see the module docs).
fn fits_a_wrapping(opcode: u8, packet: &[u8]) -> bool {
    if opcode == P_CONTROL_HARD_RESET_CLIENT_V3 {
        return tls_crypt_v2(packet);
    }
    first_message_at(packet, HEADER)
        || HMAC_SIZES
            .iter()
            .any(|&hmac| resend_id_at(packet, HEADER + hmac) && first_message_at(packet, HEADER + hmac + 8))
        || (packet.len() >= TLS_CRYPT_MIN && resend_id_at(packet, HEADER))
}

/// An empty ack array and message packet id 0 at `at`: the first control message, in clear.
fn first_message_at(packet: &[u8], at: usize) -> bool {
    packet.get(at..at + 5) == Some(&[0; 5])
}

/// A replay packet id of a hard reset's first sends at `at`: 1 to [`MAX_RESEND_ID`], its high byte
/// 0, or [`EARLY_NEG_START`]'s.
fn resend_id_at(packet: &[u8], at: usize) -> bool {
    match packet.get(at..at + 4).and_then(|s| <[u8; 4]>::try_from(s).ok()) {
        Some(id) => {
            let id = u32::from_be_bytes(id);
            let sends = id & !EARLY_NEG_MASK;
            (id & EARLY_NEG_MASK == 0 || id & EARLY_NEG_MASK == EARLY_NEG_START) && (1..=MAX_RESEND_ID).contains(&sends)
        }
        None => false,
    }
}

/// `--tls-crypt-v2`: a `--tls-crypt` packet followed by the wrapped client key, whose length is in
/// the packet's last two bytes.
fn tls_crypt_v2(packet: &[u8]) -> bool {
    let Some(&[high, low]) = packet.len().checked_sub(2).and_then(|at| packet.get(at..)) else {
        return false;
    };
    let wkc = usize::from(u16::from_be_bytes([high, low]));
    wkc >= WKC_MIN
        && packet.len().checked_sub(wkc).is_some_and(|rest| rest >= TLS_CRYPT_MIN)
        && resend_id_at(packet, HEADER)
}

/// Parses the TCP stream seen so far: the 2-byte length, then the packet. Decides as early as the
/// bytes allow; extra bytes after the first packet are ignored.
pub fn parse_stream(preview: &[u8]) -> Verdict {
    // The length's high byte alone rules out anything longer than MAX_PACKET (HTTP, TLS, SSH...).
    match preview.first() {
        None => return Verdict::Incomplete,
        Some(&high) if usize::from(high) << 8 > MAX_PACKET => {
            return Verdict::Invalid("packet length above what a hard reset takes")
        }
        Some(_) => {}
    }
    let Some(&[high, low]) = preview.get(..2) else {
        return Verdict::Incomplete;
    };
    let len = usize::from(u16::from_be_bytes([high, low]));
    if !(MIN_PACKET..=MAX_PACKET).contains(&len) {
        return Verdict::Invalid("packet length outside what a hard reset takes");
    }
    if let Some(&opcode) = preview.get(2) {
        if let Err(why) = check_opcode(opcode) {
            return Verdict::Invalid(why);
        }
    }
    match preview.get(2..2 + len) {
        Some(packet) => parse_packet(packet),
        None => Verdict::Incomplete,
    }
}

/// The name of an accepted opcode.
fn opcode_name(opcode: u8) -> &'static str {
    if opcode == P_CONTROL_HARD_RESET_CLIENT_V3 {
        "P_CONTROL_HARD_RESET_CLIENT_V3"
    } else {
        "P_CONTROL_HARD_RESET_CLIENT_V2"
    }
}

/// Turns a verdict into the host's answer, with the properties of a match.
pub fn detection(verdict: Verdict) -> Detection {
    match verdict {
        Verdict::Reset { opcode, session_id } => {
            let mut hex = String::with_capacity(16);
            for b in session_id {
                let _ = write!(hex, "{b:02x}");
            }
            Detection::Match(vec![
                Property::new("openvpn.opcode", opcode_name(opcode)),
                Property::new("openvpn.session_id", hex),
            ])
        }
        Verdict::Incomplete => Detection::NeedMore,
        Verdict::Invalid(_) => Detection::NoMatch,
    }
}

impl Backend for OpenVpn {
    fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
        detection(parse_stream(preview))
    }

    fn can_handle_message(&self, _client: &ConnInfo<'_>, message: &[u8]) -> Detection {
        detection(parse_packet(message))
    }
}

export_plugin! {
    name: "openvpn",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "openvpn" => OpenVpn::new },
}
