//! HTTP/1.x request heads and the HTTP/2 preface (`pmmux-http-core`, used by `http` and
//! `http-response`): the method prefix check, the probe with its host and path, the filters of a
//! backend with `host` and `path_prefix` params, and h2c detection. A decided first half of the
//! input (a request or `NotHttp`) must be exactly the verdict on the whole.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pmmux_http_core::{detect, h2c_detect, method_prefix, probe, Probe, RequestFilter, StringOrList};

fn filters() -> &'static [RequestFilter; 2] {
    static FILTERS: OnceLock<[RequestFilter; 2]> = OnceLock::new();
    FILTERS.get_or_init(|| {
        let list = |items: &[&str]| Some(StringOrList(items.iter().map(|s| (*s).to_owned()).collect()));
        [
            RequestFilter::default(),
            RequestFilter::new(list(&["a.example", "*.b.example", "[::1]"]), list(&["/api/", "*"]))
                .expect("valid filter"),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = method_prefix(data);
    let whole = probe(data);
    if let Probe::Request(request) = &whole {
        let _ = (request.path(), request.version_str());
        for filter in filters() {
            let _ = filter.matches(request);
        }
    }
    // The verdict is taken at the line that makes the host known and later lines never change it,
    // so it does not depend on how the bytes were cut into segments.
    let half = probe(&data[..data.len() / 2]);
    assert!(
        half == Probe::NeedMore || half == whole,
        "{half:?} on the first half, {whole:?} on the whole"
    );
    for filter in filters() {
        let _ = detect(data, filter);
    }
    let _ = h2c_detect(data);
});
