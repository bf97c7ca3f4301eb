//! The admin endpoint (off unless `[admin] address` is set; loopback only unless `allow_remote`):
//! HTTP/1 on hyper, answering `GET /metrics` (Prometheus text format, [`crate::ops::metrics`]),
//! `GET /status` with the JSON [`crate::ops::status::Status`], `GET /status.txt` with its text form
//! and `GET /` or `/status.html` with a small HTML page (`HEAD` too). Requests are bounded in size,
//! time and number in flight: a slow client cannot hold it. One request per connection, answered
//! as HTTP/1.0 with `Connection: close`, the same bytes scrapers and `pmmux status` always got.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::ops::status::StatusSource;

/// The request line and headers together (hyper's smallest read buffer is this size, too); a
/// larger head is answered with 431.
const MAX_REQUEST: usize = 8 * 1024;
/// The whole exchange: reading the request, answering, writing the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Requests answered at once; a client beyond this is closed at once (each one is bounded by
/// [`REQUEST_TIMEOUT`], so slow clients hold a slot for 3 s at most).
const MAX_IN_FLIGHT: usize = 128;

/// Serves until `stop` turns true.
pub(crate) async fn serve(listener: TcpListener, source: StatusSource, mut stop: watch::Receiver<bool>) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut http = http1::Builder::new();
    http.keep_alive(false)
        .title_case_headers(true)
        .max_buf_size(MAX_REQUEST)
        .max_header_size(MAX_REQUEST);
    loop {
        let (stream, _) = tokio::select! {
            _ = async { drop(stop.wait_for(|s| *s).await) } => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
            tracing::debug!("admin endpoint busy; request closed");
            continue;
        };
        let source = source.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            std::future::ready(Ok::<_, Infallible>(answer(&request, &source)))
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(REQUEST_TIMEOUT, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "admin request failed"),
                Err(_) => tracing::debug!("admin request timed out"),
            }
        });
    }
}

/// The answer to one request: a page, 404 for an unknown path, 405 for a method other than GET
/// or HEAD (hyper leaves out the body of a HEAD answer).
fn answer<B>(request: &Request<B>, source: &StatusSource) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if !matches!(path, "/metrics" | "/" | "/status.html" | "/status" | "/status.txt") {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "try GET /metrics, /status, /status.txt or /status.html\n".to_owned(),
        );
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET and HEAD\n".to_owned(),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/metrics" => reply(
            StatusCode::OK,
            crate::ops::metrics::render::CONTENT_TYPE,
            crate::ops::metrics::render(source),
        ),
        "/status" => match serde_json::to_string_pretty(&source.snapshot()) {
            Ok(json) => reply(StatusCode::OK, "application/json", json),
            Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", e.to_string()),
        },
        "/status.txt" => reply(StatusCode::OK, "text/plain; charset=utf-8", source.snapshot().to_text()),
        _ => reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            crate::ops::status::html::render(&source.snapshot()),
        ),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    *response.version_mut() = Version::HTTP_10;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    response
}
