//! How things ended: a node's state for a group, a group's outcome and
//! report, the run's totals, why it stopped and its exit code.

use std::fmt;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::group::{GroupId, Task};
use super::state::NodeState;

/// How a group ended: a transaction's outcome, what verify found, or what
/// a dry run would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every node is at the goal (including "already there").
    Committed,
    /// Every node is at its prior state.
    RolledBack,
    /// Some node is at neither (a transaction), or the group is on some
    /// nodes only (verify); the report names the nodes.
    Inconsistent,
    /// The run stopped (deadline, signal) before the group was attempted.
    NotStarted,
    /// Verify: on every node.
    ConsistentPresent,
    /// Verify: on no node.
    ConsistentAbsent,
    /// Verify or dry run: a node could not be read, so the group's state
    /// is not known.
    Unknown,
    /// Dry run: every node is at the goal; nothing would be sent.
    Unchanged,
    /// Dry run: a write would be sent to the nodes the entry names.
    WouldChange,
}

/// Shown by its serde name, as the report has it (`rolled_back`).
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.serialize(f)
    }
}

impl Outcome {
    /// Whether the group needs an entry in the report: anything but a
    /// group found (or left) as it should be.
    pub fn is_reported(self) -> bool {
        !matches!(
            self,
            Outcome::Committed
                | Outcome::ConsistentPresent
                | Outcome::ConsistentAbsent
                | Outcome::Unchanged
        )
    }
}

/// Why the run stopped starting new work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Deadline,
    Signal,
    /// A node's TLS certificate was rejected: no retry or later group can
    /// succeed with that node.
    Certificate,
    /// `MAX_FAILED_GROUPS` groups failed (groups in flight still finish).
    FailureLimit,
    /// `PRIOR_STATE=list`, and a node's list could not be had.
    ListsUnavailable,
    /// A node stayed down past `NODE_DOWN_WAIT_SECS` (groups in flight
    /// still finish).
    NodeDown,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Deadline => "run deadline (RUN_TIMEOUT_SECS) reached",
            StopReason::Signal => "termination signal received",
            StopReason::Certificate => "a node's TLS certificate was rejected (see CA_CERT_PATH)",
            StopReason::FailureLimit => "MAX_FAILED_GROUPS groups failed",
            StopReason::ListsUnavailable => "a node's list could not be had (PRIOR_STATE=list)",
            StopReason::NodeDown => "a node stayed down past NODE_DOWN_WAIT_SECS",
        }
    }
}

/// One node's part in a group's transaction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeDetail {
    pub node: String,
    pub prior: NodeState,
    #[serde(rename = "state")]
    pub final_state: NodeState,
    /// Whether this run sent a write to the node (which may have landed).
    pub written: bool,
    /// Whether this run sent a compensating write to the node.
    pub compensated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The result of one group's transaction.
#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    pub group_id: GroupId,
    pub operation: Task,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub duration_ms: u64,
    pub nodes: Vec<NodeDetail>,
    /// Dry run: the nodes a write would be sent to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub would_write: Vec<String>,
    /// The nodes (by index) where a write of the group's whose answer was
    /// lost may land after its last read: the run reads them once more
    /// before it ends.
    #[serde(skip)]
    pub unsettled: Vec<Unsettled>,
}

/// A node where a write whose answer was lost may land until `until`, after
/// the group's last read of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsettled {
    pub node: usize,
    pub until: tokio::time::Instant,
}

impl GroupReport {
    /// The report of `task` on `group`, begun at `started`, with nothing
    /// that would be written.
    pub fn new(
        group: &GroupId,
        task: Task,
        (outcome, reason): (Outcome, Option<String>),
        started: Instant,
        nodes: Vec<NodeDetail>,
    ) -> GroupReport {
        GroupReport {
            group_id: group.clone(),
            operation: task,
            outcome,
            reason,
            duration_ms: started.elapsed().as_millis() as u64,
            nodes,
            would_write: Vec::new(),
            unsettled: Vec::new(),
        }
    }

    /// Nodes whose final state is not their prior state (or is unknown):
    /// what an inconsistent outcome must name.
    pub fn diverged_nodes(&self) -> impl Iterator<Item = &NodeDetail> {
        self.nodes
            .iter()
            .filter(|n| n.final_state != n.prior || n.final_state == NodeState::Unknown)
    }
}

/// The process exit code a run ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "u8")]
pub enum ExitStatus {
    /// Every group is at its goal.
    AllAtGoal = 0,
    /// Some group rolled back, was not started or could not be read (or a
    /// reconcile refused to prune); none is inconsistent.
    RolledBack = 1,
    /// Configuration or input error; no request was sent.
    ConfigError = 2,
    /// Some group is inconsistent.
    Inconsistent = 3,
    /// A dry run found changes to make.
    WouldChange = 4,
    /// The process could not start its runtime; no request was sent. A
    /// retry of the pod may succeed.
    CannotStart = 70,
}

impl ExitStatus {
    /// The exit code of a run that could not do everything it was asked
    /// (a node's list missing, a prune refused): at least 1, and 3 stays 3.
    pub fn or_incomplete(self) -> ExitStatus {
        match self {
            ExitStatus::AllAtGoal | ExitStatus::WouldChange => ExitStatus::RolledBack,
            other => other,
        }
    }
}

impl From<ExitStatus> for u8 {
    fn from(status: ExitStatus) -> u8 {
        status as u8
    }
}

/// Number of groups per outcome: the run's totals, and the counts its
/// progress shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    pub groups: u64,
    pub committed: u64,
    pub rolled_back: u64,
    pub inconsistent: u64,
    pub not_started: u64,
    /// The counts of verify and dry runs, left out where zero (a create or
    /// delete run never has them).
    #[serde(skip_serializing_if = "is_zero")]
    pub consistent_present: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub consistent_absent: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub unknown: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub unchanged: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub would_change: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl OutcomeCounts {
    /// Counts one more group with `outcome`.
    pub fn add(&mut self, outcome: Outcome) {
        self.groups += 1;
        *self.count_of(outcome) += 1;
    }

    /// Moves one group counted with `from` to `to`.
    pub fn change(&mut self, from: Outcome, to: Outcome) {
        let counted = self.count_of(from);
        *counted = counted.saturating_sub(1);
        *self.count_of(to) += 1;
    }

    fn count_of(&mut self, outcome: Outcome) -> &mut u64 {
        match outcome {
            Outcome::Committed => &mut self.committed,
            Outcome::RolledBack => &mut self.rolled_back,
            Outcome::Inconsistent => &mut self.inconsistent,
            Outcome::NotStarted => &mut self.not_started,
            Outcome::ConsistentPresent => &mut self.consistent_present,
            Outcome::ConsistentAbsent => &mut self.consistent_absent,
            Outcome::Unknown => &mut self.unknown,
            Outcome::Unchanged => &mut self.unchanged,
            Outcome::WouldChange => &mut self.would_change,
        }
    }

    /// Every outcome with its count, in the order of [`Outcome`]'s variants.
    pub fn by_outcome(&self) -> [(Outcome, u64); 9] {
        [
            (Outcome::Committed, self.committed),
            (Outcome::RolledBack, self.rolled_back),
            (Outcome::Inconsistent, self.inconsistent),
            (Outcome::NotStarted, self.not_started),
            (Outcome::ConsistentPresent, self.consistent_present),
            (Outcome::ConsistentAbsent, self.consistent_absent),
            (Outcome::Unknown, self.unknown),
            (Outcome::Unchanged, self.unchanged),
            (Outcome::WouldChange, self.would_change),
        ]
    }

    /// Groups that failed: rolled back, inconsistent, or not known.
    pub fn failed(&self) -> u64 {
        self.rolled_back + self.inconsistent + self.unknown
    }

    /// The exit code these counts call for. Problems win over changes: an
    /// inconsistent group is 3; a group rolled back, not started or not
    /// known is 1; only then does a dry run with changes to make give 4.
    pub fn exit_status(&self) -> ExitStatus {
        if self.inconsistent > 0 {
            ExitStatus::Inconsistent
        } else if self.rolled_back > 0 || self.not_started > 0 || self.unknown > 0 {
            ExitStatus::RolledBack
        } else if self.would_change > 0 {
            ExitStatus::WouldChange
        } else {
            ExitStatus::AllAtGoal
        }
    }
}
