//! pmmux plugin `http`: matches an HTTP/1.x request (known method, valid request line and header
//! fields), optionally filtered by host and path prefix, and forwards it to the backend's target. It
//! also matches HTTP/2 with prior knowledge ("h2c" started with the `PRI * HTTP/2.0` preface, as
//! `curl --http2-prior-knowledge` sends), unless filtered or refused by `h2c = false`.
//!
//! Params (all optional):
//! * `host`: a pattern or a list of them; see [`HostPattern`] (`a.example`, `a.example:8080`,
//!   `*.example`; case-insensitive; a pattern without a port matches every port).
//! * `path_prefix`: a prefix or a list of them, compared with the path and query as sent; see
//!   [`RequestFilter::matches_path`].
//! * `h2c`: bool, default `true`: whether prior-knowledge HTTP/2 connections match. They are
//!   recognised by their 24-byte preface alone (`NeedMore` on its prefixes); the host and path are in
//!   the HPACK-compressed HEADERS frame that follows, which is not decoded, so a backend with `host`
//!   or `path_prefix` never matches them (and `h2c = true` together with either is refused as
//!   contradictory). HTTP/2 upgraded from HTTP/1.1 (`Upgrade: h2c`) starts as an HTTP/1.1 request
//!   and is routed as one.
//!
//! The verdict is taken at the first complete line that names the host (the request line for an
//! absolute-form or CONNECT target, else the first `Host` field): lines after it never change it,
//! so a request is routed the same however its head was cut into TCP segments. A second `Host`
//! field or a malformed one after the first reaches the chosen server, which must refuse it (RFC
//! 9112 §3.2: 400).
//!
//! Health check (when the backend has one configured in the host): `HEAD / HTTP/1.0` with the
//! first `host` param that is not a wildcard as `Host`; healthy when the status line's code is
//! below 500 (see [`health_verdict`]).
//!
//! Properties on a match: `http.method`, `http.host`, `http.path`, `http.version` (see
//! [`properties`]); for prior-knowledge HTTP/2, only `http.version` = `HTTP/2` (see
//! [`h2_properties`]). The detection itself lives in `pmmux-http-core` (re-exported here), which the
//! `http-response` plugin shares (that plugin serves HTTP/1.1 and never matches the HTTP/2
//! preface).

use pmmux_plugin_api::{
    export_plugin, Backend, BackendSpec, ConnInfo, Detection, HealthProbe, HealthTransport, HealthVerdict,
};

pub use pmmux_http_core::{
    detect, h2_preface, h2_properties, h2c_detect, method_prefix, probe, properties, HostPattern, Probe, RequestFilter,
    RequestInfo, StringOrList, H2_PREFACE, H2_VERSION, MAX_HEAD, MAX_HEADERS, METHODS,
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
    /// Whether HTTP/2 prior-knowledge connections match; unset means yes when no filter is set.
    #[serde(default)]
    pub h2c: Option<bool>,
}

/// An `http` backend: detection with its filters; handling is the default forward to the target.
#[derive(Debug)]
pub struct Http {
    filter: RequestFilter,
    h2c: bool,
    /// `Host` of the health probe: the first non-wildcard `host` param.
    probe_host: Option<String>,
}

impl Http {
    /// Builds the backend from its `[backend.params]`.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        Self::from_params(spec.params()?)
    }

    /// Builds the backend from already parsed params.
    pub fn from_params(params: HttpParams) -> Result<Self, String> {
        let probe_host = params
            .host
            .as_ref()
            .and_then(|StringOrList(hosts)| hosts.iter().find(|h| !h.contains('*')).cloned());
        let filter = RequestFilter::new(params.host, params.path_prefix)?;
        if params.h2c == Some(true) && !filter.is_empty() {
            return Err(
                "params.h2c = true cannot be combined with `host` or `path_prefix`: an HTTP/2 \
                        prior-knowledge connection names neither before its HPACK-compressed headers, so \
                        filters never pass it; omit `h2c` or the filters"
                    .into(),
            );
        }
        let h2c = params.h2c.unwrap_or(true) && filter.is_empty();
        Ok(Http {
            filter,
            h2c,
            probe_host,
        })
    }

    /// The backend's request filters.
    pub fn filter(&self) -> &RequestFilter {
        &self.filter
    }

    /// Whether this backend matches HTTP/2 prior-knowledge connections (`h2c` not false and no
    /// filter configured).
    pub fn accepts_h2c(&self) -> bool {
        self.h2c
    }

    /// The detection itself, over the bytes previewed so far: the HTTP/2 preface when accepted
    /// (its strict prefixes need more), else an HTTP/1.x request passing the filters.
    pub fn detect_preview(&self, preview: &[u8]) -> Detection {
        if self.h2c {
            match h2_preface(preview) {
                Some(true) => return Detection::Match(h2_properties()),
                Some(false) => return Detection::NeedMore,
                None => {}
            }
        }
        detect(preview, &self.filter)
    }
}

impl Backend for Http {
    fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
        self.detect_preview(preview)
    }

    fn health_probe(&self) -> Option<HealthProbe> {
        Some(HealthProbe {
            transport: HealthTransport::Tcp,
            send: health_request(self.probe_host.as_deref()),
        })
    }

    fn health_verdict(&self, response: &[u8], closed: bool) -> HealthVerdict {
        health_verdict(response, closed)
    }
}

/// The health probe's request: `HEAD / HTTP/1.0`, with `Host` when known.
pub fn health_request(host: Option<&str>) -> Vec<u8> {
    match host {
        Some(h) => format!("HEAD / HTTP/1.0\r\nHost: {h}\r\nUser-Agent: pmmux-health\r\n\r\n").into_bytes(),
        None => b"HEAD / HTTP/1.0\r\nUser-Agent: pmmux-health\r\n\r\n".to_vec(),
    }
}

/// Longest status line awaited.
const MAX_STATUS_LINE: usize = 1024;

/// Judges the answer to [`health_request`] by its status line: `HTTP/1.x` and a code below 500.
pub fn health_verdict(response: &[u8], closed: bool) -> HealthVerdict {
    let Some(end) = response.iter().take(MAX_STATUS_LINE).position(|&b| b == b'\n') else {
        return if closed || response.len() >= MAX_STATUS_LINE {
            HealthVerdict::Unhealthy("no HTTP status line in the answer".into())
        } else {
            HealthVerdict::NeedMore
        };
    };
    let line = String::from_utf8_lossy(&response[..end]);
    let line = line.trim_end();
    let mut parts = line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    match code.parse::<u16>() {
        Ok(c) if version.starts_with("HTTP/") && (100..500).contains(&c) => HealthVerdict::Healthy,
        Ok(c) if version.starts_with("HTTP/") && c < 600 => HealthVerdict::Unhealthy(format!("answered `{line}`")),
        _ => HealthVerdict::Unhealthy(format!("not an HTTP status line: `{line}`")),
    }
}

export_plugin! {
    name: "http",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "http" => Http::new },
}

#[cfg(test)]
mod tests;
