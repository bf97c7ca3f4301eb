//! Results: samples per (test, metric, path), their median/min/max, the printed table and the TSV.

use std::fmt::Write as _;
use std::path::Path;

/// One measured quantity over the rounds.
#[derive(Debug, Clone)]
pub struct Series {
    /// `detect`, `bulk`, `rate`, `memory`, `reload`, `udp`.
    pub test: &'static str,
    /// What is measured (`gbps`, `conn_per_s`, `p99_ms`, ...).
    pub metric: String,
    /// `direct`, `pmmux` or `ratio` (pmmux / direct) or `added` (pmmux - direct); the udp test also
    /// has `socat`, `ratio_socat` and `added_socat`; the reload test compares `reloading` with
    /// `steady` the same way; the detect test's per-plugin rows are `match` and `nomatch`.
    pub path: &'static str,
    /// Unit for the reader.
    pub unit: &'static str,
    /// One value per round (NaN-free).
    pub samples: Vec<f64>,
}

impl Series {
    /// Median of the samples (NaN when there are none).
    pub fn median(&self) -> f64 {
        median(&self.samples)
    }

    fn min(&self) -> f64 {
        self.samples.iter().copied().fold(f64::NAN, f64::min)
    }

    fn max(&self) -> f64 {
        self.samples.iter().copied().fold(f64::NAN, f64::max)
    }
}

/// Median of `v` (NaN when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

/// Everything measured in one run.
#[derive(Debug, Default)]
pub struct Results {
    /// The series, in the order they were added.
    pub series: Vec<Series>,
    /// Free-text notes (errors, scaled-down counts, missing plugins).
    pub notes: Vec<String>,
}

impl Results {
    /// Adds one sample, creating the series on first use.
    pub fn add(&mut self, test: &'static str, metric: &str, path: &'static str, unit: &'static str, value: f64) {
        if !value.is_finite() {
            return;
        }
        match self
            .series
            .iter_mut()
            .find(|s| s.test == test && s.metric == metric && s.path == path)
        {
            Some(s) => s.samples.push(value),
            None => self.series.push(Series {
                test,
                metric: metric.to_owned(),
                path,
                unit,
                samples: vec![value],
            }),
        }
    }

    /// Median of a series (NaN when absent).
    pub fn median(&self, test: &str, metric: &str, path: &str) -> f64 {
        self.get(test, metric, path).map_or(f64::NAN, Series::median)
    }

    /// Number of samples in a series (0 when absent).
    pub fn count(&self, test: &str, metric: &str, path: &str) -> usize {
        self.get(test, metric, path).map_or(0, |s| s.samples.len())
    }

    /// Sum of a series' samples (0 when absent).
    pub fn sum(&self, test: &str, metric: &str, path: &str) -> f64 {
        self.get(test, metric, path).map_or(0.0, |s| s.samples.iter().sum())
    }

    fn get(&self, test: &str, metric: &str, path: &str) -> Option<&Series> {
        self.series
            .iter()
            .find(|s| s.test == test && s.metric == metric && s.path == path)
    }

    /// Records a note, also printed at once on stderr.
    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        eprintln!("note: {text}");
        self.notes.push(text);
    }

    /// The human-readable table: one row per (test, metric) with direct, pmmux and the comparison;
    /// then the rows also measured through socat (the udp test), pmmux against socat; then, if the
    /// reload test ran, its steady-versus-reloading rows; the upgrade test's steady-versus-upgrading
    /// rows; then the detect test's per-plugin rows (ns
    /// per call on matching and non-matching bytes). Each block is left out when empty.
    pub fn table(&self) -> String {
        let blocks = [
            self.block(["direct", "pmmux"], ["ratio", "added"], false),
            self.block(["socat", "pmmux"], ["ratio_socat", "added_socat"], true),
            self.block(["steady", "reloading"], ["ratio", "added"], false),
            self.block(["steady", "upgrading"], ["ratio", "added"], false),
            self.block(["match", "nomatch"], ["", ""], false),
        ];
        let blocks: Vec<String> = blocks.into_iter().filter(|b| !b.is_empty()).collect();
        blocks.join("\n")
    }

    /// Rows of the series whose path is `base` or `measured` (only those with a `base` series when
    /// `need_base`), with the ratio or difference between them (the series at path `ratio`, else
    /// `added`); the column headers are the two path names.
    fn block(&self, [base, measured]: [&str; 2], [ratio, added]: [&str; 2], need_base: bool) -> String {
        let mut rows: Vec<[String; 6]> = vec![[
            "test".into(),
            "metric".into(),
            base.into(),
            measured.into(),
            format!("vs {base}"),
            format!("{measured} min..max"),
        ]];
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for s in &self.series {
            if (s.path != base && s.path != measured) || seen.contains(&(s.test, s.metric.as_str())) {
                continue;
            }
            // `steady` is the base of two blocks: each shows only the tests that measured its other path.
            if s.path == base && self.get(s.test, &s.metric, measured).is_none() && base == "steady" {
                continue;
            }
            let base_s = self.get(s.test, &s.metric, base);
            if need_base && base_s.is_none() {
                continue;
            }
            seen.push((s.test, s.metric.as_str()));
            let measured_s = self.get(s.test, &s.metric, measured);
            let cmp = if let Some(r) = self.get(s.test, &s.metric, ratio) {
                format!("{:.2}x", r.median())
            } else if let Some(a) = self.get(s.test, &s.metric, added) {
                format!("{:+.3} {}", a.median(), a.unit)
            } else {
                String::new()
            };
            let show = |x: Option<&Series>| x.map_or("-".to_owned(), |x| fmt_num(x.median()));
            let range = measured_s.map_or(String::new(), |p| format!("{}..{}", fmt_num(p.min()), fmt_num(p.max())));
            rows.push([
                s.test.into(),
                format!("{} ({})", s.metric, s.unit),
                show(base_s),
                show(measured_s),
                cmp,
                range,
            ]);
        }
        if rows.len() == 1 {
            return String::new();
        }
        let widths: Vec<usize> = (0..6)
            .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for (n, r) in rows.iter().enumerate() {
            for (i, cell) in r.iter().enumerate() {
                if i < 2 {
                    let _ = write!(out, "{cell:<w$}  ", w = widths[i]);
                } else {
                    let _ = write!(out, "{cell:>w$}  ", w = widths[i]);
                }
            }
            out = out.trim_end().to_owned();
            out.push('\n');
            if n == 0 {
                out += &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  ");
                out.push('\n');
            }
        }
        out
    }

    /// Writes every series as TSV: test, metric, path, unit, median, min, max, n, samples.
    pub fn write_tsv(&self, path: &Path) -> std::io::Result<()> {
        let mut out = String::from("test\tmetric\tpath\tunit\tmedian\tmin\tmax\tn\tsamples\n");
        for s in &self.series {
            let samples: Vec<String> = s.samples.iter().map(|v| format!("{v:.6}")).collect();
            let _ = writeln!(
                out,
                "{}\t{}\t{}\t{}\t{:.6}\t{:.6}\t{:.6}\t{}\t{}",
                s.test,
                s.metric,
                s.path,
                s.unit,
                s.median(),
                s.min(),
                s.max(),
                s.samples.len(),
                samples.join(",")
            );
        }
        for n in &self.notes {
            let _ = writeln!(out, "note\t{}\t\t\t\t\t\t\t", n.replace(['\t', '\n'], " "));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, out)
    }
}

/// Percentile `p` (0..=100) of `v`, nearest rank on the sorted samples (NaN when empty): with 50
/// samples, p99 is the largest.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    s[i.min(s.len() - 1)]
}

/// A number with precision suited to its size.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        "n/a".into()
    } else if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn table_shows_ratio_and_added() {
        let mut r = Results::default();
        r.add("bulk", "gbps", "direct", "Gbit/s", 10.0);
        r.add("bulk", "gbps", "pmmux", "Gbit/s", 9.0);
        r.add("bulk", "gbps", "ratio", "x", 0.9);
        r.add("rate", "p99_ms", "direct", "ms", 1.0);
        r.add("rate", "p99_ms", "pmmux", "ms", 1.5);
        r.add("rate", "p99_ms", "added", "ms", 0.5);
        let t = r.table();
        assert!(t.contains("0.90x"), "{t}");
        assert!(t.contains("+0.500 ms"), "{t}");
        assert!(!t.contains("steady"), "{t}");
        r.add("reload", "conn_per_s", "steady", "conn/s", 100.0);
        r.add("reload", "conn_per_s", "reloading", "conn/s", 95.0);
        r.add("reload", "conn_per_s", "ratio", "x", 0.95);
        let t = r.table();
        assert!(t.contains("vs steady") && t.contains("0.95x"), "{t}");
        assert!(!t.contains("vs socat"), "{t}");
        r.add("udp", "rt_per_s", "direct", "rt/s", 100.0);
        r.add("udp", "rt_per_s", "pmmux", "rt/s", 80.0);
        r.add("udp", "rt_per_s", "socat", "rt/s", 40.0);
        r.add("udp", "rt_per_s", "ratio_socat", "x", 2.0);
        let t = r.table();
        let socat = &t[t.find("vs socat").expect("socat block")..];
        assert!(socat.contains("2.00x") && !socat.contains("bulk"), "{t}");
    }

    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<f64> = (1..=50).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 26.0);
        assert_eq!(percentile(&v, 90.0), 45.0);
        assert_eq!(percentile(&v, 99.0), 50.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
