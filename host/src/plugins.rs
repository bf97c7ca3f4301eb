//! Plugin libraries: loading one file safely ([`loader`]), checking it is whole ([`complete`]), and the
//! host callback plugins log through ([`logger`]), who may write plugins ([`perms`]), and the set of plugins loaded now ([`set`]).
//! [`scaffold`] writes a new plugin crate (`pmmux new-plugin`).

pub(crate) mod complete;
pub(crate) mod loader;
pub(crate) mod logger;
pub(crate) mod perms;
pub mod scaffold;
pub(crate) mod set;

pub use loader::{LoadError, LoadedPlugin, Loader};
pub use set::{PluginSet, Reconciled, Refusal};
