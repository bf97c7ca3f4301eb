//! The admin endpoint (off unless `[admin] address` is set; loopback only unless `allow_remote`): a
//! minimal HTTP/1.0 server answering `GET /metrics` (Prometheus text format, [`crate::ops::metrics`]),
//! `GET /status` with the JSON [`crate::ops::status::Status`], `GET /status.txt` with its text form and
//! `GET /` or `/status.html` with a small HTML page. Requests are bounded in size, time and number
//! in flight: a slow client cannot hold it.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::ops::status::StatusSource;

const MAX_REQUEST: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Requests answered at once; a client beyond this is closed at once (each one is bounded by
/// [`REQUEST_TIMEOUT`], so slow clients hold a slot for 3 s at most).
const MAX_IN_FLIGHT: usize = 128;

/// Serves until `stop` turns true.
pub(crate) async fn serve(listener: TcpListener, source: StatusSource, mut stop: watch::Receiver<bool>) {
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
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
        let Ok(permit) = std::sync::Arc::clone(&in_flight).try_acquire_owned() else {
            tracing::debug!("admin endpoint busy; request closed");
            continue;
        };
        let source = source.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &source)).await {
                tracing::debug!(error = %e, "admin request timed out");
            }
        });
    }
}

async fn answer(mut stream: TcpStream, source: &StatusSource) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > MAX_REQUEST {
            break;
        }
    }
    let line = String::from_utf8_lossy(&buf);
    let mut words = line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            crate::ops::metrics::render::CONTENT_TYPE,
            crate::ops::metrics::render(source),
        ),
        ("GET", "/" | "/status.html") => (
            "200 OK",
            "text/html; charset=utf-8",
            crate::ops::status::html::render(&source.snapshot()),
        ),
        ("GET", "/status") => match serde_json::to_string_pretty(&source.snapshot()) {
            Ok(json) => ("200 OK", "application/json", json),
            Err(e) => ("500 Internal Server Error", "text/plain", e.to_string()),
        },
        ("GET", "/status.txt") => ("200 OK", "text/plain; charset=utf-8", source.snapshot().to_text()),
        _ => (
            "404 Not Found",
            "text/plain",
            "try GET /metrics, /status, /status.txt or /status.html\n".to_owned(),
        ),
    };
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}
