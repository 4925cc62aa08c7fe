//! The all-or-nothing transaction for one group on every node. The
//! semantics of record are docs/TRANSACTIONS.md; the per-node decisions are
//! pure functions in `rules.rs`, table-tested there.
//!
//! # The rules
//!
//! For group `G` and an operation whose goal is "present everywhere"
//! (create) or "absent everywhere" (delete):
//!
//! 1. **Prior state.** Every node's state is known before anything changes:
//!    read, or taken from the run's node lists where they tell it (see
//!    [`crate::engine::prior`]). A node whose state cannot be read stops the
//!    transaction before any write: no node is changed, the outcome is
//!    [`Outcome::RolledBack`] with the reason. For delete, the record each
//!    node returned (or listed) is kept so a rollback can restore it exactly.
//! 2. **Apply** only on nodes whose prior state differs from the goal, all
//!    concurrently. The expected success (`201`, `200`) settles a node; any
//!    other answer — a `400` on create, a `404` on delete, a timeout after the
//!    request left, a `5xx`, retries exhausted — is resolved by reading the
//!    node back, never by guessing.
//! 3. **Commit** when every node is at the goal.
//! 4. **Roll back** otherwise: the first node that cannot reach the goal
//!    cancels the group's remaining requests; every node this run wrote to
//!    and that is not known to be at its prior state is read back, undone
//!    only if the read shows the change landed (or the read fails: the undo
//!    targets the prior state, so it cannot destroy anything this run did not
//!    create), and read back again.
//!
//! # The invariants this module guarantees
//!
//! - **I1 all-or-nothing:** the outcome is [`Outcome::Committed`] (every
//!   node at the goal), [`Outcome::RolledBack`] (every node at its prior
//!   state) or [`Outcome::Inconsistent`].
//! - **I2 do no harm:** nodes already at the goal get no write; compensation
//!   writes only to nodes this run wrote to, and only towards their prior
//!   state — a group that existed before a create survives its rollback, and
//!   a group absent before a delete is never created by its rollback.
//! - **I3 honest report:** an inconsistent outcome names every node whose
//!   final state is not its prior state (or is unknown), with that state.
//! - **I4 bounded:** the [`Control`] tokens cut the transaction short: `abort`
//!   cancels forward work (the group rolls back), `kill` cancels everything
//!   (nodes still in doubt are reported unknown).
//!
//! The job assumes it is the only writer of `G` while it runs. An outside
//! writer changing `G` at the same time can make a read-back see its change
//! instead of ours; the report then names what was seen.

mod rules;
mod session;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::rules::{
    compensation, outcome_of, read_back_step, settle_write, undo_start, Compensation, NodeWork,
    Settled, Step, UndoStart, WriteEffect,
};
use super::control::Control;
use super::inspect::read_nodes;
use super::prior::{usable, GroupPriors};
use crate::domain::{
    GroupId, GroupReport, NodeDetail, NodeProtocol, NodeState, Operation, Outcome,
};
use crate::node_api::{plain_record, NodeClient};
use crate::output::journal::{Intent, IntentNode, Journal};

/// The target these log lines carry, which `LOG_LEVEL` directives name
/// (`api_consumer::transaction=debug`): part of the log interface, kept whatever file
/// the code lives in.
const LOG_TARGET: &str = "api_consumer::transaction";

const CUT_OFF: &str = "cut off by the shutdown budget (ROLLBACK_TIMEOUT_SECS)";

/// One group's transaction over every node of `client`.
pub struct Transaction<'a> {
    client: &'a NodeClient,
    group: &'a GroupId,
    operation: Operation,
    control: &'a Control,
    journal: Option<&'a Journal>,
    /// Whether the journal holds an intent of this group awaiting its outcome.
    intent_recorded: AtomicBool,
    /// The group's prior states from the node lists, where they tell it.
    priors: Option<GroupPriors>,
    /// The nodes speak the two-phase session protocol (`session.rs`).
    two_phase: bool,
}

impl<'a> Transaction<'a> {
    pub fn new(
        client: &'a NodeClient,
        group: &'a GroupId,
        operation: Operation,
        control: &'a Control,
    ) -> Self {
        Self {
            client,
            group,
            operation,
            control,
            journal: None,
            intent_recorded: AtomicBool::new(false),
            priors: None,
            two_phase: false,
        }
    }

    /// Talks to the nodes in `protocol`.
    pub fn with_protocol(mut self, protocol: NodeProtocol) -> Self {
        self.two_phase = protocol == NodeProtocol::TwoPhase;
        self
    }

    /// Takes the prior state from the node lists where they tell it, and
    /// reads the other nodes.
    pub fn with_priors(mut self, priors: Option<GroupPriors>) -> Self {
        self.priors = priors;
        self
    }

    /// Records the group's intent in `journal` before changing any node,
    /// and its outcome at the end (see [`crate::output::journal`]).
    pub fn with_journal(mut self, journal: Option<&'a Journal>) -> Self {
        self.journal = journal;
        self
    }

    /// Runs the transaction to one of its outcomes and logs it.
    pub async fn run(mut self) -> GroupReport {
        let span = tracing::info_span!(
            "group",
            group_id = %self.group,
            operation = self.operation.as_str()
        );
        let started = Instant::now();
        let priors = self.priors.take();
        let (outcome, reason, work) = self.execute(priors).instrument(span).await;
        self.report(started, outcome, reason, work).await
    }

    /// Resolves an intent a killed run left in the journal: the nodes are
    /// read back; a group at its goal everywhere is committed, any other is
    /// rolled back to the recorded prior state. `self`'s client must hold
    /// the intent's nodes in the intent's order.
    /// With `session`, the nodes speak the two-phase protocol and may hold
    /// that session's intentions (docs/TWO_PHASE.md, "The journal").
    pub async fn recover(self, nodes: &[IntentNode], session: Option<&str>) -> GroupReport {
        let span = tracing::info_span!(
            "recovery",
            group_id = %self.group,
            operation = self.operation.as_str()
        );
        let started = Instant::now();
        self.intent_recorded.store(true, Ordering::Relaxed);
        let goal = self.operation.goal();
        let work: Vec<NodeWork> = nodes
            .iter()
            .map(|n| NodeWork {
                prior: n.prior,
                record: n.record.clone(),
                state: NodeState::Unknown,
                written: n.prior != goal,
                compensated: false,
                detail: None,
            })
            .collect();
        let (outcome, reason, work) = self.resolve(work, session).instrument(span).await;
        self.report(started, outcome, reason, work).await
    }

    async fn resolve(
        &self,
        mut work: Vec<NodeWork>,
        session: Option<&str>,
    ) -> (Outcome, Option<String>, Vec<NodeWork>) {
        let goal = self.operation.goal();
        let kill = &self.control.kill;
        let reads = (0..work.len()).map(|i| self.client.read(i, self.group, kill));
        let answers = tokio::select! {
            biased;
            _ = kill.cancelled() => Vec::new(),
            answers = futures::future::join_all(reads) => answers,
        };
        for (w, answer) in work.iter_mut().zip(&answers) {
            w.state = answer.state();
            w.detail = answer.failure();
        }
        let reason = "recovered from the journal: a killed run left the group unfinished";
        if let Some(session) = session {
            // Intentions are invisible to reads, so even a group that reads
            // at its goal everywhere may hold one (a half-done undo's): every
            // node the killed run meant to change is released, then reversed.
            let outcome = self.release_all(&mut work, session).await;
            return (outcome, Some(reason.to_string()), work);
        }
        if work.iter().all(|w| w.state == goal) {
            let reason = "recovered from the journal: already at the goal everywhere";
            return (Outcome::Committed, Some(reason.to_string()), work);
        }
        self.finish(work, reason.to_string()).await
    }

    async fn report(
        &self,
        started: Instant,
        outcome: Outcome,
        reason: Option<String>,
        work: Vec<NodeWork>,
    ) -> GroupReport {
        let report = GroupReport {
            group_id: self.group.clone(),
            operation: self.operation.into(),
            outcome,
            reason,
            duration_ms: started.elapsed().as_millis() as u64,
            nodes: work
                .into_iter()
                .enumerate()
                .map(|(i, w)| NodeDetail {
                    node: self.client.node_name(i).to_string(),
                    prior: w.prior,
                    final_state: w.state,
                    written: w.written,
                    compensated: w.compensated,
                    detail: w.detail,
                })
                .collect(),
            would_write: Vec::new(),
        };
        log_outcome(&report);
        if let Some(journal) = self.journal {
            // An inconsistent group keeps its intent, so the next run with
            // the journal tries again to return it to its prior state.
            let recorded = self.intent_recorded.load(Ordering::Relaxed);
            if recorded && report.outcome != Outcome::Inconsistent {
                if let Err(error) = journal.outcome(self.group.as_str(), report.outcome).await {
                    tracing::error!(target: LOG_TARGET, group_id = %self.group, error = %error, "cannot record the outcome in the journal; the next run will check the group again");
                }
            }
        }
        report
    }

    async fn execute(
        &self,
        priors: Option<GroupPriors>,
    ) -> (Outcome, Option<String>, Vec<NodeWork>) {
        let goal = self.operation.goal();
        let Some(mut work) = self.read_prior(priors).await else {
            let work = (0..self.client.node_count())
                .map(|_| NodeWork::unread())
                .collect();
            return (Outcome::NotStarted, Some(self.control.stop_detail()), work);
        };
        if let Some((i, w)) = work
            .iter()
            .enumerate()
            .find(|(_, w)| w.prior == NodeState::Unknown)
        {
            let reason = format!(
                "prior state of {} could not be read ({}); no node was changed",
                self.client.node_name(i),
                w.detail.as_deref().unwrap_or("unknown")
            );
            return (Outcome::RolledBack, Some(reason), work);
        }
        let present = work
            .iter()
            .filter(|w| w.prior == NodeState::Present)
            .count();
        if present != 0 && present != work.len() {
            tracing::warn!(target: LOG_TARGET,
                present,
                absent = work.len() - present,
                "pre-existing inconsistency: the group is on some nodes only; converging to the goal"
            );
        }
        if work.iter().all(|w| w.prior == goal) {
            return (Outcome::Committed, None, work);
        }
        let session = self.two_phase.then(session::new_session);
        if let Err(reason) = self.record_intent(&work, session.clone()).await {
            return (Outcome::RolledBack, Some(reason), work);
        }
        if let Some(session) = session {
            let (outcome, reason) = self.apply_two_phase(&mut work, &session).await;
            return (outcome, reason, work);
        }
        let failure = self.apply(&mut work, goal).await;
        if work.iter().all(|w| w.state == goal) {
            return (Outcome::Committed, None, work);
        }
        let reason = failure.unwrap_or_else(|| self.control.stop_detail());
        self.finish(work, reason).await
    }

    /// Rolls back and names the outcome from what the nodes hold.
    async fn finish(
        &self,
        mut work: Vec<NodeWork>,
        reason: String,
    ) -> (Outcome, Option<String>, Vec<NodeWork>) {
        let goal = self.operation.goal();
        self.roll_back(&mut work).await;
        (outcome_of(&work, goal), Some(reason), work)
    }

    /// Writes the intent before the first change; without a journal, there
    /// is nothing to write.
    async fn record_intent(
        &self,
        work: &[NodeWork],
        session: Option<String>,
    ) -> Result<(), String> {
        let Some(journal) = self.journal else {
            return Ok(());
        };
        let intent = Intent {
            group_id: self.group.as_str().to_string(),
            operation: self.operation,
            nodes: work
                .iter()
                .enumerate()
                .map(|(i, w)| IntentNode {
                    node: self.client.node_name(i).to_string(),
                    prior: w.prior,
                    record: w.record.clone(),
                })
                .collect(),
            session,
        };
        journal
            .intent(intent)
            .await
            .map_err(|e| format!("cannot record the intent, so no node was changed: {e}"))?;
        self.intent_recorded.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Every node's prior state: from the lists where they tell it (see
    /// [`crate::engine::prior`]), read otherwise; `None` when the run was
    /// aborted first.
    async fn read_prior(&self, priors: Option<GroupPriors>) -> Option<Vec<NodeWork>> {
        let deleting = self.operation == Operation::Delete;
        let mut listed = priors.unwrap_or_default().into_iter();
        let known: Vec<Option<(NodeState, Option<Value>)>> = (0..self.client.node_count())
            .map(|_| usable(listed.next().flatten(), deleting))
            .collect();
        let unknown = known
            .iter()
            .enumerate()
            .filter(|(_, k)| k.is_none())
            .map(|(i, _)| i);
        let mut answers = read_nodes(self.client, self.group, unknown, self.control)
            .await?
            .into_iter();
        let mut work = Vec::with_capacity(known.len());
        for k in known {
            let node = match k {
                Some((state, record)) => NodeWork::listed(state, record),
                None => NodeWork::from_prior(answers.next()?),
            };
            work.push(node);
        }
        Some(work)
    }

    /// Writes towards the goal where needed; returns the first failure.
    async fn apply(&self, work: &mut [NodeWork], goal: NodeState) -> Option<String> {
        let cancel = self.control.abort.child_token();
        let mut pending: FuturesUnordered<_> = work
            .iter()
            .enumerate()
            .filter(|(_, w)| w.prior != goal)
            .map(|(i, _)| {
                let (cancel, kill) = (&cancel, &self.control.kill);
                async move {
                    tokio::select! {
                        biased;
                        _ = kill.cancelled() => (i, Step::maybe_changed(NodeState::Unknown, Some(CUT_OFF.to_string()))),
                        step = self.write_and_resolve(i, cancel) => (i, step),
                    }
                }
            })
            .collect();
        for w in work.iter_mut().filter(|w| w.prior != goal) {
            w.written = true;
        }
        let mut failure = None;
        while let Some((i, step)) = pending.next().await {
            let node = self.client.node_name(i);
            if step.state != goal && failure.is_none() && !cancel.is_cancelled() {
                let why = step
                    .detail
                    .clone()
                    .unwrap_or_else(|| format!("node is {}", step.state.as_str()));
                tracing::warn!(target: LOG_TARGET, node, state = step.state.as_str(), reason = %why, "node did not reach the goal; rolling the group back");
                failure = Some(format!("{node}: {why}"));
                cancel.cancel();
            }
            if let Some(w) = work.get_mut(i) {
                w.settle(step);
            }
        }
        failure
    }

    /// One forward write, resolved by a read-back when its answer is not the
    /// expected success.
    async fn write_and_resolve(&self, node: usize, cancel: &CancellationToken) -> Step {
        let (answer, attempts) = match self.operation {
            Operation::Create => {
                let record = plain_record(self.group);
                self.client.create(node, &record, cancel).await
            }
            Operation::Delete => self.client.delete(node, self.group, cancel).await,
        };
        let (status, detail) = match settle_write(
            self.operation,
            answer,
            &attempts,
            cancel.is_cancelled(),
        ) {
            Settled::Step(step) => {
                if let WriteEffect::Foreign { status } = step.effect {
                    tracing::warn!(target: LOG_TARGET,
                        node = self.client.node_name(node),
                        status,
                        "node was already at the goal when our write arrived; another writer changed it since it was read, and a rollback will leave it as it is"
                    );
                }
                return step;
            }
            Settled::ReadBack { status, detail } => (status, detail),
        };
        let read = self.client.read(node, self.group, cancel).await;
        tracing::debug!(target: LOG_TARGET,
            node = self.client.node_name(node),
            status,
            attempts = attempts.count,
            answer = %detail,
            state = read.state().as_str(),
            "write answer resolved by reading the node back"
        );
        read_back_step(detail, &read)
    }

    /// Returns every node this run wrote to its prior state, as far as the
    /// `kill` token allows.
    async fn roll_back(&self, work: &mut [NodeWork]) {
        let kill = &self.control.kill;
        let mut pending: FuturesUnordered<_> = work
            .iter()
            .enumerate()
            .filter(|(_, w)| w.needs_undo())
            .map(|(i, w)| {
                let record = w.record.clone();
                let known = w.state;
                async move {
                    tokio::select! {
                        biased;
                        _ = kill.cancelled() => (i, Compensation::CutOff(CUT_OFF.to_string())),
                        done = self.compensate(i, known, record) => (i, done),
                    }
                }
            })
            .collect();
        while let Some((i, done)) = pending.next().await {
            if let Some(w) = work.get_mut(i) {
                w.compensate(done);
            }
        }
    }

    /// Undoes this run's change on one node, if it landed, and reads the
    /// node back.
    async fn compensate(
        &self,
        node: usize,
        known: NodeState,
        record: Option<Value>,
    ) -> Compensation {
        let name = self.client.node_name(node);
        let kill = &self.control.kill;
        let state = match undo_start(known) {
            UndoStart::Undo => known,
            UndoStart::ReadFirst => {
                let state = self.client.read(node, self.group, kill).await.state();
                if state == self.operation.changed_from() {
                    return Compensation::NotNeeded(state);
                }
                state
            }
        };
        tracing::info!(target: LOG_TARGET,
            node = name,
            state = state.as_str(),
            "compensating: undoing this run's change"
        );
        let (answer, attempts) = match self.operation {
            Operation::Create => self.client.delete(node, self.group, kill).await,
            Operation::Delete => {
                let record = record.unwrap_or_else(|| plain_record(self.group));
                self.client.create(node, &record, kill).await
            }
        };
        let read = self.client.read(node, self.group, kill).await;
        let done = compensation(self.operation, &answer, &read);
        match &done {
            Compensation::Failed { state, detail } => {
                tracing::error!(target: LOG_TARGET, node = name, attempts = attempts.count, state = state.as_str(), reason = %detail, "compensation failed");
            }
            Compensation::Undone(state) => {
                tracing::info!(target: LOG_TARGET,
                    node = name,
                    attempts = attempts.count,
                    state = state.as_str(),
                    "compensated"
                );
            }
            Compensation::NotNeeded(_) | Compensation::CutOff(_) => {}
        }
        done
    }
}

fn log_outcome(report: &GroupReport) {
    let outcome = report.outcome.as_str();
    let reason = report.reason.as_deref().unwrap_or("");
    let written = report.nodes.iter().filter(|n| n.written).count();
    let group_id = report.group_id.as_str();
    let operation = report.operation.as_str();
    match report.outcome {
        Outcome::Committed => tracing::info!(target: LOG_TARGET,
            group_id,
            operation,
            outcome,
            nodes_written = written,
            duration_ms = report.duration_ms,
            "group committed"
        ),
        Outcome::RolledBack | Outcome::NotStarted => tracing::warn!(target: LOG_TARGET,
            group_id,
            operation,
            outcome,
            reason,
            nodes_written = written,
            duration_ms = report.duration_ms,
            "group not applied; every node is at its prior state"
        ),
        // What verify and dry runs find; a transaction never ends so.
        Outcome::ConsistentPresent
        | Outcome::ConsistentAbsent
        | Outcome::Unknown
        | Outcome::Unchanged
        | Outcome::WouldChange => {}
        Outcome::Inconsistent => {
            for node in report.diverged_nodes() {
                tracing::error!(target: LOG_TARGET,
                    group_id,
                    operation,
                    node = node.node.as_str(),
                    prior = node.prior.as_str(),
                    state = node.final_state.as_str(),
                    detail = node.detail.as_deref().unwrap_or(""),
                    "node left inconsistent"
                );
            }
            tracing::error!(target: LOG_TARGET,
                group_id,
                operation,
                outcome,
                reason,
                duration_ms = report.duration_ms,
                "group inconsistent: some nodes are at neither the goal nor their prior state"
            );
        }
    }
}
