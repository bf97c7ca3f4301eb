//! Router tests for tiers × strategies × health, property matchers and failover ranking, on
//! registries of built-in `pass` backends built from real configuration text.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Decision, Router};
use crate::config::Strategy;
use crate::routing::registry::Registry;

/// `(tier, extra TOML lines)` per backend, all `pass`, each with a health table so they can be
/// marked down.
fn registry(backends: &[(&str, &str)]) -> Arc<Registry> {
    let mut text = String::from("[[listener]]\naddress = \"127.0.0.1:1\"\n");
    for (i, (tier, extra)) in backends.iter().enumerate() {
        text += &format!(
            "[[backend]]\nname = \"b{i}\"\nprotocol = \"pass\"\ntarget = \"127.0.0.1:2\"\npriority = \"{tier}\"\n{extra}\n[backend.health]\nfailure_threshold = 1\nrecovery_threshold = 1\n"
        );
    }
    let config = crate::config::parse(Path::new("/t.toml"), &text).expect("config");
    let (reg, issues) = Registry::build(&config, Vec::new(), None);
    assert!(issues.is_empty());
    for b in &reg.backends {
        b.stats.health.configure(b.name(), b.config.health.clone());
    }
    Arc::new(reg)
}

fn tiers(t: &[&str]) -> Arc<Registry> {
    registry(&t.iter().map(|t| (*t, "")).collect::<Vec<_>>())
}

fn down(reg: &Registry, i: usize) {
    let b = &reg.backends[i];
    b.stats.health.record_check(b.name(), Err("test: refused".into()));
    assert!(!b.stats.health.is_up());
}

fn up(reg: &Registry, i: usize) {
    let b = &reg.backends[i];
    b.stats.health.record_check(b.name(), Ok(()));
    assert!(b.stats.health.is_up());
}

fn route(reg: &Arc<Registry>, strategy: Strategy) -> (Router, Option<usize>) {
    let addr: SocketAddr = "127.0.0.1:1".parse().expect("addr");
    let mut r = Router::new(Arc::clone(reg), strategy, Arc::from("l"), addr, addr);
    let d = r.step(b"x", false);
    (r, index(d))
}

fn index(d: Decision) -> Option<usize> {
    match d {
        Decision::Route { index, .. } => Some(index),
        Decision::Wait | Decision::NoMatch => None,
    }
}

/// What the connection does after a failed connect: fail over, then step again.
fn next(r: &mut Router) -> Option<usize> {
    r.fail_over();
    index(r.step(b"x", false))
}

const BOTH: [Strategy; 2] = [Strategy::FirstAvailable, Strategy::LeastRequests];

#[test]
fn an_unhealthy_vip_leaves_routing_and_normal_serves_under_both_strategies() {
    for s in BOTH {
        let reg = tiers(&["normal", "vip", "standby"]);
        assert_eq!(route(&reg, s).1, Some(1), "{s:?}");
        down(&reg, 1);
        assert_eq!(route(&reg, s).1, Some(0), "{s:?}");
        down(&reg, 0);
        assert_eq!(
            route(&reg, s).1,
            Some(2),
            "{s:?}: standby when no vip or normal is healthy"
        );
        down(&reg, 2);
        assert_eq!(route(&reg, s).1, None, "{s:?}: nothing healthy");
        up(&reg, 1);
        assert_eq!(route(&reg, s).1, Some(1), "{s:?}: the vip is back");
    }
}

#[test]
fn least_requests_counts_live_connections_not_routed_ones() {
    let reg = tiers(&["normal", "normal", "normal"]);
    let (live, routed) = ([3, 1, 2], [0, 1000, 5]);
    for (i, b) in reg.backends.iter().enumerate() {
        b.stats.live.store(live[i], Ordering::Relaxed);
        b.stats.routed.store(routed[i], Ordering::Relaxed);
    }
    assert_eq!(route(&reg, Strategy::LeastRequests).1, Some(1));
    assert_eq!(route(&reg, Strategy::FirstAvailable).1, Some(0));
    // The fewest-live backend unhealthy: the next fewest.
    down(&reg, 1);
    assert_eq!(route(&reg, Strategy::LeastRequests).1, Some(2));
}

#[test]
fn fail_over_follows_the_ranking_same_tier_first_then_lower_tiers() {
    let reg = tiers(&["standby", "normal", "normal", "normal"]);
    reg.backends[1].stats.live.store(9, Ordering::Relaxed);
    reg.backends[2].stats.live.store(5, Ordering::Relaxed);
    reg.backends[3].stats.live.store(1, Ordering::Relaxed);
    let (mut r, first) = route(&reg, Strategy::LeastRequests);
    assert_eq!(first, Some(3));
    assert_eq!(next(&mut r), Some(2));
    assert_eq!(next(&mut r), Some(1));
    assert_eq!(next(&mut r), Some(0), "then the standby tier");
    assert_eq!(next(&mut r), None, "then nothing");

    let (mut r, first) = route(&reg, Strategy::FirstAvailable);
    assert_eq!(first, Some(1));
    // A backend found unhealthy meanwhile is skipped.
    down(&reg, 2);
    assert_eq!(next(&mut r), Some(3));
}

#[test]
fn property_matchers_apply_to_built_in_backends_with_no_properties() {
    let reg = registry(&[
        ("vip", "[backend.match]\nproperty = { \"tls.sni\" = \"^a\\\\.\" }"),
        (
            "normal",
            "[backend.match]\nproperty = { \"tls.sni\" = \"!^internal\\\\.\" }",
        ),
    ]);
    // `pass` reports no properties: an include fails, an exclude passes.
    assert_eq!(route(&reg, Strategy::FirstAvailable).1, Some(1));
}

/// Routes `n` connections (one router each, sharing the listener's turns) from `peer`.
fn spread(reg: &Arc<Registry>, strategy: Strategy, peer: &str, n: usize) -> Vec<Option<usize>> {
    let turns = Arc::default();
    let addr: SocketAddr = peer.parse().expect("addr");
    (0..n)
        .map(|_| {
            let mut r =
                Router::new(Arc::clone(reg), strategy, Arc::from("l"), addr, addr).with_turns(Arc::clone(&turns));
            index(r.step(b"x", false))
        })
        .collect()
}

const BALANCING: [Strategy; 4] = [
    Strategy::RoundRobin,
    Strategy::Weighted,
    Strategy::Random,
    Strategy::SourceHash,
];

#[test]
fn balancing_strategies_stay_in_the_best_healthy_tier() {
    let reg = tiers(&["standby", "normal", "normal", "vip"]);
    for s in BALANCING {
        // The vip serves alone while it is up.
        assert!(
            spread(&reg, s, "127.0.0.1:9", 20).iter().all(|&i| i == Some(3)),
            "{s:?}"
        );
    }
    down(&reg, 3);
    for s in BALANCING {
        let got = spread(&reg, s, "127.0.0.1:9", 40);
        assert!(got.iter().all(|&i| i == Some(1) || i == Some(2)), "{s:?}: {got:?}");
    }
    assert_eq!(
        spread(&reg, Strategy::RoundRobin, "127.0.0.1:9", 4),
        [Some(1), Some(2), Some(1), Some(2)]
    );
    down(&reg, 1);
    down(&reg, 2);
    for s in BALANCING {
        assert!(spread(&reg, s, "127.0.0.1:9", 5).iter().all(|&i| i == Some(0)), "{s:?}");
    }
}

#[test]
fn weighted_reads_backend_weights_and_source_hash_skips_an_unhealthy_backend() {
    let reg = registry(&[("normal", "weight = 3"), ("normal", ""), ("normal", "")]);
    let got = spread(&reg, Strategy::Weighted, "127.0.0.1:9", 10);
    let count = |i| got.iter().filter(|&&g| g == Some(i)).count();
    assert_eq!((count(0), count(1), count(2)), (6, 2, 2), "{got:?}");

    let reg = tiers(&["normal", "normal", "normal"]);
    let peers: Vec<String> = (1..=60).map(|i| format!("10.0.0.{i}:5000")).collect();
    let before: Vec<Option<usize>> = peers
        .iter()
        .map(|p| spread(&reg, Strategy::SourceHash, p, 1)[0])
        .collect();
    down(&reg, 1);
    for (p, was) in peers.iter().zip(&before) {
        let now = spread(&reg, Strategy::SourceHash, p, 3);
        assert!(now.iter().all(|n| n == &now[0]), "{p}: {now:?}");
        if *was != Some(1) {
            assert_eq!(now[0], *was, "{p} moved off a backend that is still up");
        } else {
            assert_ne!(now[0], Some(1));
        }
    }
    up(&reg, 1);
    let after: Vec<Option<usize>> = peers
        .iter()
        .map(|p| spread(&reg, Strategy::SourceHash, p, 1)[0])
        .collect();
    assert_eq!(before, after, "clients did not return when the backend came back");
}
