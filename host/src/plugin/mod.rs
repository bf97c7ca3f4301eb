//! Plugin libraries: loading one file safely ([`loader`]), checking it is whole ([`elf`]), and the
//! host callback plugins log through ([`logger`]).

#[cfg(target_os = "linux")]
pub mod elf;
pub mod loader;
pub mod logger;

pub use loader::{LoadError, LoadedPlugin, Loader};
