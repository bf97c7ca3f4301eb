//! The `mqtt` backend over real mosquitto_pub captures, hand-built packets, other protocols,
//! params, and thousands of random and mutated inputs.

use pmmux_mqtt::{parse, Mqtt, Parse};
use pmmux_plugin_api::Detection;
use pmmux_plugin_testkit::{assert_needs_more_until_whole, assert_no_params, assert_verdict_stable, props, spec, Rng};

// See tests/data/README.md: mosquitto_pub 2.0.11 (Debian 12), `-i myclient`.
const V5: &[u8] = include_bytes!("data/connect_v5.bin");
const V311: &[u8] = include_bytes!("data/connect_v311.bin");
const V31: &[u8] = include_bytes!("data/connect_v31.bin");

fn backend(params_toml: &str) -> Result<Mqtt, String> {
    Mqtt::new(&spec("mqtt", params_toml))
}

fn mqtt() -> Mqtt {
    backend("").expect("no params")
}

fn expected(version: &str, client_id: &str) -> Vec<(String, String)> {
    vec![
        ("mqtt.version".to_owned(), version.to_owned()),
        ("mqtt.client_id".to_owned(), client_id.to_owned()),
    ]
}

#[test]
fn captures_match_with_version_and_client_id() {
    assert_eq!(props(mqtt().detect_stream(V5)), expected("5.0", "myclient"));
    assert_eq!(props(mqtt().detect_stream(V311)), expected("3.1.1", "myclient"));
    assert_eq!(props(mqtt().detect_stream(V31)), expected("3.1", "myclient"));
}

#[test]
fn every_strict_prefix_needs_more() {
    for capture in [V5, V311, V31] {
        assert_needs_more_until_whole(|d| mqtt().detect_stream(d), capture, "capture");
    }
}

#[test]
fn a_connect_with_a_multi_byte_length_and_will_matches_before_the_will_arrives() {
    // MQTT 3.1.1, clean session + will (QoS 1), empty client id, remaining length 200 (two bytes).
    let mut packet = vec![0x10, 0xc8, 0x01, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x0e, 0, 60, 0, 0];
    assert_eq!(props(mqtt().detect_stream(&packet)), expected("3.1.1", ""));
    packet.extend_from_slice(&[0, 1, b't']);
    assert_eq!(props(mqtt().detect_stream(&packet)), expected("3.1.1", ""));
}

#[test]
fn other_protocols_are_refused_from_the_first_byte() {
    let others: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc],
        b"SSH-2.0-OpenSSH_9.2p1\r\n",
        &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f],
    ];
    for other in others {
        assert_eq!(mqtt().detect_stream(&other[..1]), Detection::NoMatch, "{other:?}");
        assert_eq!(mqtt().detect_stream(other), Detection::NoMatch, "{other:?}");
    }
}

#[test]
fn malformed_connects_are_refused() {
    let patch = |base: &[u8], at: usize, b: u8| {
        let mut v = base.to_vec();
        v[at] = b;
        v
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("flags in the fixed header", patch(V311, 0, 0x12)),
        ("PUBLISH", patch(V311, 0, 0x30)),
        ("five-byte length", vec![0x10, 0x80, 0x80, 0x80, 0x80, 0x01]),
        ("protocol name length", patch(V311, 3, 5)),
        ("protocol name", patch(V311, 5, b'X')),
        ("MQTT level 3", patch(V311, 8, 3)),
        ("MQIsdp level 4", patch(V31, 10, 4)),
        ("reserved flag", patch(V311, 9, 0x03)),
        ("will QoS 3", patch(V311, 9, 0x1e)),
        ("will retain without will", patch(V311, 9, 0x22)),
        ("client id beyond remaining length", patch(V311, 1, 0x0a)),
        ("client id not UTF-8", patch(V311, 14, 0xff)),
        ("client id with NUL", patch(V311, 14, 0)),
    ];
    for (name, packet) in cases {
        assert!(
            matches!(parse(&packet), Parse::Invalid(_)),
            "{name}: {:?}",
            parse(&packet)
        );
        assert_eq!(mqtt().detect_stream(&packet), Detection::NoMatch, "{name}");
    }
}

#[test]
fn params_are_refused() {
    assert_no_params(Mqtt::new, "mqtt", "client_id = \"x\"");
}

#[test]
fn random_truncated_and_mutated_inputs_never_panic_and_stay_consistent() {
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let seeds = [V5, V311, V31];
    for i in 0..20_000 {
        let mut input = match i % 3 {
            0 => {
                let mut v: Vec<u8> = (0..rng.below(48) + 1).map(|_| rng.next_u64() as u8).collect();
                v[0] = 0x10; // get past the first byte often
                v
            }
            _ => seeds[rng.below(seeds.len())].to_vec(),
        };
        if i % 3 != 0 {
            for _ in 0..rng.below(4) {
                let at = rng.below(input.len());
                input[at] = rng.next_u64() as u8;
            }
            input.truncate(rng.below(input.len()) + 1);
        }
        assert_verdict_stable(|d| mqtt().detect_stream(d), &input);
    }
}
