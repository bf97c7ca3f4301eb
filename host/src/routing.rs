//! Routing: which backend gets a connection or a datagram. The [`registry`] is the immutable
//! snapshot of plugins and backends, [`matchers`] are the host-side checks of `[backend.match]`,
//! [`router`] runs detection, [`strategy`] balances among the matches, and [`health`] takes unhealthy
//! backends out; [`offenders`] refuses clients whose bytes keep making plugins fail.

pub(crate) mod health;
pub(crate) mod matchers;
pub(crate) mod offenders;
pub mod registry;
pub mod router;
pub(crate) mod strategy;
