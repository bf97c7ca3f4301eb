//! The TCP data path, in the order a connection meets it: the [`listener`] accepts, the
//! [`connection`] task reads the [`preview`] and asks the router, then the [`relay`] forwards to the
//! chosen backend's target (with [`failover`] to the next one when connecting fails) or the
//! [`session`] drives a plugin that answers itself. A [`stream`] is a TCP connection or a [`unix`]
//! socket, on either side.

pub(crate) mod connection;
pub(crate) mod error;
pub(crate) mod failover;
pub(crate) mod listener;
pub(crate) mod preview;
pub(crate) mod relay;
pub(crate) mod session;
pub(crate) mod stream;
pub(crate) mod unix;
