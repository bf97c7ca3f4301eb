//! Health checks: the per-backend health state that routing reads ([`HealthCell`], kept in
//! [`crate::routing::registry::BackendStats`] so it is carried by backend name across reloads) and the
//! checkers that feed it ([`checker`]: one tokio task per checked backend, following reloads).
//!
//! A backend is checked when it has a target and a `[backend.health]` table or its protocol has a
//! `[health.<protocol>]` table ([`config`]). The check is a TCP connect, or the plugin's own probe
//! ([`probe`]); results go through the sans-I/O [`state`] machine. Client connections that fail to
//! connect to a checked backend's target count as failed checks too (passive health).

pub(crate) mod checker;
pub(crate) mod config;
pub(crate) mod probe;
pub(crate) mod state;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use self::config::HealthSettings;
use self::state::{Machine, Outcome, Status, Transition};

/// One backend's health, shared by its checker, its client connections, routing and `/status`.
#[derive(Debug, Default)]
pub struct HealthCell {
    /// Out of routing (read on every routing decision, so kept apart from the lock).
    down: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    machine: Machine,
    /// The settings in force; `None` when the backend is not checked.
    settings: Option<HealthSettings>,
}

/// A backend's health as `/status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct HealthReport {
    /// `up`, `down`, or `unchecked` (no health checks configured).
    #[serde(default)]
    pub state: String,
    /// Why the last check failed, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// Failed checks in a row while up.
    pub failures: u32,
    /// Successful checks in a row while down.
    pub successes: u32,
}

impl HealthCell {
    /// Whether health lets the backend take connections.
    pub fn is_up(&self) -> bool {
        !self.down.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the settings a checker (re)starts with, or `None` when checks stop: an unchecked
    /// backend is always up (nothing would ever bring it back).
    pub fn configure(&self, backend: &str, settings: Option<HealthSettings>) {
        let mut inner = self.lock();
        inner.machine.restart();
        if settings.is_none() && inner.settings.is_some() {
            inner.machine = Machine::default();
            if self.down.swap(false, Ordering::Relaxed) {
                tracing::info!(backend, "health checks removed: backend back in routing");
            }
        }
        inner.settings = settings;
    }

    /// Records an active check's result; logs a transition once.
    pub fn record_check(&self, backend: &str, outcome: Outcome) {
        let mut inner = self.lock();
        let Some(s) = inner.settings.clone() else { return };
        if let Err(reason) = &outcome {
            tracing::debug!(backend, reason = %reason, "health check failed");
        }
        let t = inner.machine.check(outcome, &s);
        self.apply(backend, t, inner.machine.status());
    }

    /// Records a client connection's failure to connect (passive health); ignored when the
    /// backend is not checked.
    pub fn record_connect_failure(&self, backend: &str, reason: String) {
        let mut inner = self.lock();
        let Some(s) = inner.settings.clone() else { return };
        let t = inner.machine.passive_failure(reason, &s);
        self.apply(backend, t, inner.machine.status());
    }

    fn apply(&self, backend: &str, transition: Option<Transition>, status: Status) {
        self.down.store(status == Status::Down, Ordering::Relaxed);
        match transition {
            Some(Transition::Down { reason }) => {
                tracing::warn!(backend, reason = %reason, "backend unhealthy: out of routing")
            }
            Some(Transition::Up) => tracing::info!(backend, "backend healthy again: back in routing"),
            None => {}
        }
    }

    /// How long the checker waits before its next check (`None` when not checked).
    pub fn next_delay(&self) -> Option<std::time::Duration> {
        let inner = self.lock();
        inner.settings.as_ref().map(|s| inner.machine.next_delay(s))
    }

    /// The state for `/status`.
    pub fn report(&self) -> HealthReport {
        let inner = self.lock();
        let (failures, successes) = inner.machine.streaks();
        let state = match (&inner.settings, inner.machine.status()) {
            (None, _) => "unchecked",
            (Some(_), Status::Up) => "up",
            (Some(_), Status::Down) => "down",
        };
        HealthReport {
            state: state.into(),
            last_failure: inner.machine.last_failure().map(str::to_owned),
            failures,
            successes,
        }
    }
}
