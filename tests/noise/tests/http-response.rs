//! `http-response`: an HTTP detector, so HTTP captures are its own.
use pmmux_noise::check::{Transport, STRICT};
use pmmux_noise::{assert_noise, build, Detector, Expect};

fn detector() -> Detector {
    let mut detector = build("http-response", "", pmmux_http_response::HttpResponse::new);
    detector.protocols.push("http");
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
