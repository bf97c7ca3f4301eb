//! A byte stream of either kind pmmux relays: a TCP connection or a Unix-domain stream socket,
//! on the client's side and the upstream's alike, and who the client is ([`Client`]). An enum
//! rather than a generic: a listener and a backend target each choose one at run time, and the
//! connection's code stays one copy.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use tokio::net::{tcp, unix, TcpStream, UnixStream};

use crate::tcp::relay::RelayError;

/// A connected stream socket.
#[derive(Debug)]
pub(crate) enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// A Unix-domain stream socket.
    Unix(UnixStream),
}

/// The read half of a [`Stream`], borrowed (no lock, as `TcpStream::split`).
pub(crate) enum ReadHalf<'a> {
    Tcp(tcp::ReadHalf<'a>),
    Unix(unix::ReadHalf<'a>),
}

/// The write half of a [`Stream`], borrowed.
pub(crate) enum WriteHalf<'a> {
    Tcp(tcp::WriteHalf<'a>),
    Unix(unix::WriteHalf<'a>),
}

impl Stream {
    /// Connects to a backend target within `connect_timeout`: `unix:/path` over a Unix socket,
    /// anything else as `host:port` over TCP ([`crate::tcp::relay::connect_from`]).
    pub(crate) async fn connect(target: &str, connect_timeout: Duration) -> Result<Stream, RelayError> {
        Ok(Stream::connect_from(target, connect_timeout, None, &[]).await?.0)
    }

    /// [`Stream::connect`], from `source` when given (a transparent backend: the client's own
    /// address and port), sending `first` with the connect over TCP; returns how many bytes of
    /// `first` went (see [`crate::tcp::relay::connect_from`]). A Unix-socket target has no source
    /// address to take: with `source` it is refused (the configuration check refuses such a static
    /// target; this catches one a plugin names).
    pub(crate) async fn connect_from(
        target: &str,
        connect_timeout: Duration,
        source: Option<std::net::SocketAddr>,
        first: &[u8],
    ) -> Result<(Stream, usize), RelayError> {
        let refused = |why: String| RelayError::Connect {
            target: target.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidInput, why),
        };
        match crate::config::listen::unix_path(target) {
            Some(Ok(_)) if source.is_some() => Err(refused(
                "a transparent backend cannot connect to a Unix-socket target (no client address to send from)".into(),
            )),
            Some(Ok(path)) => crate::tcp::unix::connect(target, &path, connect_timeout)
                .await
                .map(|s| (Stream::Unix(s), 0)),
            Some(Err(why)) => Err(refused(why)),
            None => crate::tcp::relay::connect_from(target, connect_timeout, source, first)
                .await
                .map(|(s, sent)| (Stream::Tcp(s), sent)),
        }
    }

    /// Splits into halves that can be used at once.
    pub(crate) fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        match self {
            Stream::Tcp(s) => {
                let (r, w) = s.split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            Stream::Unix(s) => {
                let (r, w) = s.split();
                (ReadHalf::Unix(r), WriteHalf::Unix(w))
            }
        }
    }

    /// Waits until the socket may be read.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.readable().await,
            Stream::Unix(s) => s.readable().await,
        }
    }

    /// Reads what is there without waiting (`WouldBlock` when nothing is).
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_read(buf),
            Stream::Unix(s) => s.try_read(buf),
        }
    }
}

impl ReadHalf<'_> {
    /// Reads into `buf`'s spare capacity without waiting. Costs no system call unless the socket
    /// was reported readable or closed since its last short read (`WouldBlock` then).
    pub(crate) fn try_read_buf(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            ReadHalf::Tcp(r) => r.try_read_buf(buf),
            ReadHalf::Unix(r) => r.try_read_buf(buf),
        }
    }
}

impl WriteHalf<'_> {
    /// Writes what the socket takes of `buf` now, marked as followed by more (TCP `MSG_MORE`: a
    /// short segment is held back, so a shutdown right after sends the bytes and the FIN in one
    /// packet); `WouldBlock` when it takes nothing. A Unix socket writes plainly.
    pub(crate) fn try_write_more(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            WriteHalf::Tcp(w) => {
                let s: &TcpStream = w.as_ref();
                s.try_io(tokio::io::Interest::WRITABLE, || {
                    socket2::SockRef::from(s).send_with_flags(buf, libc::MSG_MORE | libc::MSG_NOSIGNAL)
                })
            }
            WriteHalf::Unix(w) => w.try_write(buf),
        }
    }
}

/// Forwards a poll to whichever variant `$self` is.
macro_rules! either {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Self::Tcp($s) => $e,
            Self::Unix($s) => $e,
        }
    };
}

macro_rules! impl_read {
    ($t:ty) => {
        impl AsyncRead for $t {
            fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
                either!(self, s => Pin::new(s).poll_read(cx, buf))
            }
        }
    };
}

macro_rules! impl_write {
    ($t:ty) => {
        impl AsyncWrite for $t {
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                either!(self, s => Pin::new(s).poll_write(cx, buf))
            }
            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                either!(self, s => Pin::new(s).poll_flush(cx))
            }
            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                either!(self, s => Pin::new(s).poll_shutdown(cx))
            }
            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                either!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
            }
            fn is_write_vectored(&self) -> bool {
                match self {
                    Self::Tcp(s) => s.is_write_vectored(),
                    Self::Unix(s) => s.is_write_vectored(),
                }
            }
        }
    };
}

impl_read!(Stream);
impl_read!(ReadHalf<'_>);
impl_write!(Stream);
impl_write!(WriteHalf<'_>);

/// Who a connection speaks for: an IP client, or a client of a Unix socket (named by its own
/// socket path when it bound one, which clients rarely do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Client {
    /// An address and port.
    Ip(SocketAddr),
    /// A Unix-domain peer, with its path when it has one.
    Unix(Option<Arc<Path>>),
}

/// What routing sees as the client's and local address of a Unix connection: 0.0.0.0 port 0 (the
/// plugin ABI and the address matchers take IP addresses; no real client has this one).
pub(crate) const UNIX_PLACEHOLDER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

impl Client {
    /// A Unix peer as tokio reports it.
    pub(crate) fn unix(addr: &unix::SocketAddr) -> Client {
        Client::Unix(addr.as_pathname().map(Arc::from))
    }

    /// The address routing, limits and plugins see ([`UNIX_PLACEHOLDER`] for a Unix client).
    pub(crate) fn routing_addr(&self) -> SocketAddr {
        match self {
            Client::Ip(a) => *a,
            Client::Unix(_) => UNIX_PLACEHOLDER,
        }
    }

    /// Whether the client came over a Unix socket (it has no IP address).
    pub(crate) fn is_unix(&self) -> bool {
        matches!(self, Client::Unix(_))
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Client::Ip(a) => a.fmt(f),
            Client::Unix(Some(p)) => write!(f, "unix:{}", p.display()),
            Client::Unix(None) => f.write_str("unix:(unnamed)"),
        }
    }
}
