//! The traits plugin authors implement, in plain Rust types. Every hook but [`Backend::detect`] has a
//! default, so a backend writes only what its protocol needs; [`crate::export_plugin!`] adapts them to
//! the ABI of [`crate::ffi`].

use std::net::SocketAddr;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::RSlice;

use crate::ffi::{ClientWriterBox, ConnInfo, FfiAddr, FfiClientWriter, FfiClientWriter_TO};
use crate::types::{Detection, HealthProbe, HealthVerdict, SessionCtl, UdpAction, UdpRouting};

/// A backend: detection and handling hooks for one configured `[[backend]]`.
///
/// Hooks are synchronous and must not block or do I/O: the host owns every socket and timer.
/// Only [`Backend::detect`] is required; the defaults forward TCP to the target and ignore UDP.
pub trait Backend: Send + Sync + 'static {
    /// Is this TCP connection ours, given the bytes previewed so far? `preview` always holds at
    /// least one byte, and grows by what arrived since the previous call (up to the preview limit).
    fn detect(&self, conn: &ConnInfo<'_>, preview: &[u8]) -> Detection;

    /// After a match: forward to the target (the default) or serve the client.
    fn open(&self, _conn: &ConnInfo<'_>, _preview: &[u8]) -> Handling {
        Handling::Forward(None)
    }

    /// Called once before any datagram, with a handle for answering clients later.
    fn init_udp(&self, _writer: ClientWriter) {}

    /// Is this client's first datagram ours? Default: this backend does not do UDP.
    fn can_handle_message(&self, _client: &ConnInfo<'_>, _message: &[u8]) -> Detection {
        Detection::NoMatch
    }

    /// Handle one datagram of a client routed here. Default: forward to the target.
    fn handle_message(&self, _client: &ConnInfo<'_>, _message: &[u8]) -> UdpAction {
        UdpAction::Forward(None)
    }

    /// Is this client ours, given all its datagrams so far (oldest first)? Asked instead of
    /// [`Backend::can_handle_message`] once an earlier datagram got `NeedMore`, so a message spread
    /// over several datagrams (a QUIC ClientHello) can be judged whole. Default: judge the newest.
    fn detect_datagrams(&self, client: &ConnInfo<'_>, datagrams: &[&[u8]]) -> Detection {
        match datagrams.last() {
            Some(newest) => self.can_handle_message(client, newest),
            None => Detection::NeedMore,
        }
    }

    /// This protocol's health check of the target: bytes to send and a transport. `None` (the
    /// default) leaves the host's TCP connect check.
    fn health_probe(&self) -> Option<HealthProbe> {
        None
    }

    /// Judges the target's answer to [`Backend::health_probe`] so far; `closed` on the last call,
    /// when the target closed. Default: healthy.
    fn health_verdict(&self, _response: &[u8], _closed: bool) -> HealthVerdict {
        HealthVerdict::Healthy
    }

    /// [`UdpRouting::PerMessage`] for message protocols (DNS, syslog, STUN binding): each datagram
    /// of a client is detected on its own. Default: [`UdpRouting::Flow`] (session protocols).
    fn udp_routing(&self) -> UdpRouting {
        UdpRouting::Flow
    }

    /// Whether this backend sends clients to its `target`, so that a backend configured without
    /// one is a configuration error (`pmmux check-config` and start-up report it, and keep the
    /// backend out of routing). Default: `true`, as the default [`Backend::open`] and
    /// [`Backend::handle_message`] forward. Return `false` when the backend serves clients itself
    /// ([`Handling::Serve`], [`UdpAction::Reply`]) and a target is optional or unused.
    fn needs_target(&self) -> bool {
        true
    }
}

/// What [`Backend::open`] decides.
pub enum Handling {
    /// Relay to this `host:port`, or to the backend's `target` when `None`.
    Forward(Option<String>),
    /// Answer the client with this session.
    Serve(Box<dyn Session>),
}

/// A sans-I/O server for one connection: the host feeds it client bytes and writes what it appends
/// to `out` back to the client (`out` is empty on each call).
pub trait Session: Send + 'static {
    /// Bytes from the client; the previewed bytes come first.
    fn on_data(&mut self, data: &[u8], out: &mut Vec<u8>) -> SessionCtl;

    /// The client finished sending. Default: close.
    fn on_eof(&mut self, _out: &mut Vec<u8>) -> SessionCtl {
        SessionCtl::Close
    }
}

/// The host's handle for sending datagrams to UDP clients from the listening socket.
pub struct ClientWriter(ClientWriterBox);

impl ClientWriter {
    /// Queues `data` for `client`; false when the host dropped it. Never blocks.
    pub fn send_to(&self, client: SocketAddr, data: &[u8]) -> bool {
        self.0.send_to(client.into(), RSlice::from_slice(data))
    }

    /// A writer that hands each datagram to `send` instead of the host: for a plugin's own tests of
    /// [`Backend::init_udp`] and replies sent later.
    pub fn from_fn(send: impl Fn(SocketAddr, &[u8]) -> bool + Send + Sync + 'static) -> Self {
        ClientWriter(FfiClientWriter_TO::from_value(FnWriter(send), TD_Opaque))
    }

    pub(crate) fn from_ffi(writer: ClientWriterBox) -> Self {
        ClientWriter(writer)
    }
}

struct FnWriter<F>(F);

impl<F: Fn(SocketAddr, &[u8]) -> bool + Send + Sync> FfiClientWriter for FnWriter<F> {
    fn send_to(&self, client: FfiAddr, data: RSlice<'_, u8>) -> bool {
        (self.0)(client.into(), data.as_slice())
    }
}
