//! `rdp`: its TCP and UDP hooks over noise.
use pmmux_noise::check::{Transport, STRICT};
use pmmux_noise::{assert_noise, build, Detector, Expect};

fn detector() -> Detector {
    build("rdp", "", pmmux_rdp::Rdp::new)
}

#[test]
fn udp_noise() {
    assert_noise(
        &detector(),
        Transport::Udp,
        Expect {
            random: STRICT,
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
            random: STRICT,
            other_captures: &[],
        },
    );
}
