//! The health probe: its request and the verdict on status lines nginx sends.

use crate::{health_request, health_verdict, Http, HttpParams, StringOrList};
use pmmux_plugin_api::{Backend, HealthVerdict};

#[test]
fn probe_names_the_first_plain_host() {
    let params = HttpParams {
        host: Some(StringOrList(vec!["*.example".into(), "a.example".into()])),
        ..HttpParams::default()
    };
    let http = Http::from_params(params).expect("valid");
    let probe = http.health_probe().expect("http has a probe");
    let text = String::from_utf8(probe.send.to_vec()).expect("ascii");
    assert!(text.starts_with("HEAD / HTTP/1.0\r\nHost: a.example\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n"));
    assert!(!String::from_utf8_lossy(&health_request(None)).contains("Host:"));
}

#[test]
fn status_below_500_is_healthy() {
    let ok = b"HTTP/1.1 200 OK\r\nServer: nginx\r\n\r\n";
    assert_eq!(health_verdict(ok, false), HealthVerdict::Healthy);
    assert_eq!(
        health_verdict(b"HTTP/1.1 404 Not Found\r\n", false),
        HealthVerdict::Healthy
    );
    assert_eq!(health_verdict(b"HTTP/1.0 301 Moved\r\n", true), HealthVerdict::Healthy);
}

#[test]
fn server_errors_and_other_answers_are_unhealthy() {
    let HealthVerdict::Unhealthy(why) = health_verdict(b"HTTP/1.1 503 Service Temporarily Unavailable\r\n", false)
    else {
        panic!("503 must be unhealthy");
    };
    assert!(why.contains("503"), "{why}");
    assert!(matches!(
        health_verdict(b"SSH-2.0-x\r\n", false),
        HealthVerdict::Unhealthy(_)
    ));
    assert!(matches!(
        health_verdict(b"HTTP/1.1 9999 x\r\n", false),
        HealthVerdict::Unhealthy(_)
    ));
}

#[test]
fn an_incomplete_status_line_needs_more_until_closed_or_too_long() {
    assert_eq!(health_verdict(b"HTTP/1.1 20", false), HealthVerdict::NeedMore);
    assert!(matches!(
        health_verdict(b"HTTP/1.1 20", true),
        HealthVerdict::Unhealthy(_)
    ));
    assert!(matches!(
        health_verdict(&[b'x'; 2000], false),
        HealthVerdict::Unhealthy(_)
    ));
}
