//! Fuzz-style robustness of the session: thousands of random, truncated and mutated request streams
//! in random reads, with a small deterministic PRNG (no extra dependencies). Asserts no panic, a
//! bounded buffer, well-formed output and that a closed session stays closed.

use super::*;
use pmmux_http_core::MAX_HEAD;
use pmmux_plugin_testkit::Rng;

/// A random byte, biased towards bytes that matter to an HTTP parser.
fn byte(rng: &mut Rng) -> u8 {
    const INTERESTING: &[u8] = b"\r\n :0123456789\t\0\xff,";
    if rng.below(3) == 0 {
        INTERESTING[rng.below(INTERESTING.len())]
    } else {
        rng.next_u64() as u8
    }
}

const SAMPLES: &[&[u8]] = &[
    CURL_GET_PLAIN,
    CURL_HEAD,
    CURL_POST,
    CURL_HTTP10,
    CURL_CHUNKED,
    CURL_KEEPALIVE,
    WGET_GET,
    URLLIB_GET,
    WRK_GET,
    b"POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
];

/// A stream of a few requests, then random edits (flip, insert, delete, duplicate, truncate).
fn stream(rng: &mut Rng) -> Vec<u8> {
    let mut input = Vec::new();
    for _ in 0..1 + rng.below(5) {
        input.extend_from_slice(SAMPLES[rng.below(SAMPLES.len())]);
    }
    for _ in 0..rng.below(6) {
        let len = input.len();
        match rng.below(5) {
            0 if len > 0 => {
                let at = rng.below(len);
                input[at] = byte(rng);
            }
            1 => {
                let at = rng.below(len + 1);
                let b = byte(rng);
                input.insert(at, b);
            }
            2 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(16)).min(len);
                input.drain(start..end);
            }
            3 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(64)).min(len);
                let piece = input[start..end].to_vec();
                input.splice(start..start, piece);
            }
            _ => input.truncate(rng.below(len + 1)),
        }
    }
    input
}

#[test]
fn random_request_streams_never_panic_and_stay_bounded() {
    let mut rng = Rng::new(0x5eed_1001);
    let backend = backend();
    for _ in 0..5000 {
        let input = if rng.below(10) == 0 {
            (0..rng.below(400)).map(|_| byte(&mut rng)).collect()
        } else {
            stream(&mut rng)
        };
        let mut session = backend.session();
        let mut out = Vec::new();
        let mut rest = &input[..];
        let mut closed = false;
        while !rest.is_empty() {
            let n = (1 + rng.below(64)).min(rest.len());
            let before = out.len();
            let ctl = session.on_data(&rest[..n], &mut out);
            rest = &rest[n..];
            if closed {
                assert_eq!(ctl, SessionCtl::Close, "a closed session stays closed");
                assert_eq!(out.len(), before, "a closed session writes nothing");
            }
            closed |= ctl == SessionCtl::Close;
            assert!(session.buffered() <= MAX_HEAD + 64);
        }
        assert_eq!(session.on_eof(&mut out), SessionCtl::Close);
        assert!(
            out.is_empty() || out.starts_with(b"HTTP/1.1 "),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
    }
}

#[test]
fn valid_pipelines_are_answered_the_same_whatever_the_reads() {
    let mut rng = Rng::new(0x5eed_1002);
    let keep_alive = [CURL_GET_PLAIN, CURL_HEAD, CURL_POST, WGET_GET, WRK_GET, CURL_KEEPALIVE];
    for _ in 0..500 {
        let mut input = Vec::new();
        for _ in 0..1 + rng.below(8) {
            input.extend_from_slice(keep_alive[rng.below(keep_alive.len())]);
        }
        let (whole, ctl) = serve(&input);
        assert_eq!(ctl, SessionCtl::Continue);
        let chunk = 1 + rng.below(input.len());
        assert_eq!(feed(&mut session(), &input, chunk).0, whole, "chunk {chunk}");
    }
}
