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

/// Overwrites up to two random bytes of `input` with random values, then cuts it at a random length
/// (possibly to nothing): a capture as a broken or short client would send it.
pub fn corrupt_and_truncate(rng: &mut Rng, mut input: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.below(3) {
        if !input.is_empty() {
            let at = rng.below(input.len());
            input[at] = rng.next_u64() as u8;
        }
    }
    input.truncate(rng.below(input.len() + 1));
    input
}

/// Round `round` of a fuzz loop over `seeds` (captures, none empty), never empty: by `round % 3`,
/// 1 to `max_random` random bytes, a prefix of a seed, or a seed with 1 to 4 bytes overwritten.
pub fn random_prefix_or_mutant(rng: &mut Rng, round: usize, seeds: &[&[u8]], max_random: usize) -> Vec<u8> {
    match round % 3 {
        0 => {
            let len = rng.below(max_random) + 1;
            rng.bytes(len)
        }
        1 => {
            let seed = seeds[rng.below(seeds.len())];
            seed[..rng.below(seed.len()) + 1].to_vec()
        }
        _ => {
            let mut m = seeds[rng.below(seeds.len())].to_vec();
            for _ in 0..rng.below(4) + 1 {
                let at = rng.below(m.len());
                m[at] = rng.byte();
            }
            m
        }
    }
}

/// `seed` with 1 to `max_edits` random edits, each one of: a random byte, a flipped bit, one of
/// `boundary` (length and type values where parsers branch), a cut, a deletion or an insertion.
pub fn mutate_edits(rng: &mut Rng, seed: &[u8], max_edits: usize, boundary: &[u8]) -> Vec<u8> {
    let mut input = seed.to_vec();
    for _ in 0..1 + rng.below(max_edits) {
        if input.is_empty() {
            break;
        }
        let at = rng.below(input.len());
        match rng.below(6) {
            0 => input[at] = rng.byte(),
            1 => input[at] ^= 1 << rng.below(8),
            2 => input[at] = boundary[rng.below(boundary.len())],
            3 => input.truncate(at),
            4 => {
                input.remove(at);
            }
            _ => input.insert(at, rng.byte()),
        }
    }
    input
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

/// The properties of a `Match` as `(key, value)` pairs, in order; panics (fails the test) on any
/// other verdict.
pub fn props(detection: Detection) -> Vec<(String, String)> {
    match detection {
        Detection::Match(props) => props
            .iter()
            .map(|p| (p.key().to_owned(), p.value().to_owned()))
            .collect(),
        other => panic!("expected a match, got {other:?}"),
    }
}

/// The value of the one property a `Match` carries, which must be `key`; panics (fails the test)
/// on any other verdict or property set.
pub fn only_property(detection: Detection, key: &str) -> String {
    match props(detection).as_slice() {
        [(k, v)] if k == key => v.clone(),
        other => panic!("expected a match with exactly `{key}`, got {other:?}"),
    }
}

/// Expected properties, written as `&[("tls.sni", "a.example")]`, in the form [`props`] returns.
pub fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// A constructor of a protocol without params accepts an empty table and refuses `params_toml`
/// naming the unknown field.
pub fn assert_no_params<T, E: std::fmt::Debug>(
    new: impl Fn(&BackendSpec<'_>) -> Result<T, E>,
    protocol: &str,
    params_toml: &str,
) {
    assert!(new(&spec(protocol, "")).is_ok(), "{protocol}: no params refused");
    let err = match new(&spec(protocol, params_toml)) {
        Ok(_) => panic!("{protocol}: accepted {params_toml:?}"),
        Err(e) => format!("{e:?}"),
    };
    assert!(err.contains("unknown field"), "{protocol}: {err}");
}

/// Every strict prefix of `input` (1 byte up to all but the last) gives `NeedMore`: the detector
/// never decides before the whole message is in. `what` names the input in the failure.
pub fn assert_needs_more_until_whole(detect: impl Fn(&[u8]) -> Detection, input: &[u8], what: &str) {
    for n in 1..input.len() {
        assert_eq!(detect(&input[..n]), Detection::NeedMore, "{what}: prefix {n}");
    }
}

/// What other protocols' clients send first, by protocol name, for checking that a detector refuses
/// them: an HTTP request, a TLS ClientHello's start, an SSH banner, SOCKS4 and SOCKS5 requests, an
/// RDP connection request's start and a syslog line.
pub const OPENINGS: &[(&str, &[u8])] = &[
    ("http", b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
    (
        "tls",
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03],
    ),
    ("ssh", b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"),
    ("socks4", &[4, 1, 0, 80, 127, 0, 0, 1, 0]),
    ("socks5", &[5, 2, 0, 1]),
    ("rdp", &[3, 0, 0, 19, 14, 0xe0, 0, 0, 0, 0, 0]),
    ("syslog", b"<13>1 - - - - - - hi\n"),
];

/// Every one of [`OPENINGS`] but protocol `own`'s gives `NoMatch` from its first byte on.
pub fn assert_other_openings_refused_at_once(detect: impl Fn(&[u8]) -> Detection, own: &str) {
    for (name, input) in OPENINGS.iter().filter(|(name, _)| *name != own) {
        assert_eq!(detect(&input[..1]), Detection::NoMatch, "{name}: first byte");
        assert_eq!(detect(input), Detection::NoMatch, "{name}");
    }
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
        assert_needs_more_until_whole(prefix_detector, b"abc", "abc");
        assert_eq!(props(prefix_detector(b"abc")), pairs(&[]));
        assert_no_params(|s: &BackendSpec<'_>| s.no_params(), "x", "a = 1");
        assert_other_openings_refused_at_once(
            |d| {
                if d[0] == b'a' {
                    Detection::NeedMore
                } else {
                    Detection::NoMatch
                }
            },
            "x",
        );
        let mut rng = Rng::new(3);
        assert!((0..100).all(|_| mutate_edits(&mut rng, b"abcd", 3, &[0, 0xff]).len() <= 7));
        assert!((0..30).all(|round| !random_prefix_or_mutant(&mut rng, round, &[b"ab"], 4).is_empty()));
        assert!((0..100).all(|_| corrupt_and_truncate(&mut rng, b"abcd".to_vec()).len() <= 4));
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
