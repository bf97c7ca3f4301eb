//! Reading pmmux's log (tracing's default format, UTC timestamps) for the reload test: when each
//! registry swap after a plugin change happened, which plugin version it brought and how long the
//! load took, so client-side figures can be split into "pmmux swapped" and "a client saw it".

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// One `registry swapped why="plugins changed"` line and the `plugin loaded` line before it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Swap {
    /// When the swap was logged, seconds since the Unix epoch.
    pub at: f64,
    /// The plugin version the last `plugin loaded` line before it named.
    pub version: Option<u32>,
    /// That line's load time (copy to the shadow folder, checks, constructor), in ms.
    pub load_ms: Option<f64>,
}

/// Now, in seconds since the Unix epoch (the clock pmmux's log timestamps use).
pub fn wall_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(f64::NAN, |d| d.as_secs_f64())
}

/// Every swap caused by a plugin change in the log at `path`, in order (empty when unreadable).
pub fn swaps(path: &Path) -> Vec<Swap> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut loaded: Option<(Option<u32>, Option<f64>)> = None;
    for line in text.lines() {
        let Some(at) = line.split_whitespace().next().and_then(timestamp) else {
            continue;
        };
        if line.contains(" plugin loaded ") {
            loaded = Some((
                field(line, "version").and_then(|v| v.parse().ok()),
                field(line, "ms").and_then(|v| v.parse().ok()),
            ));
        } else if line.contains(" registry swapped ") && line.contains("why=\"plugins changed\"") {
            let (version, load_ms) = loaded.take().unwrap_or((None, None));
            out.push(Swap { at, version, load_ms });
        }
    }
    out
}

/// Lines logged at WARN or ERROR, and the last of them.
pub fn warnings(path: &Path) -> (usize, Option<String>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut n = 0;
    let mut last = None;
    for line in text.lines() {
        if matches!(line.split_whitespace().nth(1), Some("WARN" | "ERROR")) {
            n += 1;
            last = Some(line.to_owned());
        }
    }
    (n, last)
}

/// The value of ` key=value` in a log line (up to the next space).
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    line[start..].split_whitespace().next()
}

/// `2026-11-21T10:59:40.032610Z` as seconds since the Unix epoch.
pub fn timestamp(s: &str) -> Option<f64> {
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':').map(|x| x.parse::<f64>().ok());
    let (h, min, sec) = (t.next()??, t.next()??, t.next()??);
    Some(days_from_civil(y, m, day) as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + sec)
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_epoch_seconds() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        let t = timestamp("2026-11-21T10:59:40.032610Z").expect("parses");
        assert!((t - 1_795_258_780.032_61).abs() < 1e-5, "{t}");
        assert_eq!(timestamp("not-a-time"), None);
    }

    #[test]
    fn swaps_carry_the_loaded_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        std::fs::write(
            &log,
            "2026-11-21T10:59:39.524123Z  INFO pmmux::plugins::set: plugin loaded plugin=versioned version=1 file=/x abi=1 replaced=\"-\" ms=1.0\n\
             2026-11-21T10:59:39.524148Z  INFO pmmux::control::reload: registry swapped why=\"start-up\" plugins=1 backends=1 ms=0.0\n\
             2026-11-21T10:59:40.032557Z DEBUG pmmux::plugins::loader: plugin file loaded file=/x ms=1.110287\n\
             2026-11-21T10:59:40.032591Z  INFO pmmux::plugins::set: plugin loaded plugin=versioned version=2 file=/x abi=1 replaced=\"1\" ms=1.1\n\
             2026-11-21T10:59:40.032610Z  INFO pmmux::control::reload: registry swapped why=\"plugins changed\" plugins=1 backends=1 ms=0.0\n\
             2026-11-21T10:59:41.000000Z  WARN pmmux: something\n",
        )
        .expect("write");
        let s = swaps(&log);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].version, s[0].load_ms), (Some(2), Some(1.1)));
        let (n, last) = warnings(&log);
        assert_eq!(n, 1);
        assert!(last.is_some_and(|l| l.ends_with("something")));
    }
}
