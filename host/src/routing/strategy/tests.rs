//! Distributions of the balancing strategies over many turns, draws and client addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

fn cands<'a>(names: &'a [&'a str], weights: &[u32]) -> Vec<Candidate<'a>> {
    names
        .iter()
        .zip(weights)
        .map(|(name, &weight)| Candidate { name, weight })
        .collect()
}

fn counts(n: usize, picks: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut c = vec![0; n];
    for p in picks {
        c[p] += 1;
    }
    c
}

fn clients(n: u32) -> impl Iterator<Item = IpAddr> {
    (0..n).map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i * 7919)))
}

#[test]
fn round_robin_takes_each_in_turn() {
    let c = cands(&["a", "b", "c"], &[5, 1, 1]);
    let picks: Vec<usize> = (0..7).map(|t| round_robin(&c, t)).collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0], "weights are ignored by round-robin");
    assert_eq!(counts(3, (0..3000).map(|t| round_robin(&c, t))), [1000; 3]);
}

#[test]
fn weighted_gives_each_its_weight_per_cycle_interleaved() {
    let c = cands(&["a", "b", "c"], &[4, 2, 1]);
    let cycle: Vec<usize> = (0..7).map(|t| weighted(&c, t)).collect();
    assert_eq!(counts(3, cycle.iter().copied()), [4, 2, 1]);
    // Interleaved: the heaviest never runs more than twice in a row within a cycle.
    assert!(
        !cycle.windows(3).any(|w| w.iter().all(|&p| p == 0)),
        "{cycle:?} runs one backend three times"
    );
    assert_eq!(counts(3, (0..7000).map(|t| weighted(&c, t))), [4000, 2000, 1000]);
    // Default weights: plain round robin shares.
    let even = cands(&["a", "b"], &[1, 1]);
    assert_eq!(counts(2, (0..10).map(|t| weighted(&even, t))), [5, 5]);
    // The biggest weight is cheap enough and exact.
    let big = cands(&["a", "b"], &[MAX_WEIGHT, 1]);
    let n = u64::from(MAX_WEIGHT) + 1;
    assert_eq!(counts(2, (0..n).map(|t| weighted(&big, t))), [MAX_WEIGHT as usize, 1]);
}

#[test]
fn random_follows_the_weights_within_a_few_percent() {
    let c = cands(&["a", "b", "c"], &[1, 1, 2]);
    let n = 40_000;
    let got = counts(3, (0..n).map(|t| random(&c, draw(t))));
    for (i, expect) in [0.25, 0.25, 0.5].iter().enumerate() {
        let share = got[i] as f64 / n as f64;
        assert!(
            (share - expect).abs() < 0.02,
            "candidate {i}: share {share}, want {expect} ({got:?})"
        );
    }
    // Draws are not a counter in disguise: consecutive turns do not alternate.
    let seq: Vec<usize> = (0..64).map(|t| random(&cands(&["a", "b"], &[1, 1]), draw(t))).collect();
    assert!(seq.windows(2).any(|w| w[0] == w[1]), "{seq:?} strictly alternates");
}

#[test]
fn source_hash_is_stable_and_spreads_evenly() {
    let names = ["a", "b", "c", "d"];
    let c = cands(&names, &[1; 4]);
    let n = 20_000;
    let got = counts(4, clients(n).map(|ip| source_hash(&c, ip)));
    for (i, g) in got.iter().enumerate() {
        let share = *g as f64 / f64::from(n);
        assert!((share - 0.25).abs() < 0.02, "backend {i}: share {share} ({got:?})");
    }
    // Same client, same backend, whatever the candidates' order.
    let reversed: Vec<Candidate<'_>> = c.iter().rev().copied().collect();
    for ip in clients(500) {
        assert_eq!(source_hash(&c, ip), source_hash(&c, ip));
        assert_eq!(
            names[source_hash(&c, ip)],
            names[3 - source_hash(&reversed, ip)],
            "{ip}: order changed the choice"
        );
    }
    // IPv4-mapped IPv6 is the same client as its IPv4 address.
    let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
    assert_eq!(source_hash(&c, v4), source_hash(&c, mapped));
    let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    assert!(source_hash(&c, v6) < 4);
}

#[test]
fn source_hash_moves_only_the_clients_of_the_backend_that_goes() {
    let all = ["a", "b", "c", "d", "e"];
    let c = cands(&all, &[1; 5]);
    let without_c: Vec<Candidate<'_>> = c.iter().copied().filter(|x| x.name != "c").collect();
    let n = 20_000;
    let mut moved = 0;
    for ip in clients(n) {
        let before = all[source_hash(&c, ip)];
        let after = without_c[source_hash(&without_c, ip)].name;
        if before != "c" {
            assert_eq!(before, after, "{ip} moved off a backend that stayed");
        } else {
            moved += 1;
        }
    }
    let share = f64::from(moved) / f64::from(n);
    assert!((share - 0.2).abs() < 0.02, "{share} of clients moved; about 1/5 should");
    // And when it comes back, they return to it (and nobody else moves).
    for ip in clients(2000) {
        let back = all[source_hash(&c, ip)];
        let away = without_c[source_hash(&without_c, ip)].name;
        assert!(back == away || back == "c");
    }
}

#[test]
fn source_hash_honours_weights() {
    let c = cands(&["a", "b"], &[3, 1]);
    let n = 20_000;
    let got = counts(2, clients(n).map(|ip| source_hash(&c, ip)));
    let share = got[0] as f64 / f64::from(n);
    assert!((share - 0.75).abs() < 0.02, "weight 3 of 4 got {share} ({got:?})");
}
