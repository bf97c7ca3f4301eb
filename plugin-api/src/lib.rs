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
//!   spans several datagrams; [`Backend::udp_routing`] says whether a client keeps a flow.
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
//! A `cdylib` crate that depends on `pmmux-plugin-api` and `serde` (the crate's `README.md` walks
//! through a plugin from `Cargo.toml` to a running host). Hooks take and return plain Rust values;
//! the whole plugin:
//!
//! ```
//! use pmmux_plugin_api::{export_plugin, Backend, BackendSpec, ConnInfo, Detection, Property};
//!
//! /// Matches connections whose first bytes are a configurable greeting.
//! struct Greeting(Vec<u8>);
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Params { prefix: String }
//!
//! fn greeting(spec: &BackendSpec<'_>) -> Result<Greeting, String> {
//!     let Params { prefix } = spec.params()?;
//!     if prefix.is_empty() { return Err("`prefix` must not be empty".into()) }
//!     Ok(Greeting(prefix.into_bytes()))
//! }
//!
//! impl Backend for Greeting {
//!     fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
//!         let n = preview.len().min(self.0.len());
//!         if preview[..n] != self.0[..n] {
//!             Detection::NoMatch
//!         } else if n < self.0.len() {
//!             Detection::NeedMore
//!         } else {
//!             Detection::Match(vec![Property::new("greeting.seen", "yes")])
//!         }
//!     }
//! }
//!
//! export_plugin! { name: "greeting", version: "0.1.0", protocols: { "greeting" => greeting } }
//! ```
//!
//! Forwarding needs no code: [`Backend::open`] defaults to "relay to the backend's `target`".
//! A protocol without params calls [`BackendSpec::no_params`]; a param that takes one value or a list
//! reads it with [`params::string_or_list`]. Unit tests call the constructor and hooks directly with
//! [`BackendSpec::new`] and [`ConnInfo::new`].
//!
//! Everything in [`ffi`] is the ABI itself: the host's side, which a plugin never has to name.

/// The README's plugin, compiled as a doctest so that what it tells authors builds as written.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

mod backend;
#[doc(hidden)]
pub mod export;
pub mod ffi;
pub mod log;
pub mod names;
pub mod panic_hook;
pub mod params;
mod spec;
mod types;

/// The abi_stable release the ABI is built on, for the host (plugins never name it).
pub use abi_stable;
pub use backend::{Backend, ClientWriter, Handling, Session};
pub use ffi::{BackendSpec, ConnInfo, FfiAddr, PluginInfo, PluginMod, PluginModRef, ABI_VERSION};
pub use log::Level;
pub use types::{Detection, HealthProbe, HealthTransport, HealthVerdict, Property, SessionCtl, UdpAction, UdpRouting};

/// Exports a plugin's root module. Each protocol maps to a constructor
/// `fn(&BackendSpec<'_>) -> Result<impl Backend, String>`; an `Err` reaches the user verbatim.
/// Invoke it once per library, at the crate root or in any module.
#[macro_export]
macro_rules! export_plugin {
    (
        name: $name:expr,
        version: $version:expr,
        protocols: { $($proto:literal => $ctor:expr),+ $(,)? } $(,)?
    ) => {
        struct __PmmuxPlugin;

        impl $crate::export::Plugin for __PmmuxPlugin {
            const NAME: &'static str = $name;
            const VERSION: &'static str = $version;
            const PROTOCOLS: &'static [&'static str] = &[$($proto),+];
            const PANIC_UNWIND: bool = cfg!(panic = "unwind");

            fn new_backend(
                spec: &$crate::BackendSpec<'_>,
            ) -> ::core::result::Result<$crate::ffi::BackendBox, ::std::string::String> {
                match spec.protocol() {
                    $($proto => ($ctor)(spec).map($crate::export::into_ffi_backend),)+
                    other => ::core::result::Result::Err(::std::format!(
                        "this plugin does not provide protocol `{other}`"
                    )),
                }
            }
        }

        /// The plugin's library header, which the pmmux host looks up by this symbol.
        #[export_name = $crate::__root_module_loader_name!()]
        pub static __PMMUX_LIB_HEADER: $crate::abi_stable::library::LibHeader =
            $crate::export::lib_header::<__PmmuxPlugin>();
    };
}
