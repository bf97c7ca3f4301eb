//! The quiet panic hook every plugin installs when it is loaded (through [`crate::export_plugin!`]).
//!
//! A plugin links its own copy of std, so its panics run its own panic hook. The default one writes
//! to stderr on every panic ("thread '...' panicked at ...", a backtrace with `RUST_BACKTRACE`),
//! bypassing the host's log; a client sending the bytes that trigger a bug could flood it. This hook
//! writes nothing: it notes where the panic happened, the guard around each hook adds that to the error it
//! returns, and the host logs it once per burst with the backend, plugin and client. A backtrace is
//! captured only when `PMMUX_PLUGIN_BACKTRACE=1` is set (not with `RUST_BACKTRACE`, which the host
//! process may carry for its own sake).
//!
//! Nothing here registers a thread-local destructor (the location is kept in a plain `Cell` of
//! bytes): a library that did could not be unmapped while the host's threads live.

use std::cell::Cell;
use std::fmt::Write as _;
use std::panic::PanicHookInfo;
use std::sync::{Mutex, Once};

/// Room for a panic location's file name; longer ones are cut.
const FILE_MAX: usize = 160;

/// The last panic's location on this thread: file bytes, their length, line, column.
#[derive(Clone, Copy)]
struct At {
    file: [u8; FILE_MAX],
    len: usize,
    line: u32,
    col: u32,
}

thread_local! {
    static LAST: Cell<Option<At>> = const { Cell::new(None) };
}

/// The backtrace of the last panic, when asked for (rare: a global is enough).
static BACKTRACE: Mutex<Option<String>> = Mutex::new(None);

/// Installs the quiet hook in this library's std, once.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(quiet_hook)));
}

fn quiet_hook(info: &PanicHookInfo<'_>) {
    if let Some(loc) = info.location() {
        let bytes = loc.file().as_bytes();
        let len = bytes.len().min(FILE_MAX);
        let mut file = [0u8; FILE_MAX];
        file[..len].copy_from_slice(&bytes[..len]);
        LAST.with(|l| {
            l.set(Some(At {
                file,
                len,
                line: loc.line(),
                col: loc.column(),
            }))
        });
    }
    if std::env::var_os("PMMUX_PLUGIN_BACKTRACE").is_some_and(|v| v == "1") {
        let bt = std::backtrace::Backtrace::force_capture().to_string();
        *BACKTRACE.lock().unwrap_or_else(|p| p.into_inner()) = Some(bt);
    }
}

/// The last panic's location (` at file:line:col`) and backtrace (with a leading newline), each
/// empty when unknown; clears both.
pub(crate) fn take() -> (String, String) {
    let mut at = String::new();
    if let Some(a) = LAST.with(|l| l.take()) {
        let file = String::from_utf8_lossy(&a.file[..a.len]);
        let _ = write!(at, " at {file}:{}:{}", a.line, a.col);
    }
    let backtrace = BACKTRACE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .map(|bt| format!("\n{bt}"))
        .unwrap_or_default();
    (at, backtrace)
}
