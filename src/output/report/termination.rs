//! The termination message: how the run ended, in the 4 KiB that Kubernetes
//! keeps for `kubectl describe pod`.

use std::path::Path;

use super::{RunReport, LOG_TARGET};
use crate::domain::{truncate, GroupReport, Outcome, Task};

/// The most Kubernetes keeps of a termination message.
pub const TERMINATION_MESSAGE_MAX_BYTES: usize = 4096;

/// Writes [`termination_message`] to `path` when that file exists (the
/// kubelet creates it for each container), so that `kubectl describe pod`
/// shows how the run ended.
pub fn write_termination_message(path: &Path, report: &RunReport) {
    if !path.is_file() {
        return;
    }
    if let Err(error) = std::fs::write(path, termination_message(report)) {
        tracing::warn!(target: LOG_TARGET, path = %path.display(), error_message = %error, "cannot write the termination message");
    }
}

/// The run summary as one JSON object of at most
/// [`TERMINATION_MESSAGE_MAX_BYTES`]: the summary's figures, then as many
/// groups that did not commit as fit (inconsistent ones first, then in
/// report order), and how many did not fit.
pub fn termination_message(report: &RunReport) -> String {
    // The totals as the report has them (the counts of verify and dry runs
    // where not zero); serde_json's map keeps every key in sorted order.
    let mut head = serde_json::json!(report.totals);
    head["exit_code"] = u8::from(report.exit_code).into();
    head["operation"] = report.operation.to_string().into();
    head["requests"] = report.requests.requests.into();
    head["retries"] = report.requests.retries.into();
    head["duration_ms"] = report.duration_ms.into();
    if report.dry_run {
        head["dry_run"] = true.into();
    }
    if let Some(shard) = report.shard {
        head["shard"] = shard.index.into();
        head["shard_count"] = shard.count.into();
        head["list_entries"] = shard.list_entries.into();
    }
    if let Some(refused) = report
        .unlisted
        .as_ref()
        .and_then(|u| u.prune_refused.as_ref())
    {
        head["prune_refused"] = truncate(refused, 120).into();
    }
    if let Some(listing) = report.listing.as_ref().filter(|l| !l.failures.is_empty()) {
        head["list_failures"] = listing.failures.len().into();
    }
    if let Some(reason) = report.stop_reason {
        head["stop_reason"] = reason.as_str().into();
    }
    if let Some(from) = report.not_attempted.as_ref().and_then(|n| n.from) {
        head["not_attempted_from"] = from.to_string().into();
    }
    // The nodes that went down (at most four, each with its time down and
    // why), for a run that was held up or stopped by one.
    const DOWN_NODES: usize = 4;
    let down: Vec<serde_json::Value> = report
        .nodes
        .iter()
        .filter_map(|n| n.health.as_ref().map(|h| (n, h)))
        .take(DOWN_NODES)
        .map(|(node, health)| {
            serde_json::json!({
                "node": node.node,
                "down_ms": health.down_ms,
                "times_down": health.times_down,
                "down_at_end": health.down_at_end,
                "reason": truncate(health.down_reason.as_deref().unwrap_or_default(), 120),
            })
        })
        .collect();
    if !down.is_empty() {
        head["nodes_down"] = down.into();
    }
    let mut failed: Vec<&GroupReport> = report.recovered.iter().chain(&report.groups).collect();
    failed.sort_by_key(|g| g.outcome != Outcome::Inconsistent);
    let mut message = head.to_string();
    // Room for `,"failed":[`, `],"failed_omitted":<n>` and `}`.
    let budget = TERMINATION_MESSAGE_MAX_BYTES.saturating_sub(64);
    let mut listed = Vec::new();
    let mut used = message.len();
    for group in &failed {
        if budget.saturating_sub(used) < SMALLEST_ENTRY {
            break;
        }
        let entry = failed_entry(group).to_string();
        if used + entry.len() < budget {
            used += entry.len() + 1;
            listed.push(entry);
        }
    }
    let omitted = (failed.len() - listed.len()) as u64 + report.groups_omitted;
    if !failed.is_empty() || omitted > 0 {
        message.pop();
        message.push_str(&format!(",\"failed\":[{}]", listed.join(",")));
        if omitted > 0 {
            message.push_str(&format!(",\"failed_omitted\":{omitted}"));
        }
        message.push('}');
    }
    message
}

/// Below this many bytes left, no further group entry can fit.
const SMALLEST_ENTRY: usize = 40;

/// One group that did not commit, briefly: for an inconsistent one, the
/// nodes left at neither state and what they hold (for verify, the reason
/// names the nodes that hold it and those that do not).
fn failed_entry(group: &GroupReport) -> serde_json::Value {
    const REASON_CHARS: usize = 120;
    let mut entry = serde_json::json!({
        "group_id": group.group_id,
        "outcome": group.outcome,
    });
    if group.outcome == Outcome::Inconsistent && group.operation != Task::Verify {
        const NODES: usize = 4;
        let nodes: serde_json::Map<String, serde_json::Value> = group
            .diverged_nodes()
            .take(NODES)
            .map(|n| (n.node.clone(), n.final_state.as_str().into()))
            .collect();
        entry["nodes"] = nodes.into();
        let more = group.diverged_nodes().count().saturating_sub(NODES);
        if more > 0 {
            entry["nodes_omitted"] = more.into();
        }
    } else if let Some(reason) = &group.reason {
        entry["reason"] = truncate(reason, REASON_CHARS).into();
    }
    entry
}
