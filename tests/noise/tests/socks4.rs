//! `socks4`: its TCP and UDP hooks over noise.
use pmmux_noise::check::STRICT;
use pmmux_noise::{build, noise_tests, Detector};

fn detector() -> Detector {
    build("socks4", "", pmmux_socks4::Socks4::new)
}

noise_tests!(detector, STRICT);
