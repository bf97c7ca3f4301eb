//! pmmux plugin `wireguard`: matches a UDP client whose first datagram is a WireGuard message. UDP
//! only (WireGuard has no TCP transport): over TCP the backend never matches.
//!
//! Every WireGuard message starts with a 1-byte type and 3 reserved zero bytes (whitepaper §5.4),
//! and each type has a fixed size or a size rule:
//!
//! | type | message | size |
//! | --- | --- | --- |
//! | 1 | handshake initiation (§5.4.2) | exactly 148 bytes |
//! | 2 | handshake response (§5.4.3) | exactly 92 bytes |
//! | 3 | cookie reply (§5.4.7) | exactly 64 bytes |
//! | 4 | transport data (§5.4.6) | at least 32 bytes (16 of header, 16 of tag), a multiple of 16 |
//!
//! By default all four match: after a pmmux restart (or a flow's idle timeout) the first datagram of
//! an established tunnel is usually transport data (4), and a peer answering a handshake the server
//! started sends a response (2) or a cookie reply (3); refusing them would drop the tunnel until the
//! next rekey. Set `handshake_only = true` to match only initiations (fewer false positives when
//! other UDP protocols share the port; tunnels then recover at their next handshake, within about
//! two minutes).
//!
//! Properties on a match: `wireguard.message_type`, the type as a decimal number (`1` to `4`).

use pmmux_plugin_api::{export_plugin, Backend, BackendSpec, ConnInfo, Detection, Property};

/// Handshake initiation.
pub const MESSAGE_INITIATION: u8 = 1;
/// Handshake response.
pub const MESSAGE_RESPONSE: u8 = 2;
/// Cookie reply.
pub const MESSAGE_COOKIE_REPLY: u8 = 3;
/// Transport data.
pub const MESSAGE_TRANSPORT_DATA: u8 = 4;
/// Size of a handshake initiation (§5.4.2).
pub const INITIATION_LEN: usize = 148;
/// Size of a handshake response (§5.4.3).
pub const RESPONSE_LEN: usize = 92;
/// Size of a cookie reply (§5.4.7).
pub const COOKIE_REPLY_LEN: usize = 64;
/// Smallest transport data message: type, reserved, receiver index, counter, and the 16-byte tag of
/// an empty (keepalive) payload (§5.4.6).
pub const MIN_TRANSPORT_LEN: usize = 32;

/// `[backend.params]` of a `wireguard` backend.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Match only handshake initiations (type 1). Default false: all four message types.
    #[serde(default)]
    pub handshake_only: bool,
}

/// A `wireguard` backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct WireGuard {
    handshake_only: bool,
}

impl WireGuard {
    /// Builds the backend from its params.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        let params: Params = spec.params()?;
        Ok(WireGuard {
            handshake_only: params.handshake_only,
        })
    }

    /// The verdict over one whole datagram.
    pub fn detect_message(&self, message: &[u8]) -> Detection {
        match message_type(message) {
            Ok(kind) if !self.handshake_only || kind == MESSAGE_INITIATION => {
                Detection::Match(vec![Property::new("wireguard.message_type", kind.to_string())])
            }
            _ => Detection::NoMatch,
        }
    }
}

/// The type of a well-formed WireGuard message, or why `message` is not one.
pub fn message_type(message: &[u8]) -> Result<u8, &'static str> {
    let Some(&[kind, r1, r2, r3]) = message.get(..4) else {
        return Err("shorter than a message header");
    };
    if [r1, r2, r3] != [0, 0, 0] {
        return Err("reserved bytes are not zero");
    }
    let len = message.len();
    let size_ok = match kind {
        MESSAGE_INITIATION => len == INITIATION_LEN,
        MESSAGE_RESPONSE => len == RESPONSE_LEN,
        MESSAGE_COOKIE_REPLY => len == COOKIE_REPLY_LEN,
        MESSAGE_TRANSPORT_DATA => len >= MIN_TRANSPORT_LEN && len % 16 == 0,
        _ => return Err("unknown message type"),
    };
    if size_ok {
        Ok(kind)
    } else {
        Err("wrong size for the message type")
    }
}

impl Backend for WireGuard {
    /// WireGuard runs over UDP only.
    fn detect(&self, _conn: &ConnInfo<'_>, _preview: &[u8]) -> Detection {
        Detection::NoMatch
    }

    fn can_handle_message(&self, _client: &ConnInfo<'_>, message: &[u8]) -> Detection {
        self.detect_message(message)
    }
}

export_plugin! {
    name: "wireguard",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "wireguard" => WireGuard::new },
}
