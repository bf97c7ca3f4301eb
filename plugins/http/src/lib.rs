//! pmmux plugin `http`: matches an HTTP/1.x request (known method, valid request line and header
//! fields), optionally filtered by host and path prefix, and forwards it to the backend's target.
//!
//! Params (all optional):
//! * `host`: a pattern or a list of them; see [`HostPattern`] (`a.example`, `a.example:8080`,
//!   `*.example`; case-insensitive; a pattern without a port matches every port).
//! * `path_prefix`: a prefix or a list of them, compared with the path and query as sent; see
//!   [`RequestFilter::matches_path`].
//!
//! Properties on a match: `http.method`, `http.host`, `http.path`, `http.version` (see
//! [`properties`]). The detection itself lives in `pmmux-http-core` (re-exported here), which the
//! `http-response` plugin shares.

use pmmux_plugin_api::{export_plugin, Backend, BackendSpec, ConnInfo, Detection};

pub use pmmux_http_core::{
    detect, method_prefix, probe, properties, HostPattern, Probe, RequestFilter, RequestInfo, StringOrList, MAX_HEAD,
    MAX_HEADERS, METHODS,
};

/// The `http` backend's params: the request filters.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpParams {
    /// Host patterns; see [`HostPattern`].
    #[serde(default)]
    pub host: Option<StringOrList>,
    /// Path prefixes; see [`RequestFilter::matches_path`].
    #[serde(default)]
    pub path_prefix: Option<StringOrList>,
}

/// An `http` backend: detection with its filters; handling is the default forward to the target.
#[derive(Debug)]
pub struct Http {
    filter: RequestFilter,
}

impl Http {
    /// Builds the backend from its `[backend.params]`.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        let params: HttpParams = spec.params()?;
        Ok(Http {
            filter: RequestFilter::new(params.host, params.path_prefix)?,
        })
    }

    /// The backend's request filters.
    pub fn filter(&self) -> &RequestFilter {
        &self.filter
    }
}

impl Backend for Http {
    fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
        detect(preview, &self.filter)
    }
}

export_plugin! {
    name: "http",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "http" => Http::new },
}

#[cfg(test)]
mod tests;
