//! The accept-error backoff of one accept loop (EMFILE, ENFILE, ENOBUFS…): a growing, capped delay
//! instead of a spin, and one log line per episode.

use std::time::{Duration, Instant};

/// First wait after an accept error.
pub(crate) const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest wait after repeated accept errors.
pub(crate) const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The accept-error backoff of one accept loop: a growing, capped delay; one log line per episode
/// (a run of errors ended by the next successful accept).
#[derive(Debug, Default)]
pub(crate) struct AcceptBackoff {
    errors: u64,
    delay: Duration,
    since: Option<Instant>,
}

/// What to do after an accept error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BackoffStep {
    /// Wait this long before accepting again.
    pub delay: Duration,
    /// Whether this error starts an episode (log it).
    pub first: bool,
}

impl AcceptBackoff {
    /// An accept error at `now`.
    pub(crate) fn error(&mut self, now: Instant) -> BackoffStep {
        self.errors += 1;
        let first = self.since.is_none();
        if first {
            self.since = Some(now);
            self.delay = ACCEPT_BACKOFF_MIN;
        } else {
            self.delay = (self.delay * 2).min(ACCEPT_BACKOFF_MAX);
        }
        BackoffStep {
            delay: self.delay,
            first,
        }
    }

    /// A successful accept at `now`: `Some((errors, episode length))` when it ends an episode.
    pub(crate) fn success(&mut self, now: Instant) -> Option<(u64, Duration)> {
        let since = self.since.take()?;
        let errors = std::mem::take(&mut self.errors);
        Some((errors, now.saturating_duration_since(since)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_grows_caps_and_logs_once_per_episode() {
        let mut b = AcceptBackoff::default();
        let t0 = Instant::now();
        assert_eq!(b.success(t0), None, "no episode yet");
        let steps: Vec<_> = (0..12).map(|_| b.error(t0)).collect();
        assert!(steps[0].first && steps[1..].iter().all(|s| !s.first));
        assert_eq!(steps[0].delay, ACCEPT_BACKOFF_MIN);
        assert_eq!(steps[1].delay, ACCEPT_BACKOFF_MIN * 2);
        assert!(steps.windows(2).all(|w| w[1].delay >= w[0].delay));
        assert_eq!(steps[11].delay, ACCEPT_BACKOFF_MAX);
        let (errors, _) = b.success(t0 + Duration::from_secs(3)).unwrap();
        assert_eq!(errors, 12);
        assert_eq!(b.success(t0), None);
        let again = b.error(t0);
        assert!(again.first, "a new episode logs again");
        assert_eq!(again.delay, ACCEPT_BACKOFF_MIN, "and starts short again");
    }
}
