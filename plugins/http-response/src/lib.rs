//! pmmux plugin `http-response`: matches HTTP/1.x requests exactly as the `http` plugin does (shared
//! through `pmmux-http-core`) and serves a fixed HTTP/1.1 response itself, with keep-alive and
//! pipelining. Handy as a health endpoint, a default page or a benchmark target.
//!
//! Params (all optional):
//! * `status`: integer 100..=599, default 200. 1xx, 204 and 304 responses carry no content, so they
//!   require an empty `body` and get no `Content-Length` / `Content-Type`.
//! * `body`: string, default empty.
//! * `content_type`: default `text/plain; charset=utf-8`; empty leaves the field out.
//! * `host`, `path_prefix`: the request filters of the `http` plugin (see
//!   [`pmmux_http_core::HostPattern`] and [`pmmux_http_core::RequestFilter::matches_path`]).
//!
//! HTTP/2 is not served: a connection opening with the prior-knowledge preface (`PRI * HTTP/2.0`,
//! which the `http` plugin can forward) is `NoMatch` here from its third byte, whatever the params,
//! so a later backend can take it; there is no `h2c` param. Were the preface fed to a session
//! anyway, it would be answered 400 and closed.
//!
//! Properties on a match: those of `http` (`http.method`, `http.host`, `http.path`,
//! `http.version`). How the session answers is described on [`ResponseSession`]; in short, chunked
//! request bodies are not supported (501 and close), malformed heads get 400, oversized heads 431.
//!
//! Each response is rendered once per backend and copied per request. A client pipelining many
//! small requests against a large `body` makes the host write that many bodies per read: keep
//! `body` small or expect proportional output.

mod response;
mod session;

use std::sync::Arc;

use pmmux_http_core::{RequestFilter, StringOrList};
use pmmux_plugin_api::{export_plugin, Backend, BackendSpec, ConnInfo, Detection, Handling};

pub use response::{error_response, reason, ConnectionField, Response};
pub use session::ResponseSession;

/// Default `content_type`.
pub const DEFAULT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// The `http-response` backend's params.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpResponseParams {
    /// Status code, 100..=599.
    #[serde(default = "default_status")]
    pub status: i64,
    /// Response body.
    #[serde(default)]
    pub body: String,
    /// `Content-Type` value; empty omits the field.
    #[serde(default = "default_content_type")]
    pub content_type: String,
    /// Host patterns, as for `http`.
    #[serde(default)]
    pub host: Option<StringOrList>,
    /// Path prefixes, as for `http`.
    #[serde(default)]
    pub path_prefix: Option<StringOrList>,
}

fn default_status() -> i64 {
    200
}

fn default_content_type() -> String {
    DEFAULT_CONTENT_TYPE.to_owned()
}

/// An `http-response` backend.
#[derive(Debug)]
pub struct HttpResponse {
    filter: RequestFilter,
    response: Arc<Response>,
}

impl HttpResponse {
    /// Builds the backend from its `[backend.params]`.
    pub fn new(spec: &BackendSpec<'_>) -> Result<Self, String> {
        Self::from_params(spec.params()?)
    }

    /// Builds the backend from already parsed params.
    pub fn from_params(params: HttpResponseParams) -> Result<Self, String> {
        let response = Response::new(params.status, &params.body, &params.content_type)?;
        let filter = RequestFilter::new(params.host, params.path_prefix)?;
        Ok(HttpResponse {
            filter,
            response: Arc::new(response),
        })
    }

    /// A new session serving this backend's response.
    pub fn session(&self) -> ResponseSession {
        ResponseSession::new(Arc::clone(&self.response))
    }
}

impl Backend for HttpResponse {
    fn detect(&self, _conn: &ConnInfo<'_>, preview: &[u8]) -> Detection {
        pmmux_http_core::detect(preview, &self.filter)
    }

    fn open(&self, _conn: &ConnInfo<'_>, _preview: &[u8]) -> Handling {
        Handling::Serve(Box::new(self.session()))
    }

    fn needs_target(&self) -> bool {
        false
    }
}

export_plugin! {
    name: "http-response",
    version: env!("CARGO_PKG_VERSION"),
    protocols: { "http-response" => HttpResponse::new },
}

#[cfg(test)]
mod tests;
