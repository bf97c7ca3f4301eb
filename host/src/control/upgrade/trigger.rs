//! `SIGUSR2` starts an upgrade attempt; a failed attempt is logged and the process serves on, a
//! successful one ends [`on_sigusr2`] with the hand-over for the server to carry out.

use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::parent::{self, HandedOver, Offer};
use super::{Kind, READY_TIMEOUT};
use crate::tcp::listener::ListenerSet;

/// The admin endpoint's listening socket, offered along with the listeners.
#[derive(Debug, Clone, Copy)]
pub struct AdminSocket {
    /// Its configured address.
    pub address: SocketAddr,
    /// Its descriptor, open for as long as the admin task runs (which outlives any upgrade).
    pub fd: RawFd,
}

/// Upgrade attempts of this process, for the status document (`pmmux upgrade` reads it).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct UpgradeStatus {
    /// Attempts started (SIGUSR2 received).
    pub attempts: u64,
    /// Attempts that failed (this process kept serving).
    pub failures: u64,
    /// Why the last failed attempt failed.
    pub last_error: Option<String>,
}

static STATUS: Mutex<UpgradeStatus> = Mutex::new(UpgradeStatus {
    attempts: 0,
    failures: 0,
    last_error: None,
});

fn status_mut() -> MutexGuard<'static, UpgradeStatus> {
    STATUS.lock().unwrap_or_else(|p| p.into_inner())
}

/// The attempts so far.
pub fn status() -> UpgradeStatus {
    status_mut().clone()
}

fn failed(reason: String) {
    let mut s = status_mut();
    s.failures += 1;
    s.last_error = Some(reason);
}

/// The `SIGUSR2` stream, made when the server binds (a signal that arrives before a stream exists
/// is not seen by it, so it must exist before anyone can see the process listening).
pub fn sigusr2() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::user_defined2()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot install the SIGUSR2 handler; binary upgrades are off");
            None
        }
    }
}

/// Waits for `SIGUSR2` on `usr2` and tries an upgrade each time, until one succeeds.
pub async fn on_sigusr2(
    usr2: Option<tokio::signal::unix::Signal>,
    listeners: Arc<Mutex<ListenerSet>>,
    admin: Option<AdminSocket>,
) -> HandedOver {
    let Some(mut usr2) = usr2 else {
        return std::future::pending().await;
    };
    loop {
        if usr2.recv().await.is_none() {
            return std::future::pending().await;
        }
        status_mut().attempts += 1;
        let offers = {
            let set = listeners.lock().unwrap_or_else(|p| p.into_inner());
            set.offers()
        };
        let offers = offers.and_then(|mut offers| {
            if let Some(a) = admin {
                // SAFETY: the admin task owns this descriptor and runs until shutdown, which has
                // not begun while this task runs; the borrow lasts for the duplication only.
                let fd = unsafe { BorrowedFd::borrow_raw(a.fd) }.try_clone_to_owned()?;
                offers.push(Offer {
                    kind: Kind::Admin,
                    address: a.address.into(),
                    fd,
                });
            }
            Ok(offers)
        });
        let offers = match offers {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "upgrade failed: cannot duplicate the listening sockets; this process (PID {}) keeps serving", std::process::id());
                failed(format!("cannot duplicate the listening sockets: {e}"));
                continue;
            }
        };
        match tokio::task::spawn_blocking(move || attempt(offers)).await {
            Ok(Some(handed)) => return handed,
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "upgrade attempt panicked; this process keeps serving");
                failed(format!("the attempt panicked: {e}"));
            }
        }
    }
}

/// One attempt: start the new binary, wait until it is ready. Failures are logged here.
fn attempt(offers: Vec<Offer>) -> Option<HandedOver> {
    let me = std::process::id();
    let program = parent::invocation()
        .map(|i| i.program.display().to_string())
        .unwrap_or_default();
    tracing::info!(pid = me, program = %program, sockets = offers.len(), "SIGUSR2: upgrading: starting {program} with every listening socket");
    let mut launched = match parent::launch(offers, &crate::ops::systemd::child_env()) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(reason = %e, "upgrade failed: {e}; this process (PID {me}) keeps serving");
            failed(e.to_string());
            return None;
        }
    };
    let new_pid = launched.pid();
    tracing::info!(
        new_pid,
        "upgrade: started the new process (PID {new_pid}); waiting up to {READY_TIMEOUT:?} for it to accept"
    );
    match launched.wait_ready(READY_TIMEOUT) {
        Ok(handed) => {
            tracing::info!(
                new_pid,
                ms = handed.took.as_millis() as u64,
                "upgrade: the new process (PID {new_pid}) accepts; this process (PID {me}) stops accepting and drains"
            );
            Some(handed)
        }
        Err(e) => {
            let ended = launched.abandon();
            tracing::error!(new_pid, reason = %e, new_process = %ended, "upgrade failed: {e}; this process (PID {me}) keeps serving");
            failed(e.to_string());
            None
        }
    }
}
