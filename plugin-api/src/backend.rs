//! The Rust-side traits plugin authors implement, and the adapters that make them safe to call from
//! the host: every call runs inside `catch_unwind`, so a panic becomes an error value the host counts,
//! never an unwind across the FFI boundary (which would kill the host, docs/architecture.md §5).

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RNone, ROption, RResult, RSlice, RString, RVec};
use serde::de::DeserializeOwned;

use crate::ffi::{
    BackendBox, BackendSpec, ClientWriterBox, ConnInfo, Detection, FfiBackend, FfiBackend_TO, FfiSession,
    FfiSession_TO, HealthProbe, HealthVerdict, SessionBox, SessionCtl, TcpAction, UdpAction,
};

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
        UdpAction::Forward(RNone)
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
}

/// What [`Backend::open`] decides.
pub enum Handling {
    /// Relay to this `host:port`, or to the backend's `target` when `None`.
    Forward(Option<String>),
    /// Answer the client with this session.
    Serve(Box<dyn Session>),
}

/// A sans-I/O server for one connection: the host feeds it client bytes and writes what it puts in
/// `out` back to the client.
pub trait Session: Send + 'static {
    /// Bytes from the client; the previewed bytes come first.
    fn on_data(&mut self, data: &[u8], out: &mut RVec<u8>) -> SessionCtl;

    /// The client finished sending. Default: close.
    fn on_eof(&mut self, _out: &mut RVec<u8>) -> SessionCtl {
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
}

impl BackendSpec<'_> {
    /// The backend's `[backend.params]`, deserialized into the plugin's own type. Use
    /// `#[serde(deny_unknown_fields)]` so typos are reported; the message reaches the user as is.
    pub fn params<P: DeserializeOwned>(&self) -> Result<P, String> {
        toml::from_str(self.params_toml.as_str()).map_err(|e| format!("invalid params: {}", e.message()))
    }

    /// The backend's `target`, if configured.
    pub fn target(&self) -> Option<&str> {
        match self.target {
            ROption::RSome(t) => Some(t.as_str()),
            ROption::RNone => None,
        }
    }
}

/// Runs `f`, turning a panic into an error naming what panicked.
pub fn guard<T>(what: &str, f: impl FnOnce() -> T) -> RResult<T, RString> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => RResult::ROk(value),
        Err(payload) => RResult::RErr(panic_message(what, payload.as_ref()).into()),
    }
}

fn panic_message(what: &str, payload: &(dyn std::any::Any + Send)) -> String {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    format!("{what} panicked: {detail}")
}

/// Boxes a backend behind the FFI trait, with every call guarded. Used by [`crate::export_plugin!`].
pub fn into_ffi_backend<B: Backend>(backend: B) -> BackendBox {
    FfiBackend_TO::from_value(Guarded(backend), TD_Opaque)
}

struct Guarded<B>(B);

impl<B: Backend> FfiBackend for Guarded<B> {
    fn detect_tcp(&self, conn: &ConnInfo<'_>, preview: RSlice<'_, u8>) -> RResult<Detection, RString> {
        guard("detect", || self.0.detect(conn, preview.as_slice()))
    }

    fn open_tcp(&self, conn: &ConnInfo<'_>, preview: RSlice<'_, u8>) -> RResult<TcpAction, RString> {
        guard("open", || match self.0.open(conn, preview.as_slice()) {
            Handling::Forward(target) => TcpAction::Forward(target.map(RString::from).into()),
            Handling::Serve(session) => TcpAction::Serve(into_ffi_session(session)),
        })
    }

    fn init_udp(&self, writer: ClientWriterBox) -> RResult<(), RString> {
        guard("init_udp", || self.0.init_udp(ClientWriter(writer)))
    }

    fn can_handle_message(&self, client: &ConnInfo<'_>, message: RSlice<'_, u8>) -> RResult<Detection, RString> {
        guard("can_handle_message", || {
            self.0.can_handle_message(client, message.as_slice())
        })
    }

    fn handle_message(&self, client: &ConnInfo<'_>, message: RSlice<'_, u8>) -> RResult<UdpAction, RString> {
        guard("handle_message", || self.0.handle_message(client, message.as_slice()))
    }

    fn detect_datagrams(
        &self,
        client: &ConnInfo<'_>,
        datagrams: RSlice<'_, RSlice<'_, u8>>,
    ) -> RResult<Detection, RString> {
        guard("detect_datagrams", || {
            let all: Vec<&[u8]> = datagrams.iter().map(|d| d.as_slice()).collect();
            self.0.detect_datagrams(client, &all)
        })
    }

    fn health_probe(&self) -> RResult<ROption<HealthProbe>, RString> {
        guard("health_probe", || self.0.health_probe().into())
    }

    fn health_verdict(&self, response: RSlice<'_, u8>, closed: bool) -> RResult<HealthVerdict, RString> {
        guard("health_verdict", || self.0.health_verdict(response.as_slice(), closed))
    }
}

fn into_ffi_session(session: Box<dyn Session>) -> SessionBox {
    FfiSession_TO::from_value(GuardedSession(session), TD_Opaque)
}

struct GuardedSession(Box<dyn Session>);

impl FfiSession for GuardedSession {
    fn on_data(&mut self, data: RSlice<'_, u8>, out: &mut RVec<u8>) -> RResult<SessionCtl, RString> {
        guard("session on_data", || self.0.on_data(data.as_slice(), out))
    }

    fn on_eof(&mut self, out: &mut RVec<u8>) -> RResult<SessionCtl, RString> {
        guard("session on_eof", || self.0.on_eof(out))
    }
}
