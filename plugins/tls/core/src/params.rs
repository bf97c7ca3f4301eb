//! What the `tls`, `quic` and `dtls` plugins share about their `sni` / `alpn` params and the ALPN
//! property: reading a string-or-list, validating it, and writing the offered protocols as text.

use pmmux_plugin_api::names::{normalize_host, NamePattern};

/// Compiles `params.sni` (absent: no filter); an empty list or a bad pattern is refused by name.
pub fn sni_patterns(list: Option<Vec<String>>) -> Result<Option<Vec<NamePattern>>, String> {
    match list {
        None => Ok(None),
        Some(list) if list.is_empty() => {
            Err("params.sni: the list is empty; omit `sni` to accept every server name".into())
        }
        Some(list) => list
            .iter()
            .map(|p| NamePattern::parse(p).map_err(|e| format!("params.sni: {e}")))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
    }
}

/// Checks `params.alpn` (absent: no filter): 1 to 255 bytes per name (RFC 7301), not an empty list.
pub fn alpn_names(list: Option<Vec<String>>) -> Result<Option<Vec<Vec<u8>>>, String> {
    match list {
        None => Ok(None),
        Some(list) if list.is_empty() => {
            Err("params.alpn: the list is empty; omit `alpn` to accept any protocol".into())
        }
        Some(list) => {
            if let Some(bad) = list.iter().find(|p| p.is_empty() || p.len() > 255) {
                return Err(format!(
                    "params.alpn: `{bad}` is {} bytes long; protocol names are 1 to 255 bytes",
                    bad.len()
                ));
            }
            Ok(Some(list.into_iter().map(String::into_bytes).collect()))
        }
    }
}

/// Whether the ClientHello's `server_name` passes the `sni` filter: always without a filter, never
/// without a name; names compare after [`normalize_host`].
pub fn sni_matches(patterns: Option<&[NamePattern]>, server_name: Option<&str>) -> bool {
    match (patterns, server_name) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(patterns), Some(name)) => {
            let host = normalize_host(name);
            patterns.iter().any(|p| p.matches(&host))
        }
    }
}

/// Whether the `alpn` filter is passed: always without a filter, else when some offered protocol is
/// wanted (exact comparison, RFC 7301).
pub fn alpn_matches(wanted: Option<&[Vec<u8>]>, offered: &[Vec<u8>]) -> bool {
    wanted.is_none_or(|wanted| offered.iter().any(|o| wanted.contains(o)))
}

/// The offered protocols as one property value: comma-separated in the client's order, printable
/// ASCII as is except `,` (the separator) and `\`; other bytes as `\xNN`.
pub fn alpn_property(offered: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for (i, name) in offered.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for &b in name {
            if (b.is_ascii_graphic() || b == b' ') && b != b',' && b != b'\\' {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_values_are_escaped_and_joined() {
        assert_eq!(alpn_property(&[b"h2".to_vec(), b"http/1.1".to_vec()]), "h2,http/1.1");
        assert_eq!(alpn_property(&[b"a,b\\\n".to_vec()]), "a\\x2cb\\x5c\\x0a");
        assert_eq!(alpn_property(&[b"x y".to_vec()]), "x y");
    }

    #[test]
    fn lists_are_validated() {
        assert_eq!(sni_patterns(None), Ok(None));
        assert!(sni_patterns(Some(vec![])).unwrap_err().contains("empty"));
        assert!(sni_patterns(Some(vec!["*.example.com".into()])).unwrap().is_some());
        assert!(alpn_names(Some(vec![])).unwrap_err().contains("empty"));
        assert!(alpn_names(Some(vec![String::new()])).unwrap_err().contains("0 bytes"));
        assert_eq!(alpn_names(Some(vec!["h3".into()])), Ok(Some(vec![b"h3".to_vec()])));
    }
}
