//! A non-blocking, batched writer: callers append to a bounded in-memory batch and return at once;
//! one background thread writes whole batches, so a burst of log lines costs one `write` per batch
//! instead of one per line, and a slow or stuck destination (a full pipe, a slow disk) never stalls
//! a connection. Past [`MAX_PENDING`] bytes waiting, items are dropped and counted, and the count is
//! written once the destination takes bytes again.
//!
//! The thread sleeps until the first item of a batch arrives, then waits [`FLUSH_DELAY`] for more
//! (an urgent item, such as a warning, or a large batch cuts the wait short), then writes. A caller
//! wakes the thread only when it is idle, so a busy process pays about one wake-up per batch.

use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the writer waits after the first item of a batch for more to join it.
pub const FLUSH_DELAY: Duration = Duration::from_millis(5);
/// A batch this large is written without waiting for the delay to pass.
pub const HIGH_WATER: usize = 64 * 1024;
/// Bytes that may wait in memory; items beyond are dropped (and counted).
pub const MAX_PENDING: usize = 4 * 1024 * 1024;

/// What a writer collects between two writes; turned into bytes on the writer thread.
pub trait Batch: Default + Send + 'static {
    /// Bytes (or an estimate) this batch takes while it waits.
    fn bytes(&self) -> usize;
    /// True when nothing waits.
    fn is_empty(&self) -> bool;
    /// Appends the batch's bytes to `out` (formatting, if the items need it).
    fn write_into(self, out: &mut Vec<u8>);
}

/// Raw bytes (already formatted lines).
impl Batch for Vec<u8> {
    fn bytes(&self) -> usize {
        self.len()
    }
    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }
    fn write_into(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self);
    }
}

/// Where batches go.
pub trait Sink: Send + 'static {
    /// Writes one batch.
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Reopens the destination (a log file moved away by logrotate); a no-op for streams.
    fn reopen(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Says what the destination is, for error messages.
    fn describe(&self) -> String;
}

/// The process's standard error.
#[derive(Debug, Default)]
pub struct Stderr;

impl Sink for Stderr {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        io::Write::write_all(&mut io::stderr().lock(), bytes)
    }
    fn describe(&self) -> String {
        "standard error".into()
    }
}

/// Whether the thread is waiting, and for what (callers wake it only when that helps).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// Writing, or about to: no wake-up needed.
    No,
    /// Nothing to write: the first item wakes it.
    ForData,
    /// Gathering a batch: only an urgent item or a full batch wakes it.
    ForMore,
}

struct State<B> {
    batch: B,
    dropped: u64,
    waiting: Waiting,
    urgent: bool,
    reopen: bool,
    stop: bool,
    finished: bool,
}

struct Shared<B> {
    state: Mutex<State<B>>,
    wake: Condvar,
}

impl<B> Shared<B> {
    fn lock(&self) -> MutexGuard<'_, State<B>> {
        // A panic while holding the lock leaves only a batch behind: keep logging.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The caller's side: cheap to clone, never blocks on the destination.
pub struct Handle<B: Batch> {
    shared: Arc<Shared<B>>,
}

impl<B: Batch> Clone for Handle<B> {
    fn clone(&self) -> Self {
        Handle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<B: Batch> Handle<B> {
    /// Appends an item `bytes` long (once written) with `add`; `urgent` asks for it to be written
    /// without the batching delay. Returns false when it was dropped because too much is waiting.
    pub fn push_with(&self, bytes: usize, urgent: bool, add: impl FnOnce(&mut B)) -> bool {
        let mut st = self.shared.lock();
        if st.finished || st.batch.bytes() + bytes > MAX_PENDING {
            st.dropped += 1;
            return false;
        }
        add(&mut st.batch);
        st.urgent |= urgent;
        let wake = match st.waiting {
            Waiting::ForData => true,
            Waiting::ForMore => urgent || st.batch.bytes() >= HIGH_WATER,
            Waiting::No => false,
        };
        if wake {
            st.waiting = Waiting::No;
            drop(st);
            self.shared.wake.notify_one();
        }
        true
    }

    /// Asks the writer to reopen its destination after writing what waits (SIGUSR1 for logrotate).
    pub fn reopen(&self) {
        let mut st = self.shared.lock();
        st.reopen = true;
        st.waiting = Waiting::No;
        drop(st);
        self.shared.wake.notify_all();
    }
}

/// Plain bytes: the tests' batch.
#[cfg(test)]
impl Handle<Vec<u8>> {
    /// Appends bytes (whole lines).
    pub fn push(&self, bytes: &[u8], urgent: bool) -> bool {
        self.push_with(bytes.len(), urgent, |b| b.extend_from_slice(bytes))
    }
}

/// The writer: owns the thread. [`BatchWriter::finish`] writes what waits and stops it.
pub struct BatchWriter<B: Batch> {
    handle: Handle<B>,
    thread: Option<JoinHandle<()>>,
}

impl<B: Batch> BatchWriter<B> {
    /// Starts the writer thread (`name` names it) writing to `sink`.
    pub fn start(name: &str, sink: impl Sink) -> io::Result<BatchWriter<B>> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                batch: B::default(),
                dropped: 0,
                waiting: Waiting::No,
                urgent: false,
                reopen: false,
                stop: false,
                finished: false,
            }),
            wake: Condvar::new(),
        });
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run(&for_thread, sink))?;
        Ok(BatchWriter {
            handle: Handle { shared },
            thread: Some(thread),
        })
    }

    /// A handle for callers.
    pub fn handle(&self) -> Handle<B> {
        self.handle.clone()
    }

    /// Writes what waits and stops the thread, waiting at most `timeout` for a destination that
    /// does not take the bytes (the thread is then left behind; the process is ending anyway).
    pub fn finish(mut self, timeout: Duration) {
        self.stop(timeout);
    }

    fn stop(&mut self, timeout: Duration) {
        let shared = &self.handle.shared;
        let mut st = shared.lock();
        st.stop = true;
        st.waiting = Waiting::No;
        shared.wake.notify_all();
        let deadline = Instant::now() + timeout;
        while !st.finished {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            st = shared.wake.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        drop(st);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl<B: Batch> Drop for BatchWriter<B> {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop(Duration::from_secs(2));
        }
    }
}

/// The writer thread: waits for a batch, gathers it for [`FLUSH_DELAY`], writes it.
fn run<B: Batch>(shared: &Shared<B>, mut sink: impl Sink) {
    let mut out = Vec::new();
    let mut failing = false;
    loop {
        let mut st = shared.lock();
        while st.batch.is_empty() && !st.stop && !st.reopen && st.dropped == 0 {
            st.waiting = Waiting::ForData;
            st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        let deadline = Instant::now() + FLUSH_DELAY;
        while !st.stop && !st.reopen && !st.urgent && st.batch.bytes() < HIGH_WATER {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st.waiting = Waiting::ForMore;
            st = shared.wake.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        st.waiting = Waiting::No;
        let batch = std::mem::take(&mut st.batch);
        let dropped = std::mem::take(&mut st.dropped);
        let reopen = std::mem::take(&mut st.reopen);
        let stop = st.stop;
        st.urgent = false;
        drop(st);
        // Formatted and dropped outside the lock: callers never wait for it.
        batch.write_into(&mut out);
        if dropped > 0 {
            out.extend_from_slice(
                format!(
                    "pmmux: {dropped} log record(s) dropped: {} did not keep up\n",
                    sink.describe()
                )
                .as_bytes(),
            );
        }
        if !out.is_empty() {
            match sink.write_all(&out) {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    eprintln!("pmmux: writing to {} failed: {e}", sink.describe());
                }
                Err(_) => {}
            }
        }
        out.clear();
        if out.capacity() > 4 * HIGH_WATER {
            out = Vec::new();
        }
        if reopen {
            if let Err(e) = sink.reopen() {
                eprintln!("pmmux: reopening {} failed: {e}", sink.describe());
            }
        }
        if stop {
            let mut st = shared.lock();
            if st.batch.is_empty() {
                st.finished = true;
                drop(st);
                shared.wake.notify_all();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
