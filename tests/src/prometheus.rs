//! A strict reader of the Prometheus text exposition format 0.0.4, for checking what pmmux serves
//! at `/metrics`: every line must be a `# HELP`, a `# TYPE` or a sample; names and label names
//! must be valid; label values may hold only the escapes `\\`, `\"` and `\n`; each family has one
//! HELP and one TYPE line before its samples, and its samples are not interleaved with another
//! family's; no series repeats; counters are never negative; histograms have cumulative
//! `_bucket` series in increasing `le` order ending with `+Inf`, equal to `_count`, and a `_sum`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (with `_bucket`, `_sum`, `_count` for histograms).
    pub name: String,
    /// Labels, unescaped.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// A parsed, validated exposition.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// Samples in order.
    pub samples: Vec<Sample>,
    /// Family name to type.
    pub types: BTreeMap<String, String>,
}

impl Exposition {
    /// Parses and validates `text`; the error names the line.
    pub fn parse(text: &str) -> Result<Exposition, String> {
        parse(text)
    }

    /// The value of the series `name` with exactly `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// Like [`Exposition::get`], panicking with the series list when absent.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| {
            let names: Vec<String> = self
                .samples
                .iter()
                .filter(|s| s.name == name)
                .map(|s| format!("{:?} = {}", s.labels, s.value))
                .collect();
            panic!("no series {name}{labels:?}; {name} has: {names:#?}")
        })
    }

    /// Sum of every series `name` whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }
}

fn valid_name(name: &str, colon: bool) -> bool {
    let mut chars = name.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
    chars.next().is_some_and(ok_first) && chars.all(|c| ok_first(c) || c.is_ascii_digit())
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v.parse::<f64>().map_err(|_| format!("bad value `{v}`")),
    }
}

/// Parses `name{labels} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("a sample needs a value")?;
    let name = &line[..name_end];
    if !valid_name(name, true) {
        return Err(format!("bad metric name `{name}`"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = rest.find('=').ok_or("label without `=`")?;
            let key = &rest[..eq];
            if !valid_name(key, false) || key.starts_with("__") {
                return Err(format!("bad label name `{key}`"));
            }
            rest = rest[eq + 1..].strip_prefix('"').ok_or("label value must be quoted")?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err("unterminated label value".into()),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => return Err(format!("bad escape {other:?} in a label value")),
                    },
                    Some((_, '\n')) => return Err("raw line feed in a label value".into()),
                    Some((_, c)) => value.push(c),
                }
            };
            if labels.insert(key.to_owned(), value).is_some() {
                return Err(format!("label `{key}` twice"));
            }
            rest = &rest[end + 1..];
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return Err("labels must be separated by `,`".into());
            }
        }
    }
    let rest = rest.strip_prefix(' ').ok_or("one space before the value")?;
    let mut parts = rest.split(' ');
    let value = parse_value(parts.next().unwrap_or(""))?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>().map_err(|_| format!("bad timestamp `{ts}`"))?;
    }
    if parts.next().is_some() {
        return Err("trailing fields after the value".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The family a sample belongs to, given the declared types.
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base).is_some_and(|t| t == "histogram" || t == "summary") {
                return base;
            }
        }
    }
    name
}

fn parse(text: &str) -> Result<Exposition, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the last line must end with a line feed".into());
    }
    let mut out = Exposition::default();
    let mut helps = BTreeSet::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut seen = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", i + 1);
        let mut enter = |family: &str, current: &mut Option<String>| -> Result<(), String> {
            if current.as_deref() != Some(family) {
                if let Some(prev) = current.take() {
                    finished.insert(prev);
                }
                if finished.contains(family) {
                    return Err(format!("family {family} appears in two places"));
                }
                *current = Some(family.to_owned());
            }
            Ok(())
        };
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            if !valid_name(name, true) || !rest[name.len()..].starts_with(' ') {
                return Err(at("bad HELP line".into()));
            }
            enter(name, &mut current).map_err(at)?;
            if !helps.insert(name.to_owned()) {
                return Err(at("second HELP".into()));
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| at("bad TYPE line".into()))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at(format!("unknown type `{kind}`")));
            }
            enter(name, &mut current).map_err(at)?;
            if out.samples.iter().any(|s| family_of(&s.name, &out.types) == name) {
                return Err(at("TYPE after the family's samples".into()));
            }
            if out.types.insert(name.to_owned(), kind.to_owned()).is_some() {
                return Err(at("second TYPE".into()));
            }
        } else if line.starts_with('#') {
            continue;
        } else if line.is_empty() {
            return Err(at("empty line".into()));
        } else {
            let sample = parse_sample(line).map_err(at)?;
            let family = family_of(&sample.name, &out.types).to_owned();
            enter(&family, &mut current).map_err(at)?;
            let key = format!("{}{:?}", sample.name, sample.labels);
            if !seen.insert(key) {
                return Err(at("series repeated".into()));
            }
            if out.types.get(&family).is_some_and(|t| t == "counter") && (sample.value < 0.0 || sample.value.is_nan()) {
                return Err(at("negative counter".into()));
            }
            out.samples.push(sample);
        }
    }
    check_histograms(&out)?;
    Ok(out)
}

fn check_histograms(e: &Exposition) -> Result<(), String> {
    for (family, _) in e.types.iter().filter(|(_, t)| *t == "histogram") {
        // Series key: labels without `le`.
        let mut buckets: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
        let mut sums = BTreeSet::new();
        let mut counts: HashMap<String, f64> = HashMap::new();
        for s in &e.samples {
            let mut labels = s.labels.clone();
            let le = labels.remove("le");
            let key = format!("{labels:?}");
            if s.name == format!("{family}_bucket") {
                let le = le.ok_or(format!("{family}_bucket without le"))?;
                buckets.entry(key).or_default().push((parse_value(&le)?, s.value));
            } else if s.name == format!("{family}_sum") {
                sums.insert(key);
            } else if s.name == format!("{family}_count") {
                counts.insert(key, s.value);
            } else if s.name == *family {
                return Err(format!("histogram {family} has a bare sample"));
            }
        }
        if buckets.is_empty() {
            return Err(format!("histogram {family} has no buckets"));
        }
        for (key, b) in &buckets {
            if !b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1) {
                return Err(format!("{family}{key}: buckets not increasing and cumulative: {b:?}"));
            }
            let last = b.last().ok_or("no bucket")?;
            if last.0 != f64::INFINITY {
                return Err(format!("{family}{key}: no le=\"+Inf\" bucket last"));
            }
            if counts.get(key) != Some(&last.1) {
                return Err(format!("{family}{key}: _count differs from the +Inf bucket"));
            }
            if !sums.contains(key) {
                return Err(format!("{family}{key}: no _sum"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# HELP a_total A counter.\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\\n\"} 3\n\
                        # HELP h Hist.\n# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\n\
                        h_sum 0.7\nh_count 2\n";

    #[test]
    fn a_valid_exposition_reads_back() {
        let e = Exposition::parse(GOOD).unwrap();
        assert_eq!(e.get("a_total", &[("x", "q\"\\\n")]), Some(3.0));
        assert_eq!(e.get("h_count", &[]), Some(2.0));
        assert_eq!(e.types["h"], "histogram");
    }

    #[test]
    fn malformed_expositions_are_refused() {
        let bad = [
            ("no final newline", GOOD.trim_end()),
            ("bad escape", "a 1\nb{x=\"\\t\"} 1\n"),
            ("unquoted", "b{x=1} 1\n"),
            ("bad name", "1b 1\n"),
            ("repeated", "a 1\na 2\n"),
            (
                "interleaved",
                "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"y\"} 2\n",
            ),
            ("negative counter", "# TYPE c counter\nc -1\n"),
            (
                "not cumulative",
                "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            ),
            (
                "no +Inf",
                "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 1\nh_count 2\n",
            ),
            (
                "count mismatch",
                "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
            ),
            ("empty line", "a 1\n\nb 1\n"),
            ("two types", "# TYPE a gauge\n# TYPE a gauge\na 1\n"),
            ("bad value", "a one\n"),
        ];
        for (why, text) in bad {
            assert!(Exposition::parse(text).is_err(), "{why} was accepted");
        }
    }
}
