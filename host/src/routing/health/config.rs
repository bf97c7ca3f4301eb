//! Health-check settings: the `[backend.health]` table and the per-protocol `[health.<protocol>]`
//! tables, read with serde and validated into [`HealthSettings`] (defaults below).

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// Default time between two checks of one backend.
pub(crate) const DEFAULT_INTERVAL_MS: u64 = 2000;
/// Default bound on one check (connect, probe bytes and verdict).
pub(crate) const DEFAULT_TIMEOUT_MS: u64 = 1000;
/// Default consecutive failures that take a healthy backend out of routing.
pub(crate) const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
/// Default consecutive successes that bring an unhealthy backend back.
pub(crate) const DEFAULT_RECOVERY_THRESHOLD: u32 = 2;
/// Default wait before the first check after a checker starts.
pub(crate) const DEFAULT_INITIAL_DELAY_MS: u64 = 0;
/// Shortest interval accepted (checks are real connections to the target).
pub(crate) const MIN_INTERVAL_MS: u64 = 50;

/// A health table as written (`[backend.health]` or `[health.<protocol>]`); unset keys take the
/// defaults above.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    interval_ms: Option<u64>,
    timeout_ms: Option<u64>,
    failure_threshold: Option<u32>,
    recovery_threshold: Option<u32>,
    initial_delay_ms: Option<u64>,
}

/// The top-level `[health.<protocol>]` tables, by protocol name.
pub(crate) type RawProtocolHealth = BTreeMap<String, Spanned<RawHealth>>;

/// Validated health-check settings of one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    /// Time between the end of one check and the start of the next.
    pub interval: Duration,
    /// Bound on one check.
    pub timeout: Duration,
    /// Consecutive failures (checks or connect failures of client connections) that take the
    /// backend out of routing.
    pub failure_threshold: u32,
    /// Consecutive successful checks that bring it back.
    pub recovery_threshold: u32,
    /// Wait before the first check after the checker starts (or restarts on a change).
    pub initial_delay: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            interval: Duration::from_millis(DEFAULT_INTERVAL_MS),
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            recovery_threshold: DEFAULT_RECOVERY_THRESHOLD,
            initial_delay: Duration::from_millis(DEFAULT_INITIAL_DELAY_MS),
        }
    }
}

type SpannedError = (Option<Range<usize>>, String);

/// Validates one table; `what` names it in errors (`[backend.health]`, `[health.http]`).
pub(crate) fn settings(raw: &Spanned<RawHealth>, what: &str) -> Result<HealthSettings, SpannedError> {
    let r = raw.get_ref();
    let d = HealthSettings::default();
    let err = |m: String| (Some(raw.span()), format!("{what}: {m}"));
    let interval = r.interval_ms.map_or(d.interval, Duration::from_millis);
    if interval < Duration::from_millis(MIN_INTERVAL_MS) {
        return Err(err(format!("interval_ms must be at least {MIN_INTERVAL_MS}")));
    }
    let timeout = r.timeout_ms.map_or(d.timeout, Duration::from_millis);
    if timeout.is_zero() {
        return Err(err("timeout_ms must be above 0".into()));
    }
    let failure_threshold = r.failure_threshold.unwrap_or(d.failure_threshold);
    let recovery_threshold = r.recovery_threshold.unwrap_or(d.recovery_threshold);
    if failure_threshold == 0 || recovery_threshold == 0 {
        return Err(err("failure_threshold and recovery_threshold must be at least 1".into()));
    }
    Ok(HealthSettings {
        interval,
        timeout,
        failure_threshold,
        recovery_threshold,
        initial_delay: r.initial_delay_ms.map_or(d.initial_delay, Duration::from_millis),
    })
}

/// Validates every `[health.<protocol>]` table, reporting each bad one.
pub(crate) fn per_protocol(
    raw: &RawProtocolHealth,
    report: &mut dyn FnMut(Option<Range<usize>>, String),
) -> BTreeMap<String, HealthSettings> {
    let mut out = BTreeMap::new();
    for (protocol, table) in raw {
        match settings(table, &format!("[health.{protocol}]")) {
            Ok(s) => {
                out.insert(protocol.clone(), s);
            }
            Err((span, m)) => report(span, m),
        }
    }
    out
}

/// The settings a backend is checked with: its own table, else its protocol's, else none (not
/// checked). A backend without a target has nothing to check: its own table is an error, its
/// protocol's is skipped.
pub(crate) fn for_backend(
    name: &str,
    own: Option<&Spanned<RawHealth>>,
    protocol: Option<&HealthSettings>,
    has_target: bool,
    report: &mut dyn FnMut(Option<Range<usize>>, String),
) -> Option<HealthSettings> {
    match own {
        Some(table) if !has_target => {
            report(
                Some(table.span()),
                format!("backend `{name}`: [backend.health] needs a `target` to check"),
            );
            None
        }
        Some(table) => match settings(table, &format!("backend `{name}`: [backend.health]")) {
            Ok(s) => Some(s),
            Err((span, m)) => {
                report(span, m);
                None
            }
        },
        None if has_target => protocol.cloned(),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, Config, ConfigError};
    use std::path::Path;

    fn config(extra: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "[[listener]]\naddress = \"127.0.0.1:1\"\n[[backend]]\nname = \"a\"\nprotocol = \"http\"\ntarget = \"127.0.0.1:2\"\n{extra}"
        );
        parse(Path::new("/t.toml"), &text)
    }

    #[test]
    fn unchecked_without_a_table() {
        let c = config("").expect("valid");
        assert_eq!(c.backends[0].health, None);
        assert_eq!(c.routing.max_failovers, 3);
    }

    #[test]
    fn an_empty_backend_table_takes_the_defaults() {
        let c = config("[backend.health]\n").expect("valid");
        assert_eq!(c.backends[0].health, Some(HealthSettings::default()));
    }

    #[test]
    fn per_protocol_table_applies_unless_the_backend_has_its_own() {
        let text = "[health.http]\ninterval_ms = 500\nfailure_threshold = 1\n\
                    [[backend]]\nname = \"b\"\nprotocol = \"http\"\ntarget = \"127.0.0.1:3\"\n\
                    [backend.health]\ntimeout_ms = 250\n\
                    [[backend]]\nname = \"c\"\nprotocol = \"http\"\n\
                    [[backend]]\nname = \"d\"\nprotocol = \"ssh\"\ntarget = \"127.0.0.1:4\"\n";
        let c = config(text).expect("valid");
        let a = c.backends[0].health.clone().expect("a checked by [health.http]");
        assert_eq!((a.interval, a.failure_threshold), (Duration::from_millis(500), 1));
        let b = c.backends[1].health.clone().expect("b checked by its own table");
        assert_eq!(b.timeout, Duration::from_millis(250));
        assert_eq!(
            b.interval,
            HealthSettings::default().interval,
            "its own table replaces the protocol's"
        );
        assert_eq!(c.backends[2].health, None, "no target: nothing to check");
        assert_eq!(c.backends[3].health, None, "another protocol");
    }

    #[test]
    fn errors_are_located() {
        let e = config("[backend.health]\nfailure_threshold = 0\n").unwrap_err();
        assert_eq!(e.issues[0].line, 7, "{e}");
        assert!(e.to_string().contains("failure_threshold"), "{e}");
        let e = config("[backend.health]\ninterval = 5\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `interval`"), "{e}");
        let e = config("[health.ssh]\ninterval_ms = 10\n").unwrap_err();
        assert!(
            e.to_string().contains("[health.ssh]: interval_ms must be at least 50"),
            "{e}"
        );
        let text = "[[backend]]\nname = \"n\"\nprotocol = \"echo\"\n[backend.health]\n";
        let e = config(text).unwrap_err();
        assert!(e.to_string().contains("needs a `target`"), "{e}");
    }
}
