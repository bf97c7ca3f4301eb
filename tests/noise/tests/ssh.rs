//! `ssh`: its TCP and UDP hooks over noise.
use pmmux_noise::check::STRICT;
use pmmux_noise::{build, noise_tests, Detector};

fn detector() -> Detector {
    build("ssh", "", pmmux_ssh::Ssh::new)
}

noise_tests!(detector, STRICT);
