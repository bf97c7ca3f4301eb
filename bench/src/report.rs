//! Results: samples per (test, metric, path), their median/min/max, the printed table and the TSV.

use std::fmt::Write as _;
use std::path::Path;

/// One measured quantity over the rounds.
#[derive(Debug, Clone)]
pub struct Series {
    /// `bulk`, `rate`, `memory`.
    pub test: &'static str,
    /// What is measured (`gbps`, `conn_per_s`, `p99_ms`, ...).
    pub metric: String,
    /// `direct`, `pmmux` or `ratio` (pmmux / direct) or `added` (pmmux - direct).
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

    /// The human-readable table: one row per (test, metric) with direct, pmmux and the comparison.
    pub fn table(&self) -> String {
        let mut rows: Vec<[String; 6]> = vec![[
            "test".into(),
            "metric".into(),
            "direct".into(),
            "pmmux".into(),
            "vs direct".into(),
            "pmmux min..max".into(),
        ]];
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for s in &self.series {
            if s.path == "ratio" || s.path == "added" || seen.contains(&(s.test, s.metric.as_str())) {
                continue;
            }
            seen.push((s.test, s.metric.as_str()));
            let direct = self.get(s.test, &s.metric, "direct");
            let pmmux = self.get(s.test, &s.metric, "pmmux");
            let cmp = if let Some(r) = self.get(s.test, &s.metric, "ratio") {
                format!("{:.2}x", r.median())
            } else if let Some(a) = self.get(s.test, &s.metric, "added") {
                format!("{:+.3} {}", a.median(), a.unit)
            } else {
                String::new()
            };
            let show = |x: Option<&Series>| x.map_or("-".to_owned(), |x| fmt_num(x.median()));
            let range = pmmux.map_or(String::new(), |p| format!("{}..{}", fmt_num(p.min()), fmt_num(p.max())));
            rows.push([
                s.test.into(),
                format!("{} ({})", s.metric, s.unit),
                show(direct),
                show(pmmux),
                cmp,
                range,
            ]);
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
    }
}
