//! `http-response`: an HTTP detector, so HTTP captures are its own.
use pmmux_noise::check::STRICT;
use pmmux_noise::{build, noise_tests, Detector};

fn detector() -> Detector {
    let mut detector = build("http-response", "", pmmux_http_response::HttpResponse::new);
    detector.protocols.push("http");
    detector
}

noise_tests!(detector, STRICT);
