//! How things ended: a node's state for a group, a group's outcome and
//! report, the run's totals, why it stopped and its exit code.

use serde::{Deserialize, Serialize};

use super::group::{GroupId, Operation};
use super::state::NodeState;

/// How a group's transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every node is at the goal (including "already there").
    Committed,
    /// Every node is at its prior state.
    RolledBack,
    /// Some node is at neither; the report names it.
    Inconsistent,
    /// The run stopped (deadline, signal) before the group was attempted.
    NotStarted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Committed => "committed",
            Outcome::RolledBack => "rolled_back",
            Outcome::Inconsistent => "inconsistent",
            Outcome::NotStarted => "not_started",
        }
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
    /// `GROUP_IDS_FILE` was changed in place during the run.
    InputChanged,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Deadline => "run deadline (RUN_TIMEOUT_SECS) reached",
            StopReason::Signal => "termination signal received",
            StopReason::Certificate => "a node's TLS certificate was rejected (see CA_CERT_PATH)",
            StopReason::FailureLimit => "MAX_FAILED_GROUPS groups failed",
            StopReason::InputChanged => "GROUP_IDS_FILE changed during the run",
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
    pub operation: Operation,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub duration_ms: u64,
    pub nodes: Vec<NodeDetail>,
}

impl GroupReport {
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
    /// Some group rolled back or was not started; none is inconsistent.
    RolledBack = 1,
    /// Configuration or input error; no request was sent.
    ConfigError = 2,
    /// Some group is inconsistent.
    Inconsistent = 3,
    /// The process could not start its runtime; no request was sent. A
    /// retry of the pod may succeed.
    CannotStart = 70,
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
}

impl OutcomeCounts {
    /// Counts one more group with `outcome`.
    pub fn add(&mut self, outcome: Outcome) {
        self.groups += 1;
        match outcome {
            Outcome::Committed => self.committed += 1,
            Outcome::RolledBack => self.rolled_back += 1,
            Outcome::Inconsistent => self.inconsistent += 1,
            Outcome::NotStarted => self.not_started += 1,
        }
    }

    /// Groups that failed: rolled back or inconsistent.
    pub fn failed(&self) -> u64 {
        self.rolled_back + self.inconsistent
    }

    pub fn exit_status(&self) -> ExitStatus {
        if self.inconsistent > 0 {
            ExitStatus::Inconsistent
        } else if self.rolled_back > 0 || self.not_started > 0 {
            ExitStatus::RolledBack
        } else {
            ExitStatus::AllAtGoal
        }
    }
}
