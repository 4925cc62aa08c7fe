//! The log's end: one `node summary` line per node, then the run summary.

use std::collections::BTreeMap;

use super::report::RunReport;

/// Logs one `node summary` line per node (requests, retries, transport
/// errors, answers per status, latency), then the run summary: totals per
/// outcome, requests, retries, latency, answers per status, exit code,
/// duration. The run summary is the last line: nothing is logged after it
/// (see [`super::telemetry::SUMMARY_TARGET`]).
pub fn log_summary(report: &RunReport) {
    for node in &report.nodes {
        tracing::info!(
            target: "api_consumer::nodes",
            node = node.node.as_str(),
            requests = node.requests,
            retries = node.retries,
            transport_errors = node.transport_errors,
            statuses = statuses_text(&node.statuses),
            latency_p50_ms = node.latency.p50_ms,
            latency_p99_ms = node.latency.p99_ms,
            latency_max_ms = node.latency.max_ms,
            "node summary"
        );
    }
    let totals = &report.totals;
    let requests = &report.requests;
    tracing::info!(
        target: "api_consumer::summary",
        operation = report.operation.as_str(),
        groups = totals.groups,
        committed = totals.committed,
        rolled_back = totals.rolled_back,
        inconsistent = totals.inconsistent,
        not_started = totals.not_started,
        not_attempted_from = report
            .not_attempted
            .as_ref()
            .and_then(|n| n.from)
            .map(|from| from.to_string()),
        requests = requests.requests,
        retries = requests.retries,
        transport_errors = requests.transport_errors,
        statuses = statuses_text(&requests.statuses),
        latency_p50_ms = requests.latency.p50_ms,
        latency_p99_ms = requests.latency.p99_ms,
        stop_reason = report.stop_reason.map(|r| r.as_str()),
        exit_code = u8::from(report.exit_code),
        duration_ms = report.duration_ms,
        "run summary"
    );
}

/// Answers per status as one flat field, e.g. `201:3000 429:2`.
fn statuses_text(statuses: &BTreeMap<String, u64>) -> String {
    statuses
        .iter()
        .map(|(status, count)| format!("{status}:{count}"))
        .collect::<Vec<_>>()
        .join(" ")
}
