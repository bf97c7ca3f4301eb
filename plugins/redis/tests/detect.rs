//! The `redis` backend over real redis-cli captures, hand-built commands, other protocols, params,
//! and thousands of random and mutated inputs.

use pmmux_plugin_api::Detection;
use pmmux_plugin_testkit::{assert_no_params, assert_verdict_stable, only_property, spec, Rng};
use pmmux_redis::{parse, Parse, Redis};

// See tests/data/README.md: redis-cli 7.0.15 (Debian 12).
/// `redis-cli ping`: `*1\r\n$4\r\nping\r\n`.
const PING: &[u8] = include_bytes!("data/ping.bin");
/// `redis-cli --user bob --pass secret get k`: `AUTH bob secret` first.
const AUTH: &[u8] = include_bytes!("data/auth.bin");

fn backend(params_toml: &str) -> Result<Redis, String> {
    Redis::new(&spec("redis", params_toml))
}

fn redis() -> Redis {
    backend("").expect("no params")
}

fn command(detection: Detection) -> String {
    only_property(detection, "redis.command")
}

#[test]
fn captures_match_with_their_command() {
    assert_eq!(command(redis().detect_stream(PING)), "PING");
    assert_eq!(command(redis().detect_stream(AUTH)), "AUTH");
}

#[test]
fn resp_and_inline_commands_match() {
    for (input, cmd) in [
        (&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"[..], "GET"),
        (b"*2\r\n$5\r\nhello\r\n$1\r\n3\r\n", "HELLO"),
        (b"*12\r\n$12\r\ngeoradius_ro\r\n", "GEORADIUS_RO"),
        (b"PING\r\n", "PING"),
        (b"ping\n", "PING"),
        (b"AUTH s3cret\r\n", "AUTH"),
        (b"hello 3 AUTH default pw\r\n", "HELLO"),
    ] {
        assert_eq!(command(redis().detect_stream(input)), cmd, "{input:?}");
    }
}

#[test]
fn every_strict_prefix_needs_more() {
    for whole in [PING, AUTH, b"PING\r\n", b"AUTH pw\r\n", b"HELLO\n"] {
        let decided_at = match whole.first() {
            // A RESP match is decided once the command name's CRLF is in.
            Some(b'*') => whole
                .windows(2)
                .enumerate()
                .filter(|(_, w)| w == b"\r\n")
                .nth(2)
                .map(|(i, _)| i + 2),
            _ => Some(whole.len()),
        };
        let decided_at = decided_at.expect("a CRLF");
        for n in 1..decided_at {
            assert_eq!(
                redis().detect_stream(&whole[..n]),
                Detection::NeedMore,
                "{whole:?} prefix {n}"
            );
        }
        for n in decided_at..=whole.len() {
            assert!(matches!(redis().detect_stream(&whole[..n]), Detection::Match(_)));
        }
    }
}

#[test]
fn other_protocols_and_other_text_are_refused_early() {
    let others: [(&[u8], usize); 8] = [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1),
        (b"POST / HTTP/1.1\r\n", 2),
        (b"HEAD / HTTP/1.1\r\n", 3),
        (&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc], 1),
        (b"SSH-2.0-OpenSSH_9.2p1\r\n", 1),
        (&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], 1),
        (b"PINGS\r\n", 5),
        (b"SET k v\r\n", 1),
    ];
    for (other, decided_at) in others {
        assert_eq!(
            redis().detect_stream(&other[..decided_at]),
            Detection::NoMatch,
            "{other:?}"
        );
        assert_eq!(redis().detect_stream(other), Detection::NoMatch, "{other:?}");
    }
}

#[test]
fn malformed_resp_is_refused() {
    for bad in [
        &b"*0\r\n"[..],
        b"*-1\r\n",
        b"*01\r\n$4\r\nPING\r\n",
        b"*1\r\n:4\r\n",
        b"*1\r\n$0\r\n\r\n",
        b"*1\r\n$33\r\n",
        b"*1\r\n$4\r\nPI1G\r\n",
        b"*1\r\n$4\r\n_ING\r\n",
        b"*1\r\n$4\r\nPINGX\r\n",
        b"*1\rX",
        b"*2000000\r\n",
        b"PING \x01\r\n",
    ] {
        assert!(matches!(parse(bad), Parse::Invalid(_)), "{bad:?}: {:?}", parse(bad));
    }
    let long = [&b"AUTH "[..], &[b'x'; 2000]].concat();
    assert_eq!(redis().detect_stream(&long), Detection::NoMatch);
}

#[test]
fn params_are_refused() {
    assert_no_params(Redis::new, "redis", "command = \"PING\"");
}

#[test]
fn random_truncated_and_mutated_inputs_never_panic_and_stay_consistent() {
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let seeds: [&[u8]; 4] = [PING, AUTH, b"PING\r\n", b"hello 3\r\n"];
    let alphabet = b"*$\r\n0123456789PINGAUTHELOping _";
    for i in 0..20_000 {
        let mut input: Vec<u8> = match i % 3 {
            0 => (0..rng.below(40) + 1)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect(),
            _ => seeds[rng.below(seeds.len())].to_vec(),
        };
        if i % 3 != 0 {
            for _ in 0..rng.below(4) {
                let at = rng.below(input.len());
                input[at] = if rng.below(2) == 0 {
                    rng.next_u64() as u8
                } else {
                    alphabet[rng.below(alphabet.len())]
                };
            }
            input.truncate(rng.below(input.len()) + 1);
        }
        assert_verdict_stable(|d| redis().detect_stream(d), &input);
    }
}
