use std::time::Instant;

use pmmux_plugin_api::Property;

use super::*;

/// A `pass` backend named `fwd` (no plugin), as the registry builds it.
fn pass_backend() -> Arc<Backend> {
    let text = "[[listener]]\naddress = \"127.0.0.1:1\"\n[[backend]]\nname = \"fwd\"\nprotocol = \"pass\"\ntarget = \"127.0.0.1:2\"\n";
    let config = crate::config::parse(Path::new("/t.toml"), text).unwrap();
    let (registry, issues) = crate::routing::registry::Registry::build(&config, Vec::new(), None);
    assert!(issues.is_empty());
    Arc::clone(&registry.backends[0])
}

fn sample(outcome: Outcome) -> Record {
    Record {
        // 2000-02-29T12:34:56.789012Z
        ended: UNIX_EPOCH + Duration::new(951_827_696, 789_012_000),
        transport: Transport::Tcp,
        client: Client::Ip("192.0.2.7:5555".parse().unwrap()),
        via: Some(Client::Ip("127.0.0.1:40000".parse().unwrap())),
        listener: Arc::from("front \"a\""),
        backend: Some(pass_backend()),
        properties: vec![
            Property::new("http.host", "a.example"),
            Property::new("odd key", "line\nbreak \"q\""),
        ],
        bytes_up: 54,
        bytes_down: 1_234_567,
        datagrams: None,
        duration: Duration::from_micros(12_345),
        outcome,
    }
}

use std::time::UNIX_EPOCH;

#[test]
fn json_records_parse_and_carry_every_field() {
    let mut s = String::new();
    format::json(
        &mut s,
        &sample(Outcome::Failed {
            side: "upstream",
            error: "upstream 127.0.0.1:2: connect failed".into(),
        }),
    )
    .unwrap();
    assert!(s.ends_with("}\n") && s.matches('\n').count() == 1, "{s}");
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v["time"], "2000-02-29T12:34:56.789012Z");
    assert_eq!(v["transport"], "tcp");
    assert_eq!(v["client"], "192.0.2.7:5555");
    assert_eq!(v["via"], "127.0.0.1:40000");
    assert_eq!(v["listener"], "front \"a\"");
    assert_eq!(v["backend"], "fwd");
    assert_eq!(v["plugin"], serde_json::Value::Null);
    assert_eq!(v["properties"]["http.host"], "a.example");
    assert_eq!(v["properties"]["odd key"], "line\nbreak \"q\"");
    assert_eq!(v["bytes_up"], 54);
    assert_eq!(v["bytes_down"], 1_234_567);
    assert_eq!(v["duration_ms"], 12.345);
    assert_eq!(v["outcome"], "failed");
    assert_eq!(v["side"], "upstream");
    assert_eq!(v["error"], "upstream 127.0.0.1:2: connect failed");
}

#[test]
fn text_records_are_one_logfmt_line() {
    let mut s = String::new();
    format::text(&mut s, &sample(Outcome::Closed)).unwrap();
    assert_eq!(
        s,
        "time=2000-02-29T12:34:56.789012Z transport=tcp client=192.0.2.7:5555 via=127.0.0.1:40000 \
         listener=\"front \\\"a\\\"\" backend=fwd plugin=- plugin_version=- bytes_up=54 bytes_down=1234567 \
         duration_ms=12.345 outcome=closed prop.http.host=a.example prop.odd_key=\"line\\nbreak \\\"q\\\"\"\n"
    );
}

#[test]
fn the_closed_line_reads_as_the_tracing_line_did() {
    let mut r = sample(Outcome::Closed);
    r.via = None;
    r.listener = Arc::from("named");
    let mut s = String::new();
    format::closed_line(&mut s, &r).unwrap();
    assert_eq!(
        s,
        "2000-02-29T12:34:56.789012Z  INFO conn{peer=192.0.2.7:5555 listener=named backend=\"fwd\" \
         plugin=\"builtin\"}: pmmux::tcp::connection: connection closed bytes_up=54 bytes_down=1234567 ms=12.345\n"
    );
}

/// A connection pmmux cut for inactivity says so, with the reason, as `tracing` printed it.
#[test]
fn a_cut_connection_line_names_the_reason() {
    let mut r = sample(Outcome::Cut(crate::tcp::relay::Cut::HalfClosed));
    r.via = None;
    let mut s = String::new();
    format::closed_line(&mut s, &r).unwrap();
    assert!(
        s.ends_with(
            ": pmmux::tcp::connection: connection closed by pmmux bytes_up=54 bytes_down=1234567 ms=12.345 \
             reason=\"half-closed timeout\"\n"
        ),
        "{s}"
    );
    assert_eq!(r.outcome.name(), "half_closed_timeout");
}

#[test]
fn durations_and_addresses_are_written_exactly() {
    let mut s = String::new();
    write_ms(&mut s, Duration::from_micros(7)).unwrap();
    s.push(' ');
    write_ms(&mut s, Duration::from_secs(3600)).unwrap();
    s.push(' ');
    push_addr(&mut s, "[::1]:443".parse().unwrap());
    s.push(' ');
    push_addr(&mut s, "0.0.0.0:0".parse().unwrap());
    s.push(' ');
    push_u64(&mut s, u64::MAX);
    assert_eq!(s, "0.007 3600000.000 [::1]:443 0.0.0.0:0 18446744073709551615");
}

/// The one test that touches the process-wide access log (tests run in parallel).
#[test]
fn records_reach_the_file_which_is_reopened_after_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let config = AccessLogConfig {
        path: path.clone(),
        format: Format::Json,
    };
    configure(Some(&config)).unwrap();
    record(Record::unrouted(
        Client::Ip("192.0.2.1:1".parse().unwrap()),
        &Arc::from("l"),
        Outcome::RefusedLimit,
    ));
    let wait_for = |p: &Path, n: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            if text.lines().count() >= n {
                return text;
            }
            assert!(Instant::now() < deadline, "{} has {text:?}", p.display());
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let first = wait_for(&path, 1);
    assert!(first.contains("\"outcome\":\"refused_limit\""), "{first}");
    // logrotate: move the file away, then SIGUSR1.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    reopen();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(Instant::now() < deadline, "not reopened");
        std::thread::sleep(Duration::from_millis(5));
    }
    record(Record::unrouted(
        Client::Ip("192.0.2.2:2".parse().unwrap()),
        &Arc::from("l"),
        Outcome::NoMatch,
    ));
    close();
    let second = std::fs::read_to_string(&path).unwrap();
    assert!(
        second.contains("192.0.2.2:2") && !second.contains("192.0.2.1:1"),
        "{second}"
    );
    assert_eq!(std::fs::read_to_string(&rotated).unwrap(), first);
}
