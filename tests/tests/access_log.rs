//! The access log end to end: the real host with `[access_log]` writes one JSON record per TCP
//! connection (client, listener, backend, bytes, outcome), and after logrotate's move and SIGUSR1
//! the next records go to a new file while the moved one keeps what it had.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use pmmux_e2e::*;

/// The records in `path` once it has at least `n` lines.
fn wait_records(path: &Path, n: usize) -> Vec<serde_json::Value> {
    let mut text = String::new();
    let found = eventually(Duration::from_secs(10), || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines().count() >= n
    });
    assert!(
        found,
        "{} has {} line(s), wanted {n}: {text:?}",
        path.display(),
        text.lines().count()
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn each_connection_gets_a_json_record_and_sigusr1_reopens_the_file() {
    let sink = TcpSink::start();
    let (pm, port) = start_one(&[], |port| {
        format!(
            "{}[access_log]\npath = \"access.json\"\nformat = \"json\"\n\n\
             [[backend]]\nname = \"bulk\"\nprotocol = \"pass\"\ntarget = \"{}\"\n",
            listeners(&[format!("127.0.0.1:{port}")]),
            sink.addr()
        )
    });
    let path = pm.dir().join("access.json");
    let data = random_bytes(100_000);
    let got = tcp_roundtrip(loopback(port), &data, Duration::from_secs(30)).expect("through pmmux");
    assert_eq!(String::from_utf8_lossy(&got), sha256_hex(&data));

    let records = wait_records(&path, 1);
    let r = &records[0];
    assert_eq!(r["transport"], "tcp", "{r}");
    assert!(r["client"].as_str().is_some_and(|c| c.starts_with("127.0.0.1:")), "{r}");
    assert_eq!(r["listener"], format!("127.0.0.1:{port}"), "{r}");
    assert_eq!(r["backend"], "bulk", "{r}");
    assert_eq!(r["plugin"], serde_json::Value::Null, "{r}");
    assert_eq!(r["bytes_up"], 100_000, "{r}");
    assert_eq!(r["bytes_down"], 64, "{r}");
    assert_eq!(r["outcome"], "closed", "{r}");
    assert!(r["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{r}");

    // logrotate: move the file away, then SIGUSR1.
    let rotated = pm.dir().join("access.json.1");
    std::fs::rename(&path, &rotated).expect("rotate");
    pm.signal(libc::SIGUSR1);
    assert!(
        pm.wait_for_log("SIGUSR1: reopening the access log", Duration::from_secs(10)),
        "{}",
        pm.log()
    );
    assert!(
        eventually(Duration::from_secs(10), || path.exists()),
        "no new access log"
    );
    tcp_roundtrip(loopback(port), b"second", Duration::from_secs(30)).expect("second connection");
    let after = wait_records(&path, 1);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["bytes_up"], 6);
    assert_eq!(wait_records(&rotated, 1).len(), 1, "the moved file changed");
    // The process log still has its one line per connection.
    wait_log_count(&pm, &["backend=\"bulk\"", "connection closed"], 2);
}
