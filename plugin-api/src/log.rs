//! Plugin-side logging: events go to the host's `tracing` subscriber through the callback the host
//! installs at load time (a plugin's own `tracing` globals would be unset and drop them, docs/architecture.md §1).

use std::fmt;
use std::sync::OnceLock;

use abi_stable::std_types::RStr;

use crate::ffi::HostLogger;

static LOGGER: OnceLock<HostLogger> = OnceLock::new();

/// Severity of a plugin log event, mapped onto `tracing` levels by the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Something failed.
    Error = 1,
    /// Something looks wrong.
    Warn = 2,
    /// Normal operation worth a line.
    Info = 3,
    /// Detail for debugging.
    Debug = 4,
    /// Very verbose detail.
    Trace = 5,
}

#[doc(hidden)]
pub extern "C" fn __set_logger(logger: HostLogger) {
    let _ = LOGGER.set(logger);
}

/// Sends one event to the host; dropped when no host logger is installed (unit tests).
pub fn emit(level: Level, target: &str, args: fmt::Arguments<'_>) {
    if let Some(logger) = LOGGER.get() {
        let message = args.to_string();
        (logger.log)(level as u8, RStr::from_str(target), RStr::from_str(&message));
    }
}

/// Logs through the host at a given level: `plugin_log!(Level::Info, "loaded {}", n)`.
#[macro_export]
macro_rules! plugin_log {
    ($level:expr, $($arg:tt)+) => {
        $crate::log::emit($level, module_path!(), format_args!($($arg)+))
    };
}
