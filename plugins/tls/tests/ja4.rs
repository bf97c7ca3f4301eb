//! The `tls.ja4` property: checked three ways. (1) Exact values for the captures, computed by an
//! independent Python implementation (see `common`), and the JA4 specification's own worked example
//! (unit test in `src/ja4.rs`). (2) A second, deliberately naive implementation here, from the parsed
//! fields, over captures and synthetic ClientHellos. (3) A structural check of the format, written
//! out character class by character class like a regex.

mod common;

use common::*;
use pmmux_plugin_testkit::Rng;
use pmmux_tls::client_hello::{parse_records, ClientHello, Parse};
use pmmux_tls::ja4::{ja4, ja4_for, Transport};
use sha2::{Digest, Sha256};

fn parsed(stream: &[u8]) -> ClientHello {
    match parse_records(stream) {
        Parse::Complete(hello) => hello,
        other => panic!("expected a ClientHello, got {other:?}"),
    }
}

/// The second implementation: straight from the JA4 text, with strings throughout.
fn naive_ja4(hello: &ClientHello) -> String {
    let grease = |v: &u16| format!("{v:04x}").as_bytes()[1] == b'a' && (v >> 8) == (v & 0xff);
    let ciphers: Vec<String> = hello
        .cipher_suites
        .iter()
        .filter(|v| !grease(v))
        .map(|v| format!("{v:04x}"))
        .collect();
    let exts: Vec<String> = hello
        .extensions
        .iter()
        .map(|e| e.kind)
        .filter(|v| !grease(v))
        .map(|v| format!("{v:04x}"))
        .collect();
    let versions: Vec<u16> = hello
        .supported_versions
        .iter()
        .copied()
        .filter(|v| !grease(v))
        .collect();
    let version = versions.iter().max().copied().unwrap_or(hello.legacy_version);
    let version = match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        _ => "00",
    };
    let sni = if exts.iter().any(|e| e == "0000") { "d" } else { "i" };
    let alpn = match hello.alpn.first() {
        None => "00".to_string(),
        Some(p) => {
            let text = String::from_utf8_lossy(p).to_string();
            let (f, l) = (text.chars().next().unwrap_or('0'), text.chars().last().unwrap_or('0'));
            if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() {
                format!("{f}{l}")
            } else {
                let hex: String = p.iter().map(|b| format!("{b:02x}")).collect();
                format!("{}{}", &hex[..1], &hex[hex.len() - 1..])
            }
        }
    };
    let hash = |s: String| -> String {
        if s.is_empty() {
            return "000000000000".into();
        }
        Sha256::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()[..12]
            .to_string()
    };
    let mut sorted_ciphers = ciphers.clone();
    sorted_ciphers.sort();
    let mut sorted_exts: Vec<String> = exts.iter().filter(|e| *e != "0000" && *e != "0010").cloned().collect();
    sorted_exts.sort();
    let mut c_text = sorted_exts.join(",");
    if let Some(data) = hello.extension(13) {
        let sigs: Vec<String> = data[2..]
            .chunks(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .filter(|v| !grease(v))
            .map(|v| format!("{v:04x}"))
            .collect();
        if !sigs.is_empty() {
            c_text = format!("{c_text}_{}", sigs.join(","));
        }
    }
    let c = if exts.is_empty() {
        "000000000000".into()
    } else {
        hash(c_text)
    };
    format!(
        "t{version}{sni}{:02}{:02}{alpn}_{}_{c}",
        ciphers.len().min(99),
        exts.len().min(99),
        hash(sorted_ciphers.join(","))
    )
}

/// `^[tqd](1[0-3]|s[23]|d[123]|00)[di][0-9]{4}[0-9a-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}$`, by hand.
fn assert_ja4_format(fp: &str) {
    let b = fp.as_bytes();
    assert_eq!(b.len(), 36, "{fp}: length");
    assert!(b"tqd".contains(&b[0]), "{fp}: transport");
    assert!(
        ["13", "12", "11", "10", "s3", "s2", "d1", "d2", "d3", "00"].contains(&&fp[1..3]),
        "{fp}: version"
    );
    assert!(b"di".contains(&b[3]), "{fp}: sni");
    assert!(b[4..8].iter().all(u8::is_ascii_digit), "{fp}: counts");
    assert!(
        b[8..10].iter().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()),
        "{fp}: alpn"
    );
    assert_eq!((b[10], b[23]), (b'_', b'_'), "{fp}: separators");
    for part in [&b[11..23], &b[24..36]] {
        assert!(
            part.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c)),
            "{fp}: hash"
        );
    }
}

#[test]
fn captures_have_their_independently_computed_fingerprints() {
    for (name, capture, expected) in CAPTURE_JA4 {
        let hello = parsed(capture);
        assert_eq!(ja4(&hello), *expected, "{name}");
        assert_eq!(naive_ja4(&hello), *expected, "{name}: the naive implementation agrees");
        assert_ja4_format(expected);
        let found = props(tls("").detect_preview(capture));
        assert!(
            found.contains(&("tls.ja4".to_string(), expected.to_string())),
            "{name}: {found:?}"
        );
        assert_eq!(
            ja4_for(&hello, Transport::Quic)[1..],
            expected[1..],
            "{name}: only the transport differs"
        );
    }
}

#[test]
fn fingerprints_do_not_depend_on_record_framing() {
    for (name, capture, expected) in CAPTURE_JA4 {
        for fragment in [1, 50, 300] {
            let reframed = records(handshake_of(capture), fragment);
            assert_eq!(ja4(&parsed(&reframed)), *expected, "{name}: {fragment}-byte records");
        }
    }
}

#[test]
fn synthetic_hellos_agree_with_the_naive_implementation() {
    let mut rng = Rng::new(0x4a34_0001);
    let kinds = [
        0x0005_u16, 0x000a, 0x000b, 0x0017, 0x0023, 0x002d, 0x0033, 0x4469, 0xff01, 0x1a1a, 0xfafa, 0x0015,
    ];
    let protocols: [&[u8]; 6] = [b"h2", b"http/1.1", b"h3", b"\x01x", b"x/", b"acme-tls/1"];
    for _ in 0..500 {
        let mut extra: Vec<(u16, Vec<u8>)> = Vec::new();
        for &kind in &kinds {
            if rng.below(2) == 0 {
                extra.push((kind, vec![0; rng.below(3)]));
            }
        }
        if rng.below(3) > 0 {
            let n = rng.below(6);
            let mut body = ((n * 2) as u16).to_be_bytes().to_vec();
            for _ in 0..n {
                body.extend_from_slice(&[0x04, 0x03, 0x0a, 0x0a, 0x08, 0x04][rng.below(3) * 2..][..2]);
            }
            extra.push((13, body));
        }
        let builder = HelloBuilder {
            legacy_version: [0x0301, 0x0302, 0x0303][rng.below(3)],
            sni: (rng.below(2) == 0).then(|| b"x.example".to_vec()),
            alpn: (0..rng.below(3))
                .map(|_| protocols[rng.below(protocols.len())].to_vec())
                .collect(),
            versions: [vec![], vec![0x0304, 0x0303], vec![0x2a2a, 0x0303], vec![0x0302]][rng.below(4)].clone(),
            extra,
        };
        let hello = parsed(&builder.record());
        let fp = ja4(&hello);
        assert_eq!(fp, naive_ja4(&hello), "{builder:?}");
        assert_ja4_format(&fp);
    }
}
