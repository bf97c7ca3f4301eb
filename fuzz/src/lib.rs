//! What the fuzz targets share: [`plugin_target!`] drives one plugin's backend through every hook
//! that client or upstream bytes reach, checking the invariants the host relies on; [`split3`]
//! cuts one input into datagrams.
//!
//! Run them with `fuzz/run.sh SECONDS` (or `cargo +nightly fuzz run TARGET`); `fuzz/README.md`
//! says how they are built and what each covers.

use pmmux_plugin_api::{Backend, BackendSpec, Detection, Handling, SessionCtl};
use pmmux_plugin_testkit::{conn, same_kind, spec};

/// Whether a backend may answer `NeedMore` to one datagram (its message can span several).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagrams {
    /// Every datagram is judged whole: `NeedMore` to a first datagram is a bug.
    Whole,
    /// A client's message may span datagrams (QUIC's ClientHello).
    MaySpan,
}

/// What a TCP verdict on the first half of the bytes says about the verdict on all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segments {
    /// A decided half (`Match` or `NoMatch`) agrees in kind with the whole: the verdict does not
    /// depend on how the client's bytes were cut into segments.
    Agree,
    /// No promise: `regex` tries its patterns on what has arrived (documented in the plugin).
    Unordered,
}

/// Where an input with its own params starts: `#params\n<TOML>\n#end\n<bytes>`.
pub const PARAMS_MAGIC: &[u8] = b"#params\n";
const PARAMS_END: &[u8] = b"\n#end\n";

/// Splits `#params\n<TOML>\n#end\n<bytes>` into the TOML and the bytes; `None` for other inputs.
pub fn split_params(data: &[u8]) -> Option<(&str, &[u8])> {
    let rest = data.strip_prefix(PARAMS_MAGIC)?;
    let end = rest.windows(PARAMS_END.len()).position(|w| w == PARAMS_END)?;
    let toml = std::str::from_utf8(&rest[..end]).ok()?;
    Some((toml, &rest[end + PARAMS_END.len()..]))
}

/// Builds a backend of `protocol` from `params`, as the host does from `[backend.params]`.
pub fn build<B>(protocol: &str, params: &str, new: impl FnOnce(&BackendSpec<'_>) -> Result<B, String>) -> Option<B> {
    new(&spec(protocol, params)).ok()
}

/// Cuts `data` in three (the thirds; some may be empty).
pub fn split3(data: &[u8]) -> [&[u8]; 3] {
    let (a, rest) = data.split_at(data.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    [a, b, c]
}

/// Every hook that network bytes reach, over `data`:
/// * TCP `detect` on the whole input and on its first half: a decided half must agree with the
///   whole as `segments` says, or the host would decide differently depending on how the bytes
///   arrived; after a match, `open` and a served session fed the input in two pieces;
/// * UDP `can_handle_message` (never `NeedMore` for [`Datagrams::Whole`]), `handle_message` after
///   a match, and `detect_datagrams` over the input cut in three;
/// * `health_verdict` with the input as the target's answer, open and closed.
pub fn exercise<B: Backend + ?Sized>(backend: &B, data: &[u8], datagrams: Datagrams, segments: Segments) {
    let conn = conn();
    if !data.is_empty() {
        let whole = backend.detect(&conn, data);
        let half = &data[..data.len() / 2];
        if !half.is_empty() {
            let early = backend.detect(&conn, half);
            let agrees = match segments {
                Segments::Agree => early == Detection::NeedMore || same_kind(&early, &whole),
                Segments::Unordered => true,
            };
            assert!(
                agrees,
                "TCP: {early:?} on the first {} bytes, {whole:?} on all {}",
                half.len(),
                data.len()
            );
        }
        if matches!(whole, Detection::Match(_)) {
            serve(backend.open(&conn, data), data);
        }
    }
    let first = backend.can_handle_message(&conn, data);
    if datagrams == Datagrams::Whole {
        assert_ne!(first, Detection::NeedMore, "UDP: NeedMore for a whole datagram");
    }
    if matches!(first, Detection::Match(_)) {
        let _ = backend.handle_message(&conn, data);
    }
    let _ = backend.detect_datagrams(&conn, &split3(data));
    let _ = backend.health_verdict(data, false);
    let _ = backend.health_verdict(data, true);
}

/// Feeds a served session the input in two pieces, then the end of input, as the host would.
fn serve(handling: Handling, data: &[u8]) {
    let Handling::Serve(mut session) = handling else {
        return;
    };
    let mut out = Vec::new();
    let (a, b) = data.split_at(data.len() / 2);
    for piece in [a, b] {
        if session.on_data(piece, &mut out) == SessionCtl::Close {
            return;
        }
    }
    let _ = session.on_eof(&mut out);
}

/// Defines the fuzz target of one plugin: the input goes through [`exercise`] with a backend built
/// from `params` (built once), or, for inputs of the form `#params\n<TOML>\n#end\n<bytes>`, with a
/// backend built from that TOML (the `[backend.params]` a config file hands the plugin).
#[macro_export]
macro_rules! plugin_target {
    ($protocol:expr, $params:expr, $new:path, $datagrams:expr $(,)?) => {
        $crate::plugin_target!($protocol, $params, $new, $datagrams, $crate::Segments::Agree);
    };
    ($protocol:expr, $params:expr, $new:path, $datagrams:expr, $segments:expr $(,)?) => {
        static DEFAULT: ::std::sync::OnceLock<Box<dyn ::pmmux_plugin_api::Backend>> = ::std::sync::OnceLock::new();

        ::libfuzzer_sys::fuzz_target!(|data: &[u8]| {
            if let Some((params, bytes)) = $crate::split_params(data) {
                if let Some(backend) = $crate::build($protocol, params, $new) {
                    $crate::exercise(&backend, bytes, $datagrams, $segments);
                }
                return;
            }
            let backend = DEFAULT.get_or_init(|| {
                let backend = $crate::build($protocol, $params, $new).expect("the default params are valid");
                Box::new(backend)
            });
            $crate::exercise(backend.as_ref(), data, $datagrams, $segments);
        });
    };
}
