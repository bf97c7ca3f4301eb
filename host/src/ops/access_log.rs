//! One record per TCP connection and per UDP flow: who, through which listener, to which backend
//! and plugin version, what it reported, how many bytes each way, how long, how it ended.
//!
//! A record is built on the connection's path as a plain struct (no formatting) and handed to the
//! writer threads: the process log's (where a closed connection becomes the `connection closed`
//! line at info level) and, when `[access_log]` is configured, the access log's, which writes it as
//! JSON or text to its file and reopens the file on SIGUSR1 (logrotate).

use std::fmt::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use pmmux_plugin_api::Property;

use super::batch_writer::{Batch, BatchWriter, Handle, Sink};
use crate::routing::registry::Backend;
pub(crate) use crate::tcp::stream::Client;
pub(crate) use format::closed_line;

mod format;
#[cfg(test)]
mod tests;

/// The `[access_log]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// The file records are appended to.
    pub path: PathBuf,
    /// How each record is written.
    pub format: Format,
}

/// How access records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line.
    #[default]
    Json,
    /// `key=value` pairs (logfmt), one record per line.
    Text,
}

/// TCP connection or UDP flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A TCP connection.
    Tcp,
    /// A UDP flow (one client's datagrams through one listener).
    Udp,
}

/// How a connection or flow ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Relayed or served to the end.
    Closed,
    /// Routed, then closed by pmmux after no byte moved for the idle (or half-closed) timeout.
    Cut(crate::tcp::relay::Cut),
    /// Routed, then failed (connect, plugin, I/O).
    Failed {
        /// The party the failure is charged to: `client`, `upstream`, `plugin` or `config`.
        side: &'static str,
        /// What failed.
        error: String,
    },
    /// No backend wanted it.
    NoMatch,
    /// The client closed before sending anything.
    ClientClosed,
    /// The client sent nothing within the probe timeout and no `on_timeout` backend took it.
    Silent,
    /// The client's connection failed while previewing.
    ClientError(String),
    /// A trusted front's PROXY header could not be read.
    ProxyHeaderRefused(String),
    /// Refused at accept by a connection limit.
    RefusedLimit,
    /// The connection was gone before it could be routed.
    Aborted,
    /// A UDP flow ended by its idle timeout.
    Expired,
}

impl Outcome {
    /// The short name written in records.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Closed => "closed",
            Outcome::Cut(crate::tcp::relay::Cut::Idle) => "idle_timeout",
            Outcome::Cut(crate::tcp::relay::Cut::HalfClosed) => "half_closed_timeout",
            Outcome::Failed { .. } => "failed",
            Outcome::NoMatch => "no_match",
            Outcome::ClientClosed => "client_closed",
            Outcome::Silent => "silent",
            Outcome::ClientError(_) => "client_error",
            Outcome::ProxyHeaderRefused(_) => "proxy_header_refused",
            Outcome::RefusedLimit => "refused_limit",
            Outcome::Aborted => "aborted",
            Outcome::Expired => "expired",
        }
    }

    /// The error text, for outcomes that have one.
    pub fn error(&self) -> Option<&str> {
        match self {
            Outcome::Failed { error: e, .. } | Outcome::ClientError(e) | Outcome::ProxyHeaderRefused(e) => Some(e),
            _ => None,
        }
    }
}

/// One finished connection or flow.
pub struct Record {
    /// When it ended (wall clock).
    pub ended: SystemTime,
    /// TCP or UDP.
    pub transport: Transport,
    /// The client (the one a trusted PROXY header names, when there was one).
    pub client: Client,
    /// The front that sent the PROXY header, if any.
    pub via: Option<Client>,
    /// The listener's name.
    pub listener: Arc<str>,
    /// The backend it was routed to, if any (its name, plugin and version).
    pub backend: Option<Arc<Backend>>,
    /// What the backend's detection reported.
    pub properties: Vec<Property>,
    /// Bytes from the client (TCP: including the replayed preview).
    pub bytes_up: u64,
    /// Bytes to the client.
    pub bytes_down: u64,
    /// Datagrams each way (UDP only).
    pub datagrams: Option<(u64, u64)>,
    /// How long it lasted.
    pub duration: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

impl Record {
    /// A TCP connection that ended before it was routed.
    pub fn unrouted(client: Client, listener: &Arc<str>, outcome: Outcome) -> Record {
        Record {
            ended: SystemTime::now(),
            transport: Transport::Tcp,
            client,
            via: None,
            listener: Arc::clone(listener),
            backend: None,
            properties: Vec::new(),
            bytes_up: 0,
            bytes_down: 0,
            datagrams: None,
            duration: Duration::ZERO,
            outcome,
        }
    }

    /// The backend's name, if routed.
    pub fn backend_name(&self) -> Option<&str> {
        self.backend.as_deref().map(Backend::name)
    }

    /// The plugin name and version, if a plugin served it.
    pub fn plugin(&self) -> Option<(&str, &str)> {
        let plugin = self.backend.as_deref()?.plugin.as_deref()?;
        Some((&plugin.name, &plugin.version))
    }
}

/// Where records go: set once by [`install_process_log`] and by each [`configure`].
struct Outputs {
    process_log: OnceLock<Handle<super::logging::LogBatch>>,
    access: Mutex<Option<AccessLog>>,
    access_handle: arc_swap::ArcSwapOption<(Handle<Records>, Format)>,
}

static OUTPUTS: Outputs = Outputs {
    process_log: OnceLock::new(),
    access: Mutex::new(None),
    access_handle: arc_swap::ArcSwapOption::const_empty(),
};

/// The access log now open.
struct AccessLog {
    config: AccessLogConfig,
    writer: BatchWriter<Records>,
}

/// Hands `connection closed` lines to the process log's writer (called by logging's init).
pub(crate) fn install_process_log(handle: Handle<super::logging::LogBatch>) {
    let _ = OUTPUTS.process_log.set(handle);
}

/// Opens, replaces or closes the access log to match `config` (at start and on each reload).
/// An unchanged configuration keeps the file open.
pub fn configure(config: Option<&AccessLogConfig>) -> std::io::Result<()> {
    let mut access = OUTPUTS.access.lock().unwrap_or_else(|p| p.into_inner());
    if access.as_ref().map(|a| &a.config) == config {
        return Ok(());
    }
    let next = match config {
        Some(c) => {
            let sink = FileSink::open(&c.path)?;
            let writer = BatchWriter::start("pmmux-access", sink)?;
            Some(AccessLog {
                config: c.clone(),
                writer,
            })
        }
        None => None,
    };
    OUTPUTS
        .access_handle
        .store(next.as_ref().map(|a| Arc::new((a.writer.handle(), a.config.format))));
    // The old file gets what it was handed before the switch.
    if let Some(old) = std::mem::replace(&mut *access, next) {
        old.writer.finish(Duration::from_secs(2));
    }
    Ok(())
}

/// Reopens the access log file (SIGUSR1, after logrotate moved it away).
pub fn reopen() {
    if let Some((h, _)) = OUTPUTS.access_handle.load().as_deref() {
        h.reopen();
    }
}

/// Writes what the access log holds and closes it (at exit).
pub fn close() {
    let _ = configure(None);
}

/// Hands a finished connection's or flow's record to the writers. A closed TCP connection also
/// becomes the `connection closed` line when the process log shows info for connections.
pub fn record(record: Record) {
    let line = record.transport == Transport::Tcp
        && matches!(record.outcome, Outcome::Closed | Outcome::Cut(_))
        && tracing::enabled!(target: "pmmux::tcp::connection", tracing::Level::INFO);
    let access = OUTPUTS.access_handle.load();
    let access = access.as_deref();
    let process = OUTPUTS.process_log.get().filter(|_| line);
    match (process, access) {
        (None, None) => {}
        (Some(p), None) => p.push_record(Arc::new(record)),
        (None, Some(a)) => push(a, Arc::new(record)),
        (Some(p), Some(a)) => {
            let record = Arc::new(record);
            push(a, Arc::clone(&record));
            p.push_record(record);
        }
    }
}

/// Bytes a record is counted as while it waits (its written size varies; this bounds memory).
pub(crate) const RECORD_BYTES: usize = 512;

fn push((handle, format): &(Handle<Records>, Format), record: Arc<Record>) {
    handle.push_with(RECORD_BYTES, false, |b| {
        b.format = *format;
        b.list.push(record);
    });
}

/// Records waiting for the access log's writer.
#[derive(Default)]
pub struct Records {
    list: Vec<Arc<Record>>,
    format: Format,
}

impl Batch for Records {
    fn bytes(&self) -> usize {
        self.list.len() * RECORD_BYTES
    }
    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
    fn write_into(self, out: &mut Vec<u8>) {
        let mut text = String::with_capacity(self.list.len() * 256);
        for r in &self.list {
            let _ = match self.format {
                Format::Json => format::json(&mut text, r),
                Format::Text => format::text(&mut text, r),
            };
        }
        out.extend_from_slice(text.as_bytes());
    }
}

/// The access log file, opened for appending (created with mode 0640).
struct FileSink {
    path: PathBuf,
    file: std::fs::File,
}

impl FileSink {
    fn open(path: &Path) -> std::io::Result<FileSink> {
        Ok(FileSink {
            path: path.to_owned(),
            file: open_append(path)?,
        })
    }
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("access log {}: {e}", path.display())))
}

impl Sink for FileSink {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        std::io::Write::write_all(&mut self.file, bytes)
    }
    fn reopen(&mut self) -> std::io::Result<()> {
        self.file = open_append(&self.path)?;
        Ok(())
    }
    fn describe(&self) -> String {
        format!("the access log {}", self.path.display())
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmmmmZ` for a wall-clock time.
pub(crate) fn write_time(w: &mut impl Write, t: SystemTime) -> fmt::Result {
    super::logging::write_time_at(w, t)
}

/// A decimal number, without the formatting machinery.
pub(crate) fn push_u64(w: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    w.push_str(std::str::from_utf8(&digits[i..]).unwrap_or("?"));
}

/// `1.2.3.4:5` (or `[::1]:5`), the IPv4 form without the formatting machinery.
pub(crate) fn push_addr(w: &mut String, a: SocketAddr) {
    match a {
        SocketAddr::V4(v4) => {
            for (i, o) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    w.push('.');
                }
                push_u64(w, u64::from(o));
            }
            w.push(':');
            push_u64(w, u64::from(v4.port()));
        }
        SocketAddr::V6(_) => {
            let _ = write!(w, "{a}");
        }
    }
}

/// A duration in milliseconds with three decimals, by integer arithmetic.
pub(crate) fn write_ms(w: &mut impl Write, d: Duration) -> fmt::Result {
    let us = d.as_micros();
    let mut s = String::new();
    push_u64(&mut s, (us / 1000) as u64);
    let frac = (us % 1000) as u32;
    s.push('.');
    for d in [frac / 100, frac / 10 % 10, frac % 10] {
        s.push(char::from(b'0' + d as u8));
    }
    w.write_str(&s)
}
