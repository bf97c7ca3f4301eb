//! Match rates over seeded random inputs and over captures of other protocols.

use pmmux_plugin_testkit::Rng;

use crate::captures::Capture;
use crate::detectors::Verdict;

/// Random inputs per transport and detector: `PMMUX_NOISE_SAMPLES`, or 100,000.
pub fn samples() -> u64 {
    std::env::var("PMMUX_NOISE_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

/// How many of `total` inputs matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Inputs answered `Match`.
    pub matched: u64,
    /// Inputs tried.
    pub total: u64,
}

impl Rate {
    /// Whether fewer than one input in `one_in` matched.
    pub fn below(&self, one_in: u64) -> bool {
        self.matched.saturating_mul(one_in) < self.total
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = self.matched as f64 / self.total.max(1) as f64;
        write!(f, "{}/{} ({rate:.2e})", self.matched, self.total)
    }
}

/// `len` random bytes, eight at a time.
fn fill(rng: &mut Rng, buf: &mut Vec<u8>, len: usize) {
    buf.clear();
    while buf.len() < len {
        buf.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    buf.truncate(len);
}

/// Runs `hook` over `n` random inputs from `seed`: half of them 0 to 64 bytes long (where
/// fixed-size messages and short headers live), half 65 to `max_len`, each length uniform.
/// Returns how many matched.
pub fn random(hook: &dyn Fn(&[u8]) -> Verdict, seed: u64, n: u64, min_len: usize, max_len: usize) -> Rate {
    let mut rng = Rng::new(seed);
    let mut buf = Vec::with_capacity(max_len);
    let mut matched = 0;
    for i in 0..n {
        let len = if i % 2 == 0 {
            min_len + rng.below(65 - min_len)
        } else {
            65 + rng.below(max_len - 64)
        };
        fill(&mut rng, &mut buf, len);
        if hook(&buf) == Verdict::Match {
            matched += 1;
        }
    }
    Rate { matched, total: n }
}

/// Random datagrams: 0 to 1,472 bytes (the most one Ethernet frame carries over IPv4).
pub fn random_datagrams(hook: &dyn Fn(&[u8]) -> Verdict, seed: u64, n: u64) -> Rate {
    random(hook, seed, n, 0, 1472)
}

/// Random TCP previews: 1 to 1,024 bytes (the host never asks about an empty preview).
pub fn random_previews(hook: &dyn Fn(&[u8]) -> Verdict, seed: u64, n: u64) -> Rate {
    random(hook, seed, n, 1, 1024)
}

/// The names of the captures of protocols other than `own` that `hook` matches.
pub fn other_captures_matched(hook: &dyn Fn(&[u8]) -> Verdict, captures: &[Capture], own: &[&str]) -> Vec<String> {
    captures
        .iter()
        .filter(|c| !own.contains(&c.protocol.as_str()))
        .filter(|c| hook(&c.bytes) == Verdict::Match)
        .map(|c| c.name.clone())
        .collect()
}

/// How many captures of protocols other than `own` were tried.
pub fn other_captures(captures: &[Capture], own: &[&str]) -> usize {
    captures.iter().filter(|c| !own.contains(&c.protocol.as_str())).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_cover_both_ranges_and_rates_count() {
        let lens = std::cell::RefCell::new(Vec::new());
        let hook = |b: &[u8]| {
            if b.first() == Some(&0) {
                Verdict::Match
            } else {
                Verdict::NoMatch
            }
        };
        let rate = random_datagrams(&hook, 1, 100_000);
        // One byte in 256 is zero; the empty datagrams never match.
        assert!((300..500).contains(&rate.matched), "{rate}");
        assert!(!rate.below(1000));
        assert!(Rate { matched: 0, total: 10 }.below(10_000));
        random(
            &|b: &[u8]| {
                lens.borrow_mut().push(b.len());
                Verdict::NoMatch
            },
            2,
            1000,
            0,
            1472,
        );
        let lens = lens.into_inner();
        assert!(lens.contains(&0) && lens.iter().any(|&l| l > 1000));
        assert!(lens.iter().all(|&l| l <= 1472));
    }
}
