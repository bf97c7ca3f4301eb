//! # pmmux-plugin-api
//!
//! The stable ABI between the pmmux host and its backend plugins. A plugin is a `cdylib` that exports
//! one root module through [`export_plugin!`]; it provides one or more *protocols* by name, and each
//! protocol builds *backends* from a `[[backend]]` configuration. The host owns every socket, timer
//! and byte of relay: backends are synchronous, sans-I/O hooks.
//!
//! * TCP: [`Backend::detect`] answers [`Detection::Match`] / [`Detection::NoMatch`] /
//!   [`Detection::NeedMore`] over the previewed bytes; [`Backend::open`] then forwards to the target
//!   (the host relays) or serves through a [`Session`].
//! * UDP: [`Backend::can_handle_message`] and [`Backend::handle_message`], with a [`ClientWriter`]
//!   handed over in [`Backend::init_udp`]; [`Backend::detect_datagrams`] when a client's message
//!   spans several datagrams.
//! * Health: [`Backend::health_probe`] / [`Backend::health_verdict`] let a protocol check its target
//!   better than a TCP connect (the host does the I/O).
//!
//! Every hook runs inside `catch_unwind` on the plugin side, so a panic reaches the host as an error
//! it counts, never as an unwind across the boundary. The export macro installs a quiet panic hook
//! ([`panic_hook`]): nothing is written to stderr, the panic's location travels in the error, and
//! the host logs it once per burst. Build plugins with the default
//! `panic = "unwind"`: the host refuses libraries built with `panic = "abort"`.
//!
//! ## A detect-and-forward plugin
//!
//! `Cargo.toml` declares `crate-type = ["cdylib", "rlib"]` and depends on `pmmux-plugin-api`,
//! `abi_stable` and `serde`. The whole plugin:
//!
//! ```
//! use pmmux_plugin_api::{export_plugin, Backend, BackendSpec, ConnInfo, Detection, Property};
//! use abi_stable::std_types::RVec;
//!
//! /// Matches connections whose first bytes are a configurable greeting.
//! struct Greeting { prefix: Vec<u8> }
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Params { prefix: String }
//!
//! impl Greeting {
//!     fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
//!         let params: Params = spec.params()?;
//!         if params.prefix.is_empty() {
//!             return Err("params.prefix must not be empty".into());
//!         }
//!         Ok(Greeting { prefix: params.prefix.into_bytes() })
//!     }
//! }
//!
//! impl Backend for Greeting {
//!     fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
//!         let n = preview.len().min(self.prefix.len());
//!         if preview[..n] != self.prefix[..n] {
//!             Detection::NoMatch
//!         } else if n < self.prefix.len() {
//!             Detection::NeedMore
//!         } else {
//!             Detection::Match(RVec::from(vec![Property::new("greeting.seen", "yes")]))
//!         }
//!     }
//! }
//!
//! export_plugin! {
//!     name: "greeting",
//!     version: env!("CARGO_PKG_VERSION"),
//!     protocols: { "greeting" => Greeting::new },
//! }
//! ```
//!
//! Forwarding needs no code: [`Backend::open`] defaults to "relay to the backend's `target`".

pub mod backend;
pub mod ffi;
pub mod log;
pub mod names;
pub mod panic_hook;
pub mod params;

pub use abi_stable;
pub use backend::{guard, into_ffi_backend, Backend, ClientWriter, Handling, Session};
pub use ffi::{
    BackendSpec, ConnInfo, Detection, FfiAddr, HealthProbe, HealthTransport, HealthVerdict, PluginInfo, PluginMod,
    PluginModRef, Property, SessionCtl, UdpAction, UdpRouting, ABI_VERSION,
};
pub use log::Level;

/// Exports a plugin's root module. Each protocol maps to a constructor
/// `fn(&BackendSpec<'_>) -> Result<impl Backend, String>`; an `Err` reaches the user verbatim.
///
/// The crate invoking this must depend on `abi_stable` directly (its export attribute names it).
#[macro_export]
macro_rules! export_plugin {
    (
        name: $name:expr,
        version: $version:expr,
        protocols: { $($proto:literal => $ctor:expr),+ $(,)? } $(,)?
    ) => {
        /// The plugin's root module, as loaded by the pmmux host.
        #[::abi_stable::export_root_module]
        pub fn pmmux_plugin_root_module() -> $crate::PluginModRef {
            $crate::ffi::root_module(__pmmux_plugin_info, __pmmux_new_backend)
        }

        extern "C" fn __pmmux_plugin_info(
        ) -> ::abi_stable::std_types::RResult<$crate::PluginInfo, ::abi_stable::std_types::RString> {
            // The host calls this right after loading: from here on, panics are quiet.
            $crate::panic_hook::install();
            $crate::guard("plugin info", || $crate::PluginInfo {
                name: ::abi_stable::std_types::RString::from($name),
                version: ::abi_stable::std_types::RString::from($version),
                protocols: ::abi_stable::std_types::RVec::from(vec![
                    $(::abi_stable::std_types::RString::from($proto)),+
                ]),
                panic_unwind: cfg!(panic = "unwind"),
            })
        }

        extern "C" fn __pmmux_new_backend(
            spec: &$crate::BackendSpec<'_>,
        ) -> ::abi_stable::std_types::RResult<$crate::ffi::BackendBox, ::abi_stable::std_types::RString> {
            let built = $crate::guard("backend constructor", || -> Result<$crate::ffi::BackendBox, String> {
                match spec.protocol.as_str() {
                    $($proto => ($ctor)(spec).map($crate::into_ffi_backend),)+
                    other => Err(format!("this plugin does not provide protocol `{other}`")),
                }
            });
            match built {
                ::abi_stable::std_types::RResult::ROk(Ok(backend)) => ::abi_stable::std_types::RResult::ROk(backend),
                ::abi_stable::std_types::RResult::ROk(Err(msg)) => ::abi_stable::std_types::RResult::RErr(msg.into()),
                ::abi_stable::std_types::RResult::RErr(panicked) => ::abi_stable::std_types::RResult::RErr(panicked),
            }
        }
    };
}
