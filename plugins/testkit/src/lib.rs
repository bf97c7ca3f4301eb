//! Test scaffolding shared by the plugin crates' tests: a seeded PRNG, byte mutation, backend
//! specs and connection facts for calling the hooks directly, and the prefix and fuzz checks every
//! detector should pass. A dev-dependency only: it exports no plugin.

use std::net::SocketAddr;

use pmmux_plugin_api::{BackendSpec, ConnInfo, Detection};

/// xorshift64*: deterministic and dependency-free, so a failing round replays from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0, which would stay 0 for ever, is taken as 1).
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// One random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }
}

/// `input` with one random edit: a flipped byte, an inserted byte, a deleted byte, or a truncation.
pub fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    match rng.below(4) {
        0 if !out.is_empty() => {
            let at = rng.below(out.len());
            out[at] ^= 1 << rng.below(8);
        }
        1 => {
            let at = rng.below(out.len() + 1);
            let byte = rng.byte();
            out.insert(at, byte);
        }
        2 if !out.is_empty() => {
            let at = rng.below(out.len());
            out.remove(at);
        }
        _ => out.truncate(rng.below(out.len() + 1)),
    }
    out
}

/// The spec of a backend named `test` (priority `normal`, no target) for `protocol`, with
/// `[backend.params]` given as TOML text. It borrows both strings.
pub fn spec<'a>(protocol: &'a str, params_toml: &'a str) -> BackendSpec<'a> {
    BackendSpec::new("test", protocol, params_toml)
}

/// Connection facts for calling the `Backend` hooks directly: 127.0.0.1 (port 0) on both ends,
/// listener `test`, no properties.
pub fn conn() -> ConnInfo<'static> {
    conn_port(0)
}

/// Like [`conn`], with 127.0.0.1:`port` on both ends.
pub fn conn_port(port: u16) -> ConnInfo<'static> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    ConnInfo::new(addr, addr, "test", &[])
}

/// Whether two verdicts are of the same kind (`Match` properties aside).
pub fn same_kind(a: &Detection, b: &Detection) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// Every strict prefix of `input` gives `NeedMore`, or a verdict of the same kind as the whole.
pub fn assert_prefixes_consistent(detect: impl Fn(&[u8]) -> Detection, input: &[u8]) {
    let full = detect(input);
    for n in 1..input.len() {
        let verdict = detect(&input[..n]);
        assert!(
            verdict == Detection::NeedMore || same_kind(&verdict, &full),
            "{input:02x?}: prefix {n} gives {verdict:?}, the whole {full:?}"
        );
    }
}

/// The verdict on every prefix of `input` (from 1 byte to the whole): once `Match` or `NoMatch`,
/// every longer prefix gives exactly the same verdict, properties included.
pub fn assert_verdict_stable(detect: impl Fn(&[u8]) -> Detection, input: &[u8]) {
    let mut decided: Option<Detection> = None;
    for n in 1..=input.len() {
        let verdict = detect(&input[..n]);
        if let Some(previous) = &decided {
            assert_eq!(&verdict, previous, "{input:02x?} at {n}");
        } else if verdict != Detection::NeedMore {
            decided = Some(verdict);
        }
    }
}

/// One fuzz input: random bytes, or a corpus entry mutated up to three times.
fn fuzz_input(rng: &mut Rng, corpus: &[&[u8]]) -> Vec<u8> {
    if corpus.is_empty() || rng.below(3) == 0 {
        let len = rng.below(256);
        return rng.bytes(len);
    }
    let mut input = corpus[rng.below(corpus.len())].to_vec();
    for _ in 0..=rng.below(3) {
        input = mutate(rng, &input);
    }
    input
}

/// `n` rounds from `seed` of random and mutated `corpus` inputs through a stream detector: none
/// panics, and every input's prefixes are consistent with it ([`assert_prefixes_consistent`]).
pub fn fuzz_tcp(detect: impl Fn(&[u8]) -> Detection, seed: u64, n: usize, corpus: &[&[u8]]) {
    let mut rng = Rng::new(seed);
    for _ in 0..n {
        let input = fuzz_input(&mut rng, corpus);
        if !input.is_empty() {
            assert_prefixes_consistent(&detect, &input);
        }
    }
}

/// `n` rounds from `seed` of random and mutated `corpus` datagrams through a message detector:
/// none panics, and none is answered `NeedMore` (a datagram is whole).
pub fn fuzz_udp(detect: impl Fn(&[u8]) -> Detection, seed: u64, n: usize, corpus: &[&[u8]]) {
    let mut rng = Rng::new(seed);
    for _ in 0..n {
        let input = fuzz_input(&mut rng, corpus);
        let verdict = detect(&input);
        assert_ne!(verdict, Detection::NeedMore, "datagram {input:02x?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_the_xorshift64_star_sequence() {
        let mut a = Rng::new(0x5eed);
        let mut b = Rng::new(0x5eed);
        let first: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        assert_eq!(first, (0..8).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_eq!(Rng::new(0).next_u64(), Rng::new(1).next_u64());
        assert!((0..1000).all(|_| a.below(7) < 7));
        assert_eq!(a.bytes(5).len(), 5);
    }

    #[test]
    fn mutate_edits_at_most_one_byte_or_truncates() {
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            let out = mutate(&mut rng, b"hello");
            assert!(out.len() <= 6);
        }
        assert!(mutate(&mut rng, b"").len() <= 1);
    }

    fn prefix_detector(input: &[u8]) -> Detection {
        let n = input.len().min(3);
        if input[..n] != b"abc"[..n] {
            Detection::NoMatch
        } else if n < 3 {
            Detection::NeedMore
        } else {
            Detection::Match(Vec::new())
        }
    }

    #[test]
    fn checks_pass_on_a_consistent_detector() {
        assert_prefixes_consistent(prefix_detector, b"abcdef");
        assert_verdict_stable(prefix_detector, b"abx");
        fuzz_tcp(prefix_detector, 1, 500, &[b"abc", b"abd"]);
        fuzz_udp(
            |d| match d.first() {
                Some(b'a') => Detection::Match(Vec::new()),
                _ => Detection::NoMatch,
            },
            2,
            500,
            &[b"abc"],
        );
        let s = spec("x", "a = 1");
        assert_eq!(s.protocol(), "x");
        assert_eq!(conn_port(80).local_addr().port(), 80);
    }

    #[test]
    #[should_panic(expected = "prefix")]
    fn an_inconsistent_detector_fails() {
        assert_prefixes_consistent(
            |d| {
                if d.len() < 2 {
                    Detection::NoMatch
                } else {
                    Detection::NeedMore
                }
            },
            b"abc",
        );
    }
}
