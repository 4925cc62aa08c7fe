//! The standard protocol (docs/NODE_API.md): one create or delete per node
//! and change, resolved by a read-back when its answer is unclear; undone by
//! the opposite call, only where the change landed.

use futures::StreamExt;
use serde_json::Value;
use tokio::time::Instant;
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
        let cut_off = || {
            let step = Step::maybe_changed(NodeState::Unknown, Some(CUT_OFF.to_string()));
            (step, None)
        };
        let mut done = each_node(&tx.control.kill, writes, cut_off);
        for w in work.iter_mut().filter(|w| w.prior != goal) {
            w.written = true;
        }
        let mut failure = None;
        while let Some((i, (step, settles_at))) = done.next().await {
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
            w.settles_at = settles_at;
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
            |_, w| w.needs_undo(),
            |_, node, w| tx.compensate(node, (w.state, w.settles_at), w.record.clone()),
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
    /// expected success; with when a lost attempt of it may still land, if no
    /// read was taken after that.
    async fn write_and_resolve(
        &self,
        node: &Node,
        cancel: &CancellationToken,
    ) -> (Step, Option<Instant>) {
        let (answer, attempts) = self
            .client
            .write(node, self.change, self.group, None, cancel)
            .await;
        let settled = settle_write(self.change, answer, &attempts, cancel.is_cancelled());
        let (status, detail) = match settled {
            Settled::Step(step) => {
                if let WriteEffect::Foreign { status } = step.effect {
                    tracing::warn!(target: LOG_TARGET, node = node.name(), status, "node was already at the goal when our write arrived; another writer changed it since it was read, and a rollback will leave it as it is");
                }
                return (step, attempts.settles_at);
            }
            Settled::ReadBack { status, detail } => (status, detail),
        };
        if let Some(at) = attempts.settles_at {
            if !settle(node, at, cancel).await {
                let detail = format!("{detail}; cancelled: the group is rolling back");
                let step = Step::maybe_changed(NodeState::Unknown, Some(detail));
                return (step, Some(at));
            }
        }
        let read = self.client.read(node, self.group, cancel).await;
        tracing::debug!(target: LOG_TARGET, node = node.name(), status, attempts = attempts.count,
            answer = %detail, state = read.state().as_str(),
            "write answer resolved by reading the node back");
        (read_back_step(detail, &read), None)
    }

    /// Undoes this run's change on one node, if it landed, and reads the
    /// node back.
    async fn compensate(
        &self,
        node: &Node,
        (known, settles_at): (NodeState, Option<Instant>),
        record: Option<Value>,
    ) -> Compensation {
        let kill = &self.control.kill;
        let cut_off = || Compensation::CutOff(CUT_OFF.to_string());
        // A lost write may land until its window ends: only a read after it
        // tells where the node is.
        let known = match settles_at {
            Some(at) if !settle(node, at, kill).await => return cut_off(),
            Some(_) => NodeState::Unknown,
            None => known,
        };
        let state = match undo_start(known) {
            UndoStart::Undo => known,
            UndoStart::ReadFirst => {
                let state = self.client.read(node, self.group, kill).await.state();
                if state == self.change.changed_from() {
                    return Compensation::NotNeeded(state);
                }
                state
            }
        };
        tracing::info!(target: LOG_TARGET, node = node.name(), state = state.as_str(), "compensating: undoing this run's change");
        let undo = self.change.opposite();
        let (answer, attempts) = self
            .client
            .write(node, undo, self.group, record.as_ref(), kill)
            .await;
        if let Some(at) = attempts.settles_at {
            if !settle(node, at, kill).await {
                return cut_off();
            }
        }
        let read = self.client.read(node, self.group, kill).await;
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

/// Waits until `at`, when this run's lost writes to `node` can no longer
/// land (`WRITE_SETTLE_MS`); `false` when `cancel` fired first.
async fn settle(node: &Node, at: Instant, cancel: &CancellationToken) -> bool {
    let wait = at.saturating_duration_since(Instant::now());
    if wait.is_zero() {
        return true;
    }
    let wait_ms = wait.as_millis() as u64;
    tracing::info!(target: LOG_TARGET, node = node.name(), wait_ms, "an answer was lost; waiting until the write can no longer land before reading the node");
    tokio::select! {
        biased;
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep_until(at) => true,
    }
}
