//! A strict, bounded bencode parser (BEP 3 "bencoding") for recognising DHT messages: it accepts
//! only canonical encodings (no leading zeros, dictionary keys as sorted unique byte strings), at
//! most [`MAX_DEPTH`] levels of nesting, and never panics on any input.

/// The deepest nesting of lists and dictionaries accepted.
pub const MAX_DEPTH: usize = 16;

/// A bencoded value borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// `i<n>e`.
    Int(i64),
    /// `<len>:<bytes>`.
    Bytes(&'a [u8]),
    /// `l...e`.
    List(Vec<Value<'a>>),
    /// `d...e`, keys in the order given (sorted, by construction).
    Dict(Vec<(&'a [u8], Value<'a>)>),
}

impl<'a> Value<'a> {
    /// The value under `key`, if this is a dictionary that has it.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        match self {
            Value::Dict(entries) => entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The bytes, if this is a byte string.
    pub fn bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// Parses `input` as exactly one bencoded value, with nothing after it.
pub fn parse(input: &[u8]) -> Option<Value<'_>> {
    let mut parser = Parser { input, pos: 0 };
    let value = parser.value(0)?;
    (parser.pos == input.len()).then_some(value)
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn value(&mut self, depth: usize) -> Option<Value<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let n = self.number(b'e', true)?;
                Some(Value::Int(n))
            }
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Some(Value::List(items))
            }
            b'd' => {
                self.pos += 1;
                let mut entries: Vec<(&'a [u8], Value<'a>)> = Vec::new();
                while self.peek()? != b'e' {
                    let key = self.string()?;
                    if entries.last().is_some_and(|(last, _)| *last >= key) {
                        return None; // unsorted or duplicate key: not canonical
                    }
                    let value = self.value(depth + 1)?;
                    entries.push((key, value));
                }
                self.pos += 1;
                Some(Value::Dict(entries))
            }
            b'0'..=b'9' => self.string().map(Value::Bytes),
            _ => None,
        }
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.number(b':', false)?).ok()?;
        let end = self.pos.checked_add(len)?;
        let bytes = self.input.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    /// Decimal digits up to `end` (consumed), canonical: no leading zeros, no `-0`.
    fn number(&mut self, end: u8, signed: bool) -> Option<i64> {
        let negative = signed && self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let start = self.pos;
        let mut n: i64 = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            n = n.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
            self.pos += 1;
        }
        let digits = self.pos - start;
        let leading_zero = digits > 1 && self.input.get(start) == Some(&b'0');
        if digits == 0 || leading_zero || (negative && n == 0) || self.peek() != Some(end) {
            return None;
        }
        self.pos += 1;
        Some(if negative { -n } else { n })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_values_parse() {
        assert_eq!(parse(b"i42e"), Some(Value::Int(42)));
        assert_eq!(parse(b"i-3e"), Some(Value::Int(-3)));
        assert_eq!(parse(b"4:spam"), Some(Value::Bytes(b"spam")));
        assert_eq!(parse(b"0:"), Some(Value::Bytes(b"")));
        let dict = parse(b"d3:cow3:moo4:spaml1:a1:bee").unwrap();
        assert_eq!(dict.get(b"cow").and_then(Value::bytes), Some(&b"moo"[..]));
    }

    #[test]
    fn non_canonical_or_broken_values_do_not() {
        for bad in [
            &b""[..],
            b"i03e",
            b"i-0e",
            b"ie",
            b"i1",
            b"03:abc",
            b"5:abc",
            b"d1:b1:x1:a1:ye",
            b"d1:a1:x1:a1:ye",
            b"di1e1:xe",
            b"l",
            b"i1ei2e",
            b"x",
            b"i99999999999999999999e",
            b"99999999999999999999999:",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        let deep = [&[b'l'; 40][..], &[b'e'; 40][..]].concat();
        assert_eq!(parse(&deep), None);
    }
}
