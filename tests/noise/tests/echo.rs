//! `echo`: a catch-all by design (put last, or with `priority = "fallback"`): it takes every
//! random input and every capture, and the test keeps it that way.
use pmmux_noise::check::{Bound, Transport};
use pmmux_noise::{assert_noise, build, Detector, Expect};

fn detector() -> Detector {
    build("echo", "", pmmux_echo::Echo::new)
}

#[test]
fn udp_noise() {
    assert_noise(
        &detector(),
        Transport::Udp,
        Expect {
            random: Bound::CatchAll,
            other_captures: &[],
        },
    );
}

#[test]
fn tcp_noise() {
    assert_noise(
        &detector(),
        Transport::Tcp,
        Expect {
            random: Bound::CatchAll,
            other_captures: &[],
        },
    );
}
