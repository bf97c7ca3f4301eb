//! pmmux: a port multiplexer whose backends are plugins.
//!
//! One folder per stage of the data path (see `docs/architecture.md` for why each is so):
//!
//! - [`tcp`]: accept, preview, then relay to a target or serve from a plugin session, per connection.
//! - [`udp`]: per-client flows and detection over held datagrams, one driver per listening socket.
//! - [`routing`]: the registry snapshot, host-side matchers, the router and health checks.
//! - [`plugins`]: loading plugin libraries safely and the set loaded now.
//! - [`proxy_protocol`]: reading a trusted front's PROXY header, writing one to upstreams (its
//!   decoder and encoders are public for the fuzz targets in `fuzz/`).
//! - [`control`]: the service's start and stop, file watching and reloads, the configuration diff,
//!   binary upgrades (SIGUSR2) and systemd socket activation.
//! - [`ops`]: admin endpoint, status, metrics, limits, systemd and privilege dropping.
//! - [`portmap`]: NAT port mapping (UPnP IGD, NAT-PMP, PCP) for listeners with a `public_port`.
//! - [`config`]: the configuration file, `{{env}}` expansion and the `-p` / `-b` quick start.

// The module maps above link to crate-private stages on purpose: this library is documented for its
// maintainers (`cargo doc -p pmmux --document-private-items`), not as a public API.
#![allow(rustdoc::private_intra_doc_links)]

pub mod config;
pub mod control;
pub mod ops;
pub mod plugins;
pub(crate) mod portmap;
pub mod proxy_protocol;
pub mod routing;
pub(crate) mod tcp;
pub(crate) mod udp;
