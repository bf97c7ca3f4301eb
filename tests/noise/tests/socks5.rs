//! `socks5`: its TCP and UDP hooks over noise.
use pmmux_noise::check::STRICT;
use pmmux_noise::{build, noise_tests, Detector};

fn detector() -> Detector {
    build("socks5", "", pmmux_socks5::Socks5::new)
}

noise_tests!(detector, STRICT);
