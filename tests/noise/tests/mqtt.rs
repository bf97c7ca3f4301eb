//! `mqtt`: its TCP and UDP hooks over noise.
use pmmux_noise::check::STRICT;
use pmmux_noise::{build, noise_tests, Detector};

fn detector() -> Detector {
    build("mqtt", "", pmmux_mqtt::Mqtt::new)
}

noise_tests!(detector, STRICT);
