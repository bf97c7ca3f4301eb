//! An incremental, bounded reader for the opening of an XMPP stream (RFC 6120 §4.7): an optional
//! UTF-8 byte order mark, an optional XML declaration, then the `<stream:stream ...>` start tag
//! with its attributes. It says `Incomplete` while the bytes so far could still become a stream
//! header and `Invalid` as soon as they cannot; it never panics.

/// The most bytes read looking for the end of the stream header (declaration included).
pub const MAX_HEADER: usize = 4096;
/// The streams namespace the `stream` prefix must be bound to (RFC 6120 §4.8.1).
pub const STREAMS_NS: &str = "http://etherx.jabber.org/streams";

const BOM: &[u8] = b"\xef\xbb\xbf";
const DECL: &[u8] = b"<?xml";
const OPEN: &[u8] = b"<stream:stream";

/// The parts of a stream header the plugin reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The default namespace: `jabber:client` or `jabber:server`.
    pub namespace: String,
    /// The `to` attribute, as sent (entities decoded), if present.
    pub to: Option<String>,
}

/// The outcome of reading the bytes seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// A whole stream header.
    Complete(Header),
    /// Could still be a stream header: more bytes needed.
    Incomplete,
    /// Cannot be one; the reason.
    Invalid(&'static str),
}

/// Reads the stream header from the start of `input`.
pub fn parse(input: &[u8]) -> Parse {
    let mut pos = 0;
    // Optional byte order mark.
    match literal(input, pos, BOM) {
        Lit::Yes(end) => pos = end,
        Lit::Partial => return Parse::Incomplete,
        Lit::No => {}
    }
    // Optional XML declaration, then optional whitespace.
    match literal(input, pos, DECL) {
        Lit::Yes(end) => {
            let Some(close) = find(input, end, b"?>") else {
                return incomplete_within_limit(input);
            };
            pos = skip_space(input, close + 2);
        }
        Lit::Partial => return Parse::Incomplete,
        Lit::No => {}
    }
    match literal(input, pos, OPEN) {
        Lit::Yes(end) => pos = end,
        Lit::Partial => return Parse::Incomplete,
        Lit::No => return Parse::Invalid("not an XML declaration or a <stream:stream> start tag"),
    }
    let Some(&after) = input.get(pos) else {
        return Parse::Incomplete;
    };
    if !is_space(after) {
        return Parse::Invalid("<stream:stream must be followed by attributes");
    }
    attributes(input, pos)
}

/// Reads attributes from `pos` to the closing `>`.
fn attributes(input: &[u8], mut pos: usize) -> Parse {
    let mut namespace = None;
    let mut stream_ns = false;
    let mut to = None;
    loop {
        pos = skip_space(input, pos);
        let Some(&b) = input.get(pos) else {
            return incomplete_within_limit(input);
        };
        if b == b'>' {
            break;
        }
        if b == b'/' {
            return Parse::Invalid("an empty <stream:stream/> element");
        }
        let name_start = pos;
        while input.get(pos).is_some_and(|&c| is_name_byte(c)) {
            pos += 1;
        }
        let Some(name) = input.get(name_start..pos).filter(|n| !n.is_empty()) else {
            return if pos >= input.len() {
                incomplete_within_limit(input)
            } else {
                Parse::Invalid("bad attribute name")
            };
        };
        pos = skip_space(input, pos);
        match input.get(pos) {
            None => return incomplete_within_limit(input),
            Some(b'=') => pos = skip_space(input, pos + 1),
            Some(_) => return Parse::Invalid("attribute without a value"),
        }
        let quote = match input.get(pos) {
            None => return incomplete_within_limit(input),
            Some(&q @ (b'\'' | b'"')) => q,
            Some(_) => return Parse::Invalid("unquoted attribute value"),
        };
        let Some(end) = input
            .iter()
            .skip(pos + 1)
            .position(|&c| c == quote)
            .map(|i| pos + 1 + i)
        else {
            return incomplete_within_limit(input);
        };
        let Some(raw) = input.get(pos + 1..end) else {
            return Parse::Invalid("attribute value");
        };
        if raw.contains(&b'<') {
            return Parse::Invalid("'<' in an attribute value");
        }
        let Ok(raw) = std::str::from_utf8(raw) else {
            return Parse::Invalid("attribute value is not UTF-8");
        };
        let value = unescape(raw);
        match name {
            b"xmlns" => namespace = Some(value),
            b"xmlns:stream" => stream_ns = value == STREAMS_NS,
            b"to" => to = Some(value),
            _ => {}
        }
        pos = end + 1;
        if input.get(pos).is_some_and(|&c| !is_space(c) && c != b'>' && c != b'/') {
            return Parse::Invalid("attributes must be separated by whitespace");
        }
    }
    if !stream_ns {
        return Parse::Invalid("the stream prefix is not bound to http://etherx.jabber.org/streams");
    }
    match namespace {
        Some(ns) if ns == "jabber:client" || ns == "jabber:server" => Parse::Complete(Header { namespace: ns, to }),
        Some(_) => Parse::Invalid("default namespace is neither jabber:client nor jabber:server"),
        None => Parse::Invalid("no default namespace"),
    }
}

enum Lit {
    Yes(usize),
    Partial,
    No,
}

/// Does `input[pos..]` start with `lit` (Yes, with the end), a prefix of it (Partial), or not?
fn literal(input: &[u8], pos: usize, lit: &[u8]) -> Lit {
    let rest = input.get(pos..).unwrap_or(&[]);
    let n = rest.len().min(lit.len());
    if rest.get(..n) != lit.get(..n) {
        Lit::No
    } else if n < lit.len() {
        Lit::Partial
    } else {
        Lit::Yes(pos + lit.len())
    }
}

fn incomplete_within_limit(input: &[u8]) -> Parse {
    if input.len() >= MAX_HEADER {
        Parse::Invalid("no end of the stream header within the first 4096 bytes")
    } else {
        Parse::Incomplete
    }
}

fn find(input: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    input
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| from + i)
}

fn skip_space(input: &[u8], mut pos: usize) -> usize {
    while input.get(pos).is_some_and(|&c| is_space(c)) {
        pos += 1;
    }
    pos
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b':' | b'_' | b'-' | b'.') || c >= 0x80
}

/// Decodes the five predefined entities and numeric references; anything else is left as is.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(rest.get(..amp).unwrap_or(""));
        let tail = rest.get(amp..).unwrap_or("");
        let Some(semi) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = tail.get(1..semi).unwrap_or("");
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "apos" => Some('\''),
            "quot" => Some('"'),
            _ => entity
                .strip_prefix("#x")
                .map(|h| u32::from_str_radix(h, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse::<u32>))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => out.push(c),
            None => out.push_str(tail.get(..=semi).unwrap_or("")),
        }
        rest = tail.get(semi + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_decode() {
        assert_eq!(unescape("a&amp;b&#x41;&#66;&bogus;&"), "a&bAB&bogus;&");
    }
}
