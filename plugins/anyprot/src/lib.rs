//! pmmux plugin `anyprot`: a catch-all, like sslh's `anyprot` probe. It matches any TCP client once
//! the preview holds at least `min_length` bytes (and any UDP datagram at least that long), and
//! says `NeedMore` before that. Put it last, or give it `priority = "fallback"`, so it only takes
//! what no other backend wants.
//!
//! Params (optional):
//!
//! ```toml
//! [backend.params]
//! min_length = 1   # bytes to wait for before matching; default 1, at least 1
//! ```
//!
//! No properties.

use pmmux_plugin_api::{export_plugin, Backend, BackendSpec, ConnInfo, Detection};

/// The default for `min_length`: match on the first byte.
pub const DEFAULT_MIN_LENGTH: usize = 1;

/// The backend's `[backend.params]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Bytes to wait for before matching (default [`DEFAULT_MIN_LENGTH`]).
    pub min_length: Option<u64>,
}

/// An `anyprot` backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnyProt {
    min_length: usize,
}

impl AnyProt {
    /// Builds the backend from its params; the error tells the user what is wrong with them.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        Self::from_params(spec.params()?)
    }

    /// Builds the backend from already parsed params.
    pub fn from_params(params: Params) -> Result<Self, String> {
        let min_length = match params.min_length {
            None => DEFAULT_MIN_LENGTH,
            Some(0) => return Err("params.min_length must be at least 1".into()),
            Some(n) => usize::try_from(n).map_err(|_| format!("params.min_length {n} is too large"))?,
        };
        Ok(AnyProt { min_length })
    }

    /// The configured `min_length`.
    pub fn min_length(&self) -> usize {
        self.min_length
    }

    /// The verdict over the bytes seen so far.
    pub fn verdict(&self, preview: &[u8]) -> Detection {
        if preview.len() >= self.min_length {
            Detection::Match(Vec::new())
        } else {
            Detection::NeedMore
        }
    }
}

impl Backend for AnyProt {
    fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
        self.verdict(preview)
    }

    /// A datagram is whole: it matches when it has `min_length` bytes, never needs more.
    fn can_handle_message(&self, _client: &ConnInfo<'_>, message: &[u8]) -> Detection {
        match self.verdict(message) {
            Detection::NeedMore => Detection::NoMatch,
            other => other,
        }
    }
}

export_plugin! {
    name: "anyprot",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "anyprot" => AnyProt::new },
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmmux_plugin_testkit::{conn_port, spec};

    fn backend(params_toml: &str) -> Result<AnyProt, String> {
        AnyProt::new(&spec("anyprot", params_toml))
    }

    fn conn() -> ConnInfo<'static> {
        conn_port(4000)
    }

    fn matched() -> Detection {
        Detection::Match(Vec::new())
    }

    #[test]
    fn default_matches_any_first_byte_with_no_properties() {
        let any = backend("").unwrap();
        assert_eq!(any.min_length(), 1);
        for input in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"SSH-2.0-OpenSSH_9.2p1\r\n",
            &[0x16, 0x03, 0x01, 0x00, 0xf1],
            &[0],
            b"x",
        ] {
            assert_eq!(any.detect(&conn(), input), matched(), "{input:?}");
            assert_eq!(any.can_handle_message(&conn(), input), matched(), "{input:?}");
        }
    }

    #[test]
    fn min_length_waits_then_matches() {
        let any = backend("min_length = 4").unwrap();
        let input = b"HELO there";
        for n in 1..4 {
            assert_eq!(any.detect(&conn(), &input[..n]), Detection::NeedMore, "prefix {n}");
            // A datagram never grows: too short is no match.
            assert_eq!(
                any.can_handle_message(&conn(), &input[..n]),
                Detection::NoMatch,
                "prefix {n}"
            );
        }
        for n in 4..=input.len() {
            assert_eq!(any.detect(&conn(), &input[..n]), matched(), "prefix {n}");
            assert_eq!(any.can_handle_message(&conn(), &input[..n]), matched(), "prefix {n}");
        }
    }

    #[test]
    fn bad_params_are_refused_with_a_reason() {
        let zero = backend("min_length = 0").unwrap_err();
        assert!(zero.contains("min_length must be at least 1"), "{zero}");
        let negative = backend("min_length = -3").unwrap_err();
        assert!(negative.contains("invalid params"), "{negative}");
        let text = backend("min_length = \"4\"").unwrap_err();
        assert!(text.contains("invalid params"), "{text}");
        let unknown = backend("min_lenght = 4").unwrap_err();
        assert!(unknown.contains("unknown field"), "{unknown}");
    }

    #[test]
    fn fuzz_never_panics_and_agrees_with_the_length() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for min in [1usize, 2, 7, 64] {
            let any = AnyProt::from_params(Params {
                min_length: Some(min as u64),
            })
            .unwrap();
            for _ in 0..2000 {
                let len = (next() % 100) as usize + 1;
                let input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                let want = if len >= min { matched() } else { Detection::NeedMore };
                assert_eq!(any.detect(&conn(), &input), want);
            }
        }
    }
}
