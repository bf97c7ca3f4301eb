//! `regex`: as noisy as its patterns; here one for an SSH banner, the kind of protocol it is for.
//! The SSH captures are its own.
use pmmux_noise::check::{Transport, STRICT};
use pmmux_noise::{assert_noise, build, Detector, Expect};

fn detector() -> Detector {
    let mut detector = build("regex", r"patterns = '^SSH-2\.0-'", pmmux_regex::RegexProbe::new);
    detector.protocols.push("ssh");
    detector
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
