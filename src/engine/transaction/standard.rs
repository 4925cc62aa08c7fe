//! The standard protocol (docs/NODE_API.md): one create or delete per node
//! and change, resolved by a read-back when its answer is unclear; undone by
//! the opposite call, only where the change landed.

use futures::StreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::rules::{
    compensation, outcome_of, read_back_step, settle_write, undo_start, Compensation, NodeWork,
    Settled, Step, UndoStart, WriteEffect,
};
use super::{Protocol, Transaction, TransactionOutcome, CUT_OFF, LOG_TARGET};
use crate::domain::NodeState;
use crate::engine::fan_out::each_node;
use crate::node_api::Node;

/// One call per node and change.
pub(super) struct Standard;

impl Protocol for Standard {
    fn session(&self) -> Option<&str> {
        None
    }

    async fn apply(&mut self, tx: &Transaction<'_>, work: &mut [NodeWork]) -> Option<String> {
        let goal = tx.change.goal();
        let cancel = tx.control.abort.child_token();
        let writes = tx.steps(
            work,
            |_, w| w.prior != goal,
            |_, node, _| tx.write_and_resolve(node, &cancel),
        );
        let cut_off = || Step::maybe_changed(NodeState::Unknown, Some(CUT_OFF.to_string()));
        let mut done = each_node(&tx.control.kill, writes, cut_off);
        for w in work.iter_mut().filter(|w| w.prior != goal) {
            w.written = true;
        }
        let mut failure = None;
        while let Some((i, step)) = done.next().await {
            let (Some(node), Some(w)) = (tx.nodes().get(i), work.get_mut(i)) else {
                continue;
            };
            if step.state != goal && failure.is_none() && !cancel.is_cancelled() {
                let why = step
                    .detail
                    .clone()
                    .unwrap_or_else(|| format!("node is {}", step.state.as_str()));
                tracing::warn!(target: LOG_TARGET, node = node.name(), state = step.state.as_str(), reason = %why, "node did not reach the goal; rolling the group back");
                failure = Some(format!("{}: {why}", node.name()));
                cancel.cancel();
            }
            w.settle(step);
        }
        failure
    }

    async fn undo(
        &mut self,
        tx: &Transaction<'_>,
        work: &mut [NodeWork],
        _reason: &str,
    ) -> TransactionOutcome {
        let undos = tx.steps(
            work,
            |i, w| w.needs_undo() || w.written && tx.unsettled_at(i),
            |_, node, w| tx.compensate(node, w.state, w.record.clone()),
        );
        let cut_off = || Compensation::CutOff(CUT_OFF.to_string());
        let mut done = each_node(&tx.control.kill, undos, cut_off);
        while let Some((i, compensation)) = done.next().await {
            if let Some(w) = work.get_mut(i) {
                w.compensate(compensation);
            }
        }
        outcome_of(work, tx.change.goal())
    }

    async fn recover(
        &mut self,
        tx: &Transaction<'_>,
        work: &mut [NodeWork],
    ) -> (TransactionOutcome, &'static str) {
        if work.iter().all(|w| w.state == tx.change.goal()) {
            let reason = "recovered from the journal: already at the goal everywhere";
            return (TransactionOutcome::Committed, reason);
        }
        let reason = "recovered from the journal: a killed run left the group unfinished";
        (self.undo(tx, work, reason).await, reason)
    }
}

impl Transaction<'_> {
    /// One forward write, resolved by a read-back when its answer is not the
    /// expected success.
    async fn write_and_resolve(&self, node: &Node, cancel: &CancellationToken) -> Step {
        let (answer, attempts) = self.write(node, self.change, None, cancel).await;
        let settled = settle_write(self.change, answer, &attempts, cancel.is_cancelled());
        let (status, detail) = match settled {
            Settled::Step(step) => {
                if let WriteEffect::Foreign { status } = step.effect {
                    tracing::warn!(target: LOG_TARGET, node = node.name(), status, "node was already at the goal when our write arrived; another writer changed it since it was read, and a rollback will leave it as it is");
                }
                return step;
            }
            Settled::ReadBack { status, detail } => (status, detail),
        };
        let read = self.read(node, cancel).await;
        tracing::debug!(target: LOG_TARGET, node = node.name(), status, attempts = attempts.count,
            answer = %detail, state = read.state().as_str(),
            "write answer resolved by reading the node back");
        read_back_step(detail, &read)
    }

    /// Undoes this run's change on one node, if it landed, and reads the
    /// node back.
    async fn compensate(
        &self,
        node: &Node,
        known: NodeState,
        record: Option<Value>,
    ) -> Compensation {
        let kill = &self.control.kill;
        // A write whose answer was lost may land until its window ends: the
        // undo waits for it, and only a read after it says what to undo.
        let unsettled = self.index_of(node).is_some_and(|i| self.unsettled_at(i));
        if !self.wait_out(node, kill).await {
            return Compensation::CutOff(CUT_OFF.to_string());
        }
        let known = if unsettled { NodeState::Unknown } else { known };
        let state = match undo_start(known) {
            UndoStart::Undo => known,
            UndoStart::ReadFirst => {
                let state = self.read(node, kill).await.state();
                if state == self.change.changed_from() {
                    return Compensation::NotNeeded(state);
                }
                state
            }
        };
        tracing::info!(target: LOG_TARGET, node = node.name(), state = state.as_str(), "compensating: undoing this run's change");
        let undo = self.change.opposite();
        let (answer, attempts) = self.write(node, undo, record.as_ref(), kill).await;
        let read = self.read(node, kill).await;
        let done = compensation(self.change, &answer, &read);
        match &done {
            Compensation::Failed { state, detail } => {
                tracing::error!(target: LOG_TARGET, node = node.name(), attempts = attempts.count, state = state.as_str(), reason = %detail, "compensation failed");
            }
            Compensation::Undone(state) => {
                tracing::info!(target: LOG_TARGET, node = node.name(), attempts = attempts.count, state = state.as_str(), "compensated");
            }
            Compensation::NotNeeded(_) | Compensation::CutOff(_) => {}
        }
        done
    }
}
