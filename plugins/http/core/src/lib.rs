//! HTTP/1.x request detection and the `host` / `path_prefix` filters, shared by the pmmux plugins
//! `http` (detect and forward) and `http-response` (detect and serve).
//!
//! This is a plain library rather than part of the `http` plugin crate because a plugin `cdylib`
//! cannot link another plugin's `rlib`: both would define the root-module symbol.
//!
//! Detection answers `NoMatch` as soon as the first bytes cannot start a known method and a space,
//! `NeedMore` while the request line or the `Host` field is still arriving, and decides once the host
//! is known, without waiting for the rest of the head. A request that names no host (HTTP/1.0, or a
//! non-conforming HTTP/1.1 client) is decided when its head is complete, and passes only filters
//! without `host` patterns. Malformed input (per `httparse`) is `NoMatch`.
//!
//! [`detect`] and [`probe`] see HTTP/1.x only: the HTTP/2 prior-knowledge preface (`PRI * HTTP/2.0`)
//! is `NoMatch` there (`PRI` is not a method of [`METHODS`]). The preface is recognised separately by
//! the [`h2`] module, for the `http` plugin, which forwards and so can carry HTTP/2; `http-response`,
//! which answers in HTTP/1.1 itself, does not use it.

mod filter;
pub mod h2;
mod request;

use pmmux_plugin_api::{Detection, Property};

pub use filter::{HostPattern, RequestFilter, StringOrList};
pub use h2::{h2_preface, h2_properties, h2c_detect, H2_PREFACE, H2_VERSION};
pub use request::{method_prefix, probe, Probe, RequestInfo, MAX_HEAD, MAX_HEADERS, METHODS};

/// Detection over the bytes previewed so far: an HTTP/1.x request passing `filter`, with its
/// [`properties`] on a match.
pub fn detect(preview: &[u8], filter: &RequestFilter) -> Detection {
    match probe(preview) {
        Probe::NeedMore => Detection::NeedMore,
        Probe::NotHttp => Detection::NoMatch,
        Probe::Request(request) if filter.matches(&request) => Detection::Match(properties(&request)),
        Probe::Request(_) => Detection::NoMatch,
    }
}

/// The properties a match attaches: `http.method`, `http.host` (as sent; absent when the request
/// names no host), `http.path` (see [`RequestInfo::path`]) and `http.version` (`HTTP/1.0` or
/// `HTTP/1.1`).
pub fn properties(request: &RequestInfo) -> Vec<Property> {
    let mut props = Vec::with_capacity(4);
    props.push(Property::new("http.method", request.method.as_str()));
    if let Some(host) = &request.host {
        props.push(Property::new("http.host", host.as_str()));
    }
    props.push(Property::new("http.path", request.path()));
    props.push(Property::new("http.version", request.version_str()));
    props
}
