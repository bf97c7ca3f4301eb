//! The assertion each plugin's noise test makes, and the line it prints for the record.

use crate::captures;
use crate::detectors::Detector;
use crate::rates::{self, Rate};

/// The seed of the random inputs: fixed, so a failure replays.
pub const SEED: u64 = 0x006e_6f69_7365;

/// Which hook is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `detect` over random TCP previews.
    Tcp,
    /// `can_handle_message` over random datagrams.
    Udp,
}

/// What a detector may do with random bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Match fewer than one input in this many.
    Below(u64),
    /// A catch-all by design (`anyprot`, `echo`): match at least 99% of the inputs.
    CatchAll,
}

/// The expectation for one hook.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The bound on random inputs.
    pub random: Bound,
    /// The captures of other protocols it matches, exactly (each with a reason in the test); for a
    /// [`Bound::CatchAll`], every capture.
    pub other_captures: &'a [&'a str],
}

/// The bound every real detector is held to: fewer than 1 random input in 10,000 matches.
pub const STRICT: Bound = Bound::Below(10_000);

/// Measures `detector`'s `transport` hook over [`rates::samples`] random inputs and every capture
/// of another protocol, prints one `noise` line, and asserts `expect`.
pub fn assert_noise(detector: &Detector, transport: Transport, expect: Expect<'_>) -> Rate {
    let (hook, rate, kind) = match transport {
        Transport::Tcp => {
            let rate = rates::random_previews(&detector.tcp, SEED, rates::samples());
            (&detector.tcp, rate, "tcp")
        }
        Transport::Udp => {
            let rate = rates::random_datagrams(&detector.udp, SEED, rates::samples());
            (&detector.udp, rate, "udp")
        }
    };
    let all = captures::load();
    let tried = rates::other_captures(&all, &detector.protocols);
    let matched = rates::other_captures_matched(hook, &all, &detector.protocols);
    let listed = if matched.len() > 8 {
        "(all but a few)".to_owned()
    } else {
        format!("{matched:?}")
    };
    println!(
        "noise {} {kind}: random {rate}; other protocols' captures {}/{tried} matched {listed}",
        detector.name,
        matched.len()
    );
    match expect.random {
        Bound::Below(one_in) => assert!(
            rate.below(one_in),
            "{} {kind}: {rate} random inputs matched, the bound is 1 in {one_in}",
            detector.name
        ),
        Bound::CatchAll => {
            assert!(
                rate.matched * 100 >= rate.total * 99,
                "{} {kind}: a catch-all matched only {rate}",
                detector.name
            );
            assert_eq!(
                matched.len(),
                tried,
                "{} {kind}: a catch-all takes every capture",
                detector.name
            );
            return rate;
        }
    }
    assert_eq!(
        matched, expect.other_captures,
        "{} {kind}: other protocols' captures matched",
        detector.name
    );
    rate
}

/// A plugin's two noise tests, `tcp_noise` and `udp_noise`: `noise_tests!(detector, STRICT);`
/// holds both hooks of `detector()` to the bound on random inputs and to matching no other
/// protocol's capture (a [`Bound::CatchAll`] to matching all of them).
#[macro_export]
macro_rules! noise_tests {
    ($detector:expr, $random:expr) => {
        #[test]
        fn tcp_noise() {
            $crate::check::assert_noise_of(&$detector(), $crate::check::Transport::Tcp, $random);
        }

        #[test]
        fn udp_noise() {
            $crate::check::assert_noise_of(&$detector(), $crate::check::Transport::Udp, $random);
        }
    };
}

/// [`assert_noise`] with no other protocol's capture allowed (what [`noise_tests!`] runs).
pub fn assert_noise_of(detector: &Detector, transport: Transport, random: Bound) -> Rate {
    assert_noise(
        detector,
        transport,
        Expect {
            random,
            other_captures: &[],
        },
    )
}
