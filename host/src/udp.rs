//! UDP: per-client flows ([`flows`], a core with no I/O), clients still being detected with their
//! held datagrams ([`pending`], no I/O either), the driver that runs one listening socket over both
//! ([`driver`]), and the client writer plugins answer through ([`writer`]).

pub(crate) mod driver;
pub(crate) mod flows;
pub(crate) mod pending;
pub(crate) mod writer;
