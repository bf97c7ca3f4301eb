use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

fn listener(global: GlobalLimitsConfig, own: ListenerLimitsConfig) -> Arc<ListenerLimits> {
    Arc::new(ListenerLimits::new(Arc::new(Limits::new(&global)), &own))
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

#[test]
fn slots_without_a_maximum_only_count() {
    let s = Slots::default();
    for _ in 0..1000 {
        assert!(s.try_acquire());
    }
    assert_eq!(s.count(), 1000);
    assert!(!s.release(), "no maximum: nobody waits");
    assert_eq!(s.count(), 999);
}

#[test]
fn slots_stop_at_the_maximum_and_say_when_a_full_one_frees() {
    let s = Slots::default();
    s.set_max(Some(2));
    assert!(s.try_acquire() && s.try_acquire());
    assert!(!s.try_acquire());
    assert_eq!(s.count(), 2);
    assert!(s.release(), "was full");
    assert!(s.try_acquire());
    s.set_max(Some(1));
    assert!(!s.try_acquire(), "lowered below the count: nothing new until it drains");
    assert!(s.release());
    assert!(s.release(), "still at or past the new maximum");
    assert_eq!(s.count(), 0);
}

#[test]
fn per_ip_table_limits_each_address_and_forgets_it_at_zero() {
    let t = IpTable::default();
    assert_eq!(t.try_acquire(ip(1)), IpAdmission::Untracked, "no limit: no table");
    assert!(t.is_empty());
    t.set_max(Some(2));
    assert_eq!(t.try_acquire(ip(1)), IpAdmission::Counted);
    assert_eq!(t.try_acquire(ip(1)), IpAdmission::Counted);
    assert_eq!(t.try_acquire(ip(1)), IpAdmission::Refused);
    assert_eq!(
        t.try_acquire(ip(2)),
        IpAdmission::Counted,
        "another address has its own count"
    );
    assert_eq!(t.len(), 2);
    t.release(ip(1));
    assert_eq!(t.try_acquire(ip(1)), IpAdmission::Counted);
    for _ in 0..2 {
        t.release(ip(1));
    }
    t.release(ip(2));
    assert!(t.is_empty(), "entries leave when their count reaches 0");
    t.release(ip(3));
    assert!(t.is_empty(), "releasing an unknown address changes nothing");
}

#[test]
fn per_ip_table_treats_a_v4_mapped_address_as_the_v4_one() {
    let t = IpTable::default();
    t.set_max(Some(1));
    assert_eq!(t.try_acquire(ip(7)), IpAdmission::Counted);
    let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
    assert_eq!(t.try_acquire(mapped), IpAdmission::Refused);
    t.release(mapped);
    assert!(t.is_empty());
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    assert_eq!(t.try_acquire(v6), IpAdmission::Counted);
}

#[test]
fn per_ip_table_stays_bounded() {
    let t = IpTable::default();
    t.set_max(Some(1));
    for i in 0..MAX_IP_ENTRIES as u32 {
        assert_eq!(t.try_acquire(IpAddr::V4(Ipv4Addr::from(i))), IpAdmission::Counted);
    }
    let next = IpAddr::V4(Ipv4Addr::from(MAX_IP_ENTRIES as u32));
    assert_eq!(t.try_acquire(next), IpAdmission::Refused);
    assert_eq!(t.len(), MAX_IP_ENTRIES);
    t.set_max(None);
    assert!(t.is_empty(), "removing the limit drops the table");
}

#[test]
fn log_gate_lets_one_line_per_second_and_counts_the_rest() {
    let g = LogGate::default();
    assert_eq!(g.event(5_000), Some(0));
    for ms in 5_001..5_200 {
        assert_eq!(g.event(ms), None);
    }
    assert_eq!(g.event(5_999), None);
    assert_eq!(g.event(6_000), Some(200), "the line says how many were held back");
    assert_eq!(g.event(6_500), None);
    assert_eq!(g.event(9_000), Some(1));
}

#[test]
fn log_gate_at_time_zero_still_logs() {
    let g = LogGate::default();
    assert_eq!(g.event(0), Some(0));
    assert_eq!(g.event(999), None);
    assert_eq!(g.event(1000), Some(1));
}

#[test]
fn listener_and_global_connection_limits_reserve_and_release() {
    let global = Arc::new(Limits::new(&GlobalLimitsConfig {
        max_connections: Some(3),
        max_previews: None,
    }));
    let a = Arc::new(ListenerLimits::new(
        Arc::clone(&global),
        &ListenerLimitsConfig {
            max_connections: Some(2),
            max_connections_per_ip: None,
        },
    ));
    let b = Arc::new(ListenerLimits::new(
        Arc::clone(&global),
        &ListenerLimitsConfig::default(),
    ));
    let a1 = a.reserve().unwrap();
    let a2 = a.reserve().unwrap();
    assert_eq!(a.reserve().unwrap_err(), LimitKind::Listener);
    assert_eq!(
        global.connections.count(),
        2,
        "a refused listener slot gives its global one back"
    );
    let b1 = b.reserve().unwrap();
    assert_eq!(b.reserve().unwrap_err(), LimitKind::Global);
    drop(a1);
    assert_eq!(a.connections.count(), 1);
    let b2 = b.reserve().unwrap();
    assert_eq!(global.connections.count(), 3);
    drop((a2, b1, b2));
    assert_eq!(global.connections.count(), 0);
    assert_eq!(a.connections.count() + b.connections.count(), 0);
}

#[test]
fn admission_checks_per_ip_then_previews_and_releases_everything() {
    let l = listener(
        GlobalLimitsConfig {
            max_connections: None,
            max_previews: Some(2),
        },
        ListenerLimitsConfig {
            max_connections: None,
            max_connections_per_ip: Some(1),
        },
    );
    let mut first = l.admit(l.reserve().unwrap(), ip(1)).unwrap();
    assert!(first.is_previewing());
    assert_eq!(l.admit(l.reserve().unwrap(), ip(1)).unwrap_err(), LimitKind::PerIp);
    assert_eq!(l.connections.count(), 1, "the refused connection's slot is back");
    let second = l.admit(l.reserve().unwrap(), ip(2)).unwrap();
    assert_eq!(l.admit(l.reserve().unwrap(), ip(3)).unwrap_err(), LimitKind::Previews);
    assert_eq!(l.per_ip.len(), 2, "the preview refusal gave back its per-IP count");
    first.preview_done();
    assert_eq!(l.global().previews.count(), 1);
    let third = l.admit(l.reserve().unwrap(), ip(3)).unwrap();
    drop((first, second, third));
    assert!(l.per_ip.is_empty());
    assert_eq!(l.connections.count(), 0);
    assert_eq!(l.global().previews.count(), 0);
    assert_eq!(l.global().connections.count(), 0);
}

#[test]
fn hits_are_counted_by_kind_and_logged_at_a_bounded_rate() {
    let l = listener(GlobalLimitsConfig::default(), ListenerLimitsConfig::default());
    let logged = (0..200)
        .filter(|i| l.hit(LimitKind::PerIp, 10_000 + i).is_some())
        .count();
    assert_eq!(logged, 1);
    assert_eq!(l.hits(LimitKind::PerIp), 200);
    assert_eq!(l.hits(LimitKind::Previews), 0);
    assert!(
        l.hit(LimitKind::Previews, 10_100).is_some(),
        "each kind has its own gate"
    );
}

#[test]
fn reconfiguring_keeps_open_connections_counted() {
    let l = listener(GlobalLimitsConfig::default(), ListenerLimitsConfig::default());
    let held: Vec<_> = (0..3).map(|_| l.reserve().unwrap()).collect();
    l.configure(&ListenerLimitsConfig {
        max_connections: Some(2),
        max_connections_per_ip: None,
    });
    assert_eq!(l.reserve().unwrap_err(), LimitKind::Listener);
    assert_eq!(l.room(), Err(LimitKind::Listener));
    drop(held);
    assert_eq!(l.room(), Ok(()));
    assert!(l.reserve().is_ok());
    assert_eq!(l.config().max_connections, Some(2));
}

#[tokio::test]
async fn a_waiting_accept_loop_wakes_when_a_slot_frees() {
    let l = listener(
        GlobalLimitsConfig {
            max_connections: Some(1),
            max_previews: None,
        },
        ListenerLimitsConfig::default(),
    );
    let held = l.reserve().unwrap();
    assert_eq!(l.room(), Err(LimitKind::Global));
    let waiter = {
        let l = Arc::clone(&l);
        tokio::spawn(async move {
            l.wait_for_room("t").await;
            l.wait_for_slot("t").await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "full: the loop waits");
    assert_eq!(l.hits(LimitKind::Global), 1);
    let started = Instant::now();
    drop(held);
    let slot = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "woken by the release, not the timer"
    );
    drop(slot);
    assert_eq!(l.global().connections.count(), 0);
}
