//! The driver's side of a binary upgrade ([`crate::upgrade`]): in the new process, clients the old
//! process still serves are passed to it through the flow tunnel, and the listening socket is read
//! only once the old process has said which clients those are; in the old process, after the
//! takeover, client datagrams arrive only through the tunnel, a datagram for a client without a
//! flow here is bounced back, and the driver ends when its last flow does.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::sync::oneshot;

use super::{Driver, FlowKey, MAX_DATAGRAM};
use crate::control::upgrade::tunnel::{decode, Message, Tunnel};

/// How long the new process waits for the old one's client list before reading the listening
/// socket anyway (the old process is stuck or gone without closing the tunnel).
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// What the listener set hands the driver for upgrades.
#[derive(Default)]
pub struct UdpHandover {
    /// New process: the tunnel from the process it took over from.
    pub from_old: Option<Tunnel>,
    /// Old process: receives the tunnel when a new process takes over.
    pub to_new: Option<oneshot::Receiver<OwnedFd>>,
}

/// The driver's upgrade state.
pub(super) struct Link {
    from_old: Option<Tunnel>,
    /// Clients whose flows live in the old process.
    old_clients: HashSet<SocketAddr>,
    /// Whether the listening socket may be read (the old process's list is complete, or it is gone).
    synced: bool,
    sync_deadline: tokio::time::Instant,
    to_new_rx: Option<oneshot::Receiver<OwnedFd>>,
    to_new: Option<Tunnel>,
    old_buf: Vec<u8>,
    new_buf: Vec<u8>,
}

/// What woke the link up.
pub(super) enum Event {
    FromOld(io::Result<usize>),
    SyncTimeout,
    TunnelGiven(Result<OwnedFd, oneshot::error::RecvError>),
    ToNew(io::Result<usize>),
}

impl Link {
    pub(super) fn new(handover: UdpHandover) -> Link {
        let buf = |on: bool| if on { vec![0u8; MAX_DATAGRAM + 64] } else { Vec::new() };
        Link {
            synced: handover.from_old.is_none(),
            old_buf: buf(handover.from_old.is_some()),
            new_buf: buf(handover.to_new.is_some()),
            from_old: handover.from_old,
            old_clients: HashSet::new(),
            sync_deadline: tokio::time::Instant::now() + SYNC_TIMEOUT,
            to_new_rx: handover.to_new,
            to_new: None,
        }
    }

    /// Whether this process reads the listening socket now.
    pub(super) fn reads_listening_socket(&self) -> bool {
        self.synced && self.to_new.is_none()
    }

    /// Whether [`Link::next`] has anything to wait for.
    pub(super) fn active(&self) -> bool {
        self.from_old.is_some() || self.to_new_rx.is_some() || self.to_new.is_some()
    }

    /// Whether this (old) process has handed over and has no flow left.
    pub(super) fn drained(&self, d: &Driver) -> bool {
        self.to_new.is_some() && d.flows.is_empty() && d.pending.is_empty()
    }

    /// Waits for the next tunnel event.
    pub(super) async fn next(&mut self) -> Event {
        let Link {
            from_old,
            synced,
            sync_deadline,
            to_new_rx,
            to_new,
            old_buf,
            new_buf,
            ..
        } = self;
        tokio::select! {
            r = recv_opt(from_old, old_buf), if from_old.is_some() => Event::FromOld(r),
            _ = tokio::time::sleep_until(*sync_deadline), if !*synced => Event::SyncTimeout,
            fd = given_opt(to_new_rx), if to_new_rx.is_some() => Event::TunnelGiven(fd),
            r = recv_opt(to_new, new_buf), if to_new.is_some() => Event::ToNew(r),
        }
    }

    /// A datagram read from the listening socket: passed to the old process if the client is
    /// one of its (true), else left to this one (false). A full tunnel drops it, as a network would.
    pub(super) fn pass_to_old(&mut self, client: SocketAddr, datagram: &[u8]) -> bool {
        if !self.old_clients.contains(&client) {
            return false;
        }
        if let Some(t) = &mut self.from_old {
            if t.try_send(&Message::Data(client, datagram)).is_ok() {
                return true;
            }
        }
        // The tunnel is broken: the old process is going away; the client is this process's now.
        self.old_clients.remove(&client);
        false
    }
}

async fn recv_opt(tunnel: &Option<Tunnel>, buf: &mut [u8]) -> io::Result<usize> {
    match tunnel {
        Some(t) => t.recv(buf).await,
        None => std::future::pending().await,
    }
}

async fn given_opt(rx: &mut Option<oneshot::Receiver<OwnedFd>>) -> Result<OwnedFd, oneshot::error::RecvError> {
    match rx {
        Some(rx) => rx.await,
        None => std::future::pending().await,
    }
}

impl Driver {
    /// Handles a tunnel event; false when the driver should end (the new process vanished while
    /// this old one still had flows: nobody passes their datagrams any more).
    pub(super) async fn on_link(&mut self, event: Event, link: &mut Link) -> bool {
        match event {
            Event::FromOld(Ok(n)) if n > 0 => match decode(&link.old_buf[..n]) {
                Some(Message::Owned(list)) => link.old_clients.extend(list),
                Some(Message::Sync) => {
                    link.synced = true;
                    tracing::info!(listener = %self.ctx.name, old_clients = link.old_clients.len(), "upgrade: reading the UDP socket; clients with flows in the old process stay there until idle");
                }
                Some(Message::Bounce(client, datagram)) => {
                    link.old_clients.remove(&client);
                    self.datagram(datagram, client).await;
                }
                _ => {
                    tracing::warn!(listener = %self.ctx.name, "upgrade: malformed tunnel message from the old process; ignored")
                }
            },
            Event::FromOld(end) => {
                if let Err(e) = end {
                    tracing::warn!(listener = %self.ctx.name, error = %e, "upgrade: UDP tunnel to the old process failed");
                }
                tracing::info!(listener = %self.ctx.name, forgotten = link.old_clients.len(), "upgrade: the old process's UDP flows have ended; their clients are served here from now on");
                link.from_old = None;
                link.old_clients.clear();
                link.synced = true;
            }
            Event::SyncTimeout => {
                tracing::warn!(listener = %self.ctx.name, "upgrade: no client list from the old process within {SYNC_TIMEOUT:?}; reading the UDP socket anyway");
                link.synced = true;
            }
            Event::TunnelGiven(given) => return self.hand_over(given, link).await,
            Event::ToNew(Ok(n)) if n > 0 => match decode(&link.new_buf[..n]) {
                Some(Message::Data(client, datagram)) => {
                    // A client may hold several flows (one per backend for per-message protocols).
                    let has_flow = self.flows.find(FlowKey::session(client)).is_some()
                        || self.flows.iter().any(|(_, key, _)| key.client == client);
                    if has_flow || self.pending.contains(client) {
                        self.datagram(datagram, client).await;
                    } else if let Some(t) = &mut link.to_new {
                        let _ = t.try_send(&Message::Bounce(client, datagram));
                    }
                }
                _ => {
                    tracing::warn!(listener = %self.ctx.name, "upgrade: malformed tunnel message from the new process; ignored")
                }
            },
            Event::ToNew(_) => {
                tracing::warn!(listener = %self.ctx.name, flows = self.flows.len(), "upgrade: the new process closed the UDP tunnel; the flows left here end");
                return false;
            }
        }
        true
    }

    /// Old process: stop reading the listening socket, tell the new process which clients stay.
    async fn hand_over(&mut self, given: Result<OwnedFd, oneshot::error::RecvError>, link: &mut Link) -> bool {
        link.to_new_rx = None;
        let Ok(fd) = given else { return true }; // no upgrade after all
        let mut tunnel = match Tunnel::new(fd) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(listener = %self.ctx.name, error = %e, "upgrade: cannot use the UDP tunnel; this listener's flows end");
                return false;
            }
        };
        let mut clients: Vec<SocketAddr> = self.flows.iter().map(|(_, key, _)| key.client).collect();
        clients.extend(self.pending.clients());
        clients.sort_unstable();
        clients.dedup();
        if let Err(e) = tunnel.send_owned(&clients).await {
            tracing::error!(listener = %self.ctx.name, error = %e, "upgrade: cannot send the client list; this listener's flows end");
            return false;
        }
        tracing::info!(listener = %self.ctx.name, flows = self.flows.len(), pending = self.pending.len(), "upgrade: new UDP clients go to the new process; these flows stay here until idle");
        link.to_new = Some(tunnel);
        true
    }
}
