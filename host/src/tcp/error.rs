//! Why a routed TCP connection failed, naming the side that failed (client, upstream or plugin) and
//! what it was doing, so the close line and the `outcome` metric say where to look.

use std::fmt;
use std::io;

use crate::tcp::relay::RelayError;

/// One end of a relayed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// The client that connected to the listener.
    Client,
    /// The backend's target pmmux connected to.
    Upstream,
}

impl Peer {
    /// The other end.
    pub(crate) fn other(self) -> Peer {
        match self {
            Peer::Client => Peer::Upstream,
            Peer::Upstream => Peer::Client,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Peer::Client => "client",
            Peer::Upstream => "upstream",
        })
    }
}

/// What pmmux was doing on a socket when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Reading.
    Read,
    /// Writing (including the half-close that ends a direction).
    Write,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Read => "read",
            Op::Write => "write",
        })
    }
}

/// An I/O error on one end of a connection.
#[derive(Debug, thiserror::Error)]
#[error("{peer} {op} failed: {source}")]
pub(crate) struct SideError {
    /// Which end.
    pub peer: Peer,
    /// Reading or writing.
    pub op: Op,
    /// The system's error.
    pub source: io::Error,
}

impl SideError {
    /// A closure for `map_err` that blames `peer` for an `op` error.
    pub(crate) fn on(peer: Peer, op: Op) -> impl FnOnce(io::Error) -> SideError {
        move |source| SideError { peer, op, source }
    }
}

/// Which party a failure is charged to (the `outcome` label of a failed connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blame {
    /// The client's socket failed.
    Client,
    /// The target could not be reached or its socket failed.
    Upstream,
    /// A plugin hook returned an error (or panicked).
    Plugin,
    /// The configuration cannot work (a forwarding backend without a target).
    Config,
}

/// Why a routed connection failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    /// Connecting to the target, replaying the preview or relaying failed.
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// A socket failed while a plugin session served the client.
    #[error(transparent)]
    Side(#[from] SideError),
    /// A plugin hook returned an error.
    #[error("plugin hook `{hook}` failed: {message}")]
    Plugin {
        /// The hook (`open`, `on_data`, `on_eof`).
        hook: &'static str,
        /// What the plugin (or its panic) said.
        message: String,
    },
    /// The backend forwards but has no target.
    #[error("backend has no target to forward to")]
    NoTarget,
    /// Writing the PROXY header to the target failed.
    #[error("upstream {target}: sending the PROXY header failed: {source}")]
    ProxyHeader {
        /// The target.
        target: String,
        /// Why.
        source: io::Error,
    },
}

impl ConnError {
    /// The party the failure is charged to.
    pub(crate) fn blame(&self) -> Blame {
        match self {
            ConnError::Relay(RelayError::Io(e)) | ConnError::Side(e) => match e.peer {
                Peer::Client => Blame::Client,
                Peer::Upstream => Blame::Upstream,
            },
            ConnError::Relay(_) | ConnError::ProxyHeader { .. } => Blame::Upstream,
            ConnError::Plugin { .. } => Blame::Plugin,
            ConnError::NoTarget => Blame::Config,
        }
    }
}

impl Blame {
    /// The `side` field of the close line.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Blame::Client => "client",
            Blame::Upstream => "upstream",
            Blame::Plugin => "plugin",
            Blame::Config => "config",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io() -> io::Error {
        io::Error::from(io::ErrorKind::ConnectionReset)
    }

    #[test]
    fn each_failure_names_its_side() {
        let client_write = ConnError::Relay(RelayError::Io(SideError::on(Peer::Client, Op::Write)(io())));
        assert_eq!(client_write.blame(), Blame::Client);
        assert!(
            client_write.to_string().starts_with("client write failed"),
            "{client_write}"
        );
        let upstream_read = ConnError::Side(SideError::on(Peer::Upstream, Op::Read)(io()));
        assert_eq!(upstream_read.blame(), Blame::Upstream);
        assert!(
            upstream_read.to_string().starts_with("upstream read failed"),
            "{upstream_read}"
        );
        let connect = ConnError::Relay(RelayError::ConnectTimeout {
            target: "t:1".into(),
            ms: 5,
        });
        assert_eq!(connect.blame(), Blame::Upstream);
        let plugin = ConnError::Plugin {
            hook: "on_data",
            message: "boom".into(),
        };
        assert_eq!(plugin.blame(), Blame::Plugin);
        assert_eq!(plugin.to_string(), "plugin hook `on_data` failed: boom");
        assert_eq!(ConnError::NoTarget.blame().label(), "config");
    }
}
