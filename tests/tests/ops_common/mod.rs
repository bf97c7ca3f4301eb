//! Helpers shared by the limits and metrics end-to-end tests: the admin endpoint read with the
//! real `curl`, `/metrics` read with the strict Prometheus reader, and waits on metric values.

#![allow(dead_code)] // each test binary uses its own subset

use std::time::Duration;

use pmmux_e2e::*;

/// Bound on one curl.
pub const CURL_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on waiting for a counter the test just caused to move.
pub const METRIC_TIMEOUT: Duration = Duration::from_secs(15);

/// `curl -sS -i http://127.0.0.1:<admin><path>`: the response head and body.
pub fn admin_get(admin: u16, path: &str) -> (String, String) {
    let url = format!("http://127.0.0.1:{admin}{path}");
    let out = run("curl", &["-sS", "-i", "--max-time", "10", &url], CURL_TIMEOUT);
    let text = out.expect_success(&format!("curl {url}"));
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in the answer to {url}: {text:?}"));
    (head.to_owned(), body.to_owned())
}

/// `/metrics`, checked strictly (panics with the text when it is not valid exposition format).
pub fn metrics(admin: u16) -> Exposition {
    let (head, body) = admin_get(admin, "/metrics");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "not the 0.0.4 content type: {head}"
    );
    Exposition::parse(&body).unwrap_or_else(|e| panic!("/metrics is not valid exposition format: {e}\n{body}"))
}

/// `promtool check metrics` (Prometheus's own parser and linter) on `/metrics`: panics on any
/// problem it reports.
pub fn promtool_check(admin: u16) {
    let (_, body) = admin_get(admin, "/metrics");
    let out = run_with_input("promtool", &["check", "metrics"], body.as_bytes(), CURL_TIMEOUT);
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {:?}\n{}{}\n{body}",
        out.status,
        out.stdout_str(),
        out.stderr_str()
    );
}

/// Wait until `cond` holds on `/metrics`; returns the exposition that satisfied it, or panics with
/// the last one.
pub fn wait_metrics(admin: u16, what: &str, mut cond: impl FnMut(&Exposition) -> bool) -> Exposition {
    let deadline = std::time::Instant::now() + METRIC_TIMEOUT;
    loop {
        let m = metrics(admin);
        if cond(&m) {
            return m;
        }
        if std::time::Instant::now() >= deadline {
            panic!("{what}: not reached within {METRIC_TIMEOUT:?}; metrics: {m:#?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until the series `name{labels}` equals `want`.
pub fn wait_value(admin: u16, name: &str, labels: &[(&str, &str)], want: f64) -> Exposition {
    wait_metrics(admin, &format!("{name}{labels:?} == {want}"), |m| {
        m.get(name, labels) == Some(want)
    })
}
