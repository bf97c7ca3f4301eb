//! pmmux plugin `regex`: matches a client whose first bytes match one of the configured regular
//! expressions, like sslh's `regex` probe. For protocols no other plugin knows: a banner, a magic
//! number, a command word.
//!
//! Params:
//!
//! ```toml
//! [backend.params]
//! patterns = ['^\x16\x03', '^HELO ']   # one pattern or a list; required, not empty
//! min_length = 4                        # bytes to wait for before giving up; default 1
//! ```
//!
//! Patterns use the syntax of the [`regex`] crate and run over bytes, with Unicode mode **off** by
//! default: `.` is any byte but `\n`, `\xff` is the byte 0xFF, `\w` is ASCII. Write `(?u)` to turn
//! it on for a pattern. A pattern is unanchored (it may match anywhere in the preview) unless it
//! says `^`; use `(?s)` to let `.` cross newlines and `(?i)` to ignore case. Each pattern may
//! compile to at most [`SIZE_LIMIT`] bytes, and at most [`MAX_PATTERNS`] are allowed; an invalid or
//! too large pattern is refused with the regex crate's error.
//!
//! Detection, over the bytes previewed so far (TCP) or one datagram (UDP):
//! * `Match` as soon as any pattern matches, with property `regex.pattern`: the index (from 0) of
//!   the first pattern in the list that matches;
//! * over TCP, `NeedMore` while nothing matched and the preview is shorter than `min_length`;
//! * else `NoMatch`. As with sslh, a pattern is tried on what has arrived: raise `min_length` to
//!   the length the patterns need, or a client whose first segment is short is refused early.

use pmmux_plugin_api::{export_plugin, Backend, BackendSpec, ConnInfo, Detection, Property};
use regex::bytes::{Regex, RegexBuilder};

/// The most a single pattern may compile to (`RegexBuilder::size_limit`), in bytes.
pub const SIZE_LIMIT: usize = 256 * 1024;
/// The most cache memory a single pattern's lazy DFA may use (`RegexBuilder::dfa_size_limit`).
pub const DFA_SIZE_LIMIT: usize = 1024 * 1024;
/// The most patterns one backend may have.
pub const MAX_PATTERNS: usize = 64;
/// The default for `min_length`.
pub const DEFAULT_MIN_LENGTH: usize = 1;

/// The backend's `[backend.params]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The patterns, in order (one string or a list).
    #[serde(default, deserialize_with = "pmmux_plugin_api::params::string_or_list")]
    pub patterns: Option<Vec<String>>,
    /// Bytes to wait for before deciding `NoMatch` (default [`DEFAULT_MIN_LENGTH`]).
    pub min_length: Option<u64>,
}

/// A `regex` backend.
#[derive(Debug, Clone)]
pub struct RegexProbe {
    patterns: Vec<Regex>,
    min_length: usize,
}

/// Compiles one pattern with the plugin's settings: bytes, Unicode mode off, bounded size.
pub fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .unicode(false)
        .size_limit(SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .build()
}

impl RegexProbe {
    /// Builds the backend from its params; the error tells the user what is wrong with them.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        Self::from_params(spec.params()?)
    }

    /// Builds the backend from already parsed params.
    pub fn from_params(params: Params) -> Result<Self, String> {
        let sources = params
            .patterns
            .ok_or("params.patterns is required: a regular expression or a list of them")?;
        if sources.is_empty() {
            return Err("params.patterns must not be empty".into());
        }
        if sources.len() > MAX_PATTERNS {
            return Err(format!(
                "params.patterns has {} patterns; at most {MAX_PATTERNS} are allowed",
                sources.len()
            ));
        }
        let patterns = sources
            .iter()
            .enumerate()
            .map(|(i, source)| {
                compile(source).map_err(|e| format!("params.patterns[{i}] `{source}` is not a valid regex: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let min_length = match params.min_length {
            None => DEFAULT_MIN_LENGTH,
            Some(0) => return Err("params.min_length must be at least 1".into()),
            Some(n) => usize::try_from(n).map_err(|_| format!("params.min_length {n} is too large"))?,
        };
        Ok(RegexProbe { patterns, min_length })
    }

    /// The index of the first pattern matching `bytes`, if any.
    pub fn first_match(&self, bytes: &[u8]) -> Option<usize> {
        self.patterns.iter().position(|re| re.is_match(bytes))
    }

    /// TCP detection over the bytes previewed so far.
    pub fn detect_stream(&self, preview: &[u8]) -> Detection {
        match self.first_match(preview) {
            Some(index) => matched(index),
            None if preview.len() < self.min_length => Detection::NeedMore,
            None => Detection::NoMatch,
        }
    }

    /// UDP detection over one whole datagram: `Match` or `NoMatch`, never `NeedMore`.
    pub fn detect_message(&self, message: &[u8]) -> Detection {
        match self.first_match(message) {
            Some(index) => matched(index),
            None => Detection::NoMatch,
        }
    }
}

fn matched(index: usize) -> Detection {
    Detection::Match(vec![Property::new("regex.pattern", index.to_string())])
}

impl Backend for RegexProbe {
    fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
        self.detect_stream(preview)
    }

    fn can_handle_message(&self, _client: &ConnInfo<'_>, message: &[u8]) -> Detection {
        self.detect_message(message)
    }
}

export_plugin! {
    name: "regex",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "regex" => RegexProbe::new },
}
