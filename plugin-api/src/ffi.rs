//! The `#[repr(C)]` types that cross the host/plugin boundary, and the root module every plugin exports.
//!
//! Everything here derives `StableAbi`, so the host can check a library's layout before calling it.
//! Rules for changing this file without breaking plugins already built (docs/architecture.md §3):
//! append root-module fields after `new_backend` only (the host reads them as `Option`), append trait
//! methods after the `#[sabi(last_prefix_field)]` method only and give them default bodies, and bump
//! [`ABI_VERSION`]. Anything else is a new major version of this crate.

#![allow(non_local_definitions)] // emitted by abi_stable 0.11's `#[sabi_trait]` expansion

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec},
    StableAbi,
};

/// Revision of the plugin ABI inside the current major version. Raised each time a field or method
/// is appended; the host reports both sides' revisions when a plugin is refused.
///
/// * 1 — plugin-api 1.0.0.
/// * 2 — plugin-api 1.1.0: `FfiBackend::detect_datagrams`, `health_probe`, `health_verdict`.
/// * 3 — `FfiBackend::udp_routing`.
/// * 4 — `FfiBackend::needs_target`.
#[cfg(not(feature = "test-abi-appended"))]
pub const ABI_VERSION: u32 = 4;
/// Revision of the plugin ABI (test build that appends a field, as a later 1.x minor would).
#[cfg(feature = "test-abi-appended")]
pub const ABI_VERSION: u32 = 5;

/// A socket address in a fixed layout: IPv4 addresses use the first four bytes of `ip`.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FfiAddr {
    /// Address bytes in network order; IPv4 fills `ip[..4]`.
    pub ip: [u8; 16],
    /// Port in host order.
    pub port: u16,
    /// Whether `ip` holds an IPv6 address.
    pub is_v6: bool,
}

impl From<SocketAddr> for FfiAddr {
    fn from(addr: SocketAddr) -> Self {
        let mut ip = [0u8; 16];
        let is_v6 = match addr.ip() {
            IpAddr::V4(v4) => {
                ip[..4].copy_from_slice(&v4.octets());
                false
            }
            IpAddr::V6(v6) => {
                ip = v6.octets();
                true
            }
        };
        FfiAddr {
            ip,
            port: addr.port(),
            is_v6,
        }
    }
}

impl From<FfiAddr> for SocketAddr {
    fn from(addr: FfiAddr) -> Self {
        let ip = if addr.is_v6 {
            IpAddr::V6(Ipv6Addr::from(addr.ip))
        } else {
            IpAddr::V4(Ipv4Addr::new(addr.ip[0], addr.ip[1], addr.ip[2], addr.ip[3]))
        };
        SocketAddr::new(ip, addr.port)
    }
}

/// A named value a backend attaches to a connection on `Match` (`tls.sni`, `http.host`, ...).
/// The host logs them, hands them to later hooks and lets routing match on them.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct Property {
    /// Dotted name, by convention `<protocol>.<field>`.
    pub key: RString,
    /// Value as text.
    pub value: RString,
}

impl Property {
    /// Builds a property from anything string-like.
    pub fn new(key: impl Into<RString>, value: impl Into<RString>) -> Self {
        Property {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// What the host knows about a connection (TCP) or a client (UDP) when it asks a backend.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct ConnInfo<'a> {
    /// The client's address (after PROXY protocol, if the listener accepts it).
    pub peer: FfiAddr,
    /// The address the client connected to.
    pub local: FfiAddr,
    /// The `name` of the listener (its address when unnamed).
    pub listener: RStr<'a>,
    /// Properties set so far (by the host or by earlier hooks).
    pub properties: RSlice<'a, Property>,
}

/// A detection verdict as it crosses the boundary; plugins return [`crate::Detection`].
#[repr(u8)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub enum Detection {
    /// This backend takes the connection; the properties are attached to it.
    Match(RVec<Property>),
    /// Not this backend's traffic; the host asks the next one.
    NoMatch,
    /// Cannot tell yet; ask again when more bytes have arrived (bounded by the preview limit and the
    /// probe timeout, after which the host treats it as `NoMatch`).
    NeedMore,
}

/// What a matched TCP backend wants done with the connection.
#[repr(u8)]
#[derive(StableAbi)]
pub enum TcpAction {
    /// Connect to the target (the backend's configured `target` when `None`), replay the previewed
    /// bytes and relay both ways. The host owns the sockets.
    Forward(ROption<RString>),
    /// Answer the client from this sans-I/O session.
    Serve(SessionBox),
}

/// Whether a serving session wants the connection kept open.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionCtl {
    /// Keep reading from the client.
    Continue,
    /// Write what is in the output buffer, then close the connection.
    Close,
}

/// What a matched UDP backend wants done with one datagram, as it crosses the boundary; plugins
/// return [`crate::UdpAction`].
#[repr(u8)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub enum UdpAction {
    /// Send it to the target (the backend's `target` when `None`) on the client's flow; the host
    /// relays the target's replies back to the client.
    Forward(ROption<RString>),
    /// Send these bytes back to the client.
    Reply(RVec<u8>),
    /// The backend consumed it (it may answer later through its client writer).
    Consumed,
    /// Drop it.
    Drop,
}

/// How the host routes the datagrams of a UDP client this backend took.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpRouting {
    /// A session protocol (QUIC, WireGuard, OpenVPN, DTLS): the client's later datagrams go to this
    /// backend without detection, on one flow, until it is idle.
    Flow,
    /// A message protocol (DNS, syslog, STUN binding): each datagram is detected on its own, as the
    /// C# `IConnectionlessBackend` says ("each message is processed independently"), so a client
    /// reusing its source port reaches whichever backend each message is for. Forwarded messages
    /// use one flow per client and backend, so replies still reach the client.
    PerMessage,
}

/// A health probe as it crosses the boundary; plugins return [`crate::HealthProbe`].
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct HealthProbe {
    /// Over which transport the host talks to the target.
    pub transport: HealthTransport,
    /// Bytes the host sends once connected (TCP) or as one datagram (UDP); may be empty for
    /// server-speaks-first protocols (SSH).
    pub send: RVec<u8>,
}

/// The transport of a [`HealthProbe`].
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthTransport {
    /// Connect, send, read the answer until the verdict is known.
    Tcp,
    /// Send one datagram from a fresh socket, judge each reply datagram.
    Udp,
}

/// A health verdict as it crosses the boundary; plugins return [`crate::HealthVerdict`].
#[repr(u8)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub enum HealthVerdict {
    /// The target answered as a healthy server of this protocol does.
    Healthy,
    /// It did not; the text says why (logged when the backend's status changes).
    Unhealthy(RString),
    /// Cannot tell yet: read more (bounded by the check's timeout and 64 KiB).
    NeedMore,
}

/// Static facts about one plugin library.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct PluginInfo {
    /// Plugin name, e.g. `tls`.
    pub name: RString,
    /// Plugin version, usually its crate version.
    pub version: RString,
    /// Protocol names this plugin provides, in the order it declares them.
    pub protocols: RVec<RString>,
    /// Whether the library was built with `panic = "unwind"`; with `abort` a panic would kill the host,
    /// so the host refuses such libraries.
    pub panic_unwind: bool,
}

/// A backend's configuration, as the host hands it to a protocol's constructor.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct BackendSpec<'a> {
    /// The backend's `name`.
    pub name: RStr<'a>,
    /// The protocol asked for.
    pub protocol: RStr<'a>,
    /// The backend's `target`, if configured.
    pub target: ROption<RStr<'a>>,
    /// The `priority` tier name.
    pub priority: RStr<'a>,
    /// The backend's `[backend.params]` table, as TOML text (empty when absent).
    pub params_toml: RStr<'a>,
}

/// The host's logging callback: `level` is 1 (error) to 5 (trace).
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct HostLogger {
    /// Emits one event into the host's `tracing` subscriber.
    pub log: extern "C" fn(level: u8, target: RStr<'_>, message: RStr<'_>),
}

/// A backend as the host sees it: every method returns `RErr` instead of unwinding.
/// Plugin authors implement [`crate::Backend`] instead; the export macro adapts it.
#[sabi_trait]
pub trait FfiBackend: Send + Sync {
    /// TCP detection over the bytes previewed so far.
    fn detect_tcp(&self, conn: &ConnInfo<'_>, preview: RSlice<'_, u8>) -> RResult<Detection, RString>;

    /// TCP handling after a match: forward or serve.
    fn open_tcp(&self, conn: &ConnInfo<'_>, preview: RSlice<'_, u8>) -> RResult<TcpAction, RString>;

    /// Called once before UDP traffic, with a handle to send datagrams to clients.
    fn init_udp(&self, writer: ClientWriterBox) -> RResult<(), RString>;

    /// UDP detection for a client's first datagram (the C# `CanHandleMessageAsync`).
    fn can_handle_message(&self, client: &ConnInfo<'_>, message: RSlice<'_, u8>) -> RResult<Detection, RString>;

    /// UDP handling of each datagram routed to this backend (the C# `HandleMessageAsync`).
    #[sabi(last_prefix_field)]
    fn handle_message(&self, client: &ConnInfo<'_>, message: RSlice<'_, u8>) -> RResult<UdpAction, RString>;

    // ---- ABI revision 2 (plugin-api 1.1): appended; the bodies below run in the host when the
    // plugin was built against 1.0 and its vtable has no such entry. ----

    /// UDP detection over every datagram a client sent so far, oldest first, after the first ones got
    /// `NeedMore` (a QUIC ClientHello spread over several Initial packets). The host holds those
    /// datagrams, bounded in count, bytes and time, and replays them to the chosen backend.
    /// Default: judge the newest datagram alone.
    fn detect_datagrams(
        &self,
        client: &ConnInfo<'_>,
        datagrams: RSlice<'_, RSlice<'_, u8>>,
    ) -> RResult<Detection, RString> {
        match datagrams.as_slice().last() {
            Some(newest) => self.can_handle_message(client, *newest),
            None => RResult::ROk(Detection::NeedMore),
        }
    }

    /// The backend's own health check of its target, or `None` for the host's default (a TCP
    /// connect, or for UDP-only backends no check). Default: `None`.
    fn health_probe(&self) -> RResult<ROption<HealthProbe>, RString> {
        RResult::ROk(ROption::RNone)
    }

    /// Judges what the target answered to [`FfiBackend::health_probe`]'s bytes so far; `closed`
    /// when the target closed (TCP) — the last call. Default: any answer is healthy.
    fn health_verdict(&self, response: RSlice<'_, u8>, closed: bool) -> RResult<HealthVerdict, RString> {
        let _ = (response, closed);
        RResult::ROk(HealthVerdict::Healthy)
    }

    // ---- ABI revision 3: appended. ----

    /// Whether this backend's UDP clients are routed per message or keep a flow; asked once when
    /// the backend is built. Default (and for plugins built before revision 3): a flow.
    fn udp_routing(&self) -> RResult<UdpRouting, RString> {
        RResult::ROk(UdpRouting::Flow)
    }

    // ---- ABI revision 4: appended. ----

    /// Whether the backend forwards to its `target` (so a configuration without one cannot work);
    /// asked once when the backend is built. Default (and for plugins built before revision 4):
    /// `false`, as the host cannot know; such a backend without a target fails per connection.
    fn needs_target(&self) -> RResult<bool, RString> {
        RResult::ROk(false)
    }
}

/// An owned backend trait object.
pub type BackendBox = FfiBackend_TO<'static, RBox<()>>;

/// A serving session as the host sees it. The host writes `out` to the client after each call.
#[sabi_trait]
pub trait FfiSession: Send {
    /// Bytes from the client (the previewed bytes come first).
    fn on_data(&mut self, data: RSlice<'_, u8>, out: &mut RVec<u8>) -> RResult<SessionCtl, RString>;

    /// The client closed its sending side.
    #[sabi(last_prefix_field)]
    fn on_eof(&mut self, out: &mut RVec<u8>) -> RResult<SessionCtl, RString>;
}

/// An owned session trait object.
pub type SessionBox = FfiSession_TO<'static, RBox<()>>;

/// Implemented by the host: sends a datagram to a UDP client from the listening socket. Never blocks;
/// returns false when the datagram was dropped (queue full, client gone).
#[sabi_trait]
pub trait FfiClientWriter: Send + Sync {
    /// Queues `data` for `client`.
    #[sabi(last_prefix_field)]
    fn send_to(&self, client: FfiAddr, data: RSlice<'_, u8>) -> bool;
}

/// An owned client-writer trait object.
pub type ClientWriterBox = FfiClientWriter_TO<'static, RBox<()>>;

/// The root module each plugin library exports (through [`crate::export_plugin!`]).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(option))]
pub struct PluginMod {
    /// [`ABI_VERSION`] the plugin was built with.
    pub abi_version: u32,
    /// Name, version and protocols.
    pub info: extern "C" fn() -> RResult<PluginInfo, RString>,
    /// Installs the host's logger; called once, right after loading.
    pub set_logger: extern "C" fn(HostLogger),
    /// Builds a backend of one of the plugin's protocols, or says why the config is wrong.
    #[sabi(last_prefix_field)]
    pub new_backend: extern "C" fn(&BackendSpec<'_>) -> RResult<BackendBox, RString>,
    /// Test-only appended field: what a later 1.x minor adds looks like this.
    #[cfg(feature = "test-abi-appended")]
    pub appended_for_test: extern "C" fn() -> u32,
}

/// Builds the root module from a plugin's two entry points (used by [`crate::export_plugin!`]), so the
/// field list lives here, next to the struct, whatever features this crate is built with.
pub fn root_module(
    info: extern "C" fn() -> RResult<PluginInfo, RString>,
    new_backend: extern "C" fn(&BackendSpec<'_>) -> RResult<BackendBox, RString>,
) -> PluginModRef {
    use abi_stable::prefix_type::PrefixTypeTrait;
    PluginMod {
        abi_version: ABI_VERSION,
        info,
        set_logger: crate::log::__set_logger,
        new_backend,
        #[cfg(feature = "test-abi-appended")]
        appended_for_test: appended_for_test,
    }
    .leak_into_prefix()
}

#[cfg(feature = "test-abi-appended")]
extern "C" fn appended_for_test() -> u32 {
    ABI_VERSION
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "pmmux_plugin";
    const NAME: &'static str = "pmmux_plugin";
    #[cfg(not(feature = "test-abi-major2"))]
    const VERSION_STRINGS: VersionStrings = abi_stable::package_version_strings!();
    #[cfg(feature = "test-abi-major2")]
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("2.0.0");
}
