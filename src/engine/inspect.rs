//! Read-only looks at one group, which never send a write: [`verify`] (is
//! the group on every node, or on none?) and [`plan`] (what would a
//! transaction write? the dry run). Both read every node once, as a
//! transaction's first step does, under the run's abort and kill.

use std::time::Instant;

use super::control::Control;
use super::fan_out::read_nodes;
use crate::domain::{Change, GroupId, GroupReport, NodeDetail, NodeState, Outcome, Task};
use crate::node_api::{NodeClient, ReadAnswer};
use crate::output::telemetry::json_field;

/// The target these log lines carry, which `LOG_LEVEL` directives name
/// (`api_consumer::inspect=debug`).
const LOG_TARGET: &str = "api_consumer::inspect";

/// Every node as the reads found it, named, in node order.
struct Found<'a> {
    nodes: Vec<(&'a str, ReadAnswer)>,
}

impl<'a> Found<'a> {
    /// Reads `group` on every node; `None` when the run was aborted first.
    async fn read(client: &'a NodeClient, group: &GroupId, control: &Control) -> Option<Self> {
        let answers = read_nodes(client, group, |_| true, control).await?;
        let names = client.nodes().iter().map(|node| node.name());
        Some(Found {
            nodes: names.zip(answers).collect(),
        })
    }

    /// The names of the nodes whose state `keep` selects, in node order.
    fn names(&self, keep: impl Fn(NodeState) -> bool) -> Vec<&'a str> {
        let nodes = self.nodes.iter().filter(|(_, answer)| keep(answer.state()));
        nodes.map(|(name, _)| *name).collect()
    }

    /// The first node that could not be read, and why.
    fn unreadable(&self) -> Option<String> {
        self.nodes
            .iter()
            .find(|(_, answer)| answer.state() == NodeState::Unknown)
            .map(|(name, answer)| {
                let detail = answer.failure().unwrap_or_else(|| "unknown".to_string());
                format!("{name} could not be read ({detail})")
            })
    }

    fn details(&self) -> Vec<NodeDetail> {
        self.nodes
            .iter()
            .map(|(name, answer)| node_detail(name, answer.state(), answer.failure()))
            .collect()
    }
}

fn node_detail(name: &str, state: NodeState, detail: Option<String>) -> NodeDetail {
    NodeDetail {
        node: name.to_string(),
        prior: state,
        final_state: state,
        written: false,
        compensated: false,
        detail,
    }
}

/// What the run's stop left of a group it had not looked at yet.
fn not_started(
    client: &NodeClient,
    group: &GroupId,
    task: Task,
    control: &Control,
    started: Instant,
) -> GroupReport {
    let nodes = client.nodes().iter();
    let nodes = nodes.map(|node| node_detail(node.name(), NodeState::Unknown, None));
    let ended = (Outcome::NotStarted, Some(control.stop_detail()));
    GroupReport::new(group, task, ended, started, nodes.collect())
}

/// Verify: reads `group` on every node and names what it finds. On some
/// nodes only is [`Outcome::Inconsistent`], with the nodes that hold it and
/// those that do not; a node that cannot be read makes it
/// [`Outcome::Unknown`].
pub async fn verify(client: &NodeClient, group: &GroupId, control: &Control) -> GroupReport {
    let started = Instant::now();
    let Some(found) = Found::read(client, group, control).await else {
        return not_started(client, group, Task::Verify, control, started);
    };
    let group_id = group.as_str();
    let present = found.names(|state| state == NodeState::Present).len();
    let ended = if let Some(why) = found.unreadable() {
        tracing::warn!(target: LOG_TARGET, group_id, reason = %why, "group state unknown: a node could not be read");
        (Outcome::Unknown, Some(why))
    } else if present == found.nodes.len() {
        tracing::info!(target: LOG_TARGET, group_id, outcome = "consistent_present", "group on every node");
        (Outcome::ConsistentPresent, None)
    } else if present == 0 {
        tracing::info!(target: LOG_TARGET, group_id, outcome = "consistent_absent", "group on no node");
        (Outcome::ConsistentAbsent, None)
    } else {
        // Lists of node names: JSON arrays in the log line.
        let holders = found.names(|state| state == NodeState::Present);
        let absent = found.names(|state| state == NodeState::Absent);
        let (present_on, absent_on) = (holders.join(" "), absent.join(" "));
        tracing::error!(target: LOG_TARGET, group_id, outcome = "inconsistent",
            present_on = json_field(&holders).as_str(), absent_on = json_field(&absent).as_str(),
            "group inconsistent: on some nodes only");
        let reason = format!(
            "on {present} of {} nodes: present on {present_on}; absent on {absent_on}",
            found.nodes.len()
        );
        (Outcome::Inconsistent, Some(reason))
    };
    GroupReport::new(group, Task::Verify, ended, started, found.details())
}

/// Dry run: reads `group` on every node and says what a transaction making
/// `change` would write, without writing: [`Outcome::Unchanged`] when every
/// node is at the goal, [`Outcome::WouldChange`] with the nodes a write
/// would go to, [`Outcome::Unknown`] when a node cannot be read (the
/// transaction would change nothing then either, but the plan is not known).
pub async fn plan(
    client: &NodeClient,
    group: &GroupId,
    change: Change,
    control: &Control,
) -> GroupReport {
    let started = Instant::now();
    let task = Task::Plan(change);
    let Some(found) = Found::read(client, group, control).await else {
        return not_started(client, group, task, control, started);
    };
    let group_id = group.as_str();
    let action = change.as_str();
    let goal = change.goal();
    let would_write = found.names(|state| ![goal, NodeState::Unknown].contains(&state));
    let would_write: Vec<String> = would_write.into_iter().map(str::to_owned).collect();
    let (outcome, reason, would_write) = if let Some(why) = found.unreadable() {
        tracing::warn!(target: LOG_TARGET, group_id, action, reason = %why, "plan unknown: a node could not be read");
        (Outcome::Unknown, Some(why), Vec::new())
    } else if would_write.is_empty() {
        tracing::info!(target: LOG_TARGET, group_id, action, "no change: every node is at the goal");
        (Outcome::Unchanged, None, Vec::new())
    } else {
        let nodes = would_write.join(" ");
        let (count, of) = (would_write.len(), found.nodes.len());
        tracing::info!(target: LOG_TARGET, group_id, action, nodes = nodes.as_str(), count,
            "would {action} on {count} of {of} nodes");
        let reason = format!("would {action} on {nodes}");
        (Outcome::WouldChange, Some(reason), would_write)
    };
    GroupReport {
        would_write,
        ..GroupReport::new(group, task, (outcome, reason), started, found.details())
    }
}
