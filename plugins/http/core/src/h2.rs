//! HTTP/2 with prior knowledge (RFC 9113 §3.3, "h2c" without `Upgrade`): the client opens the
//! connection with the fixed 24-byte connection preface [`H2_PREFACE`] and goes straight on with
//! binary frames (SETTINGS, then usually HEADERS).
//!
//! Only the preface is recognised. Nothing after it is decoded: the request's `:authority` and
//! `:path` sit in an HPACK-compressed HEADERS frame, which this crate does not decode, so a
//! prior-knowledge connection has no host and no path, and `host` / `path_prefix` filters never pass
//! it (see [`h2c_detect`]).

use pmmux_plugin_api::{Detection, Property};

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The `http.version` property of a prior-knowledge HTTP/2 connection (in the style of
/// `HTTP/1.1`).
pub const H2_VERSION: &str = "HTTP/2";

/// Checks the first bytes against [`H2_PREFACE`]: `Some(true)` once the whole preface was seen,
/// `Some(false)` while the bytes are a strict prefix of it (including no bytes), `None` when they
/// cannot be the preface.
pub fn h2_preface(bytes: &[u8]) -> Option<bool> {
    if bytes.len() >= H2_PREFACE.len() {
        bytes.starts_with(H2_PREFACE).then_some(true)
    } else {
        H2_PREFACE.starts_with(bytes).then_some(false)
    }
}

/// The properties of a prior-knowledge HTTP/2 match: only `http.version` ([`H2_VERSION`]); no
/// method, host or path is known.
pub fn h2_properties() -> Vec<Property> {
    vec![Property::new("http.version", H2_VERSION)]
}

/// Detection of the prior-knowledge preface alone: `Match` with [`h2_properties`] on the whole
/// preface, `NeedMore` on its strict prefixes, `NoMatch` otherwise. A backend with `host` or
/// `path_prefix` filters must not accept such connections (they name neither), and a server that
/// cannot speak HTTP/2 (`http-response`) must not either.
pub fn h2c_detect(preview: &[u8]) -> Detection {
    match h2_preface(preview) {
        Some(true) => Detection::Match(h2_properties()),
        Some(false) => Detection::NeedMore,
        None => Detection::NoMatch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preface_and_its_prefixes() {
        for n in 0..H2_PREFACE.len() {
            assert_eq!(h2_preface(&H2_PREFACE[..n]), Some(false), "prefix {n}");
            assert_eq!(h2c_detect(&H2_PREFACE[..n]), Detection::NeedMore, "prefix {n}");
        }
        assert_eq!(h2_preface(H2_PREFACE), Some(true));
        let mut more = H2_PREFACE.to_vec();
        more.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        assert_eq!(h2_preface(&more), Some(true));
        assert!(matches!(h2c_detect(&more), Detection::Match(_)));
        assert_eq!(h2_preface(b"PRI * HTTP/1.1\r\n"), None);
        assert_eq!(h2_preface(b"GET / HTTP/1.1\r\n\r\n1234567890"), None);
        assert_eq!(h2_preface(b"PRX"), None);
        assert_eq!(h2c_detect(b"POST"), Detection::NoMatch);
    }
}
