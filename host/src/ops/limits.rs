//! Connection limits: the counting core (no I/O) behind `[limits] max_connections` and
//! `max_previews` (whole process) and a listener's `max_connections` and `max_connections_per_ip`,
//! and the rate gate that keeps limit log lines to one per limit and listener per second.
//!
//! What happens at each limit (README "Limits"):
//! - `max_connections` (process or listener) full: the accept loop stops accepting until a slot
//!   frees, as HAProxy's `maxconn` does (an idle loop reserves nothing; a connection accepted in a
//!   race for the last slot waits in the loop for the next one, so each listener may hold one
//!   accepted, unserved connection past the limit). New clients wait in the kernel's backlog (their connect
//!   succeeds, their bytes are read once a slot frees) instead of being turned away while the
//!   process is merely busy; nothing is spent on them meanwhile. One hit is counted each time a
//!   loop starts waiting.
//! - `max_connections_per_ip` or `max_previews` full: the connection is accepted and closed at once
//!   (FIN, no bytes read): stopping the accept loop would let one address, or a crowd of silent
//!   clients, lock every other client out. One hit per refused connection.
//!
//! Counts are always kept (they are the `connections_active` gauges); a maximum only decides. A
//! per-IP table exists only while the listener has `max_connections_per_ip`; an entry lives while
//! its address has connections (removed when its count drops to 0), and the table holds at most
//! [`MAX_IP_ENTRIES`] addresses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Most client addresses one listener's per-IP table holds; a new address beyond it is refused
/// as a per-IP hit (each entry stands for at least one open connection, so this is never reached
/// before the descriptor limit in practice).
pub(crate) const MAX_IP_ENTRIES: usize = 1 << 20;
/// Least time between two log lines of one limit on one listener.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(1);

/// `[limits]`: process-wide limits (none when `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GlobalLimitsConfig {
    /// TCP connections open at once in the whole process.
    pub max_connections: Option<usize>,
    /// Connections still previewing (not yet routed) at once.
    pub max_previews: Option<usize>,
}

/// A listener's own limits (none when `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListenerLimitsConfig {
    /// TCP connections open at once on this listener.
    pub max_connections: Option<usize>,
    /// TCP connections open at once on this listener from one client IP address.
    pub max_connections_per_ip: Option<usize>,
}

/// Which limit was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// `[limits] max_connections`.
    Global,
    /// The listener's `max_connections`.
    Listener,
    /// The listener's `max_connections_per_ip`.
    PerIp,
    /// `[limits] max_previews`.
    Previews,
}

impl LimitKind {
    /// Every kind, in label order.
    pub const ALL: [LimitKind; 4] = [
        LimitKind::Global,
        LimitKind::Listener,
        LimitKind::PerIp,
        LimitKind::Previews,
    ];

    /// The `limit` label and log name.
    pub fn label(self) -> &'static str {
        match self {
            LimitKind::Global => "max_connections",
            LimitKind::Listener => "listener_max_connections",
            LimitKind::PerIp => "max_connections_per_ip",
            LimitKind::Previews => "max_previews",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A count with an adjustable maximum (0 stands for none).
#[derive(Debug, Default)]
pub struct Slots {
    count: AtomicUsize,
    max: AtomicUsize,
}

impl Slots {
    /// Takes a slot unless the maximum is reached.
    pub fn try_acquire(&self) -> bool {
        let max = self.max.load(Ordering::Relaxed);
        if max == 0 {
            self.count.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |c| (c < max).then_some(c + 1))
            .is_ok()
    }

    /// Gives a slot back; true when the count was at (or past) the maximum, so a waiter may go on.
    pub fn release(&self) -> bool {
        let before = self.count.fetch_sub(1, Ordering::AcqRel);
        let max = self.max.load(Ordering::Relaxed);
        max != 0 && before >= max
    }

    /// Slots taken now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// The maximum, if any.
    pub fn max(&self) -> Option<usize> {
        Some(self.max.load(Ordering::Relaxed)).filter(|&m| m != 0)
    }

    /// Sets (or removes) the maximum; slots already taken stay taken.
    pub fn set_max(&self, max: Option<usize>) {
        self.max.store(max.unwrap_or(0), Ordering::Relaxed);
    }
}

/// Open connections per client address, for `max_connections_per_ip`.
#[derive(Debug, Default)]
pub struct IpTable {
    max: AtomicUsize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// What [`IpTable::try_acquire`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpAdmission {
    /// Counted against the address; release it with [`IpTable::release`].
    Counted,
    /// No per-IP limit: nothing counted, nothing to release.
    Untracked,
    /// The address is at its limit (or the table is full).
    Refused,
}

impl IpTable {
    /// Admits one more connection from `ip` unless it is at the limit.
    pub fn try_acquire(&self, ip: IpAddr) -> IpAdmission {
        let max = self.max.load(Ordering::Relaxed);
        if max == 0 {
            return IpAdmission::Untracked;
        }
        let ip = ip.to_canonical();
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let full = counts.len() >= MAX_IP_ENTRIES;
        match counts.get_mut(&ip) {
            Some(n) if *n >= max => IpAdmission::Refused,
            Some(n) => {
                *n += 1;
                IpAdmission::Counted
            }
            None if full => IpAdmission::Refused,
            None => {
                counts.insert(ip, 1);
                IpAdmission::Counted
            }
        }
    }

    /// Ends one counted connection from `ip`; the entry goes when its count reaches 0.
    pub fn release(&self, ip: IpAddr) {
        let ip = ip.to_canonical();
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&ip);
            }
        }
    }

    /// Addresses with connections now.
    pub fn len(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no address has a counted connection.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets (or removes) the per-address maximum. Connections accepted while there was none are
    /// not in the table: they are not counted against their address.
    pub fn set_max(&self, max: Option<usize>) {
        self.max.store(max.unwrap_or(0), Ordering::Relaxed);
        if max.is_none() {
            self.counts.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }

    /// The maximum, if any.
    pub fn max(&self) -> Option<usize> {
        Some(self.max.load(Ordering::Relaxed)).filter(|&m| m != 0)
    }
}

/// Lets one log line through per [`LOG_EVERY`], counting the events it held back.
#[derive(Debug)]
pub(crate) struct LogGate {
    /// Milliseconds (see [`now_ms`]) of the last line let through; `u64::MAX` before the first.
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl Default for LogGate {
    fn default() -> Self {
        LogGate {
            last_ms: AtomicU64::new(u64::MAX),
            suppressed: AtomicU64::new(0),
        }
    }
}

impl LogGate {
    /// Records an event at `now_ms`; `Some(held back since the last line)` when a line is due.
    pub(crate) fn event(&self, now_ms: u64) -> Option<u64> {
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = last == u64::MAX || now_ms.saturating_sub(last) >= LOG_EVERY.as_millis() as u64;
        if due
            && self
                .last_ms
                .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Milliseconds since the first call in this process: the clock of [`LogGate`].
pub(crate) fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// The process-wide limits and counts.
#[derive(Debug, Default)]
pub struct Limits {
    /// TCP connections open in the process.
    pub connections: Slots,
    /// Connections still previewing.
    pub previews: Slots,
    /// Woken when a slot frees at a full limit (or a maximum changes).
    freed: Notify,
}

impl Limits {
    /// Limits as configured.
    pub fn new(config: &GlobalLimitsConfig) -> Limits {
        let limits = Limits::default();
        limits.configure(config);
        limits
    }

    /// Applies a (re)loaded `[limits]`; waiting accept loops look again.
    pub fn configure(&self, config: &GlobalLimitsConfig) {
        self.connections.set_max(config.max_connections);
        self.previews.set_max(config.max_previews);
        self.freed.notify_waiters();
    }

    /// The configured maxima.
    pub fn config(&self) -> GlobalLimitsConfig {
        GlobalLimitsConfig {
            max_connections: self.connections.max(),
            max_previews: self.previews.max(),
        }
    }
}

/// One listener's limits, counts and limit-hit counters.
#[derive(Debug)]
pub struct ListenerLimits {
    global: Arc<Limits>,
    /// TCP connections open on this listener.
    pub connections: Slots,
    /// Connections per client address.
    pub per_ip: IpTable,
    hits: [AtomicU64; 4],
    gates: [LogGate; 4],
}

impl ListenerLimits {
    /// A listener's limits under the process-wide `global`.
    pub fn new(global: Arc<Limits>, config: &ListenerLimitsConfig) -> ListenerLimits {
        let limits = ListenerLimits {
            global,
            connections: Slots::default(),
            per_ip: IpTable::default(),
            hits: Default::default(),
            gates: Default::default(),
        };
        limits.configure(config);
        limits
    }

    /// Applies a (re)loaded listener configuration; open connections stay.
    pub fn configure(&self, config: &ListenerLimitsConfig) {
        self.connections.set_max(config.max_connections);
        self.per_ip.set_max(config.max_connections_per_ip);
        self.global.freed.notify_waiters();
    }

    /// The configured maxima.
    pub fn config(&self) -> ListenerLimitsConfig {
        ListenerLimitsConfig {
            max_connections: self.connections.max(),
            max_connections_per_ip: self.per_ip.max(),
        }
    }

    /// The process-wide limits.
    pub fn global(&self) -> &Arc<Limits> {
        &self.global
    }

    /// Times `kind` was hit on this listener.
    pub fn hits(&self, kind: LimitKind) -> u64 {
        self.hits[kind.index()].load(Ordering::Relaxed)
    }

    /// Counts a hit of `kind`; `Some(held back)` when a log line is due (at most one per second).
    pub fn hit(&self, kind: LimitKind, now_ms: u64) -> Option<u64> {
        self.hits[kind.index()].fetch_add(1, Ordering::Relaxed);
        self.gates[kind.index()].event(now_ms)
    }

    /// Takes a connection slot of the process and of this listener, before accepting; names the
    /// full limit otherwise.
    pub fn reserve(self: &Arc<Self>) -> Result<Slot, LimitKind> {
        if !self.global.connections.try_acquire() {
            return Err(LimitKind::Global);
        }
        if !self.connections.try_acquire() {
            if self.global.connections.release() {
                self.global.freed.notify_waiters();
            }
            return Err(LimitKind::Listener);
        }
        Ok(Slot(Arc::clone(self)))
    }

    /// Whether a connection slot is free in the process and on this listener (none is taken).
    pub fn room(&self) -> Result<(), LimitKind> {
        let free = |s: &Slots| s.max().is_none_or(|m| s.count() < m);
        if !free(&self.global.connections) {
            return Err(LimitKind::Global);
        }
        if !free(&self.connections) {
            return Err(LimitKind::Listener);
        }
        Ok(())
    }

    /// Waits, before accepting, until a connection slot is free (nothing is reserved: an idle
    /// accept loop holds no slot). Each wait counts a hit, logged at a bounded rate.
    pub async fn wait_for_room(&self, listener: &str) {
        self.wait_until(listener, || self.room()).await
    }

    /// Takes a connection slot, waiting (as [`ListenerLimits::wait_for_room`]) while there is
    /// none: after an accept that raced another listener for the last free slot.
    pub async fn wait_for_slot(self: &Arc<Self>, listener: &str) -> Slot {
        self.wait_until(listener, || self.reserve()).await
    }

    async fn wait_until<T>(&self, listener: &str, mut attempt: impl FnMut() -> Result<T, LimitKind>) -> T {
        loop {
            let freed = self.global.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let kind = match attempt() {
                Ok(t) => return t,
                Err(kind) => kind,
            };
            if let Some(held_back) = self.hit(kind, now_ms()) {
                let max = match kind {
                    LimitKind::Global => self.global.connections.max(),
                    _ => self.connections.max(),
                };
                tracing::warn!(
                    listener,
                    limit = kind.label(),
                    max,
                    held_back,
                    "connection limit reached; not accepting until a connection closes"
                );
            }
            // A slot freeing at a full limit wakes us; the timer only heals a missed wake-up.
            let _ = tokio::time::timeout(Duration::from_secs(1), freed).await;
        }
    }

    /// After accepting from `ip` with `slot`: checks the per-IP and preview limits.
    pub fn admit(&self, slot: Slot, ip: IpAddr) -> Result<Admitted, LimitKind> {
        let counted = match self.per_ip.try_acquire(ip) {
            IpAdmission::Refused => return Err(LimitKind::PerIp),
            IpAdmission::Counted => Some(ip),
            IpAdmission::Untracked => None,
        };
        let mut admitted = Admitted {
            ip: counted,
            preview: None,
            slot,
        };
        if !self.global.previews.try_acquire() {
            return Err(LimitKind::Previews);
        }
        admitted.preview = Some(PreviewSlot(Arc::clone(&self.global)));
        Ok(admitted)
    }

    /// Counts a refusal by `kind` of a client from `peer` and logs it at a bounded rate.
    pub fn refused(&self, kind: LimitKind, listener: &str, peer: &dyn std::fmt::Display) {
        if let Some(held_back) = self.hit(kind, now_ms()) {
            let max = match kind {
                LimitKind::PerIp => self.per_ip.max(),
                LimitKind::Previews => self.global.previews.max(),
                LimitKind::Global => self.global.connections.max(),
                LimitKind::Listener => self.connections.max(),
            };
            tracing::warn!(
                listener,
                limit = kind.label(),
                max,
                %peer,
                held_back,
                "connection refused by a limit; closed at once"
            );
        }
    }
}

/// A connection slot of the process and of one listener, given back on drop.
#[derive(Debug)]
pub struct Slot(Arc<ListenerLimits>);

impl Drop for Slot {
    fn drop(&mut self) {
        let listener_full = self.0.connections.release();
        let global_full = self.0.global.connections.release();
        if listener_full || global_full {
            self.0.global.freed.notify_waiters();
        }
    }
}

/// A preview slot, given back on drop (or by [`Admitted::preview_done`]).
#[derive(Debug)]
pub(crate) struct PreviewSlot(Arc<Limits>);

impl Drop for PreviewSlot {
    fn drop(&mut self) {
        self.0.previews.release();
    }
}

/// Everything an admitted connection holds until it ends.
#[derive(Debug)]
pub struct Admitted {
    /// The address counted in the per-IP table, if any (released before the slot).
    ip: Option<IpAddr>,
    preview: Option<PreviewSlot>,
    slot: Slot,
}

impl Admitted {
    /// The routing decision is made: the connection no longer counts as previewing.
    pub fn preview_done(&mut self) {
        self.preview = None;
    }

    /// Whether it still counts as previewing.
    pub fn is_previewing(&self) -> bool {
        self.preview.is_some()
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            self.slot.0.per_ip.release(ip);
        }
    }
}

#[cfg(test)]
mod tests;
