//! UDP: per-client flows ([`flows`], a core with no I/O), clients still being detected with their
//! held datagrams ([`pending`], no I/O either), the driver that runs one listening socket over both
//! ([`driver`]), the client writer plugins answer through ([`writer`]), and batched socket I/O
//! ([`batch`]: many datagrams per system call).

pub(crate) mod batch;
pub(crate) mod driver;
pub(crate) mod flows;
pub(crate) mod pending;
pub(crate) mod writer;
