//! The health state machine of one backend, with no I/O: consecutive check results against the
//! thresholds, the schedule (initial delay, then the interval), and the transitions to log.
//!
//! A backend starts healthy (in routing) before its first check. `failure_threshold` failures in
//! a row take it out; `recovery_threshold` successes in a row bring it back. A success resets the
//! failure count and a failure the success count.

use std::time::Duration;

use super::config::HealthSettings;

/// Whether a backend is in routing as far as health goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Status {
    /// Healthy (or not failed enough yet): in routing.
    #[default]
    Up,
    /// Unhealthy: out of routing until it recovers.
    Down,
}

/// A change of [`Status`], to log once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Went down; the last failure's reason.
    Down {
        /// Why the last check failed.
        reason: String,
    },
    /// Came back up.
    Up,
}

/// Counters of one backend's checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Machine {
    status: Status,
    /// Failures in a row while up.
    failures: u32,
    /// Successes in a row while down.
    successes: u32,
    /// Checks recorded since the checker (re)started.
    checks: u64,
    /// The last failure's reason.
    last_failure: Option<String>,
}

/// What one check (or one client connection's connect attempt) found.
pub(crate) type Outcome = Result<(), String>;

impl Machine {
    /// The status now.
    pub(crate) fn status(&self) -> Status {
        self.status
    }

    /// The last failure's reason, if any since the start.
    pub(crate) fn last_failure(&self) -> Option<&str> {
        self.last_failure.as_deref()
    }

    /// Failures in a row (while up) and successes in a row (while down).
    pub(crate) fn streaks(&self) -> (u32, u32) {
        (self.failures, self.successes)
    }

    /// How long the checker waits before its next check.
    pub(crate) fn next_delay(&self, s: &HealthSettings) -> Duration {
        if self.checks == 0 {
            s.initial_delay
        } else {
            s.interval
        }
    }

    /// A checker (re)started: its schedule begins again with the initial delay; the status and
    /// streaks carry over.
    pub(crate) fn restart(&mut self) {
        self.checks = 0;
    }

    /// Records an active check's result.
    pub(crate) fn check(&mut self, outcome: Outcome, s: &HealthSettings) -> Option<Transition> {
        self.checks += 1;
        self.record(outcome, s)
    }

    /// Records a client connection's failure to connect to the target (passive health): it
    /// counts toward the failure threshold like a failed check, but does not move the schedule.
    pub(crate) fn passive_failure(&mut self, reason: String, s: &HealthSettings) -> Option<Transition> {
        self.record(Err(reason), s)
    }

    fn record(&mut self, outcome: Outcome, s: &HealthSettings) -> Option<Transition> {
        match outcome {
            Ok(()) => {
                self.failures = 0;
                if self.status == Status::Down {
                    self.successes += 1;
                    if self.successes >= s.recovery_threshold {
                        self.status = Status::Up;
                        self.successes = 0;
                        return Some(Transition::Up);
                    }
                }
                None
            }
            Err(reason) => {
                self.successes = 0;
                self.last_failure = Some(reason.clone());
                if self.status == Status::Up {
                    self.failures += 1;
                    if self.failures >= s.failure_threshold {
                        self.status = Status::Down;
                        self.failures = 0;
                        return Some(Transition::Down { reason });
                    }
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(failure: u32, recovery: u32) -> HealthSettings {
        HealthSettings {
            failure_threshold: failure,
            recovery_threshold: recovery,
            initial_delay: Duration::from_millis(700),
            interval: Duration::from_millis(300),
            ..HealthSettings::default()
        }
    }

    fn fail() -> Outcome {
        Err("refused".into())
    }

    #[test]
    fn starts_up_and_goes_down_after_the_threshold_once() {
        let s = settings(3, 2);
        let mut m = Machine::default();
        assert_eq!(m.status(), Status::Up);
        assert_eq!(m.check(fail(), &s), None);
        assert_eq!(m.check(fail(), &s), None);
        assert_eq!(
            m.check(fail(), &s),
            Some(Transition::Down {
                reason: "refused".into()
            })
        );
        assert_eq!(m.status(), Status::Down);
        // Further failures while down are not transitions.
        assert_eq!(m.check(fail(), &s), None);
        assert_eq!(m.last_failure(), Some("refused"));
    }

    #[test]
    fn a_success_resets_the_failure_streak() {
        let s = settings(2, 1);
        let mut m = Machine::default();
        assert_eq!(m.check(fail(), &s), None);
        assert_eq!(m.check(Ok(()), &s), None);
        assert_eq!(m.check(fail(), &s), None);
        assert_eq!(m.status(), Status::Up);
        assert!(m.check(fail(), &s).is_some());
    }

    #[test]
    fn recovers_after_the_recovery_threshold_and_a_failure_resets_it() {
        let s = settings(1, 3);
        let mut m = Machine::default();
        assert!(m.check(fail(), &s).is_some());
        assert_eq!(m.check(Ok(()), &s), None);
        assert_eq!(m.check(Ok(()), &s), None);
        assert_eq!(m.check(fail(), &s), None);
        assert_eq!(m.streaks(), (0, 0));
        assert_eq!(m.check(Ok(()), &s), None);
        assert_eq!(m.check(Ok(()), &s), None);
        assert_eq!(m.check(Ok(()), &s), Some(Transition::Up));
        assert_eq!(m.status(), Status::Up);
        assert_eq!(m.check(Ok(()), &s), None);
    }

    #[test]
    fn passive_failures_count_but_keep_the_schedule() {
        let s = settings(3, 1);
        let mut m = Machine::default();
        assert_eq!(m.next_delay(&s), Duration::from_millis(700));
        assert_eq!(m.passive_failure("connect refused".into(), &s), None);
        assert_eq!(m.passive_failure("connect refused".into(), &s), None);
        assert_eq!(
            m.next_delay(&s),
            Duration::from_millis(700),
            "still before the first check"
        );
        assert!(matches!(m.check(fail(), &s), Some(Transition::Down { .. })));
        assert_eq!(m.next_delay(&s), Duration::from_millis(300));
    }

    #[test]
    fn restart_keeps_status_and_begins_with_the_initial_delay() {
        let s = settings(1, 2);
        let mut m = Machine::default();
        assert!(m.check(fail(), &s).is_some());
        assert_eq!(m.next_delay(&s), Duration::from_millis(300));
        m.restart();
        assert_eq!(m.status(), Status::Down);
        assert_eq!(m.next_delay(&s), Duration::from_millis(700));
    }
}
