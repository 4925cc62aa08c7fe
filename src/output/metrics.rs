//! The run's metrics, pushed to a Prometheus Pushgateway
//! (`METRICS_PUSHGATEWAY_URL`): every `PROGRESS_INTERVAL_SECS` while the run
//! goes on, and once at its end.
//!
//! A batch job is gone before Prometheus could scrape it, so it pushes. The
//! grouping key follows Prometheus' guidance for batch jobs: `job`
//! (`METRICS_JOB`) and, when the list is split, `shard`; never a pod or
//! instance name, so that each run replaces the metrics of the one before
//! instead of piling up series.
//!
//! Pushes are `POST`s, which replace only the metrics they carry: a run that
//! does not exit 0 leaves out `api_consumer_last_success_timestamp_seconds`,
//! so the last success stays on the gateway for a staleness alert.
//!
//! A push never changes the run: each is bounded by [`PUSH_TIMEOUT`]
//! (connecting included), is not retried, and a failure is one warning line.
//!
//! The exposition text comes from the `prometheus` crate's registry and
//! `TextEncoder` (format 0.0.4, which every Pushgateway reads);
//! `prometheus-client` writes OpenMetrics, which Pushgateway 1.x does not
//! parse. Its own push feature is left off: the job sends with the reqwest
//! client it already has.

use std::time::{Duration, SystemTime};

use prometheus::{Encoder, Gauge, GaugeVec, Opts, Registry, TextEncoder};
use reqwest::header::CONTENT_TYPE;
use reqwest::Url;

use crate::domain::{Operation, OutcomeCounts, Shard};
use crate::node_api::NodeStatsSnapshot;

/// The longest a push may take, connecting included.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where to push, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// The gateway's base URL (`METRICS_PUSHGATEWAY_URL`), without
    /// credentials.
    pub gateway: Url,
    /// The `job` label of the grouping key (`METRICS_JOB`).
    pub job: String,
}

/// What one push says about the run.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    pub operation: Operation,
    /// The groups finished so far (all of them at the end).
    pub totals: &'a OutcomeCounts,
    pub nodes: &'a [NodeStatsSnapshot],
    /// Time since the run started.
    pub duration: Duration,
    /// Set at the end only.
    pub exit_code: Option<u8>,
}

/// Pushes one run's metrics to its group on the gateway.
#[derive(Debug)]
pub struct Pusher {
    client: reqwest::Client,
    url: Url,
}

impl Pusher {
    /// A pusher for `settings`, grouped by `shard` when the list is split.
    pub fn new(
        settings: &MetricsSettings,
        shard: Shard,
        ca_certificates: &[reqwest::Certificate],
    ) -> Result<Pusher, String> {
        crate::node_api::install_tls_provider();
        let client = reqwest::Client::builder()
            .tls_certs_merge(ca_certificates.iter().cloned())
            .timeout(PUSH_TIMEOUT)
            .connect_timeout(PUSH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never().max_retries_per_request(0))
            .build()
            .map_err(|e| format!("cannot build the metrics client: {e}"))?;
        Ok(Pusher {
            client,
            url: grouping_url(settings, shard)?,
        })
    }

    /// Pushes `sample`; the last success time goes with it when the run
    /// ended with exit code 0. A failure is logged, never returned: the
    /// run's outcome does not depend on its metrics.
    pub async fn push(&self, sample: &Sample<'_>) {
        match self.send(sample).await {
            Ok(()) => tracing::debug!(target: LOG_TARGET, gateway = %self.url, "metrics pushed"),
            Err(reason) => tracing::warn!(target: LOG_TARGET, gateway = %self.url,
                reason = %reason, "metrics push failed; the run goes on"),
        }
    }

    async fn send(&self, sample: &Sample<'_>) -> Result<(), String> {
        let now = SystemTime::UNIX_EPOCH.elapsed().unwrap_or_default();
        let last_success = (sample.exit_code == Some(0)).then_some(now.as_secs_f64());
        let body = encode(sample, last_success)
            .map_err(|error| format!("cannot encode the metrics: {error}"))?;
        // The client's timeout bounds the whole push, body included.
        let response = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    format!("no answer within {} s", PUSH_TIMEOUT.as_secs())
                } else {
                    crate::node_api::errors::describe_error(&e.into())
                }
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let detail = response.text().await.unwrap_or_default();
        Err(format!(
            "the gateway answered {status}: {}",
            crate::domain::truncate(detail.trim(), 200)
        ))
    }
}

/// The target of the push lines, which `LOG_LEVEL` directives name.
const LOG_TARGET: &str = "api_consumer::metrics";

fn grouping_url(settings: &MetricsSettings, shard: Shard) -> Result<Url, String> {
    let mut url = settings.gateway.clone();
    let mut segments = vec!["metrics", "job", settings.job.as_str()];
    let index = shard.index().to_string();
    if shard.is_split() {
        segments.extend(["shard", index.as_str()]);
    }
    url.path_segments_mut()
        .map_err(|()| "the gateway URL cannot have a path".to_string())?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// The Pushgateway's text exposition (format 0.0.4) of `sample`.
pub fn encode(sample: &Sample<'_>, last_success: Option<f64>) -> prometheus::Result<String> {
    let registry = Registry::new();
    let gauges = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<GaugeVec> {
        let vec = GaugeVec::new(Opts::new(name, help), labels)?;
        registry.register(Box::new(vec.clone()))?;
        Ok(vec)
    };
    let help = "Groups of this run by outcome (so far, while it runs).";
    let groups = gauges("api_consumer_groups", help, &["operation", "outcome"])?;
    for (outcome, count) in sample.totals.by_outcome() {
        let labels = [sample.operation.to_string(), outcome.to_string()];
        groups.with_label_values(&labels).set(count as f64);
    }
    let help = "Requests of this run by node and answer (an HTTP status, or transport_error).";
    let requests = gauges("api_consumer_requests", help, &["node", "status"])?;
    let help = "Attempts of this run after the first of a request, by node.";
    let retries = gauges("api_consumer_retries", help, &["node"])?;
    let help = "Whether the node is up (1) or down (0), as the run last saw it.";
    let up = gauges("api_consumer_node_up", help, &["node"])?;
    let help = "Time this run has spent with the node down, in seconds.";
    let down_seconds = gauges("api_consumer_node_down_seconds", help, &["node"])?;
    let help = "How many times this run saw the node go down.";
    let downs = gauges("api_consumer_node_downs", help, &["node"])?;
    for node in sample.nodes {
        let name = node.node.as_str();
        for (status, count) in &node.statuses {
            requests
                .with_label_values(&[name, status.as_str()])
                .set(*count as f64);
        }
        requests
            .with_label_values(&[name, "transport_error"])
            .set(node.transport_errors as f64);
        retries.with_label_values(&[name]).set(node.retries as f64);
        // A node never down has no health record: up, 0 s, 0 times.
        let health = node.health.as_ref();
        let is_up = if health.is_some_and(|h| h.down_at_end) {
            0.0
        } else {
            1.0
        };
        up.with_label_values(&[name]).set(is_up);
        let seconds = health.map_or(0, |h| h.down_ms) as f64 / 1000.0;
        down_seconds.with_label_values(&[name]).set(seconds);
        let times = health.map_or(0, |h| h.times_down);
        downs.with_label_values(&[name]).set(times.into());
    }
    let gauge = |name: &str, help: &str, value: f64| -> prometheus::Result<()> {
        let gauge = Gauge::with_opts(Opts::new(name, help))?;
        gauge.set(value);
        registry.register(Box::new(gauge))
    };
    let help = "Always 1; the version of api-consumer that pushed, as a label.";
    let build = gauges("api_consumer_build_info", help, &["version"])?;
    build
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1.0);
    let help = "Time since this run started (its whole duration once it ended).";
    let duration = sample.duration.as_secs_f64();
    gauge("api_consumer_duration_seconds", help, duration)?;
    if let Some(code) = sample.exit_code {
        let help = "Exit code of the last run that ended.";
        gauge("api_consumer_exit_code", help, code.into())?;
    }
    if let Some(at) = last_success {
        let help = "When a run last ended with exit code 0 (Unix time).";
        gauge("api_consumer_last_success_timestamp_seconds", help, at)?;
    }
    let mut text = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut text)?;
    String::from_utf8(text).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(gateway: &str, job: &str) -> MetricsSettings {
        MetricsSettings {
            gateway: Url::parse(gateway).unwrap(),
            job: job.into(),
        }
    }

    #[test]
    fn the_grouping_key_is_the_job_and_the_shard() {
        let whole = grouping_url(&settings("http://gw:9091", "nightly"), Shard::WHOLE).unwrap();
        assert_eq!(whole.as_str(), "http://gw:9091/metrics/job/nightly");
        let shard = Shard::new(2, 4).unwrap();
        let split = grouping_url(
            &settings("https://gw.example/prefix/", "api-consumer"),
            shard,
        );
        assert_eq!(
            split.unwrap().as_str(),
            "https://gw.example/prefix/metrics/job/api-consumer/shard/2"
        );
    }

    #[test]
    fn the_exposition_carries_the_run() {
        let totals = OutcomeCounts {
            groups: 3,
            committed: 2,
            rolled_back: 1,
            ..OutcomeCounts::default()
        };
        let sample = Sample {
            operation: Operation::Create,
            totals: &totals,
            nodes: &[],
            duration: Duration::from_millis(1500),
            exit_code: Some(1),
        };
        let text = encode(&sample, None).unwrap();
        assert!(text.contains("# TYPE api_consumer_groups gauge"), "{text}");
        assert!(text.contains("api_consumer_groups{operation=\"create\",outcome=\"committed\"} 2"));
        assert!(
            text.contains("api_consumer_groups{operation=\"create\",outcome=\"rolled_back\"} 1")
        );
        assert!(text.contains("api_consumer_duration_seconds 1.5"));
        assert!(text.contains("api_consumer_exit_code 1"));
        assert!(!text.contains("last_success"));
        let text = encode(&sample, Some(1_700_000_000.0)).unwrap();
        assert!(text.contains("api_consumer_last_success_timestamp_seconds 1700000000"));
    }
}
