//! Read-only looks at one group, which never send a write: [`verify`] (is
//! the group on every node, or on none?) and [`plan`] (what would a
//! transaction write? the dry run). Both read every node once, as a
//! transaction's first step does, under the run's abort and kill.

use std::time::Instant;

use super::control::Control;
use crate::domain::{GroupAction, GroupId, GroupReport, NodeDetail, NodeState, Operation, Outcome};
use crate::node_api::{NodeClient, ReadAnswer};

/// The target these log lines carry, which `LOG_LEVEL` directives name
/// (`api_consumer::inspect=debug`).
const LOG_TARGET: &str = "api_consumer::inspect";

/// One node as a read found it: its state, and why it is unknown.
type Seen = (NodeState, Option<String>);

/// Reads `group` on `nodes`, all at once, under the run's abort (and cut
/// short by its kill); `None` when the run was aborted first. A
/// transaction's prior-state reads go through here too.
pub(super) async fn read_nodes(
    client: &NodeClient,
    group: &GroupId,
    nodes: impl Iterator<Item = usize>,
    control: &Control,
) -> Option<Vec<ReadAnswer>> {
    let abort = &control.abort;
    let reads = nodes.map(|i| client.read(i, group, abort));
    let answers = tokio::select! {
        biased;
        _ = control.kill.cancelled() => return None,
        answers = futures::future::join_all(reads) => answers,
    };
    (!abort.is_cancelled()).then_some(answers)
}

/// Reads `group` on every node; `None` when the run was aborted first.
async fn read_every_node(
    client: &NodeClient,
    group: &GroupId,
    control: &Control,
) -> Option<Vec<Seen>> {
    let answers = read_nodes(client, group, 0..client.node_count(), control).await?;
    Some(answers.iter().map(|a| (a.state(), a.failure())).collect())
}

/// The names of the nodes in `state`, space-separated, for one flat log
/// field.
fn nodes_in(client: &NodeClient, seen: &[Seen], state: NodeState) -> String {
    seen.iter()
        .enumerate()
        .filter(|(_, s)| s.0 == state)
        .map(|(i, _)| client.node_name(i))
        .collect::<Vec<_>>()
        .join(" ")
}

fn details(client: &NodeClient, seen: Vec<Seen>) -> Vec<NodeDetail> {
    seen.into_iter()
        .enumerate()
        .map(|(i, (state, detail))| NodeDetail {
            node: client.node_name(i).to_string(),
            prior: state,
            final_state: state,
            written: false,
            compensated: false,
            detail,
        })
        .collect()
}

/// The first node that could not be read, and why.
fn unreadable(client: &NodeClient, seen: &[Seen]) -> Option<String> {
    seen.iter()
        .enumerate()
        .find(|(_, (state, _))| *state == NodeState::Unknown)
        .map(|(i, (_, detail))| {
            format!(
                "{} could not be read ({})",
                client.node_name(i),
                detail.as_deref().unwrap_or("unknown")
            )
        })
}

/// What the run's stop left of a group it had not looked at yet.
fn not_started(
    client: &NodeClient,
    group: &GroupId,
    action: GroupAction,
    control: &Control,
    started: Instant,
) -> GroupReport {
    let seen = vec![(NodeState::Unknown, None); client.node_count()];
    GroupReport {
        group_id: group.clone(),
        operation: action,
        outcome: Outcome::NotStarted,
        reason: Some(control.stop_detail()),
        duration_ms: started.elapsed().as_millis() as u64,
        nodes: details(client, seen),
        would_write: Vec::new(),
    }
}

/// Verify: reads `group` on every node and names what it finds. On some
/// nodes only is [`Outcome::Inconsistent`], with the nodes that hold it and
/// those that do not; a node that cannot be read makes it
/// [`Outcome::Unknown`].
pub async fn verify(client: &NodeClient, group: &GroupId, control: &Control) -> GroupReport {
    let started = Instant::now();
    let Some(seen) = read_every_node(client, group, control).await else {
        return not_started(client, group, GroupAction::Verify, control, started);
    };
    let group_id = group.as_str();
    let present = seen
        .iter()
        .filter(|(state, _)| *state == NodeState::Present)
        .count();
    let (outcome, reason) = if let Some(why) = unreadable(client, &seen) {
        tracing::warn!(target: LOG_TARGET, group_id, reason = %why, "group state unknown: a node could not be read");
        (Outcome::Unknown, Some(why))
    } else if present == seen.len() {
        tracing::info!(target: LOG_TARGET, group_id, outcome = "consistent_present", "group on every node");
        (Outcome::ConsistentPresent, None)
    } else if present == 0 {
        tracing::info!(target: LOG_TARGET, group_id, outcome = "consistent_absent", "group on no node");
        (Outcome::ConsistentAbsent, None)
    } else {
        let present_on = nodes_in(client, &seen, NodeState::Present);
        let absent_on = nodes_in(client, &seen, NodeState::Absent);
        tracing::error!(
            target: LOG_TARGET,
            group_id,
            outcome = "inconsistent",
            present_on = present_on.as_str(),
            absent_on = absent_on.as_str(),
            "group inconsistent: on some nodes only"
        );
        let reason = format!(
            "on {present} of {} nodes: present on {present_on}; absent on {absent_on}",
            seen.len()
        );
        (Outcome::Inconsistent, Some(reason))
    };
    GroupReport {
        group_id: group.clone(),
        operation: GroupAction::Verify,
        outcome,
        reason,
        duration_ms: started.elapsed().as_millis() as u64,
        nodes: details(client, seen),
        would_write: Vec::new(),
    }
}

/// Dry run: reads `group` on every node and says what a transaction of
/// `operation` would write, without writing: [`Outcome::Unchanged`] when
/// every node is at the goal, [`Outcome::WouldChange`] with the nodes a
/// write would go to, [`Outcome::Unknown`] when a node cannot be read (the
/// transaction would change nothing then either, but the plan is not known).
pub async fn plan(
    client: &NodeClient,
    group: &GroupId,
    operation: Operation,
    control: &Control,
) -> GroupReport {
    let started = Instant::now();
    let action = GroupAction::from(operation);
    let Some(seen) = read_every_node(client, group, control).await else {
        return not_started(client, group, action, control, started);
    };
    let group_id = group.as_str();
    let goal = operation.goal();
    let would_write: Vec<String> = seen
        .iter()
        .enumerate()
        .filter(|(_, (state, _))| *state != goal && *state != NodeState::Unknown)
        .map(|(i, _)| client.node_name(i).to_string())
        .collect();
    let (outcome, reason, would_write) = if let Some(why) = unreadable(client, &seen) {
        tracing::warn!(target: LOG_TARGET, group_id, action = action.as_str(), reason = %why, "plan unknown: a node could not be read");
        (Outcome::Unknown, Some(why), Vec::new())
    } else if would_write.is_empty() {
        tracing::info!(target: LOG_TARGET, group_id, action = action.as_str(), "no change: every node is at the goal");
        (Outcome::Unchanged, None, Vec::new())
    } else {
        let nodes = would_write.join(" ");
        tracing::info!(
            target: LOG_TARGET,
            group_id,
            action = action.as_str(),
            nodes = nodes.as_str(),
            count = would_write.len(),
            "would {} on {} of {} nodes",
            action.as_str(),
            would_write.len(),
            seen.len()
        );
        let reason = format!("would {} on {nodes}", action.as_str());
        (Outcome::WouldChange, Some(reason), would_write)
    };
    GroupReport {
        group_id: group.clone(),
        operation: action,
        outcome,
        reason,
        duration_ms: started.elapsed().as_millis() as u64,
        nodes: details(client, seen),
        would_write,
    }
}
