//! Shared by the integration tests: the captured ClientHellos, a builder for synthetic ones, record
//! framing and a `tls` backend built from TOML params.
#![allow(dead_code)] // each test file uses a different part

use pmmux_plugin_api::Detection;
use pmmux_tls::Tls;

// Captured on loopback with a Python listener on 127.0.0.1 (port 0) that saved the first bytes
// received; clients from Debian 12 (OpenSSL 3.0.22, curl 7.88.1). Each is one TLS record.

/// `openssl s_client -connect 127.0.0.1:PORT -servername a.example -alpn h2,http/1.1` (TLS 1.3).
pub const OPENSSL_TLS13: &[u8] = include_bytes!("../data/openssl_tls13.bin");
/// `curl -sk --resolve b.example:PORT:127.0.0.1 https://b.example:PORT/` (TLS 1.3, ALPN h2,http/1.1,
/// padding extension).
pub const CURL: &[u8] = include_bytes!("../data/curl.bin");
/// `openssl s_client -tls1_2 -connect 127.0.0.1:PORT -servername c.example -alpn http/1.1` (TLS 1.2).
pub const OPENSSL_TLS12: &[u8] = include_bytes!("../data/openssl_tls12.bin");
/// `openssl s_client -tls1_1 -cipher DEFAULT@SECLEVEL=0 -connect 127.0.0.1:PORT -servername d.example`
/// (TLS 1.1, no ALPN, no supported_versions).
pub const OPENSSL_TLS11: &[u8] = include_bytes!("../data/openssl_tls11.bin");
/// `openssl s_client -connect 127.0.0.1:PORT -noservername` (TLS 1.3 without SNI or ALPN).
pub const OPENSSL_NOSNI: &[u8] = include_bytes!("../data/openssl_nosni.bin");

// The JA4 fingerprints of the captures, computed by an independent Python implementation (its own
// ClientHello parser and the FoxIO JA4 rules) over the capture files, not by this crate.

/// JA4 of [`OPENSSL_TLS13`].
pub const JA4_OPENSSL_TLS13: &str = "t13d3111h2_e8f1e7e78f70_1f22a2ca17c4";
/// JA4 of [`CURL`].
pub const JA4_CURL: &str = "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6";
/// JA4 of [`OPENSSL_TLS12`].
pub const JA4_OPENSSL_TLS12: &str = "t12d2808h1_d943125447b4_e7e480e5a997";
/// JA4 of [`OPENSSL_TLS11`].
pub const JA4_OPENSSL_TLS11: &str = "t11d090600_c491f621fb4c_195413a0cc0f";
/// JA4 of [`OPENSSL_NOSNI`].
pub const JA4_OPENSSL_NOSNI: &str = "t13i310900_e8f1e7e78f70_1f22a2ca17c4";

/// Every capture with its JA4.
pub const CAPTURE_JA4: &[(&str, &[u8], &str)] = &[
    ("openssl_tls13", OPENSSL_TLS13, JA4_OPENSSL_TLS13),
    ("curl", CURL, JA4_CURL),
    ("openssl_tls12", OPENSSL_TLS12, JA4_OPENSSL_TLS12),
    ("openssl_tls11", OPENSSL_TLS11, JA4_OPENSSL_TLS11),
    ("openssl_nosni", OPENSSL_NOSNI, JA4_OPENSSL_NOSNI),
];

/// Every capture, with a name for assertion messages.
pub const CAPTURES: &[(&str, &[u8])] = &[
    ("openssl_tls13", OPENSSL_TLS13),
    ("curl", CURL),
    ("openssl_tls12", OPENSSL_TLS12),
    ("openssl_tls11", OPENSSL_TLS11),
    ("openssl_nosni", OPENSSL_NOSNI),
];

/// The handshake bytes carried by a single-record capture.
pub fn handshake_of(capture: &[u8]) -> &[u8] {
    assert_eq!(capture[0], 0x16, "capture starts with a handshake record");
    let len = usize::from(u16::from_be_bytes([capture[3], capture[4]]));
    assert_eq!(len + 5, capture.len(), "capture is exactly one record");
    &capture[5..]
}

/// Frames handshake bytes into handshake records of at most `fragment` bytes each.
pub fn records(handshake: &[u8], fragment: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in handshake.chunks(fragment) {
        out.extend_from_slice(&[0x16, 0x03, 0x01]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// A synthetic ClientHello.
#[derive(Clone, Debug)]
pub struct HelloBuilder {
    pub legacy_version: u16,
    pub sni: Option<Vec<u8>>,
    pub alpn: Vec<Vec<u8>>,
    pub versions: Vec<u16>,
    /// Further extensions, sent after the ones above.
    pub extra: Vec<(u16, Vec<u8>)>,
}

impl Default for HelloBuilder {
    fn default() -> Self {
        HelloBuilder {
            legacy_version: 0x0303,
            sni: Some(b"example.com".to_vec()),
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            versions: vec![0x0304, 0x0303],
            extra: Vec::new(),
        }
    }
}

fn u16_vec(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

impl HelloBuilder {
    /// A builder with this server name and the default rest.
    pub fn sni(name: &str) -> Self {
        HelloBuilder {
            sni: Some(name.as_bytes().to_vec()),
            ..Default::default()
        }
    }

    /// The handshake message (type 1, 24-bit length, body).
    pub fn handshake(&self) -> Vec<u8> {
        let mut exts: Vec<(u16, Vec<u8>)> = Vec::new();
        if let Some(name) = &self.sni {
            let mut entry = vec![0u8];
            entry.extend_from_slice(&u16_vec(name));
            exts.push((0, u16_vec(&entry)));
        }
        if !self.alpn.is_empty() {
            let mut list = Vec::new();
            for p in &self.alpn {
                list.push(p.len() as u8);
                list.extend_from_slice(p);
            }
            exts.push((16, u16_vec(&list)));
        }
        if !self.versions.is_empty() {
            let mut list = vec![(self.versions.len() * 2) as u8];
            for v in &self.versions {
                list.extend_from_slice(&v.to_be_bytes());
            }
            exts.push((43, list));
        }
        exts.extend(self.extra.iter().cloned());

        let mut body = self.legacy_version.to_be_bytes().to_vec();
        body.extend_from_slice(&[0x5a; 32]);
        body.push(32);
        body.extend_from_slice(&[0xa5; 32]);
        body.extend_from_slice(&u16_vec(&[0x13, 0x01, 0x13, 0x02, 0xc0, 0x2f]));
        body.extend_from_slice(&[1, 0]);
        let mut ext_bytes = Vec::new();
        for (kind, data) in &exts {
            ext_bytes.extend_from_slice(&kind.to_be_bytes());
            ext_bytes.extend_from_slice(&u16_vec(data));
        }
        body.extend_from_slice(&u16_vec(&ext_bytes));

        let len = body.len() as u32;
        let mut msg = vec![1];
        msg.extend_from_slice(&len.to_be_bytes()[1..]);
        msg.extend_from_slice(&body);
        msg
    }

    /// The handshake message in one record (or 16 KiB records when larger).
    pub fn record(&self) -> Vec<u8> {
        records(&self.handshake(), 1 << 14)
    }
}

/// A `tls` backend from `[backend.params]` given as TOML text.
pub fn backend(params_toml: &str) -> Result<Tls, String> {
    let spec = pmmux_plugin_testkit::spec("tls", params_toml);
    Tls::new(&spec)
}

/// The backend for valid params; panics with the error otherwise.
pub fn tls(params_toml: &str) -> Tls {
    backend(params_toml).unwrap_or_else(|e| panic!("params {params_toml:?}: {e}"))
}

/// The properties of a match as (key, value) pairs; panics on anything but a match.
pub fn props(detection: Detection) -> Vec<(String, String)> {
    match detection {
        Detection::Match(props) => props.iter().map(|p| (p.key.to_string(), p.value.to_string())).collect(),
        other => panic!("expected a match, got {other:?}"),
    }
}
