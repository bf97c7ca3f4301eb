//! The configured response, rendered once into bytes at construction, and the fixed error responses
//! (400, 431, 501) the session sends before closing.

/// What the `Connection` field of a response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionField {
    /// No field: HTTP/1.1 persistence.
    Absent,
    /// `Connection: close`: the server closes after this response.
    Close,
    /// `Connection: keep-alive`: an HTTP/1.0 client asked to keep the connection open.
    KeepAlive,
}

/// A fixed response: status line and header fields, then the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    /// Status line and every field except `Connection`, each ending in CRLF, no final empty line.
    head: Vec<u8>,
    body: Vec<u8>,
}

impl Response {
    /// Renders a response. `status` must be 100..=599; statuses that carry no content (1xx, 204,
    /// 304) must have an empty body and get neither `Content-Length` nor `Content-Type`.
    /// `content_type` must be a valid field value; empty omits the field.
    pub fn new(status: i64, body: &str, content_type: &str) -> Result<Self, String> {
        let status = u16::try_from(status)
            .ok()
            .filter(|s| (100..=599).contains(s))
            .ok_or_else(|| format!("params.status must be from 100 to 599, not {status}"))?;
        let content_type = content_type.trim_matches([' ', '\t']);
        let field_byte = |b: u8| b == b'\t' || (b' '..=b'~').contains(&b);
        if !content_type.bytes().all(field_byte) {
            return Err("params.content_type must be printable ASCII on one line".into());
        }
        let bodyless = status < 200 || status == 204 || status == 304;
        if bodyless && !body.is_empty() {
            return Err(format!("a {status} response has no content: params.body must be empty"));
        }
        let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status)).into_bytes();
        if !bodyless {
            head.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
            if !content_type.is_empty() {
                head.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
            }
        }
        Ok(Response {
            status,
            head,
            body: body.as_bytes().to_vec(),
        })
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Appends the response to `out`; `head_only` (a `HEAD` request) leaves the body out but keeps
    /// its `Content-Length`.
    pub fn write(&self, out: &mut Vec<u8>, head_only: bool, connection: ConnectionField) {
        out.extend_from_slice(&self.head);
        match connection {
            ConnectionField::Absent => {}
            ConnectionField::Close => out.extend_from_slice(b"Connection: close\r\n"),
            ConnectionField::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
    }
}

/// The interim response sent before skipping a body announced with `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// An empty error response that closes the connection (400, 431, 501, ...).
pub fn error_response(status: u16) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        reason(status)
    )
    .into_bytes()
}

/// The reason phrase of a status (RFC 9110 §15 and common extensions); empty when unknown, which
/// the status-line grammar allows.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        511 => "Network Authentication Required",
        _ => "",
    }
}
