//! The process log: `tracing` events formatted by `tracing-subscriber` and handed to a
//! [`BatchWriter`] on standard error, so a line per connection costs no system call on the
//! connection's path. Lines from `tracing` are written as soon as the writer thread runs; the
//! per-connection records batch.

use std::io::{self, IsTerminal};
use std::time::Duration;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::{FormatEvent, FormatFields, MakeWriter, SubscriberBuilder};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Registry;

mod format;

pub(crate) use format::write_time_at;

use super::access_log::{self, Record, RECORD_BYTES};
use super::batch_writer::{Batch, BatchWriter, Handle, Stderr};

/// How long the end of the process waits for the last lines to be written.
const FINISH_TIMEOUT: Duration = Duration::from_secs(2);

/// Keeps the log writer alive; dropping it (or [`LogGuard::finish`]) writes what waits.
pub struct LogGuard(Option<BatchWriter<LogBatch>>);

impl LogGuard {
    /// Writes what waits and stops the writer thread.
    pub fn finish(mut self) {
        if let Some(w) = self.0.take() {
            w.finish(FINISH_TIMEOUT);
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            w.finish(FINISH_TIMEOUT);
        }
    }
}

/// Installs the global subscriber: `level` (or `RUST_LOG` when set) filters, lines go to standard
/// error through the batch writer (or straight to standard error when the thread cannot start).
pub fn init(level: &str) -> LogGuard {
    let writer = BatchWriter::start("pmmux-log", Stderr);
    let lines = match &writer {
        Ok(w) => {
            access_log::install_process_log(w.handle());
            Lines(Some(w.handle()))
        }
        Err(_) => Lines(None),
    };
    let ansi = io::stderr().is_terminal();
    let filter = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let directives = filter.as_deref().unwrap_or(level);
    let builder = tracing_subscriber::fmt()
        .with_writer(lines)
        .with_ansi(ansi)
        .with_max_level(LevelFilter::TRACE);
    // The plain formatter when colours are off (always, but on a terminal).
    let result = if ansi {
        install(builder, directives)
    } else {
        install(
            builder.event_format(format::Line).fmt_fields(format::Fields),
            directives,
        )
    };
    if let Err(e) = result {
        eprintln!("pmmux: cannot install the logger: {e}");
    }
    match writer {
        Ok(w) => LogGuard(Some(w)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the log writer thread; logging synchronously");
            LogGuard(None)
        }
    }
}

/// Installs `builder` with a static filter (`info`, `pmmux=debug,warn`) unless span or field
/// directives need `EnvFilter`, which looks every span up in a locked map on each poll of each
/// connection.
fn install<N, E>(builder: SubscriberBuilder<N, E, LevelFilter, Lines>, directives: &str) -> Result<(), String>
where
    N: for<'w> FormatFields<'w> + Send + Sync + 'static,
    E: FormatEvent<Registry, N> + Send + Sync + 'static,
{
    match directives.parse::<Targets>() {
        Ok(targets) => {
            // The most verbose level any target gets: the `log` records of dependencies (mio
            // traces every registration) are cut before they are built, as tracing's are.
            let max = targets
                .iter()
                .map(|(_, level)| level)
                .chain(targets.default_level())
                .max()
                .unwrap_or(LevelFilter::OFF);
            builder
                .with_max_level(max)
                .finish()
                .with(targets)
                .try_init()
                .map_err(|e| e.to_string())
        }
        Err(_) => {
            let env = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"));
            builder.with_env_filter(env).try_init().map_err(|e| e.to_string())
        }
    }
}

/// `tracing-subscriber`'s writer factory over the batch writer (standard error directly when the
/// writer thread could not start).
struct Lines(Option<Handle<LogBatch>>);

/// One event's writer.
pub struct Line<'a> {
    handle: &'a Option<Handle<LogBatch>>,
    urgent: bool,
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            handle: &self.0,
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, _meta: &tracing::Metadata<'_>) -> Line<'a> {
        // Written without the batching delay: at the default level these lines are few (the
        // per-connection line is a record, which batches), and whoever reads the log (an
        // operator, a test) sees each as soon as the writer thread runs.
        Line {
            handle: &self.0,
            urgent: true,
        }
    }
}

impl io::Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.handle {
            // A dropped line is counted by the writer and reported once it catches up.
            Some(h) => {
                h.push_with(buf.len(), self.urgent, |b| b.bytes.extend_from_slice(buf));
                Ok(buf.len())
            }
            None => io::Write::write(&mut io::stderr(), buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What waits for the process log's writer: formatted lines, and connection records (formatted
/// on the writer thread), in the order they came.
#[derive(Default)]
pub struct LogBatch {
    bytes: Vec<u8>,
    /// Each record with the length of `bytes` when it came.
    records: Vec<(usize, std::sync::Arc<Record>)>,
}

impl Batch for LogBatch {
    fn bytes(&self) -> usize {
        self.bytes.len() + self.records.len() * RECORD_BYTES
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.records.is_empty()
    }

    fn write_into(self, out: &mut Vec<u8>) {
        let mut at = 0;
        let mut line = String::with_capacity(256);
        for (offset, record) in &self.records {
            out.extend_from_slice(&self.bytes[at..*offset]);
            line.clear();
            let _ = access_log::closed_line(&mut line, record);
            out.extend_from_slice(line.as_bytes());
            at = *offset;
        }
        out.extend_from_slice(&self.bytes[at..]);
    }
}

impl Handle<LogBatch> {
    /// Queues a record for its `connection closed` line.
    pub(crate) fn push_record(&self, record: std::sync::Arc<Record>) {
        self.push_with(RECORD_BYTES, false, |b| b.records.push((b.bytes.len(), record)));
    }
}

/// Writes what the access log holds and closes it (at exit, before [`LogGuard::finish`]).
pub fn close_access_log() {
    access_log::close();
}
