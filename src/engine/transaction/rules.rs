//! The transaction's decisions about one node, as pure functions of what the
//! node answered: how a forward write's answer settles the node (or leaves
//! it to a read-back), which nodes a rollback undoes, and what an undo left.
//! [`super::Transaction`] does the I/O and calls these; the table tests
//! below cover every combination (docs/TRANSACTIONS.md, "The compensation
//! decision table").

use serde_json::Value;

use super::TransactionOutcome;
use crate::domain::{Change, NodeState};
use crate::node_api::{Attempts, ReadAnswer, WriteAnswer};

/// What the transaction knows of one node.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct NodeWork {
    /// The state before this run changed anything (or, after a foreign
    /// write, the state another writer put it in).
    pub prior: NodeState,
    /// For a delete, the record the node held, to restore it exactly.
    pub record: Option<Value>,
    pub state: NodeState,
    /// A write of this run may have landed on the node.
    pub written: bool,
    /// A compensating write was sent to the node.
    pub compensated: bool,
    pub detail: Option<String>,
}

impl NodeWork {
    /// A node whose prior state was never read (the run stopped first).
    pub fn unread() -> Self {
        Self::listed(NodeState::Unknown, None)
    }

    /// A node whose prior state is known (a node list gave it), with no
    /// write yet.
    pub fn listed(prior: NodeState, record: Option<Value>) -> Self {
        Self {
            prior,
            record,
            state: prior,
            written: false,
            compensated: false,
            detail: None,
        }
    }

    /// A node as its prior-state read found it.
    pub fn from_prior(answer: ReadAnswer) -> Self {
        let prior = answer.state();
        let detail = answer.failure();
        let record = match answer {
            ReadAnswer::Present(record) => Some(record),
            _ => None,
        };
        Self {
            detail,
            ..Self::listed(prior, record)
        }
    }

    /// Records what the forward write left on the node.
    pub fn settle(&mut self, step: Step) {
        self.state = step.state;
        self.detail = step.detail;
        match step.effect {
            WriteEffect::MaybeChanged => {}
            WriteEffect::Unchanged => self.written = false,
            WriteEffect::Foreign { .. } => {
                self.prior = step.state;
                self.written = false;
            }
        }
    }

    /// Whether a rollback must work on the node: this run wrote to it and
    /// it is not known to be back at its prior state.
    pub fn needs_undo(&self) -> bool {
        self.written && self.state != self.prior
    }

    /// Records what the rollback did to the node.
    pub fn compensate(&mut self, compensation: Compensation) {
        let (state, sent, detail) = match compensation {
            Compensation::NotNeeded(state) => (state, false, None),
            Compensation::Undone(state) => (state, true, None),
            Compensation::Failed { state, detail } => (state, true, Some(detail)),
            Compensation::CutOff(detail) => (NodeState::Unknown, false, Some(detail)),
        };
        self.state = state;
        self.compensated |= sent;
        if detail.is_some() {
            self.detail = detail;
        }
    }
}

/// A transaction's outcome from what its nodes hold at the end: every node
/// at its prior state, every node at the goal, or neither.
pub(super) fn outcome_of(work: &[NodeWork], goal: NodeState) -> TransactionOutcome {
    if work.iter().all(|w| w.state == w.prior) {
        TransactionOutcome::RolledBack
    } else if work.iter().all(|w| w.state == goal) {
        TransactionOutcome::Committed
    } else {
        TransactionOutcome::Inconsistent
    }
}

/// Whose doing a node's state after a forward write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteEffect {
    /// A write of this run may have landed: the rollback undoes it if the
    /// node does not hold its prior state.
    MaybeChanged,
    /// No write of this run can have landed: every attempt was refused
    /// unapplied, so there is nothing to undo.
    Unchanged,
    /// The node was already at the goal when the write arrived: another
    /// writer changed it after it was read, and it is not this run's to undo.
    /// `status` is the refusal that said so.
    Foreign { status: u16 },
}

/// What one forward write left on its node.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Step {
    pub state: NodeState,
    pub detail: Option<String>,
    pub effect: WriteEffect,
}

impl Step {
    /// A node in `state` that a write of this run may have changed.
    pub fn maybe_changed(state: NodeState, detail: Option<String>) -> Self {
        Self {
            state,
            detail,
            effect: WriteEffect::MaybeChanged,
        }
    }
}

/// How the answer to a forward write settles its node.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Settled {
    /// The answer alone tells the node's state.
    Step(Step),
    /// Only reading the node back can tell.
    ReadBack { status: Option<u16>, detail: String },
}

/// Settles a forward write from its answer, never by guessing: only the
/// expected success, a refusal on every attempt, or a refusal that says the
/// goal already held (on the only attempt) are read as they are.
pub(super) fn settle_write(
    operation: Change,
    answer: WriteAnswer,
    attempts: &Attempts,
    cancelled: bool,
) -> Settled {
    let (status, detail) = match answer {
        WriteAnswer::Applied => return Settled::Step(Step::maybe_changed(operation.goal(), None)),
        WriteAnswer::Unresolved { status, detail } => (status, detail),
    };
    // Our only attempt was refused because the node was already at the
    // goal: someone else made that change after we read the node.
    if let Some(code) = status {
        if !attempts.earlier_maybe_applied && says_already_at_goal(operation, code) {
            return Settled::Step(Step {
                state: operation.goal(),
                detail: Some(format!(
                    "{detail}: already at the goal before this run's write (changed by another writer)"
                )),
                effect: WriteEffect::Foreign { status: code },
            });
        }
    }
    // Every attempt was refused unapplied (429, connection refused,
    // cancelled before sending): the node is still at its prior state.
    if !attempts.maybe_applied {
        return Settled::Step(Step {
            state: operation.changed_from(),
            detail: Some(format!("{detail} (not applied)")),
            effect: WriteEffect::Unchanged,
        });
    }
    // The group is rolling back, and the rollback reads the node itself.
    if cancelled {
        return Settled::Step(Step::maybe_changed(
            NodeState::Unknown,
            Some(format!("{detail}; cancelled: the group is rolling back")),
        ));
    }
    Settled::ReadBack { status, detail }
}

/// The step a read-back after an unclear write answer gives.
pub(super) fn read_back_step(answer_detail: String, read: &ReadAnswer) -> Step {
    let detail = match read.failure() {
        Some(read_failure) => format!("{answer_detail}; {read_failure}"),
        None => answer_detail,
    };
    Step::maybe_changed(read.state(), Some(detail))
}

/// The answers a node gives when the write's goal already holds: `400`
/// (or `409`) to a create, `404` (or `410`) to a delete.
fn says_already_at_goal(operation: Change, status: u16) -> bool {
    match operation {
        Change::Create => matches!(status, 400 | 409),
        Change::Delete => matches!(status, 404 | 410),
    }
}

/// What a rollback does first on a node that [`NodeWork::needs_undo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UndoStart {
    /// The node is known to hold this run's change: undo it.
    Undo,
    /// The node's state is unknown: read it, and undo only if the change
    /// landed.
    ReadFirst,
}

/// The rollback's first move on a node in `known` state.
pub(super) fn undo_start(known: NodeState) -> UndoStart {
    if known == NodeState::Unknown {
        UndoStart::ReadFirst
    } else {
        UndoStart::Undo
    }
}

/// What a rollback left on one node.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Compensation {
    /// The node was read back at its prior state: nothing was sent.
    NotNeeded(NodeState),
    /// The undo was sent and the node is at its prior state.
    Undone(NodeState),
    /// The undo was sent, but the node is not known to be at its prior state.
    Failed { state: NodeState, detail: String },
    /// The shutdown budget ran out first.
    CutOff(String),
}

/// The node's state after an undo: what the read after it found, or, when
/// that read failed, the prior state if the undo answered success.
pub(super) fn state_after_undo(
    operation: Change,
    undo: &WriteAnswer,
    read: NodeState,
) -> NodeState {
    match (undo, read) {
        (_, NodeState::Present) => NodeState::Present,
        (_, NodeState::Absent) => NodeState::Absent,
        (WriteAnswer::Applied, NodeState::Unknown) => operation.changed_from(),
        (WriteAnswer::Unresolved { .. }, NodeState::Unknown) => NodeState::Unknown,
    }
}

/// What an undo came to, from its answer and the read after it.
pub(super) fn compensation(
    operation: Change,
    undo: &WriteAnswer,
    read: &ReadAnswer,
) -> Compensation {
    let state = state_after_undo(operation, undo, read.state());
    if state == operation.changed_from() {
        return Compensation::Undone(state);
    }
    let detail = match (undo, read.failure()) {
        (WriteAnswer::Unresolved { detail, .. }, Some(read)) => {
            format!("compensation failed: {detail}; {read}")
        }
        (WriteAnswer::Unresolved { detail, .. }, None) => format!("compensation failed: {detail}"),
        (WriteAnswer::Applied, _) => {
            "compensation answered success but the node still holds the change".to_string()
        }
    };
    Compensation::Failed { state, detail }
}

#[cfg(test)]
mod tests;
