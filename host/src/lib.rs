//! pmmux: a port multiplexer whose backends are plugins.
//!
//! The data path, one module per stage: [`listener`] accepts, [`preview`] reads the first bytes,
//! [`router`] asks the backends and picks one, [`relay`] forwards or [`serve`] answers, all driven
//! per connection by [`connection`]. Plugins are loaded by [`plugin`] into the [`registry`] snapshot;
//! [`config`] and [`matchers`] read the configuration; [`watcher`] notices changes and [`reload`]
//! applies them (with [`diff`] saying what changed); [`status`] and [`admin`] show what is loaded;
//! [`server`] runs the whole. UDP listeners run per-client flows in [`udp`]. [`health`] checks
//! backends and takes unhealthy ones out of routing; [`failover`] retries the next backend when
//! connecting to a target fails.

pub mod admin;
pub mod config;
pub mod connection;
pub mod diff;
pub mod failover;
pub mod health;
pub mod listener;
pub mod matchers;
pub mod plugin;
pub mod preview;
pub mod registry;
pub mod relay;
pub mod reload;
pub mod router;
pub mod serve;
pub mod server;
pub mod status;
pub mod udp;
pub mod watcher;
