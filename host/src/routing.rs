//! Routing: which backend gets a connection or a datagram. The [`registry`] is the immutable
//! snapshot of plugins and backends, [`matchers`] are the host-side checks of `[backend.match]`,
//! [`router`] runs detection and the strategy, and [`health`] takes unhealthy backends out.

pub(crate) mod health;
pub(crate) mod matchers;
pub mod registry;
pub mod router;
