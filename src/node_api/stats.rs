//! Per-node request statistics for the node summary lines and the run
//! report: attempts, retries, transport errors, answers per status and
//! latency percentiles (an HDR histogram: bounded memory, bounded error).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use reqwest::Response;
use serde::Serialize;

use super::health::HealthSnapshot;

/// Per-node counters for the run report.
#[derive(Debug, Default)]
pub struct NodeStats {
    attempts: AtomicU64,
    retries: AtomicU64,
    transport_errors: AtomicU64,
    /// Answers per status and attempt times, under one lock per attempt.
    answers: Mutex<Answers>,
}

#[derive(Debug)]
struct Answers {
    statuses: BTreeMap<u16, u64>,
    /// Time of each attempt, in microseconds.
    latency: Histogram<u32>,
}

impl Default for Answers {
    fn default() -> Self {
        Self {
            statuses: BTreeMap::new(),
            latency: latency_histogram(),
        }
    }
}

/// A histogram of attempt times in microseconds, to two significant digits.
/// It grows only to cover the longest time recorded (a few KiB per node for
/// answers within seconds), whatever the number of requests.
#[allow(clippy::expect_used)] // Constant, valid precision; a unit test builds it.
fn latency_histogram() -> Histogram<u32> {
    Histogram::new(2).expect("valid histogram precision")
}

/// Attempt times of one node (or of all), in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(histogram: &Histogram<u32>) -> Latency {
        if histogram.is_empty() {
            return Latency::default();
        }
        let ms = |micros: u64| (micros as f64 / 100.0).round() / 10.0;
        Latency {
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// A snapshot of [`NodeStats`].
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct NodeStatsSnapshot {
    pub node: String,
    /// Attempts sent (or that tried to connect), retries included.
    pub requests: u64,
    /// Attempts after the first of a request.
    pub retries: u64,
    pub transport_errors: u64,
    /// Answers per HTTP status.
    pub statuses: BTreeMap<String, u64>,
    pub latency: Latency,
    /// How the node's prior states were known, `list` or `read`, when the
    /// run took them from node lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prior_state: Option<String>,
    /// Whether and for how long the node was down, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSnapshot>,
    #[serde(skip)]
    histogram: Option<Arc<Histogram<u32>>>,
}

/// The requests of a run over every node.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RequestTotals {
    pub requests: u64,
    pub retries: u64,
    pub transport_errors: u64,
    pub statuses: BTreeMap<String, u64>,
    pub latency: Latency,
}

impl RequestTotals {
    pub fn over(nodes: &[NodeStatsSnapshot]) -> RequestTotals {
        let mut totals = RequestTotals::default();
        let mut all = latency_histogram();
        for node in nodes {
            totals.requests += node.requests;
            totals.retries += node.retries;
            totals.transport_errors += node.transport_errors;
            for (status, count) in &node.statuses {
                *totals.statuses.entry(status.clone()).or_default() += count;
            }
            if let Some(histogram) = &node.histogram {
                // `all` resizes itself, so adding cannot fail.
                let _ = all.add(histogram.as_ref());
            }
        }
        totals.latency = Latency::of(&all);
        totals
    }
}

impl NodeStats {
    pub(super) fn record(&self, result: &reqwest_middleware::Result<Response>, took: Duration) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if result.is_err() {
            self.transport_errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut answers) = self.answers.lock() {
            // An attempt is cut off by REQUEST_TIMEOUT_MS (at most ten
            // minutes); anything past an hour is clamped all the same.
            const HOUR_MICROS: u64 = 3_600_000_000;
            let micros = (took.as_micros() as u64).clamp(1, HOUR_MICROS);
            let _ = answers.latency.record(micros);
            if let Ok(response) = result {
                *answers
                    .statuses
                    .entry(response.status().as_u16())
                    .or_default() += 1;
            }
        }
    }

    /// Counts the attempts after the first of one request.
    pub(super) fn add_retries(&self, retries: u64) {
        self.retries.fetch_add(retries, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self, node: &str) -> NodeStatsSnapshot {
        let (statuses, histogram) = match self.answers.lock() {
            Ok(answers) => (
                answers
                    .statuses
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect(),
                Some(Arc::new(answers.latency.clone())),
            ),
            Err(_) => (BTreeMap::new(), None),
        };
        NodeStatsSnapshot {
            node: node.to_owned(),
            requests: self.attempts.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            transport_errors: self.transport_errors.load(Ordering::Relaxed),
            statuses,
            latency: histogram.as_deref().map(Latency::of).unwrap_or_default(),
            prior_state: None,
            health: None,
            histogram,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn latency_percentiles_are_within_one_percent() {
        let mut histogram = latency_histogram();
        for micros in 1..=10_000u64 {
            histogram.record(micros * 100).unwrap();
        }
        let latency = Latency::of(&histogram);
        assert!((latency.p50_ms - 500.0).abs() <= 5.0, "{latency:?}");
        assert!((latency.p99_ms - 990.0).abs() <= 10.0, "{latency:?}");
        assert!((latency.max_ms - 1000.0).abs() <= 10.0, "{latency:?}");
        assert_eq!(Latency::of(&latency_histogram()), Latency::default());
    }

    #[test]
    fn request_totals_merge_every_node() {
        let stats = [NodeStats::default(), NodeStats::default()];
        let ok = || -> reqwest_middleware::Result<Response> {
            Ok(Response::from(http::Response::new(Vec::<u8>::new())))
        };
        stats[0].record(&ok(), Duration::from_millis(2));
        stats[1].record(&ok(), Duration::from_millis(40));
        stats[1].add_retries(1);
        let nodes: Vec<_> = stats.iter().map(|s| s.snapshot("n")).collect();
        let totals = RequestTotals::over(&nodes);
        assert_eq!((totals.requests, totals.retries), (2, 1));
        assert_eq!(count_of(&totals.statuses, "200"), 2);
        assert!(
            (totals.latency.p50_ms - 2.0).abs() < 0.1,
            "{:?}",
            totals.latency
        );
        assert!(
            (totals.latency.max_ms - 40.0).abs() < 0.5,
            "{:?}",
            totals.latency
        );
    }

    fn count_of(map: &BTreeMap<String, u64>, key: &str) -> u64 {
        map.get(key).copied().unwrap_or(0)
    }
}
