//! The operator's /metrics as the harnesses read it: the Prometheus text format parsed into
//! series, and the sums the tests assert on and the benches report.

use std::collections::BTreeMap;

/// Kubernetes verbs the operator's request counter distinguishes.
pub const VERBS: [&str; 7] = ["Get", "Watch", "Create", "Update", "Patch", "Delete", "Other"];
/// Of them, the writes.
pub const WRITE_VERBS: [&str; 4] = ["Create", "Update", "Patch", "Delete"];

/// A scrape of the Prometheus text format: series (name plus labels, as printed) → value.
#[derive(Clone, Debug, Default)]
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    pub fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .filter_map(|l| {
                    let (series, value) = l.rsplit_once(' ')?;
                    Some((series.to_owned(), value.parse().ok()?))
                })
                .collect(),
        )
    }

    /// Sum over the series of `family` (the whole name, e.g. `..._total`) whose labels contain
    /// `filter`.
    pub fn sum(&self, family: &str, filter: &str) -> f64 {
        let sum: f64 = self
            .0
            .iter()
            .filter(|(s, _)| s.split('{').next() == Some(family) && s.contains(filter))
            .map(|(_, v)| v)
            .sum();
        sum + 0.0 // an empty f64 sum is -0.0
    }

    /// API requests of one verb made so far.
    pub fn requests(&self, verb: &str) -> f64 {
        self.sum("course_operator_api_requests_total", &format!("verb=\"{verb}\""))
    }

    /// Write requests (create, update, patch, delete) made so far.
    pub fn writes(&self) -> f64 {
        WRITE_VERBS.iter().map(|v| self.requests(v)).sum()
    }

    /// Reconciles that ended with `result` (`Success`, `Error`).
    pub fn reconciles(&self, result: &str) -> f64 {
        self.sum("course_operator_reconciles_total", &format!("result=\"{result}\""))
    }

    /// Whether this replica says it holds the Lease.
    pub fn is_leader(&self) -> bool {
        self.sum("course_operator_leader", "") >= 1.0
    }

    /// Buckets (upper bound → cumulative count) of the reconcile duration histogram, all results.
    pub fn duration_buckets(&self) -> Vec<(f64, f64)> {
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for (series, value) in &self.0 {
            if !series.starts_with("course_operator_reconcile_duration_seconds_bucket") {
                continue;
            }
            let Some(le) = label(series, "le") else { continue };
            let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::INFINITY) };
            let entry = buckets.entry(bound.to_bits()).or_insert((bound, 0.0));
            entry.1 += value;
        }
        let mut sorted: Vec<(f64, f64)> = buckets.into_values().collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        sorted
    }
}

/// Value of label `key` in a series like `name{a="x",le="0.5"}`.
fn label<'a>(series: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("{key}=\"");
    let start = series.find(&pattern)? + pattern.len();
    let rest = &series[start..];
    Some(&rest[..rest.find('"')?])
}
