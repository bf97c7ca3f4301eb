//! Clients charged for the plugin errors they cause. A plugin error (a panic, most often) found while
//! handling a client's bytes is charged to that client's address: after [`MAX_CLIENT_ERRORS`]
//! within [`ERROR_WINDOW`], the address is refused for [`REFUSE_FOR`] (TCP connections closed at
//! accept, datagrams dropped), so one client sending the bytes that trigger a bug cannot keep
//! failing a backend for everyone. The table is bounded ([`MAX_TRACKED`] addresses); when it is
//! full of live entries a new address is not tracked (its errors still count for the backend).
//!
//! The check on every connection and datagram is one atomic load while no address is refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Plugin errors from one address, within [`ERROR_WINDOW`], after which it is refused.
pub const MAX_CLIENT_ERRORS: u32 = 4;
/// The window in which a client's errors add up.
pub const ERROR_WINDOW: Duration = Duration::from_secs(60);
/// How long an address is refused.
pub const REFUSE_FOR: Duration = Duration::from_secs(60);
/// Most addresses tracked at once.
pub const MAX_TRACKED: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Entry {
    errors: u32,
    since: Instant,
    refused_until: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.refused_until
            .map_or(now < self.since + ERROR_WINDOW, |until| now < until)
    }
}

static TABLE: LazyLock<Mutex<HashMap<IpAddr, Entry>>> = LazyLock::new(Default::default);
/// Entries refusing now (or until the next look finds them expired).
static REFUSING: AtomicUsize = AtomicUsize::new(0);

fn table() -> MutexGuard<'static, HashMap<IpAddr, Entry>> {
    TABLE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Charges one plugin error to `ip`. Returns how long it is refused when this error made it so.
pub fn charge(ip: IpAddr, now: Instant) -> Option<Duration> {
    let ip = ip.to_canonical();
    let mut t = table();
    if !t.contains_key(&ip) && t.len() >= MAX_TRACKED {
        t.retain(|_, e| {
            let live = e.live(now);
            if !live && e.refused_until.is_some() {
                REFUSING.fetch_sub(1, Ordering::Relaxed);
            }
            live
        });
        if t.len() >= MAX_TRACKED {
            return None;
        }
    }
    let e = t.entry(ip).or_insert(Entry {
        errors: 0,
        since: now,
        refused_until: None,
    });
    if e.refused_until.is_some() {
        return None;
    }
    if now >= e.since + ERROR_WINDOW {
        (e.errors, e.since) = (0, now);
    }
    e.errors += 1;
    if e.errors < MAX_CLIENT_ERRORS {
        return None;
    }
    e.refused_until = Some(now + REFUSE_FOR);
    REFUSING.fetch_add(1, Ordering::Relaxed);
    Some(REFUSE_FOR)
}

/// Whether `ip` is refused now for the plugin errors it caused.
pub fn is_refused(ip: IpAddr) -> bool {
    if REFUSING.load(Ordering::Relaxed) == 0 {
        return false;
    }
    let ip = ip.to_canonical();
    let now = Instant::now();
    let mut t = table();
    let Some(until) = t.get(&ip).and_then(|e| e.refused_until) else {
        return false;
    };
    if now < until {
        return true;
    }
    t.remove(&ip);
    REFUSING.fetch_sub(1, Ordering::Relaxed);
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_its_errors_and_only_for_a_while() {
        let ip: IpAddr = "192.0.2.44".parse().unwrap();
        let other: IpAddr = "192.0.2.45".parse().unwrap();
        let now = Instant::now();
        for _ in 1..MAX_CLIENT_ERRORS {
            assert_eq!(charge(ip, now), None);
        }
        assert!(!is_refused(ip));
        assert_eq!(charge(ip, now), Some(REFUSE_FOR));
        assert!(is_refused(ip));
        // The IPv4-mapped form is the same client; another address is not refused.
        let mapped = match ip {
            IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
            v6 => v6,
        };
        assert!(is_refused(mapped));
        assert!(!is_refused(other));
        // Errors spread wider than the window never add up to a refusal.
        for i in 0..10u64 {
            assert_eq!(charge(other, now + ERROR_WINDOW * (i as u32 + 1)), None);
        }
    }
}
