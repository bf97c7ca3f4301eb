//! The configuration loader: `{{env:NAME}}` / `{{env:NAME:-default}}` expansion, TOML, validation,
//! and the error report with lines and columns mapped back through the expansion. The input is the
//! file's text; a few variables with quotes, backslashes, newlines and braces in their values are
//! set for it to reference.
#![no_main]

use std::path::Path;
use std::sync::Once;

use libfuzzer_sys::fuzz_target;

fn set_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (name, value) in [
            ("PMMUX_FUZZ_PLAIN", "127.0.0.1:8080"),
            ("PMMUX_FUZZ_QUOTES", "a\"b'c\\\\d"),
            ("PMMUX_FUZZ_LINES", "x\ny\r\n\tz"),
            ("PMMUX_FUZZ_BRACES", "{{env:PMMUX_FUZZ_PLAIN}}"),
            ("PMMUX_FUZZ_EMPTY", ""),
            ("PMMUX_FUZZ_UNICODE", "ünï\u{1F600}\u{7f}"),
        ] {
            // No NUL: the environment cannot hold one (set_var panics). SAFETY: called once,
            // before any other thread of this process reads the environment.
            unsafe { std::env::set_var(name, value) };
        }
    });
}

fuzz_target!(|data: &[u8]| {
    set_env();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(error) = pmmux::config::parse(Path::new("/etc/pmmux/fuzz.toml"), text) {
        let report = error.to_string();
        assert!(report.starts_with("/etc/pmmux/fuzz.toml"), "{report}");
    }
});
