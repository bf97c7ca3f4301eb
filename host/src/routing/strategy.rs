//! The balancing strategies that pick one backend among those that matched in the best tier:
//! `round-robin`, `weighted`, `random` and `source-hash`, as pure functions of the candidates'
//! weights (and names), a turn counter and the client address. No I/O, no locks.
//!
//! `source-hash` is rendezvous (highest-random-weight) hashing: each candidate scores
//! `hash(client IP, backend name)` and the highest score wins, so a client keeps its backend while
//! the candidate set is stable, and when one backend goes only the clients it had move (about 1/n).

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;

/// One backend in the running, as a strategy sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate<'a> {
    /// Its name (the stable key `source-hash` hashes, so choices survive reloads and reordering).
    pub name: &'a str,
    /// Its `weight` (at least 1).
    pub weight: u32,
}

/// `round-robin`: the candidates in turn, ignoring weights.
pub(crate) fn round_robin(candidates: &[Candidate<'_>], turn: u64) -> usize {
    (turn % candidates.len().max(1) as u64) as usize
}

/// Most a backend's `weight` may be (as HAProxy's 256): keeps one `weighted` pick cheap.
pub(crate) const MAX_WEIGHT: u32 = 256;

/// `weighted`: over every `sum(weights)` turns, each candidate is picked exactly `weight` times,
/// interleaved rather than in runs (A B A C A B A for 4:2:1). Stateless, so it needs no per-backend
/// bookkeeping across reloads: the cycle's slots are candidate i's `k` in `0..w_i` at position
/// `(2k+1) / 2w_i` of the cycle, merged in position order (ties to the earlier candidate), and
/// turn `t` takes slot `t mod total`.
pub(crate) fn weighted(candidates: &[Candidate<'_>], turn: u64) -> usize {
    let mut slots: Vec<(u64, u64, usize)> = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        let w = u64::from(c.weight.clamp(1, MAX_WEIGHT));
        slots.extend((0..w).map(|k| (2 * k + 1, 2 * w, i)));
    }
    if slots.is_empty() {
        return 0;
    }
    // a/b before c/d iff a*d < c*b (all small: no overflow).
    slots.sort_by(|x, y| (x.0 * y.1).cmp(&(y.0 * x.1)).then(x.2.cmp(&y.2)));
    slots[(turn % slots.len() as u64) as usize].2
}

/// `random`: a candidate drawn with probability `weight / sum(weights)`, from the uniform `draw`.
pub(crate) fn random(candidates: &[Candidate<'_>], draw: u64) -> usize {
    let total: u64 = candidates.iter().map(|c| u64::from(c.weight.max(1))).sum();
    let mut point = draw % total.max(1);
    for (i, c) in candidates.iter().enumerate() {
        let w = u64::from(c.weight.max(1));
        if point < w {
            return i;
        }
        point -= w;
    }
    0
}

/// A fresh uniform 64-bit draw from the standard library's randomly keyed hasher (a load balancer
/// needs spread, not secrecy; this avoids a dependency).
pub(crate) fn draw(turn: u64) -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(turn);
    h.finish()
}

/// `source-hash`: weighted rendezvous hashing of the client's IP address (not its port: one
/// client's connections all go to one backend).
pub(crate) fn source_hash(candidates: &[Candidate<'_>], client: IpAddr) -> usize {
    let ip: Vec<u8> = match client.to_canonical() {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let mut best = (f64::NEG_INFINITY, 0);
    for (i, c) in candidates.iter().enumerate() {
        let h = mix(fnv1a(fnv1a(FNV_OFFSET, &ip), c.name.as_bytes()));
        // A uniform in (0, 1) from the top 53 bits; score = -w / ln(u) (Schindelhauer's weighted
        // rendezvous): with equal weights, the largest hash wins.
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = -f64::from(c.weight.max(1)) / u.ln();
        if score > best.0 {
            best = (score, i);
        }
    }
    best.1
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a: stable across processes, platforms and Rust versions (unlike `DefaultHasher`), so a
/// client keeps its backend across restarts.
fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // A separator, so ("ab", "c") and ("a", "bc") differ.
    h ^= 0xff;
    h.wrapping_mul(0x0100_0000_01b3)
}

/// The splitmix64 finaliser: spreads FNV's weak low bits over the whole word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
