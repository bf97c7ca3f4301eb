//! What [`crate::export_plugin!`] expands to, kept here so the macro is a few lines and a plugin crate
//! needs no `abi_stable` of its own: the library header the host looks up, the two entry points
//! (generic over the [`Plugin`] the macro declares), and the adapters that run every hook inside
//! `catch_unwind` and turn its Rust values into the ABI types of [`crate::ffi`]. A panic becomes an
//! error value the host counts, never an unwind across the boundary (docs/architecture.md §5).

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::library::{CheckTypeLayout, LibHeader, RootModuleResult};
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{ROption, RResult, RSlice, RString, RVec};

use crate::backend::{Backend, ClientWriter, Handling, Session};
use crate::ffi::{
    self, BackendBox, BackendSpec, ClientWriterBox, ConnInfo, FfiBackend, FfiBackend_TO, FfiSession, FfiSession_TO,
    PluginInfo, PluginModRef, SessionBox, SessionCtl, TcpAction, UdpRouting,
};

/// The symbol under which a plugin library exports its header: abi_stable's
/// `ROOT_MODULE_LOADER_NAME`, as a literal for `#[export_name]` (a unit test keeps them equal).
#[doc(hidden)]
#[macro_export]
macro_rules! __root_module_loader_name {
    () => {
        "_1as_0lib_1header_0root_bmodule_bloader"
    };
}

/// A plugin as [`crate::export_plugin!`] declares it.
#[doc(hidden)]
pub trait Plugin: 'static {
    /// Plugin name.
    const NAME: &'static str;
    /// Plugin version.
    const VERSION: &'static str;
    /// Protocols, in declaration order.
    const PROTOCOLS: &'static [&'static str];
    /// `cfg!(panic = "unwind")` where the macro was invoked.
    const PANIC_UNWIND: bool;
    /// Builds a backend of `spec.protocol()`.
    fn new_backend(spec: &BackendSpec<'_>) -> Result<BackendBox, String>;
}

/// The library header of plugin `P`, for the exported static.
#[doc(hidden)]
pub const fn lib_header<P: Plugin>() -> LibHeader {
    // SAFETY: `load_root_module` hands abi_stable's loader a function returning `PluginModRef`, the
    // module type named here; this is what `#[abi_stable::export_root_module]` generates.
    unsafe { LibHeader::from_constructor::<PluginModRef>(load_root_module::<P>, CheckTypeLayout::Yes) }
}

extern "C" fn load_root_module<P: Plugin>() -> RootModuleResult {
    abi_stable::library::__call_root_module_loader(root_module::<P>)
}

fn root_module<P: Plugin>() -> PluginModRef {
    ffi::root_module(plugin_info::<P>, new_backend::<P>)
}

extern "C" fn plugin_info<P: Plugin>() -> RResult<PluginInfo, RString> {
    // The host calls this right after loading: from here on, panics are quiet.
    crate::panic_hook::install();
    guard("plugin info", || PluginInfo {
        name: P::NAME.into(),
        version: P::VERSION.into(),
        protocols: P::PROTOCOLS.iter().map(|p| RString::from(*p)).collect(),
        panic_unwind: P::PANIC_UNWIND,
    })
}

extern "C" fn new_backend<P: Plugin>(spec: &BackendSpec<'_>) -> RResult<BackendBox, RString> {
    match guard("backend constructor", || P::new_backend(spec)) {
        RResult::ROk(Ok(backend)) => RResult::ROk(backend),
        RResult::ROk(Err(msg)) => RResult::RErr(msg.into()),
        RResult::RErr(panicked) => RResult::RErr(panicked),
    }
}

/// Runs `f`, turning a panic into an error naming what panicked, and where.
#[doc(hidden)]
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
    let (at, backtrace) = crate::panic_hook::take();
    format!("{what} panicked: {detail}{at}{backtrace}")
}

/// Boxes a backend behind the FFI trait, with every call guarded.
#[doc(hidden)]
pub fn into_ffi_backend<B: Backend>(backend: B) -> BackendBox {
    FfiBackend_TO::from_value(Guarded(backend), TD_Opaque)
}

struct Guarded<B>(B);

impl<B: Backend> FfiBackend for Guarded<B> {
    fn detect_tcp(&self, conn: &ConnInfo<'_>, preview: RSlice<'_, u8>) -> RResult<ffi::Detection, RString> {
        guard("detect", || self.0.detect(conn, preview.as_slice()).into())
    }

    fn open_tcp(&self, conn: &ConnInfo<'_>, preview: RSlice<'_, u8>) -> RResult<TcpAction, RString> {
        guard("open", || match self.0.open(conn, preview.as_slice()) {
            Handling::Forward(target) => TcpAction::Forward(target.map(RString::from).into()),
            Handling::Serve(session) => TcpAction::Serve(into_ffi_session(session)),
        })
    }

    fn init_udp(&self, writer: ClientWriterBox) -> RResult<(), RString> {
        guard("init_udp", || self.0.init_udp(ClientWriter::from_ffi(writer)))
    }

    fn can_handle_message(&self, client: &ConnInfo<'_>, message: RSlice<'_, u8>) -> RResult<ffi::Detection, RString> {
        guard("can_handle_message", || {
            self.0.can_handle_message(client, message.as_slice()).into()
        })
    }

    fn handle_message(&self, client: &ConnInfo<'_>, message: RSlice<'_, u8>) -> RResult<ffi::UdpAction, RString> {
        guard("handle_message", || {
            self.0.handle_message(client, message.as_slice()).into()
        })
    }

    fn detect_datagrams(
        &self,
        client: &ConnInfo<'_>,
        datagrams: RSlice<'_, RSlice<'_, u8>>,
    ) -> RResult<ffi::Detection, RString> {
        guard("detect_datagrams", || {
            let all: Vec<&[u8]> = datagrams.iter().map(|d| d.as_slice()).collect();
            self.0.detect_datagrams(client, &all).into()
        })
    }

    fn health_probe(&self) -> RResult<ROption<ffi::HealthProbe>, RString> {
        guard("health_probe", || {
            self.0.health_probe().map(ffi::HealthProbe::from).into()
        })
    }

    fn health_verdict(&self, response: RSlice<'_, u8>, closed: bool) -> RResult<ffi::HealthVerdict, RString> {
        guard("health_verdict", || {
            self.0.health_verdict(response.as_slice(), closed).into()
        })
    }

    fn udp_routing(&self) -> RResult<UdpRouting, RString> {
        guard("udp_routing", || self.0.udp_routing())
    }

    fn needs_target(&self) -> RResult<bool, RString> {
        guard("needs_target", || self.0.needs_target())
    }
}

fn into_ffi_session(session: Box<dyn Session>) -> SessionBox {
    FfiSession_TO::from_value(
        GuardedSession {
            session,
            out: Vec::new(),
        },
        TD_Opaque,
    )
}

/// A session behind the FFI trait. The session writes into `out`, a plain `Vec` kept across calls
/// (so its capacity is reused), which is then appended to the host's buffer: one copy of what the
/// session answers, in exchange for the host never holding memory the plugin allocated.
struct GuardedSession {
    session: Box<dyn Session>,
    out: Vec<u8>,
}

impl GuardedSession {
    fn call(
        &mut self,
        what: &str,
        out: &mut RVec<u8>,
        hook: impl FnOnce(&mut dyn Session, &mut Vec<u8>) -> SessionCtl,
    ) -> RResult<SessionCtl, RString> {
        self.out.clear();
        let (session, buf) = (&mut self.session, &mut self.out);
        let ctl = guard(what, || hook(session.as_mut(), buf));
        out.extend_from_slice(&self.out);
        ctl
    }
}

impl FfiSession for GuardedSession {
    fn on_data(&mut self, data: RSlice<'_, u8>, out: &mut RVec<u8>) -> RResult<SessionCtl, RString> {
        self.call("session on_data", out, |s, buf| s.on_data(data.as_slice(), buf))
    }

    fn on_eof(&mut self, out: &mut RVec<u8>) -> RResult<SessionCtl, RString> {
        self.call("session on_eof", out, |s, buf| s.on_eof(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Detection, Property};

    #[test]
    fn the_exported_symbol_is_the_one_abi_stable_looks_up() {
        assert_eq!(
            crate::__root_module_loader_name!(),
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }

    struct Panicky;

    impl Backend for Panicky {
        fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
            match preview.first() {
                Some(b'!') => panic!("bang"),
                _ => Detection::Match(vec![Property::new("k", "v")]),
            }
        }
    }

    #[test]
    fn hooks_are_converted_and_guarded() {
        let backend = into_ffi_backend(Panicky);
        let conn = ConnInfo::new(([127, 0, 0, 1], 1).into(), ([127, 0, 0, 1], 2).into(), "l", &[]);
        let matched = backend.detect_tcp(&conn, RSlice::from_slice(b"a"));
        assert_eq!(
            matched,
            RResult::ROk(ffi::Detection::Match(RVec::from(vec![Property::new("k", "v")])))
        );
        let panicked = backend.detect_tcp(&conn, RSlice::from_slice(b"!"));
        assert_eq!(panicked, RResult::RErr("detect panicked: bang".into()));
        let forward = backend.handle_message(&conn, RSlice::from_slice(b"x"));
        assert_eq!(forward, RResult::ROk(ffi::UdpAction::Forward(ROption::RNone)));
    }

    struct Upper;

    impl Session for Upper {
        fn on_data(&mut self, data: &[u8], out: &mut Vec<u8>) -> SessionCtl {
            out.extend(data.iter().map(u8::to_ascii_uppercase));
            SessionCtl::Continue
        }
    }

    #[test]
    fn session_output_reaches_the_host_buffer_each_call() {
        let mut session = into_ffi_session(Box::new(Upper));
        let mut out = RVec::new();
        assert_eq!(
            session.on_data(RSlice::from_slice(b"ab"), &mut out),
            RResult::ROk(SessionCtl::Continue)
        );
        assert_eq!(out.as_slice(), b"AB");
        out.clear();
        let _ = session.on_data(RSlice::from_slice(b"c"), &mut out);
        assert_eq!(out.as_slice(), b"C");
        out.clear();
        assert_eq!(session.on_eof(&mut out), RResult::ROk(SessionCtl::Close));
        assert!(out.is_empty());
    }
}
