//! The checkers: one tokio task per checked backend, doing the I/O of its checks on the schedule
//! its state machine gives. [`supervise`] follows registry swaps: it starts a checker for each
//! newly checked backend, restarts one whose backend was rebuilt (configuration or plugin changed),
//! and stops those whose backend left or is no longer checked.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::task::AbortHandle;

use super::probe;
use crate::routing::registry::{Backend, Registry};

/// How often the supervisor looks for a new registry snapshot (a pointer comparison).
pub(crate) const SYNC_POLL: Duration = Duration::from_millis(100);

/// Runs until aborted (the server aborts it at shutdown, which stops every checker).
pub(crate) async fn supervise(registry: Arc<ArcSwap<Registry>>) {
    let mut checkers = Checkers::default();
    let mut seen: Option<Arc<Registry>> = None;
    loop {
        let current = registry.load_full();
        if !seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &current)) {
            checkers.sync(&current);
            seen = Some(current);
        }
        tokio::time::sleep(SYNC_POLL).await;
    }
}

struct Running {
    backend: Arc<Backend>,
    task: AbortHandle,
}

/// Running checkers by backend name; dropping it stops them all.
#[derive(Default)]
pub(crate) struct Checkers {
    running: HashMap<String, Running>,
}

impl Drop for Checkers {
    fn drop(&mut self) {
        for r in self.running.values() {
            r.task.abort();
        }
    }
}

impl Checkers {
    /// Brings the running checkers in line with `registry` (call inside the runtime).
    pub(crate) fn sync(&mut self, registry: &Registry) {
        let mut keep = HashMap::new();
        for b in &registry.backends {
            let name = b.name().to_owned();
            let checked = b.config.health.clone().filter(|_| b.config.target.is_some());
            let old = self.running.remove(&name);
            let Some(settings) = checked else {
                if let Some(old) = old {
                    old.task.abort();
                    tracing::info!(backend = %name, "health checks stopped");
                }
                b.stats.health.configure(&name, None);
                continue;
            };
            if let Some(old) = old {
                if Arc::ptr_eq(&old.backend, b) {
                    keep.insert(name, old);
                    continue;
                }
                old.task.abort();
            }
            b.stats.health.configure(&name, Some(settings.clone()));
            tracing::debug!(backend = %name, ?settings, "health checker started");
            let task = tokio::spawn(run(Arc::clone(b))).abort_handle();
            keep.insert(
                name,
                Running {
                    backend: Arc::clone(b),
                    task,
                },
            );
        }
        for (name, gone) in self.running.drain() {
            gone.task.abort();
            tracing::debug!(backend = %name, "health checker stopped: backend left");
        }
        self.running = keep;
    }
}

/// One backend's checker: waits, checks, records, forever (until aborted).
async fn run(backend: Arc<Backend>) {
    let (Some(target), Some(settings)) = (backend.config.target.clone(), backend.config.health.clone()) else {
        return;
    };
    let cell = &backend.stats.health;
    while let Some(delay) = cell.next_delay() {
        tokio::time::sleep(delay).await;
        let outcome = probe::check(&backend, &target, settings.timeout).await;
        cell.record_check(backend.name(), outcome);
    }
}
