//! Control: the service's life and everything that changes at run time. [`server`] starts and
//! stops the whole, [`watcher`] notices file changes, [`reload`] applies them, and [`config_diff`]
//! says what a new configuration changes. [`upgrade`] hands every listening socket to a new
//! binary on SIGUSR2 and takes sockets from systemd socket activation.

pub(crate) mod config_diff;
pub(crate) mod reload;
pub mod server;
pub mod upgrade;
pub(crate) mod watcher;
