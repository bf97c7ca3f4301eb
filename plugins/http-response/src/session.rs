//! The serving side of `http-response`: a sans-I/O HTTP/1.x server session that answers every
//! request on a connection with the configured response, with keep-alive, pipelining and request
//! bodies skipped by `Content-Length`.

use std::sync::Arc;

use httparse::{Status, EMPTY_HEADER};
use pmmux_http_core::{MAX_HEAD, MAX_HEADERS};
use pmmux_plugin_api::{Session, SessionCtl};

use crate::response::{error_response, ConnectionField, Response, CONTINUE};

/// One connection's server.
///
/// * Each complete request head is answered once its body (by `Content-Length`) has been read and
///   discarded; requests pipelined in one read are all answered, in order.
/// * The connection closes after the response when the client sent `Connection: close`, or is
///   HTTP/1.0 without `Connection: keep-alive` (which then gets `Connection: keep-alive` back).
/// * `Expect: 100-continue` with a body gets `100 Continue` first.
/// * A malformed head gets 400, a head over [`MAX_HEAD`] bytes or [`MAX_HEADERS`] fields gets 431,
///   a request with `Transfer-Encoding` (chunked bodies are not decoded, so the end of the body
///   cannot be found) gets 501; each then closes.
/// * `HEAD` gets the head only. Host and path filters are not applied per request: the connection
///   was routed here by its first request, later ones are answered alike.
#[derive(Debug)]
pub struct ResponseSession {
    response: Arc<Response>,
    /// Bytes received and not yet consumed start at `buf[start]`.
    buf: Vec<u8>,
    start: usize,
    /// Bytes of `buf[start..]` already known to hold no complete line, so no new head.
    scanned: usize,
    /// Request body bytes still to discard.
    body_left: u64,
    /// The answer to the request whose body is being discarded.
    pending: Option<Answer>,
    closed: bool,
}

/// How to answer one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Answer {
    head_only: bool,
    connection: ConnectionField,
}

impl Answer {
    fn closes(&self) -> bool {
        self.connection == ConnectionField::Close
    }
}

impl ResponseSession {
    /// A session answering with `response`.
    pub fn new(response: Arc<Response>) -> Self {
        ResponseSession {
            response,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            body_left: 0,
            pending: None,
            closed: false,
        }
    }

    /// Bytes held for a request head not complete yet (bounded by about [`MAX_HEAD`]).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Sends an error response and marks the session closed.
    fn fail(&mut self, status: u16, out: &mut Vec<u8>) -> SessionCtl {
        out.extend_from_slice(&error_response(status));
        self.closed = true;
        SessionCtl::Close
    }

    /// Consumes as many requests as the buffer holds.
    fn process(&mut self, out: &mut Vec<u8>) -> SessionCtl {
        loop {
            if self.body_left > 0 {
                let available = (self.buf.len() - self.start) as u64;
                let skip = available.min(self.body_left);
                self.start += skip as usize; // skip <= available, which is a usize
                self.body_left -= skip;
                if self.body_left > 0 {
                    return SessionCtl::Continue;
                }
            }
            if let Some(answer) = self.pending.take() {
                self.response.write(out, answer.head_only, answer.connection);
                if answer.closes() {
                    self.closed = true;
                    return SessionCtl::Close;
                }
            }
            // RFC 9112 §2.2: ignore empty lines before a request line.
            loop {
                let rest = &self.buf[self.start..];
                let skip = if rest.starts_with(b"\r\n") {
                    2
                } else if rest.starts_with(b"\n") {
                    1
                } else {
                    break;
                };
                self.start += skip;
                self.scanned = 0;
            }
            let rest = &self.buf[self.start..];
            if rest.is_empty() {
                return SessionCtl::Continue;
            }
            if !rest[self.scanned.min(rest.len())..].contains(&b'\n') {
                // No new line since the last attempt: the head cannot have completed.
                self.scanned = rest.len();
                if rest.len() > MAX_HEAD {
                    return self.fail(431, out);
                }
                return SessionCtl::Continue;
            }
            let mut headers = [EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            let parsed = req.parse(rest);
            let head_len = match parsed {
                Ok(Status::Complete(len)) if len > MAX_HEAD => return self.fail(431, out),
                Ok(Status::Complete(len)) => len,
                Ok(Status::Partial) if rest.len() > MAX_HEAD => return self.fail(431, out),
                Ok(Status::Partial) => {
                    self.scanned = rest.len();
                    return SessionCtl::Continue;
                }
                Err(httparse::Error::TooManyHeaders) => return self.fail(431, out),
                Err(_) => return self.fail(400, out),
            };
            let plan = match plan(&req) {
                Ok(plan) => plan,
                Err(status) => return self.fail(status, out),
            };
            self.start += head_len;
            self.scanned = 0;
            if plan.expect_continue {
                out.extend_from_slice(CONTINUE);
            }
            self.body_left = plan.body_len;
            self.pending = Some(plan.answer);
        }
    }
}

/// What a parsed request head asks of the session.
#[derive(Debug)]
struct Plan {
    answer: Answer,
    body_len: u64,
    expect_continue: bool,
}

/// Reads the framing and persistence fields of a request head; `Err(status)` for a request to
/// refuse: 400 for a bad or conflicting `Content-Length`, 501 for any `Transfer-Encoding`.
fn plan(req: &httparse::Request<'_, '_>) -> Result<Plan, u16> {
    let version = req.version.ok_or(400u16)?;
    let mut body_len: Option<u64> = None;
    let mut close = false;
    let mut keep_alive = false;
    let mut expect_continue = false;
    for field in req.headers.iter() {
        let name = field.name;
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(501);
        } else if name.eq_ignore_ascii_case("content-length") {
            let len = parse_content_length(field.value).ok_or(400u16)?;
            if body_len.is_some_and(|seen| seen != len) {
                return Err(400);
            }
            body_len = Some(len);
        } else if name.eq_ignore_ascii_case("connection") {
            for token in field.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue = version >= 1 && field.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    let body_len = body_len.unwrap_or(0);
    let connection = if close || (version == 0 && !keep_alive) {
        ConnectionField::Close
    } else if version == 0 {
        ConnectionField::KeepAlive
    } else {
        ConnectionField::Absent
    };
    let head_only = req.method == Some("HEAD");
    Ok(Plan {
        answer: Answer { head_only, connection },
        body_len,
        expect_continue: expect_continue && body_len > 0,
    })
}

/// A `Content-Length` value: ASCII digits only (RFC 9110 §8.6), fitting a `u64`.
fn parse_content_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value
        .iter()
        .try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

impl Session for ResponseSession {
    fn on_data(&mut self, data: &[u8], out: &mut Vec<u8>) -> SessionCtl {
        if self.closed {
            return SessionCtl::Close;
        }
        let mut data = data;
        if self.body_left > 0 && self.buffered() == 0 {
            // Discard body bytes straight from the input instead of buffering them.
            let skip = (data.len() as u64).min(self.body_left);
            data = &data[skip as usize..]; // skip <= data.len()
            self.body_left -= skip;
        }
        self.buf.extend_from_slice(data);
        let ctl = self.process(out);
        if self.start == self.buf.len() {
            self.buf.clear();
        } else if self.start > 0 {
            self.buf.drain(..self.start);
        }
        self.start = 0;
        ctl
    }

    fn on_eof(&mut self, _out: &mut Vec<u8>) -> SessionCtl {
        // Every complete request was answered in `on_data`; a partial one gets no answer.
        self.closed = true;
        SessionCtl::Close
    }
}
