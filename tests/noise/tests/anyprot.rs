//! `anyprot`: a catch-all by design (put last, or with `priority = "fallback"`): it takes every
//! random input and every capture, and the test keeps it that way.
use pmmux_noise::Bound;
use pmmux_noise::{build, noise_tests, Detector};

fn detector() -> Detector {
    build("anyprot", "", pmmux_anyprot::AnyProt::new)
}

noise_tests!(detector, Bound::CatchAll);
