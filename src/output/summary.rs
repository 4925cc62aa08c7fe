//! The log's end: one `node summary` line per node, then the run summary.

use super::nonzero;
use super::report::RunReport;
use super::telemetry::{json_field, SUMMARY_TARGET};
use crate::domain::{Operation, OutcomeCounts};

/// Logs one `node summary` line per node (requests, retries, transport
/// errors, answers per status, latency), then the run summary: totals per
/// outcome, requests, retries, latency, answers per status, exit code,
/// duration. The run summary is the last line: nothing is logged after it
/// (see [`SUMMARY_TARGET`]).
pub fn log_summary(report: &RunReport) {
    log_findings(report);
    for node in &report.nodes {
        tracing::info!(
            target: "api_consumer::nodes",
            node = node.node.as_str(),
            requests = node.requests, retries = node.retries,
            transport_errors = node.transport_errors,
            statuses = json_field(&node.statuses),
            latency_p50_ms = node.latency.p50_ms, latency_p99_ms = node.latency.p99_ms,
            latency_max_ms = node.latency.max_ms,
            prior_state = node.prior_state.as_deref(),
            times_down = node.health.as_ref().map(|h| h.times_down),
            down_ms = node.health.as_ref().map(|h| h.down_ms),
            down_at_end = node.health.as_ref().map(|h| h.down_at_end),
            down_reason = node.health.as_ref().and_then(|h| h.down_reason.as_deref()),
            "node summary"
        );
    }
    let (totals, requests, shard) = (&report.totals, &report.requests, report.shard);
    let not_attempted_from = report.not_attempted.as_ref().and_then(|n| n.from);
    tracing::info!(
        target: SUMMARY_TARGET,
        operation = report.operation.to_string(),
        shard = shard.map(|s| s.index), shard_count = shard.map(|s| s.count),
        list_entries = shard.map(|s| s.list_entries),
        groups = totals.groups, committed = totals.committed,
        rolled_back = totals.rolled_back, inconsistent = totals.inconsistent,
        not_started = totals.not_started,
        consistent_present = nonzero(totals.consistent_present),
        consistent_absent = nonzero(totals.consistent_absent),
        unknown = nonzero(totals.unknown), unchanged = nonzero(totals.unchanged),
        would_change = nonzero(totals.would_change),
        dry_run = report.dry_run.then_some(true),
        not_attempted_from = not_attempted_from.map(|from| from.to_string()),
        requests = requests.requests, retries = requests.retries,
        transport_errors = requests.transport_errors,
        statuses = json_field(&requests.statuses),
        latency_p50_ms = requests.latency.p50_ms, latency_p99_ms = requests.latency.p99_ms,
        stop_reason = report.stop_reason.map(|r| r.as_str()),
        exit_code = u8::from(report.exit_code),
        duration_ms = report.duration_ms,
        "run summary"
    );
}

/// The target of the lines before the node summaries that say what a
/// verify, a dry run or a reconcile found (the summary's own target ends the
/// log, see [`SUMMARY_TARGET`]).
const FINDINGS_TARGET: &str = "api_consumer::findings";

/// What a verify, a dry run or a reconcile found, in one line that says so
/// even when nothing differs.
fn log_findings(report: &RunReport) {
    let OutcomeCounts {
        groups,
        would_change,
        unchanged,
        unknown,
        inconsistent,
        consistent_present,
        consistent_absent,
        ..
    } = report.totals;
    if report.dry_run {
        let text = if would_change == 0 && unknown == 0 {
            format!("plan: nothing would change ({groups} groups checked)")
        } else {
            format!("plan: {would_change} groups would change, {unchanged} unchanged, {unknown} not known")
        };
        tracing::info!(target: FINDINGS_TARGET, would_change, unchanged, unknown, "{text}");
    }
    if report.operation == Operation::Verify {
        let consistent = consistent_present + consistent_absent;
        let text = if consistent == groups {
            format!("verify: all {consistent} groups are consistent")
        } else {
            format!("verify: {inconsistent} groups inconsistent, {unknown} not known, {consistent} consistent")
        };
        tracing::info!(target: FINDINGS_TARGET, consistent_present, consistent_absent,
            inconsistent, unknown, "{text}");
    }
    for failure in report.listing.iter().flat_map(|listing| &listing.failures) {
        tracing::error!(target: FINDINGS_TARGET, node = failure.node.as_str(),
            reason = failure.reason.as_str(), "a node's list could not be had");
    }
    if let Some(unlisted) = &report.unlisted {
        tracing::info!(target: FINDINGS_TARGET,
            unlisted = unlisted.groups, unlisted_inconsistent = unlisted.inconsistent,
            prune_refused = unlisted.prune_refused.as_deref(),
            "reconcile: {} groups found on the nodes are not listed", unlisted.groups
        );
    }
}
