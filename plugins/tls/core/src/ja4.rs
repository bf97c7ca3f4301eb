//! The JA4 TLS client fingerprint (FoxIO, <https://github.com/FoxIO-LLC/ja4>, `technical_details/JA4.md`)
//! of a parsed [`ClientHello`]: `JA4_a` `_` `JA4_b` `_` `JA4_c`, e.g. `t13d1516h2_8daaf6152771_e5627efa2ab1`.
//!
//! * `JA4_a` (10 characters): the transport (`t` TCP, `q` QUIC, `d` DTLS); the TLS version, the
//!   highest non-GREASE value of `supported_versions` when present, else `legacy_version` (`13`, `12`,
//!   `11`, `10`, `s3`, `s2`, `d1`, `d2`, `d3`, `00` for anything else); `d` when the client sent a
//!   `server_name` extension, `i` when not; the number of cipher suites and of extensions, GREASE
//!   left out, two digits each and capped at 99 (the extension count includes `server_name` and
//!   ALPN); the first and last characters of the first ALPN protocol, or `00` without ALPN (when
//!   either is not an ASCII letter or digit, the first and last characters of the protocol's hex
//!   form instead).
//! * `JA4_b`: the first 12 hex digits of the SHA-256 of the cipher suites, GREASE left out, as
//!   4-digit lowercase hex, sorted, comma-separated.
//! * `JA4_c`: the first 12 hex digits of the SHA-256 of the extension types, GREASE, `server_name`
//!   (`0000`) and ALPN (`0010`) left out, as sorted 4-digit hex joined by commas, followed by `_` and
//!   the `signature_algorithms` values in the client's order (GREASE left out), joined by commas;
//!   without signature algorithms, the extensions alone, with no trailing `_`.
//!
//! An empty list (no cipher suite or no extension left) hashes to `000000000000`, as in the
//! reference implementation.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::client_hello::{ClientHello, EXT_ALPN, EXT_SERVER_NAME};

/// Extension type `signature_algorithms` (RFC 8446 §4.2.3).
pub const EXT_SIGNATURE_ALGORITHMS: u16 = 13;

/// What `JA4_b` / `JA4_c` are when there is nothing to hash.
const EMPTY_HASH: &str = "000000000000";

/// The transport a ClientHello came over: the first character of the fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TLS over TCP (`t`): what the `tls` backend sees.
    Tcp,
    /// QUIC (`q`): a ClientHello from CRYPTO frames.
    Quic,
    /// DTLS (`d`).
    Dtls,
}

impl Transport {
    fn code(self) -> char {
        match self {
            Transport::Tcp => 't',
            Transport::Quic => 'q',
            Transport::Dtls => 'd',
        }
    }
}

/// Whether `value` is a GREASE value (RFC 8701): `0x?a?a` with both bytes equal.
pub fn is_grease(value: u16) -> bool {
    value & 0x0f0f == 0x0a0a && value >> 8 == value & 0xff
}

/// The JA4 fingerprint of a ClientHello received over TCP.
pub fn ja4(hello: &ClientHello) -> String {
    ja4_for(hello, Transport::Tcp)
}

/// The JA4 fingerprint of a ClientHello received over `transport`.
pub fn ja4_for(hello: &ClientHello, transport: Transport) -> String {
    let ciphers: Vec<u16> = hello.cipher_suites.iter().copied().filter(|&c| !is_grease(c)).collect();
    let extensions: Vec<u16> = hello
        .extensions
        .iter()
        .map(|e| e.kind)
        .filter(|&k| !is_grease(k))
        .collect();
    let sni = if hello.extension(EXT_SERVER_NAME).is_some() {
        'd'
    } else {
        'i'
    };
    let mut out = String::with_capacity(36);
    out.push(transport.code());
    out.push_str(version_code(ja4_version(hello)));
    out.push(sni);
    // Writing to a String cannot fail.
    let _ = write!(out, "{:02}{:02}", ciphers.len().min(99), extensions.len().min(99));
    out.push_str(&alpn_code(hello.alpn.first().map(Vec::as_slice)));
    out.push('_');

    let mut sorted = ciphers;
    sorted.sort_unstable();
    out.push_str(&hash12(&hex_list(&sorted)));
    out.push('_');

    let mut sorted: Vec<u16> = extensions
        .iter()
        .copied()
        .filter(|&k| k != EXT_SERVER_NAME && k != EXT_ALPN)
        .collect();
    sorted.sort_unstable();
    let mut text = hex_list(&sorted);
    let sigalgs = signature_algorithms(hello);
    if !sigalgs.is_empty() {
        text.push('_');
        text.push_str(&hex_list(&sigalgs));
    }
    if extensions.is_empty() {
        out.push_str(EMPTY_HASH);
    } else {
        out.push_str(&hash12(&text));
    }
    out
}

/// The version JA4 reports: the highest non-GREASE `supported_versions` value, else `legacy_version`.
pub fn ja4_version(hello: &ClientHello) -> u16 {
    hello
        .supported_versions
        .iter()
        .copied()
        .filter(|&v| !is_grease(v))
        .max()
        .unwrap_or(hello.legacy_version)
}

/// The two characters of a protocol version.
fn version_code(version: u16) -> &'static str {
    match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// The two ALPN characters: first and last character of the first protocol, or of its hex form when
/// either is not alphanumeric; `00` without one.
fn alpn_code(first: Option<&[u8]>) -> String {
    let (Some(&head), Some(&tail)) = (first.and_then(<[u8]>::first), first.and_then(<[u8]>::last)) else {
        return "00".to_owned();
    };
    if head.is_ascii_alphanumeric() && tail.is_ascii_alphanumeric() {
        [char::from(head), char::from(tail)].iter().collect()
    } else {
        format!("{:x}{:x}", head >> 4, tail & 0x0f)
    }
}

/// The `signature_algorithms` values in the client's order, GREASE left out; empty when absent. A
/// malformed body yields the whole pairs it holds within its declared length.
pub fn signature_algorithms(hello: &ClientHello) -> Vec<u16> {
    let Some(data) = hello.extension(EXT_SIGNATURE_ALGORITHMS) else {
        return Vec::new();
    };
    let declared = match data {
        [a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])),
        _ => return Vec::new(),
    };
    let list = data.get(2..).unwrap_or_default();
    let list = list.get(..declared.min(list.len())).unwrap_or_default();
    list.chunks_exact(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]))
        .filter(|&v| !is_grease(v))
        .collect()
}

/// Values as 4-digit lowercase hex, comma-separated.
fn hex_list(values: &[u16]) -> String {
    let mut out = String::with_capacity(values.len() * 5);
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{v:04x}");
    }
    out
}

/// The first 12 hex digits of the SHA-256 of `text`; [`EMPTY_HASH`] for an empty text.
fn hash12(text: &str) -> String {
    if text.is_empty() {
        return EMPTY_HASH.to_owned();
    }
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(12);
    for b in digest.iter().take(6) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Whether `text` has the shape of a JA4 fingerprint: `JA4_a` (a transport `t`/`q`/`d`, two version
/// characters and `d`/`i` in lowercase, four digits, then the two ALPN characters, which are the
/// first protocol's own when alphanumeric and so may be uppercase), then two parts of 12 lowercase
/// hex digits, all joined by `_`.
pub fn is_ja4_shaped(text: &str) -> bool {
    let mut parts = text.split('_');
    let (Some(a), Some(b), Some(c), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let lower_alnum = |x: u8| x.is_ascii_digit() || x.is_ascii_lowercase();
    let hex = |p: &str| p.len() == 12 && p.bytes().all(|x| x.is_ascii_digit() || (b'a'..=b'f').contains(&x));
    let a = a.as_bytes();
    a.len() == 10
        && matches!(a[0], b't' | b'q' | b'd')
        && a[1..3].iter().all(|&x| lower_alnum(x))
        && matches!(a[3], b'd' | b'i')
        && a[4..8].iter().all(u8::is_ascii_digit)
        && a[8..].iter().all(u8::is_ascii_alphanumeric)
        && hex(b)
        && hex(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_hello::Extension;

    /// The worked example of the JA4 specification (`technical_details/JA4.md`, a Chrome
    /// ClientHello): 15 cipher suites, 16 extensions with SNI and ALPN `h2`, TLS 1.3, and the
    /// published `t13d1516h2_8daaf6152771_e5627efa2ab1`. GREASE values are added, as Chrome sends
    /// them, and must not change the result.
    fn spec_example() -> ClientHello {
        let mut cipher_suites = vec![0x1a1a];
        cipher_suites.extend([
            0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d,
            0x002f, 0x0035,
        ]);
        let sigalgs: [u16; 8] = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601];
        let mut sigalg_body = ((sigalgs.len() * 2) as u16).to_be_bytes().to_vec();
        sigalg_body.extend(sigalgs.iter().flat_map(|s| s.to_be_bytes()));
        let kinds: [u16; 18] = [
            0x2a2a, 0x0000, 0x0017, 0xff01, 0x000a, 0x000b, 0x0023, 0x0010, 0x0005, 0x000d, 0x0012, 0x0033, 0x002d,
            0x002b, 0x001b, 0x4469, 0x0015, 0xdada,
        ];
        let extensions = kinds
            .iter()
            .map(|&kind| Extension {
                kind,
                data: if kind == EXT_SIGNATURE_ALGORITHMS {
                    sigalg_body.clone()
                } else {
                    Vec::new()
                },
            })
            .collect();
        ClientHello {
            legacy_version: 0x0303,
            random: [0; 32],
            session_id: Vec::new(),
            cipher_suites,
            compression_methods: vec![0],
            extensions,
            server_name: Some("example.com".into()),
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            supported_versions: vec![0x3a3a, 0x0304, 0x0303],
        }
    }

    #[test]
    fn the_specification_example() {
        // The hash inputs as the specification prints them.
        assert_eq!(
            hash12("002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9"),
            "8daaf6152771"
        );
        assert_eq!(
            hash12("0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601"),
            "e5627efa2ab1"
        );
        let hello = spec_example();
        assert_eq!(ja4(&hello), "t13d1516h2_8daaf6152771_e5627efa2ab1");
        assert_eq!(ja4_for(&hello, Transport::Quic), "q13d1516h2_8daaf6152771_e5627efa2ab1");
        assert!(is_ja4_shaped(&ja4(&hello)));
    }

    #[test]
    fn without_sni_alpn_or_signature_algorithms() {
        let mut hello = spec_example();
        hello.extensions.retain(|e| ![0, 16, 13].contains(&e.kind));
        hello.alpn.clear();
        hello.server_name = None;
        let ja4 = ja4(&hello);
        // No trailing `_` in the hashed text without signature algorithms.
        let exts = "0005,000a,000b,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01";
        assert_eq!(ja4, format!("t13i151300_8daaf6152771_{}", hash12(exts)));
    }

    #[test]
    fn versions_counts_and_empty_lists() {
        let mut hello = spec_example();
        hello.supported_versions.clear();
        hello.legacy_version = 0x0301;
        hello.cipher_suites = vec![0x0a0a];
        hello.extensions.clear();
        hello.alpn.clear();
        assert_eq!(ja4(&hello), "t10i000000_000000000000_000000000000");
        hello.cipher_suites = (1..=120).collect();
        hello.extensions = (100..220).map(|kind| Extension { kind, data: Vec::new() }).collect();
        assert!(ja4(&hello).starts_with("t10i9999"), "{}", ja4(&hello));
        hello.supported_versions = vec![0x7f1c];
        assert!(ja4(&hello).starts_with("t00i"));
    }

    #[test]
    fn alpn_characters() {
        assert_eq!(alpn_code(None), "00");
        assert_eq!(alpn_code(Some(b"h2")), "h2");
        assert_eq!(alpn_code(Some(b"http/1.1")), "h1");
        assert_eq!(alpn_code(Some(b"h")), "hh");
        assert_eq!(alpn_code(Some(b"\xab\xcd")), "ad");
        assert_eq!(alpn_code(Some(b"h2/")), "6f");
        assert_eq!(alpn_code(Some(b"")), "00");
        assert_eq!(alpn_code(Some(b"H1")), "H1");
    }

    /// Found by the `tls_client_hello` fuzz target: a ClientHello offering ALPN `H1` fingerprints as
    /// `..H1_..`, which the shape check (and so a `ja4` param) refused: every fingerprint the
    /// plugin computes must be one an operator can configure.
    #[test]
    fn an_uppercase_alpn_fingerprint_is_ja4_shaped() {
        let mut hello = spec_example();
        hello.alpn = vec![b"H1".to_vec()];
        let fingerprint = ja4(&hello);
        assert_eq!(&fingerprint[8..10], "H1", "{fingerprint}");
        assert!(is_ja4_shaped(&fingerprint), "{fingerprint}");
        assert!(is_ja4_shaped("t12d2808H1_d943125447b4_f2705b0a323f"));
        assert!(!is_ja4_shaped("t12d2808H/_d943125447b4_f2705b0a323f"));
    }

    #[test]
    fn grease_values() {
        let grease: Vec<u16> = (0..=0xffff).filter(|&v| is_grease(v)).collect();
        assert_eq!(grease.len(), 16);
        assert_eq!(grease.first(), Some(&0x0a0a));
        assert_eq!(grease.last(), Some(&0xfafa));
        assert!(!is_grease(0x0a1a));
    }

    #[test]
    fn shape_check() {
        assert!(is_ja4_shaped("t13d1516h2_8daaf6152771_e5627efa2ab1"));
        for bad in [
            "t13d1516h2_8daaf6152771",
            "t13d1516h2_8daaf6152771_e5627efa2ab1_",
            "T13d1516h2_8daaf6152771_e5627efa2ab1",
            "t13x1516h2_8daaf6152771_e5627efa2ab1",
            "t13d15a6h2_8daaf6152771_e5627efa2ab1",
            "t13d1516h2_8DAAF6152771_e5627efa2ab1",
            "t13d1516h2_8daaf615277_e5627efa2ab1",
            "t13d1516h2_8daaf6152771_e5627efa2abg",
            "",
        ] {
            assert!(!is_ja4_shaped(bad), "{bad}");
        }
    }
}
