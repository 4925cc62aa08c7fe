//! The all-or-nothing transaction for one group on every node.
//!
//! # The rules
//!
//! For group `G` and an operation whose goal is "present everywhere"
//! (create) or "absent everywhere" (delete):
//!
//! 1. **Prior state.** Every node is read before anything changes. A node
//!    whose state cannot be read stops the transaction before any write: no
//!    node is changed, the outcome is [`Outcome::RolledBack`] with the reason.
//!    For delete, the record each node returned is kept so a rollback can
//!    restore it exactly.
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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use futures::stream::{FuturesUnordered, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::client::{plain_record, NodeClient, ReadAnswer, WriteAnswer};
use crate::config::{GroupId, Operation};
use crate::journal::{Intent, IntentNode, Journal};

const CUT_OFF: &str = "cut off by the shutdown budget (ROLLBACK_TIMEOUT_SECS)";

/// A node's state for one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Present,
    Absent,
    /// The node could not be read (or a request was cut short).
    Unknown,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Present => "present",
            NodeState::Absent => "absent",
            NodeState::Unknown => "unknown",
        }
    }
}

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

/// Run-wide cancellation, in three escalating steps.
#[derive(Debug)]
pub struct Control {
    /// No new group starts.
    pub stop: CancellationToken,
    /// Groups not yet committed cancel their forward work and roll back.
    pub abort: CancellationToken,
    /// Everything still running is cut off.
    pub kill: CancellationToken,
    reason: OnceLock<StopReason>,
}

impl Default for Control {
    fn default() -> Self {
        let kill = CancellationToken::new();
        let abort = kill.child_token();
        let stop = abort.child_token();
        Self {
            stop,
            abort,
            kill,
            reason: OnceLock::new(),
        }
    }
}

impl Control {
    /// Records why the run stops (the first reason wins) and stops it.
    pub fn stop(&self, reason: StopReason) {
        let _ = self.reason.set(reason);
        self.stop.cancel();
    }

    pub fn reason(&self) -> Option<StopReason> {
        self.reason.get().copied()
    }

    fn stop_detail(&self) -> String {
        match self.reason() {
            Some(reason) => format!(
                "run stopped before the group committed: {}",
                reason.as_str()
            ),
            None => "run stopped before the group committed".to_string(),
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
    /// A journal intent that names an id or node this build cannot parse:
    /// reported inconsistent, with every node in doubt, and left in the
    /// journal.
    pub fn unresolvable(intent: &Intent, problem: String) -> GroupReport {
        GroupReport {
            group_id: GroupId::unchecked(&intent.group_id),
            operation: intent.operation,
            outcome: Outcome::Inconsistent,
            reason: Some(format!("journal intent cannot be resolved: {problem}")),
            duration_ms: 0,
            nodes: intent
                .nodes
                .iter()
                .map(|n| NodeDetail {
                    node: n.node.clone(),
                    prior: n.prior,
                    final_state: NodeState::Unknown,
                    written: true,
                    compensated: false,
                    detail: None,
                })
                .collect(),
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

fn goal_state(operation: Operation) -> NodeState {
    match operation {
        Operation::Create => NodeState::Present,
        Operation::Delete => NodeState::Absent,
    }
}

/// The state a node that needs the operation starts from.
fn prior_state(operation: Operation) -> NodeState {
    match operation {
        Operation::Create => NodeState::Absent,
        Operation::Delete => NodeState::Present,
    }
}

fn state_of(answer: &ReadAnswer) -> NodeState {
    match answer {
        ReadAnswer::Present(_) => NodeState::Present,
        ReadAnswer::Absent => NodeState::Absent,
        ReadAnswer::Failed { .. } => NodeState::Unknown,
    }
}

fn read_detail(answer: &ReadAnswer) -> Option<String> {
    match answer {
        ReadAnswer::Failed { detail, .. } => Some(format!("read failed: {detail}")),
        _ => None,
    }
}

/// What one forward write left on its node.
struct Step {
    state: NodeState,
    detail: Option<String>,
    /// The node was found at the goal by someone else's doing.
    foreign: bool,
    /// No write of this run can have landed on the node.
    unchanged: bool,
}

impl Step {
    fn at(state: NodeState, detail: Option<String>) -> Self {
        Self {
            state,
            detail,
            foreign: false,
            unchanged: false,
        }
    }
}

struct NodeWork {
    prior: NodeState,
    record: Option<Value>,
    state: NodeState,
    written: bool,
    compensated: bool,
    detail: Option<String>,
}

/// One group's transaction over every node of `client`.
pub struct Transaction<'a> {
    client: &'a NodeClient,
    group: &'a GroupId,
    operation: Operation,
    control: &'a Control,
    journal: Option<&'a Journal>,
    /// Whether the journal holds an intent of this group awaiting its outcome.
    intent_recorded: AtomicBool,
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
        }
    }

    /// Records the group's intent in `journal` before changing any node,
    /// and its outcome at the end (see [`crate::journal`]).
    pub fn with_journal(mut self, journal: Option<&'a Journal>) -> Self {
        self.journal = journal;
        self
    }

    /// Runs the transaction to one of its outcomes and logs it.
    pub async fn run(self) -> GroupReport {
        let span = tracing::info_span!(
            "group",
            group_id = %self.group,
            operation = self.operation.as_str()
        );
        let started = Instant::now();
        let (outcome, reason, work) = self.execute().instrument(span).await;
        self.report(started, outcome, reason, work).await
    }

    /// Resolves an intent a killed run left in the journal: the nodes are
    /// read back; a group at its goal everywhere is committed, any other is
    /// rolled back to the recorded prior state. `self`'s client must hold
    /// the intent's nodes in the intent's order.
    pub async fn recover(self, nodes: &[IntentNode]) -> GroupReport {
        let span = tracing::info_span!(
            "recovery",
            group_id = %self.group,
            operation = self.operation.as_str()
        );
        let started = Instant::now();
        self.intent_recorded.store(true, Ordering::Relaxed);
        let goal = goal_state(self.operation);
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
        let (outcome, reason, work) = self.resolve(work).instrument(span).await;
        self.report(started, outcome, reason, work).await
    }

    async fn resolve(&self, mut work: Vec<NodeWork>) -> (Outcome, Option<String>, Vec<NodeWork>) {
        let goal = goal_state(self.operation);
        let kill = &self.control.kill;
        let reads = (0..work.len()).map(|i| self.client.read(i, self.group, kill));
        let answers = tokio::select! {
            biased;
            _ = kill.cancelled() => Vec::new(),
            answers = futures::future::join_all(reads) => answers,
        };
        for (w, answer) in work.iter_mut().zip(&answers) {
            w.state = state_of(answer);
            w.detail = read_detail(answer);
        }
        if work.iter().all(|w| w.state == goal) {
            let reason = "recovered from the journal: already at the goal everywhere";
            return (Outcome::Committed, Some(reason.to_string()), work);
        }
        let reason = "recovered from the journal: a killed run left the group unfinished";
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
            operation: self.operation,
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
        };
        log_outcome(&report);
        if let Some(journal) = self.journal {
            // An inconsistent group keeps its intent, so the next run with
            // the journal tries again to return it to its prior state.
            let recorded = self.intent_recorded.load(Ordering::Relaxed);
            if recorded && report.outcome != Outcome::Inconsistent {
                if let Err(error) = journal.outcome(self.group.as_str(), report.outcome).await {
                    tracing::error!(group_id = %self.group, error = %error, "cannot record the outcome in the journal; the next run will check the group again");
                }
            }
        }
        report
    }

    async fn execute(&self) -> (Outcome, Option<String>, Vec<NodeWork>) {
        let goal = goal_state(self.operation);
        let Some(mut work) = self.read_prior().await else {
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
            tracing::warn!(
                present,
                absent = work.len() - present,
                "pre-existing inconsistency: the group is on some nodes only; converging to the goal"
            );
        }
        if work.iter().all(|w| w.prior == goal) {
            return (Outcome::Committed, None, work);
        }
        if let Err(reason) = self.record_intent(&work).await {
            return (Outcome::RolledBack, Some(reason), work);
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
        let goal = goal_state(self.operation);
        self.roll_back(&mut work).await;
        let outcome = if work.iter().all(|w| w.state == w.prior) {
            Outcome::RolledBack
        } else if work.iter().all(|w| w.state == goal) {
            Outcome::Committed
        } else {
            Outcome::Inconsistent
        };
        (outcome, Some(reason), work)
    }

    /// Writes the intent before the first change; without a journal, there
    /// is nothing to write.
    async fn record_intent(&self, work: &[NodeWork]) -> Result<(), String> {
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
        };
        journal
            .intent(intent)
            .await
            .map_err(|e| format!("cannot record the intent, so no node was changed: {e}"))?;
        self.intent_recorded.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Reads every node; `None` when the run was aborted first.
    async fn read_prior(&self) -> Option<Vec<NodeWork>> {
        let abort = &self.control.abort;
        let reads = (0..self.client.node_count()).map(|i| self.client.read(i, self.group, abort));
        let answers = tokio::select! {
            biased;
            _ = self.control.kill.cancelled() => return None,
            answers = futures::future::join_all(reads) => answers,
        };
        if abort.is_cancelled() {
            return None;
        }
        Some(answers.into_iter().map(NodeWork::from_prior).collect())
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
                        _ = kill.cancelled() => (i, Step::at(NodeState::Unknown, Some(CUT_OFF.to_string()))),
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
                tracing::warn!(node, state = step.state.as_str(), reason = %why, "node did not reach the goal; rolling the group back");
                failure = Some(format!("{node}: {why}"));
                cancel.cancel();
            }
            if let Some(w) = work.get_mut(i) {
                w.state = step.state;
                w.detail = step.detail;
                if step.foreign {
                    w.prior = step.state;
                }
                if step.unchanged {
                    w.written = false;
                }
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
        match answer {
            WriteAnswer::Applied => Step::at(goal_state(self.operation), None),
            // Our only attempt was refused because the node was already at the
            // goal: someone else made that change after we read the node, so it
            // is not ours to undo.
            WriteAnswer::Unresolved {
                status: Some(status),
                detail,
            } if !attempts.earlier_maybe_applied && self.says_already_at_goal(status) => {
                tracing::warn!(
                    node = self.client.node_name(node),
                    status,
                    "node was already at the goal when our write arrived; another writer changed it since it was read, and a rollback will leave it as it is"
                );
                Step {
                    state: goal_state(self.operation),
                    detail: Some(format!(
                        "{detail}: already at the goal before this run's write (changed by another writer)"
                    )),
                    foreign: true,
                    unchanged: true,
                }
            }
            // Every attempt was refused unapplied (429, connection refused,
            // cancelled before sending): the node is still at its prior state.
            WriteAnswer::Unresolved { detail, .. } if !attempts.maybe_applied => Step {
                state: prior_state(self.operation),
                detail: Some(format!("{detail} (not applied)")),
                foreign: false,
                unchanged: true,
            },
            // The rollback reads the node back itself.
            WriteAnswer::Unresolved { detail, .. } if cancel.is_cancelled() => Step::at(
                NodeState::Unknown,
                Some(format!("{detail}; cancelled: the group is rolling back")),
            ),
            WriteAnswer::Unresolved { status, detail } => {
                let read = self.client.read(node, self.group, cancel).await;
                let state = state_of(&read);
                tracing::debug!(
                    node = self.client.node_name(node),
                    status,
                    attempts = attempts.count,
                    answer = %detail,
                    state = state.as_str(),
                    "write answer resolved by reading the node back"
                );
                let detail = match read_detail(&read) {
                    Some(read_failure) => format!("{detail}; {read_failure}"),
                    None => detail,
                };
                Step::at(state, Some(detail))
            }
        }
    }

    /// The answers a node gives when the write's goal already holds: `400`
    /// (or `409`) to a create, `404` (or `410`) to a delete.
    fn says_already_at_goal(&self, status: u16) -> bool {
        match self.operation {
            Operation::Create => matches!(status, 400 | 409),
            Operation::Delete => matches!(status, 404 | 410),
        }
    }

    /// Returns every node this run wrote to its prior state, as far as the
    /// `kill` token allows.
    async fn roll_back(&self, work: &mut [NodeWork]) {
        let kill = &self.control.kill;
        let mut pending: FuturesUnordered<_> = work
            .iter()
            .enumerate()
            .filter(|(_, w)| w.written && w.state != w.prior)
            .map(|(i, w)| {
                let record = w.record.clone();
                let known = w.state;
                async move {
                    tokio::select! {
                        biased;
                        _ = kill.cancelled() => (i, NodeState::Unknown, false, Some(CUT_OFF.to_string())),
                        (state, compensated, detail) = self.compensate(i, known, record) => (i, state, compensated, detail),
                    }
                }
            })
            .collect();
        while let Some((i, state, compensated, detail)) = pending.next().await {
            if let Some(w) = work.get_mut(i) {
                w.state = state;
                w.compensated |= compensated;
                if detail.is_some() {
                    w.detail = detail;
                }
            }
        }
    }

    async fn compensate(
        &self,
        node: usize,
        known: NodeState,
        record: Option<Value>,
    ) -> (NodeState, bool, Option<String>) {
        let name = self.client.node_name(node);
        let prior = prior_state(self.operation);
        let kill = &self.control.kill;
        let mut state = known;
        if state == NodeState::Unknown {
            state = state_of(&self.client.read(node, self.group, kill).await);
            if state == prior {
                return (state, false, None);
            }
        }
        tracing::info!(
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
        let state = match (&answer, state_of(&read)) {
            (_, NodeState::Present) => NodeState::Present,
            (_, NodeState::Absent) => NodeState::Absent,
            (WriteAnswer::Applied, NodeState::Unknown) => prior,
            (WriteAnswer::Unresolved { .. }, NodeState::Unknown) => NodeState::Unknown,
        };
        if state == prior {
            tracing::info!(
                node = name,
                attempts = attempts.count,
                state = state.as_str(),
                "compensated"
            );
            (state, true, None)
        } else {
            let detail = match (&answer, read_detail(&read)) {
                (WriteAnswer::Unresolved { detail, .. }, Some(read)) => {
                    format!("compensation failed: {detail}; {read}")
                }
                (WriteAnswer::Unresolved { detail, .. }, None) => {
                    format!("compensation failed: {detail}")
                }
                (WriteAnswer::Applied, _) => {
                    "compensation answered success but the node still holds the change".to_string()
                }
            };
            tracing::error!(node = name, attempts = attempts.count, state = state.as_str(), reason = %detail, "compensation failed");
            (state, true, Some(detail))
        }
    }
}

impl NodeWork {
    fn unread() -> Self {
        Self {
            prior: NodeState::Unknown,
            record: None,
            state: NodeState::Unknown,
            written: false,
            compensated: false,
            detail: None,
        }
    }

    fn from_prior(answer: ReadAnswer) -> Self {
        let prior = state_of(&answer);
        let detail = read_detail(&answer);
        let record = match answer {
            ReadAnswer::Present(record) => Some(record),
            _ => None,
        };
        Self {
            prior,
            record,
            state: prior,
            written: false,
            compensated: false,
            detail,
        }
    }
}

fn log_outcome(report: &GroupReport) {
    let outcome = report.outcome.as_str();
    let reason = report.reason.as_deref().unwrap_or("");
    let written = report.nodes.iter().filter(|n| n.written).count();
    let group_id = report.group_id.as_str();
    let operation = report.operation.as_str();
    match report.outcome {
        Outcome::Committed => tracing::info!(
            group_id,
            operation,
            outcome,
            nodes_written = written,
            duration_ms = report.duration_ms,
            "group committed"
        ),
        Outcome::RolledBack | Outcome::NotStarted => tracing::warn!(
            group_id,
            operation,
            outcome,
            reason,
            nodes_written = written,
            duration_ms = report.duration_ms,
            "group not applied; every node is at its prior state"
        ),
        Outcome::Inconsistent => {
            for node in report.diverged_nodes() {
                tracing::error!(
                    group_id,
                    operation,
                    node = node.node.as_str(),
                    prior = node.prior.as_str(),
                    state = node.final_state.as_str(),
                    detail = node.detail.as_deref().unwrap_or(""),
                    "node left inconsistent"
                );
            }
            tracing::error!(
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
