//! The host side of plugin logging: the callback handed to each plugin at load time, which turns the
//! plugin's log calls into `tracing` events of the host.

use abi_stable::std_types::RStr;
use pmmux_plugin_api::ffi::HostLogger;

/// The logger every plugin receives.
pub(crate) fn host_logger() -> HostLogger {
    HostLogger { log: plugin_log }
}

extern "C" fn plugin_log(level: u8, target: RStr<'_>, message: RStr<'_>) {
    let (target, message) = (target.as_str(), message.as_str());
    match level {
        1 => tracing::error!(target: "pmmux::plugins", plugin_target = target, "{message}"),
        2 => tracing::warn!(target: "pmmux::plugins", plugin_target = target, "{message}"),
        3 => tracing::info!(target: "pmmux::plugins", plugin_target = target, "{message}"),
        4 => tracing::debug!(target: "pmmux::plugins", plugin_target = target, "{message}"),
        _ => tracing::trace!(target: "pmmux::plugins", plugin_target = target, "{message}"),
    }
}
