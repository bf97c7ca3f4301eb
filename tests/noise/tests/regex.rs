//! `regex`: as noisy as its patterns; here one for an SSH banner, the kind of protocol it is for.
//! The SSH captures are its own.
use pmmux_noise::check::STRICT;
use pmmux_noise::{build, noise_tests, Detector};

fn detector() -> Detector {
    let mut detector = build("regex", r"patterns = '^SSH-2\.0-'", pmmux_regex::RegexProbe::new);
    detector.protocols.push("ssh");
    detector
}

noise_tests!(detector, STRICT);
