//! pmmux: a port multiplexer whose backends are plugins.
//!
//! The data path, one module per stage: [`listener`] accepts, [`preview`] reads the first bytes,
//! [`router`] asks the backends and picks one, [`relay`] forwards or [`serve`] answers, all driven
//! per connection by [`connection`]. Plugins are loaded by [`plugin`] into the [`registry`] snapshot;
//! [`config`] and [`matchers`] read the configuration; [`watcher`] notices changes and [`reload`]
//! applies them (with [`diff`] saying what changed); [`status`] and [`admin`] show what is loaded;
//! [`server`] runs the whole; [`systemd`] tells the service manager, [`privdrop`] leaves root after
//! binding, and [`quick_start`] builds a configuration from `-p` / `-b` arguments. UDP listeners run
//! per-client flows in [`udp`]. [`proxy_protocol`] reads a trusted front's PROXY header and writes
//! one to upstreams. [`limits`] bounds connections and [`metrics`] counts them. [`health`] checks
//! backends and takes unhealthy ones out of routing; [`failover`] retries the next backend when
//! connecting to a target fails. [`upgrade`] hands every listening socket to a new binary on
//! SIGUSR2 and takes sockets from systemd socket activation.

pub mod admin;
pub mod config;
pub mod connection;
pub mod diff;
pub mod failover;
pub mod health;
pub mod limits;
pub mod listener;
pub mod matchers;
pub mod metrics;
pub mod plugin;
pub mod preview;
pub mod privdrop;
pub mod proxy_protocol;
pub mod quick_start;
pub mod registry;
pub mod relay;
pub mod reload;
pub mod router;
pub mod serve;
pub mod server;
pub mod status;
pub mod systemd;
pub mod udp;
pub mod upgrade;
pub mod watcher;
