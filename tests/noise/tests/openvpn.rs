//! `openvpn`: over TCP and UDP.
use pmmux_noise::check::STRICT;
use pmmux_noise::{build, noise_tests, Detector};

fn detector() -> Detector {
    build("openvpn", "", pmmux_openvpn::OpenVpn::new)
}

noise_tests!(detector, STRICT);
