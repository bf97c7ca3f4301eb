//! Recognising an HTTP/1.x request head in a growing preview: the method check that rejects other
//! protocols within a few bytes, the `httparse` pass, and the facts routing needs (method, target,
//! version, host).

use httparse::{Status, EMPTY_HEADER};

/// Request methods recognised at the start of a connection: RFC 9110 methods, `PATCH`, and the
/// WebDAV ones (RFC 4918). Methods are case-sensitive.
pub const METHODS: &[&str] = &[
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
];

/// Longest entry of [`METHODS`] (`PROPPATCH`).
const MAX_METHOD_LEN: usize = 9;

/// Most header fields a request head may carry; more is treated as malformed.
pub const MAX_HEADERS: usize = 100;

/// Largest request head (request line and header fields) looked at. A head still incomplete at this
/// size is not considered HTTP (detection) or is answered with 431 (`http-response`).
pub const MAX_HEAD: usize = 64 * 1024;

/// What the bytes seen so far say about an HTTP/1.x request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Consistent with an HTTP request so far, but the request line or the host is not known yet.
    NeedMore,
    /// Not an HTTP/1.x request: an unknown method, a malformed request line or header field before
    /// the host is known, an unsupported version, or a head larger than [`MAX_HEAD`] that names no
    /// host in its first [`MAX_HEAD`] bytes.
    NotHttp,
    /// The request line is complete and the host is known (or the head is complete without one).
    Request(RequestInfo),
}

/// The parts of a request head that detection and routing look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target exactly as sent: origin-form `/a?b`, absolute-form `http://h/a`,
    /// authority-form `h:443` (CONNECT) or `*` (OPTIONS).
    pub target: String,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// The host as sent: the authority of an absolute-form or authority-form target (which, per
    /// RFC 9112 §3.2.2, overrides the `Host` field), else the `Host` field value with surrounding
    /// whitespace trimmed. `None` when the head is complete and names no host.
    pub host: Option<String>,
    /// Whether the whole head (up to the empty line) was in the preview. Detection decides as soon
    /// as the host is known, so this may be false.
    pub head_complete: bool,
}

impl RequestInfo {
    /// The path and query routing matches on: the target itself for origin-form, `*` and
    /// authority-form targets, the part after the authority (or `/`) for absolute-form ones.
    pub fn path(&self) -> &str {
        match absolute_form(&self.target) {
            Some((_, "")) => "/",
            Some((_, path)) => path,
            None => &self.target,
        }
    }

    /// `HTTP/1.0` or `HTTP/1.1`.
    pub fn version_str(&self) -> &'static str {
        if self.version == 0 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        }
    }
}

/// Splits an absolute-form target (`http://host[:port]/path?q`, scheme case-insensitive) into its
/// authority (without any `user@`) and the rest, which is empty or starts with `/` or `?`.
fn absolute_form(target: &str) -> Option<(&str, &str)> {
    let colon = target.find("://")?;
    let scheme = &target[..colon];
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    let rest = &target[colon + 3..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    Some((authority, &rest[end..]))
}

/// Checks the first bytes against [`METHODS`]: `Some(true)` once a known method and its space were
/// seen, `Some(false)` while the bytes are still a prefix of one, `None` when they cannot be.
pub fn method_prefix(bytes: &[u8]) -> Option<bool> {
    let head = &bytes[..bytes.len().min(MAX_METHOD_LEN + 1)];
    match head.iter().position(|&b| b == b' ') {
        Some(space) => METHODS.iter().any(|m| m.as_bytes() == &head[..space]).then_some(true),
        None if head.len() > MAX_METHOD_LEN => None,
        None => METHODS.iter().any(|m| m.as_bytes().starts_with(head)).then_some(false),
    }
}

/// Examines the bytes previewed so far. The verdict is taken at the first complete line that makes
/// the host known (the request line for absolute-form and CONNECT targets, else the first `Host`
/// field) and later lines never change it, so it does not depend on how the client's bytes were
/// cut into TCP segments: a malformed field or a second `Host` after the first is the server's to
/// refuse (RFC 9112 §3.2 requires it to answer 400), as it would be for a request whose head
/// arrived in two segments. Deterministic and cheap on the common path (the head in the first
/// segment); a head without a host is judged once complete.
pub fn probe(preview: &[u8]) -> Probe {
    match method_prefix(preview) {
        None => return Probe::NotHttp,
        Some(false) => return Probe::NeedMore,
        Some(true) => {}
    }
    let window = &preview[..preview.len().min(MAX_HEAD)];
    if let Some(end) = host_known_at(window) {
        return probe_partial(&window[..end]);
    }
    let mut headers = [EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(preview) {
        Ok(Status::Complete(len)) if len > MAX_HEAD => Probe::NotHttp,
        Ok(Status::Complete(_)) => info_from(&req, true).map_or(Probe::NotHttp, Probe::Request),
        Ok(Status::Partial) if preview.len() >= MAX_HEAD => Probe::NotHttp,
        Ok(Status::Partial) => probe_partial(preview),
        Err(_) => Probe::NotHttp,
    }
}

/// The end (just past its `\n`) of the first complete line of `head` that names the host: the
/// request line when its target is absolute-form or the method is CONNECT, else the first header
/// line whose field name is `Host` (any case). `None` when no complete line does before the head
/// ends (an empty line) or the bytes do.
fn host_known_at(head: &[u8]) -> Option<usize> {
    let mut start = 0;
    let mut first = true;
    while let Some(offset) = head[start..].iter().position(|&b| b == b'\n') {
        let end = start + offset + 1;
        let line = head[start..end - 1]
            .strip_suffix(b"\r")
            .unwrap_or(&head[start..end - 1]);
        if first {
            let mut parts = line.split(|&b| b == b' ');
            let (method, target) = (parts.next()?, parts.next()?);
            let absolute = std::str::from_utf8(target).is_ok_and(|t| absolute_form(t).is_some());
            if method == b"CONNECT" || absolute {
                return Some(end);
            }
            first = false;
        } else if line.is_empty() {
            return None;
        } else if let Some(colon) = line.iter().position(|&b| b == b':') {
            if line[..colon].eq_ignore_ascii_case(b"host") {
                return Some(end);
            }
        }
        start = end;
    }
    None
}

/// An incomplete head: decide from its complete lines if they already name the host.
fn probe_partial(preview: &[u8]) -> Probe {
    let Some(last_newline) = preview.iter().rposition(|&b| b == b'\n') else {
        return Probe::NeedMore; // request line still arriving
    };
    // The complete lines, closed with an empty line, form a head httparse can parse in full.
    let mut lines = Vec::with_capacity(last_newline + 3);
    lines.extend_from_slice(&preview[..=last_newline]);
    lines.extend_from_slice(b"\r\n");
    let mut headers = [EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&lines) {
        Ok(Status::Complete(_)) => match info_from(&req, false) {
            Some(info) if info.host.is_some() => Probe::Request(info),
            Some(_) => Probe::NeedMore,
            None => Probe::NotHttp,
        },
        // The complete lines parsed as partial: only possible for a lone "\r" line, keep reading.
        Ok(Status::Partial) => Probe::NeedMore,
        Err(_) => Probe::NotHttp,
    }
}

/// Collects the routing facts from a parsed head; `None` when they are malformed (several `Host`
/// fields, a `Host` value that is not UTF-8).
fn info_from(req: &httparse::Request<'_, '_>, head_complete: bool) -> Option<RequestInfo> {
    let method = req.method?;
    let target = req.path?;
    let version = req.version?;
    let mut host_fields = req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("host"));
    let host_field = match (host_fields.next(), host_fields.next()) {
        (Some(_), Some(_)) => return None,
        (Some(h), None) => Some(std::str::from_utf8(h.value).ok()?.trim_matches([' ', '\t'])),
        (None, _) => None,
    };
    let host = if method == "CONNECT" {
        Some(target)
    } else {
        absolute_form(target).map(|(authority, _)| authority).or(host_field)
    };
    Some(RequestInfo {
        method: method.to_owned(),
        target: target.to_owned(),
        version,
        host: host.map(str::to_owned),
        head_complete,
    })
}
