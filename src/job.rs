//! The job as one call: configuration in, report out, logged as it goes.

use std::path::Path;
use std::sync::Arc;

use crate::client::{ClientError, ClientSettings, NodeClient};
use crate::config::Config;
use crate::retry::RetrySettings;
use crate::run::{run_groups, RunReport, RunSettings};
use crate::transaction::Control;

impl From<&Config> for ClientSettings {
    fn from(config: &Config) -> Self {
        ClientSettings {
            request_timeout: config.request_timeout,
            connect_timeout: config.connect_timeout,
            retry: RetrySettings {
                max_retries: config.max_retries,
                base_delay: config.retry_base_delay,
                max_delay: config.retry_max_delay,
            },
            auth_token: config.auth_token.clone(),
            node_concurrency: config.node_concurrency,
            node_rate_limit: config.node_rate_limit,
        }
    }
}

impl From<&Config> for RunSettings {
    fn from(config: &Config) -> Self {
        RunSettings {
            concurrency: config.concurrency,
            run_timeout: config.run_timeout,
            rollback_timeout: config.rollback_timeout,
        }
    }
}

/// Runs every group of `config` and writes the report file if one is asked
/// for. The caller logs the summary ([`log_summary`]) once nothing else can
/// log, so that it is the last line.
pub async fn run_job(config: &Config, control: Arc<Control>) -> Result<RunReport, ClientError> {
    let client = Arc::new(NodeClient::new(
        &ClientSettings::from(config),
        &config.nodes,
    )?);
    tracing::info!(
        operation = config.operation.as_str(),
        nodes = config.nodes.len(),
        groups = config.group_ids.len(),
        duplicate_ids_skipped = config.duplicate_ids,
        concurrency = config.concurrency,
        node_concurrency = config.node_concurrency,
        "run started"
    );
    let report = run_groups(
        client,
        config.group_ids.iter().cloned(),
        config.operation,
        RunSettings::from(config),
        control,
    )
    .await;
    if let Some(path) = &config.report_path {
        if let Err(error) = write_report(path, &report) {
            tracing::error!(path = %path.display(), error = %error, "cannot write the run report");
        }
    }
    Ok(report)
}

/// Writes the report next to its final path, then renames it into place, so
/// a reader never sees half a report.
pub fn write_report(path: &Path, report: &RunReport) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}

/// Logs the run summary: totals per outcome, requests, exit code, duration.
pub fn log_summary(report: &RunReport) {
    let totals = &report.totals;
    let requests: u64 = report.nodes.iter().map(|n| n.requests).sum();
    tracing::info!(
        operation = report.operation.as_str(),
        groups = totals.groups,
        committed = totals.committed,
        rolled_back = totals.rolled_back,
        inconsistent = totals.inconsistent,
        not_started = totals.not_started,
        requests,
        stop_reason = report.stop_reason.map(|r| r.as_str()),
        exit_code = u8::from(report.exit_code),
        duration_ms = report.duration_ms,
        "run summary"
    );
}
