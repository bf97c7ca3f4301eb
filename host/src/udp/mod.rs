//! UDP: per-client flows ([`flows`], a core with no I/O), the driver that runs one listening socket
//! over it ([`driver`]), and the client writer plugins answer through ([`writer`]).

pub mod driver;
pub mod flows;
pub mod writer;
