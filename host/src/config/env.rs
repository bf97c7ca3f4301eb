//! `{{env:NAME}}` and `{{env:NAME:-default}}` in configuration files: placeholders inside quoted
//! TOML strings are replaced by environment variables before the TOML is parsed. Comments, keys
//! outside quotes and bare values are left alone; the substituted text is escaped for the kind of
//! string it lands in and never scanned again (no recursive expansion). Every replaced region is
//! remembered, so an error in the expanded text is reported at its line and column in the file.

use std::ops::Range;

/// Text with its placeholders replaced, and where each replacement was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Expanded {
    /// The text to parse.
    pub text: String,
    /// Each replacement: its byte range in the expanded text and in the original.
    replaced: Vec<(Range<usize>, Range<usize>)>,
}

impl Expanded {
    /// The byte offset in the original text of `offset` in the expanded one: inside a
    /// replacement, where its placeholder began.
    pub(super) fn original_offset(&self, offset: usize) -> usize {
        let mut shift: isize = 0;
        for (new, old) in &self.replaced {
            if offset < new.start {
                break;
            }
            if offset < new.end {
                return old.start;
            }
            shift = old.end as isize - new.end as isize;
        }
        (offset as isize + shift).max(0) as usize
    }
}

/// A placeholder that cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct EnvError {
    /// Byte offset of the placeholder in the original text.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Normal,
    Comment,
    Basic,
    MultiBasic,
    Literal,
    MultiLiteral,
}

const OPEN: &str = "{{env:";

/// Replaces every placeholder inside a quoted string of `text`, asking `lookup` for variables.
/// A default (`:-`) is used when the variable is unset or empty, as in the shell.
#[cfg(test)]
pub(super) fn expand(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Expanded, Vec<EnvError>> {
    match expand_all(text, lookup) {
        (expanded, errors) if errors.is_empty() => Ok(expanded),
        (_, errors) => Err(errors),
    }
}

/// Like [`expand`], going on past a placeholder that cannot be expanded (it is left as it is) so
/// every one is reported.
pub(super) fn expand_all(text: &str, lookup: impl Fn(&str) -> Option<String>) -> (Expanded, Vec<EnvError>) {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut replaced = Vec::new();
    let mut errors = Vec::new();
    let mut state = State::Normal;
    let mut copied = 0; // text[..copied] is in `out` already
    let mut i = 0;
    let starts = |i: usize, s: &str| text.as_bytes()[i..].starts_with(s.as_bytes());
    while i < bytes.len() {
        let b = bytes[i];
        match state {
            State::Normal => {
                match b {
                    b'#' => state = State::Comment,
                    b'"' if starts(i, "\"\"\"") => (state, i) = (State::MultiBasic, i + 2),
                    b'"' => state = State::Basic,
                    b'\'' if starts(i, "'''") => (state, i) = (State::MultiLiteral, i + 2),
                    b'\'' => state = State::Literal,
                    _ => {}
                }
                i += 1;
                continue;
            }
            State::Comment => {
                if b == b'\n' {
                    state = State::Normal;
                }
                i += 1;
                continue;
            }
            State::Basic | State::MultiBasic if b == b'\\' => {
                i += 2;
                continue;
            }
            State::Basic if b == b'"' || b == b'\n' => state = State::Normal,
            State::MultiBasic if starts(i, "\"\"\"") => (state, i) = (State::Normal, i + 2),
            State::Literal if b == b'\'' || b == b'\n' => state = State::Normal,
            State::MultiLiteral if starts(i, "'''") => (state, i) = (State::Normal, i + 2),
            _ if starts(i, OPEN) => {
                let Some(len) = text[i..].find("}}").map(|e| e + 2) else {
                    errors.push(EnvError {
                        offset: i,
                        message: "`{{env:` without its closing `}}`".into(),
                    });
                    break;
                };
                match substitute(&text[i + OPEN.len()..i + len - 2], state, &lookup) {
                    Ok(value) => {
                        out.push_str(&text[copied..i]);
                        let start = out.len();
                        out.push_str(&value);
                        replaced.push((start..out.len(), i..i + len));
                        copied = i + len;
                    }
                    Err(message) => errors.push(EnvError { offset: i, message }),
                }
                i += len;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&text[copied.min(text.len())..]);
    (Expanded { text: out, replaced }, errors)
}

/// The replacement for one placeholder body (`NAME` or `NAME:-default`), escaped for `state`.
fn substitute(body: &str, state: State, lookup: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let (name, default) = match body.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (body, None),
    };
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "`{{{{env:{body}}}}}`: `{name}` is not an environment variable name (letters, digits, _)"
        ));
    }
    let value = match (lookup(name).filter(|v| !v.is_empty()), default) {
        (Some(v), _) => v,
        // The default is written in the file's own string syntax: copied as it is.
        (None, Some(d)) => return Ok(d.to_owned()),
        (None, None) => {
            return Err(format!(
                "environment variable {name} is not set (give a default with {{{{env:{name}:-default}}}})"
            ))
        }
    };
    match state {
        State::Basic | State::MultiBasic => Ok(escape_basic(&value)),
        State::Literal if value.contains(['\'', '\n', '\r']) => Err(format!(
            "environment variable {name} holds a quote or line break, which a '...' string cannot; use a \"...\" string"
        )),
        State::MultiLiteral if value.contains("'''") => Err(format!(
            "environment variable {name} holds ''', which a '''...''' string cannot; use a \"...\" string"
        )),
        _ => Ok(value),
    }
}

/// Escapes a value for a TOML basic string, so it arrives exactly as it is in the environment.
fn escape_basic(value: &str) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            '\r' => s.push_str("\\r"),
            c if c.is_control() => s.push_str(&format!("\\u{:04X}", c as u32)),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TARGET" => Some("127.0.0.1:8080".into()),
            "QUOTE" => Some("a\"b\\c".into()),
            "EMPTY" => Some(String::new()),
            "APOS" => Some("it's".into()),
            "NEST" => Some("{{env:TARGET}}".into()),
            _ => None,
        }
    }

    fn ok(text: &str) -> String {
        expand(text, env).unwrap().text
    }

    #[test]
    fn replaces_in_strings_only() {
        assert_eq!(ok("t = \"{{env:TARGET}}\""), "t = \"127.0.0.1:8080\"");
        assert_eq!(ok("t = 'x{{env:TARGET}}y'"), "t = 'x127.0.0.1:8080y'");
        assert_eq!(ok("# {{env:UNSET}}\nt = 1"), "# {{env:UNSET}}\nt = 1");
        assert_eq!(ok("t = {{env:TARGET}}"), "t = {{env:TARGET}}");
        assert_eq!(
            ok("t = \"\"\"\n{{env:TARGET}}\"\"\""),
            "t = \"\"\"\n127.0.0.1:8080\"\"\""
        );
    }

    #[test]
    fn escapes_for_basic_strings_and_refuses_what_literals_cannot_hold() {
        let text = ok("v = \"{{env:QUOTE}}\"");
        assert_eq!(text, r#"v = "a\"b\\c""#);
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed["v"].as_str(), Some("a\"b\\c"));
        assert_eq!(ok("v = '{{env:QUOTE}}'"), "v = 'a\"b\\c'");
        let err = expand("v = '{{env:APOS}}'", env).unwrap_err();
        assert!(err[0].message.contains("APOS holds a quote"), "{err:?}");
    }

    #[test]
    fn defaults_unset_and_empty_and_no_recursion() {
        assert_eq!(ok("v = \"{{env:UNSET:-9.9.9.9:53}}\""), "v = \"9.9.9.9:53\"");
        assert_eq!(ok("v = \"{{env:EMPTY:-d}}\""), "v = \"d\"");
        assert_eq!(ok("v = \"{{env:TARGET:-d}}\""), "v = \"127.0.0.1:8080\"");
        assert_eq!(ok("v = \"{{env:NEST}}\""), "v = \"{{env:TARGET}}\"");
    }

    #[test]
    fn unset_without_default_is_an_error_at_the_placeholder() {
        let text = "a = 1\nv = \"x{{env:MISSING}}\"\nw = \"{{env:9BAD}}\"";
        let err = expand(text, env).unwrap_err();
        assert_eq!(err.len(), 2);
        assert_eq!(err[0].offset, text.find("{{env:MISSING").unwrap());
        assert!(err[0].message.contains("MISSING is not set"), "{}", err[0].message);
        assert!(err[1].message.contains("not an environment variable name"));
        assert!(expand("v = \"{{env:X", env).unwrap_err()[0].message.contains("closing"));
    }

    #[test]
    fn maps_offsets_back_to_the_file() {
        let text = "a = \"{{env:TARGET}}\"\nb = 1";
        let e = expand(text, env).unwrap();
        let b_new = e.text.find("b = 1").unwrap();
        assert_eq!(e.original_offset(b_new), text.find("b = 1").unwrap());
        assert_eq!(e.original_offset(2), 2);
        // Inside the value: where the placeholder is.
        assert_eq!(e.original_offset(7), 5);
    }

    #[test]
    fn escaped_quotes_do_not_end_a_string() {
        assert_eq!(
            ok("v = \"a\\\"{{env:TARGET}}\" # {{env:UNSET}}"),
            "v = \"a\\\"127.0.0.1:8080\" # {{env:UNSET}}"
        );
    }

    /// Through the whole configuration parser: errors keep the file's line and column.
    #[test]
    fn config_errors_point_into_the_file() {
        use std::path::Path;
        let path = Path::new("/etc/pmmux/pmmux.toml");
        std::env::set_var("PMMUX_UNIT_ENV_TARGET", "127.0.0.1:9999");
        let text = "[[listener]]\naddress = \"127.0.0.1:1\"\n[[backend]]\nname = \"{{env:PMMUX_UNIT_ENV_TARGET}}\"\nprotocol = \"pass\"\ntarget = \"{{env:PMMUX_UNIT_ENV_TARGET}}\"\n";
        let config = super::super::parse(path, text).unwrap();
        assert_eq!(config.backends[0].target.as_deref(), Some("127.0.0.1:9999"));

        let text = "[[listener]]\naddress = \"{{env:PMMUX_UNIT_ENV_UNSET_X}}\"\n";
        let err = super::super::parse(path, text).unwrap_err().to_string();
        assert_eq!(
            err,
            "/etc/pmmux/pmmux.toml:2:12: environment variable PMMUX_UNIT_ENV_UNSET_X is not set \
             (give a default with {{env:PMMUX_UNIT_ENV_UNSET_X:-default}})"
        );
        // An error after a replacement on the same line is at its column in the file.
        let text = "[[listener]]\naddress = \"{{env:PMMUX_UNIT_ENV_TARGET}}\", nme = 1\n";
        let err = super::super::parse(path, text).unwrap_err();
        assert_eq!((err.issues[0].line, err.issues[0].column), (2, 42), "{err}");
    }
}
