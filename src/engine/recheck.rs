//! The run's last look at nodes where a write whose answer was lost may
//! have landed after its group ended (docs/TRANSACTIONS.md, "Writes that
//! land late"). Typically a committed group whose write succeeded on a retry
//! after an attempt got no answer: the success settled the node, but the
//! lost attempt may still arrive. Each such node is read once its window
//! has ended; one that changed since its group's last read makes the group
//! inconsistent, named in the report.

use futures::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;

use super::control::Control;
use crate::domain::{GroupReport, NodeState, Outcome, Task, Unsettled};
use crate::node_api::NodeClient;
use crate::output::journal::Journal;

const LOG_TARGET: &str = "api_consumer::run";

/// What the re-check found of one group.
pub struct Rechecked {
    /// The outcome the group was counted with.
    pub counted: Outcome,
    pub report: GroupReport,
    /// Nodes that could not be read (the read failed, or the shutdown
    /// budget ran out first).
    pub not_read: usize,
}

/// Re-checks the unsettled nodes of `groups`, at most `concurrency` groups
/// at a time, under the run's kill.
pub(super) async fn recheck(
    client: &NodeClient,
    groups: Vec<GroupReport>,
    control: &Control,
    concurrency: usize,
) -> Vec<Rechecked> {
    if !announce(&groups) {
        return Vec::new();
    }
    let kill = &control.kill;
    let checked: Vec<Rechecked> = stream::iter(groups)
        .map(|report| one_group(client, report, kill))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    warn_not_read(checked.iter().map(|c| c.not_read).sum());
    checked
}

/// Logs the re-check of `groups`; `false` when none has a node to re-check.
fn announce(groups: &[GroupReport]) -> bool {
    let cells: usize = groups.iter().map(|g| g.unsettled.len()).sum();
    let last = groups
        .iter()
        .flat_map(|g| &g.unsettled)
        .map(|u| u.until)
        .max();
    let Some(last) = last else {
        return false;
    };
    let wait_ms = last
        .saturating_duration_since(tokio::time::Instant::now())
        .as_millis() as u64;
    tracing::info!(target: LOG_TARGET, nodes = cells, groups = groups.len(), wait_ms,
        "re-checking nodes where a write whose answer was lost may have landed after its group ended");
    true
}

fn warn_not_read(not_read: usize) {
    if not_read > 0 {
        tracing::warn!(target: LOG_TARGET, nodes = not_read,
            "nodes not re-checked: their read failed or the shutdown budget ran out; their groups keep the outcome they had");
    }
}

/// Closes the journal intent of a re-checked group, which waited for the
/// re-check (see the transaction's report). An inconsistent group keeps it,
/// and so does one with a node the re-check could not read: a write of its
/// may still land, so the next run's recovery waits for it again.
pub(super) async fn close_intent(checked: &Rechecked, journal: Option<&Journal>) {
    let report = &checked.report;
    let Some(journal) = journal else {
        return;
    };
    if report.outcome == Outcome::Inconsistent || checked.not_read > 0 {
        return;
    }
    if let Err(error) = journal
        .outcome(report.group_id.as_str(), report.outcome)
        .await
    {
        tracing::error!(target: LOG_TARGET, group_id = %report.group_id, error_message = %error, "cannot record the outcome in the journal; the next run will check the group again");
    }
}

/// Re-checks one group at once, before anything else touches it: a group
/// the journal's recovery resolved, before the run's own groups start, or
/// an id's earlier entry, before its next entry starts. A transaction's
/// windows are its own, so a later transaction on the same group could
/// otherwise read a node, and write to it, before a lost write of the
/// earlier one lands.
pub async fn settle_now(
    client: &NodeClient,
    report: GroupReport,
    control: &Control,
    journal: Option<&Journal>,
) -> Rechecked {
    if !announce(std::slice::from_ref(&report)) {
        let counted = report.outcome;
        return Rechecked {
            counted,
            report,
            not_read: 0,
        };
    }
    let checked = one_group(client, report, &control.kill).await;
    warn_not_read(checked.not_read);
    close_intent(&checked, journal).await;
    checked
}

async fn one_group(
    client: &NodeClient,
    mut report: GroupReport,
    kill: &CancellationToken,
) -> Rechecked {
    let counted = report.outcome;
    let mut not_read = 0;
    let mut changed = Vec::new();
    for Unsettled { node, until } in std::mem::take(&mut report.unsettled) {
        let (Some(target), Some(detail)) = (client.nodes().get(node), report.nodes.get_mut(node))
        else {
            continue;
        };
        let read = tokio::select! {
            biased;
            _ = kill.cancelled() => None,
            _ = tokio::time::sleep_until(until) => Some(client.read(target, &report.group_id, kill).await),
        };
        let state = read.map_or(NodeState::Unknown, |r| r.state());
        if state == NodeState::Unknown {
            not_read += 1;
            continue;
        }
        if state != detail.final_state {
            tracing::error!(target: LOG_TARGET, group_id = %report.group_id, node = detail.node.as_str(),
                reported = detail.final_state.as_str(), state = state.as_str(),
                "a late write changed a node after its group ended");
            detail.final_state = state;
            detail.detail = Some(format!(
                "a write whose answer was lost landed after the group's last read: the node is {}",
                state.as_str()
            ));
            changed.push(detail.node.clone());
        }
    }
    if !changed.is_empty() {
        report.outcome = outcome_after(&report);
        report.reason = Some(format!(
            "a write whose answer was lost landed after the group ended, on {}",
            changed.join(", ")
        ));
    }
    Rechecked {
        counted,
        report,
        not_read,
    }
}

/// The outcome the group's nodes now show.
fn outcome_after(report: &GroupReport) -> Outcome {
    let Task::Apply(change) = report.operation else {
        return Outcome::Inconsistent;
    };
    let nodes = &report.nodes;
    if nodes.iter().all(|n| n.final_state == change.goal()) {
        Outcome::Committed
    } else if nodes.iter().all(|n| n.final_state == n.prior) {
        Outcome::RolledBack
    } else {
        Outcome::Inconsistent
    }
}
