//! The all-or-nothing transaction for one group on every node. The
//! semantics of record are docs/TRANSACTIONS.md; the per-node decisions are
//! pure functions in `rules.rs`, table-tested there; how the nodes take a
//! change is the `Protocol`: `standard.rs` (one call per change) or
//! `two_phase.rs` (an intention, then its commit).
//!
//! # The flow
//!
//! For group `G` and a change whose goal is "present everywhere" (create)
//! or "absent everywhere" (delete), [`Transaction::run`]:
//!
//! 1. **Prior state.** Learns every node's state before anything changes:
//!    read, or taken from the run's node lists where they tell it (see
//!    [`crate::engine::prior`]). A node whose state cannot be read stops the
//!    transaction before any write: no node is changed, the outcome is
//!    rolled back with the reason. For delete, the record each node returned
//!    (or listed) is kept so a rollback can restore it exactly.
//! 2. **Intent.** With a journal, records the prior states before the first
//!    write.
//! 3. **Apply** (`Protocol::apply`) only on nodes whose prior state
//!    differs from the goal, all concurrently. The expected success settles
//!    a node; any other answer — a `400` on create, a `404` on delete, a
//!    timeout after the request left, a `5xx`, retries exhausted — is
//!    resolved by reading the node back, never by guessing.
//! 4. **Commit** when every node is at the goal.
//! 5. **Undo** (`Protocol::undo`) otherwise: the first node that cannot
//!    reach the goal cancels the group's remaining requests; every node this
//!    run wrote to and that is not known to be at its prior state is
//!    returned to it, and read back.
//!
//! # The invariants this module guarantees
//!
//! - **I1 all-or-nothing:** the outcome is committed (every node at the
//!   goal), rolled back (every node at its prior state) or inconsistent.
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
mod settle;
mod standard;
mod two_phase;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tracing::Instrument;

use self::rules::NodeWork;
use self::settle::Windows;
use self::standard::Standard;
use self::two_phase::TwoPhase;
use super::control::Control;
use super::fan_out::{each_node_in_order, read_nodes};
use super::prior::{listed_prior, GroupPriors};
use crate::domain::{
    Change, GroupId, GroupReport, NodeDetail, NodeProtocol, NodeState, Outcome, Task,
};
use crate::node_api::{Node, NodeClient, ReadAnswer};
use crate::output::journal::{Intent, IntentNode, Journal};

/// The target these log lines carry, which `LOG_LEVEL` directives name
/// (`api_consumer::transaction=debug`): part of the log interface.
const LOG_TARGET: &str = "api_consumer::transaction";

const CUT_OFF: &str = "cut off by the shutdown budget (ROLLBACK_TIMEOUT_SECS)";

/// How a transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionOutcome {
    /// Every node is at the goal (including "already there").
    Committed,
    /// Every node is at its prior state.
    RolledBack,
    /// Some node is at neither; the report names it.
    Inconsistent,
    /// The run stopped before the group was attempted.
    NotStarted,
}

impl From<TransactionOutcome> for Outcome {
    fn from(outcome: TransactionOutcome) -> Outcome {
        match outcome {
            TransactionOutcome::Committed => Outcome::Committed,
            TransactionOutcome::RolledBack => Outcome::RolledBack,
            TransactionOutcome::Inconsistent => Outcome::Inconsistent,
            TransactionOutcome::NotStarted => Outcome::NotStarted,
        }
    }
}

/// How the nodes take a change: what the transaction calls to apply it and
/// to undo it.
trait Protocol {
    /// The session the journal records with the intent, so that a later run
    /// can release its intentions (two-phase only).
    fn session(&self) -> Option<&str>;

    /// Step 3: changes every node whose prior state differs from the goal;
    /// returns the first failure (`None` also when the run aborted first).
    async fn apply(&mut self, tx: &Transaction<'_>, work: &mut [NodeWork]) -> Option<String>;

    /// Step 5: returns every node this run changed to its prior state, as
    /// far as the run's kill allows, and names the outcome; `reason` is why
    /// the group did not commit.
    async fn undo(
        &mut self,
        tx: &Transaction<'_>,
        work: &mut [NodeWork],
        reason: &str,
    ) -> TransactionOutcome;

    /// Resolves an intent a killed run left in the journal, with `work`
    /// read back from the nodes.
    async fn recover(
        &mut self,
        tx: &Transaction<'_>,
        work: &mut [NodeWork],
    ) -> (TransactionOutcome, &'static str);
}

/// What a transaction came to: its outcome, why, and every node's part.
type Ended = (TransactionOutcome, Option<String>, Vec<NodeWork>);

/// One group's transaction over every node of `client`.
pub struct Transaction<'a> {
    client: &'a NodeClient,
    group: &'a GroupId,
    change: Change,
    control: &'a Control,
    journal: Option<&'a Journal>,
    /// Whether the journal holds an intent of this group awaiting its outcome.
    intent_recorded: AtomicBool,
    /// Where a write whose answer was lost may still land (see `settle.rs`).
    windows: Windows,
}

impl<'a> Transaction<'a> {
    pub fn new(
        client: &'a NodeClient,
        group: &'a GroupId,
        change: Change,
        control: &'a Control,
        journal: Option<&'a Journal>,
    ) -> Self {
        Self {
            client,
            group,
            change,
            control,
            journal,
            intent_recorded: AtomicBool::new(false),
            windows: Windows::new(client.nodes().len()),
        }
    }

    fn nodes(&self) -> &'a [Node] {
        self.client.nodes()
    }

    /// The step of every node whose work `pick` selects, with the node's
    /// index, for [`crate::engine::fan_out::each_node`].
    fn steps<'w, F>(
        &self,
        work: &'w [NodeWork],
        pick: impl Fn(usize, &NodeWork) -> bool,
        step: impl Fn(usize, &'a Node, &'w NodeWork) -> F,
    ) -> Vec<(usize, F)> {
        let nodes = self.nodes().iter().zip(work).enumerate();
        let picked = nodes.filter(|(i, (_, w))| pick(*i, w));
        picked.map(|(i, (node, w))| (i, step(i, node, w))).collect()
    }

    /// Runs the transaction to one of its outcomes and logs it: `priors`
    /// are the group's prior states from the node lists, where they tell
    /// it; the other nodes are read.
    pub async fn run(self, protocol: NodeProtocol, priors: Option<GroupPriors>) -> GroupReport {
        let operation = self.change.as_str();
        let span = tracing::info_span!("group", group_id = %self.group, operation);
        let started = Instant::now();
        let ended = match protocol {
            NodeProtocol::Standard => self.execute(Standard, priors).instrument(span).await,
            NodeProtocol::TwoPhase => {
                let two_phase = TwoPhase::of(two_phase::new_session());
                self.execute(two_phase, priors).instrument(span).await
            }
        };
        self.report(started, ended).await
    }

    /// Resolves an intent a killed run left in the journal: the nodes are
    /// read back; a group at its goal everywhere is committed, any other is
    /// rolled back to the recorded prior state. `self`'s client must hold
    /// the intent's nodes in the intent's order. With `session`, the nodes
    /// speak the two-phase protocol and may hold that session's intentions
    /// (docs/TWO_PHASE.md, "The journal"). A write the killed run sent may
    /// land until `lands_by`: no node it wrote to is read before then.
    pub async fn recover(
        self,
        nodes: &[IntentNode],
        session: Option<&str>,
        lands_by: tokio::time::Instant,
    ) -> GroupReport {
        let goal = self.change.goal();
        for (index, _) in nodes.iter().enumerate().filter(|(_, n)| n.prior != goal) {
            self.windows.open(index, lands_by, None);
        }
        let operation = self.change.as_str();
        let span = tracing::info_span!("recovery", group_id = %self.group, operation);
        let started = Instant::now();
        self.intent_recorded.store(true, Ordering::Relaxed);
        let ended = match session {
            None => self.resolve(nodes, Standard).instrument(span).await,
            Some(session) => {
                let two_phase = TwoPhase::of(session.to_owned());
                self.resolve(nodes, two_phase).instrument(span).await
            }
        };
        self.report(started, ended).await
    }

    async fn resolve(&self, nodes: &[IntentNode], mut protocol: impl Protocol) -> Ended {
        let goal = self.change.goal();
        let mut work: Vec<NodeWork> = nodes
            .iter()
            .map(|n| NodeWork {
                written: n.prior != goal,
                state: NodeState::Unknown,
                ..NodeWork::listed(n.prior, n.record.clone())
            })
            .collect();
        let kill = &self.control.kill;
        let reads = self
            .nodes()
            .iter()
            .map(|node| async { Some(self.read(node, kill).await) })
            .enumerate()
            .collect();
        let answers = each_node_in_order(kill, reads, || None::<ReadAnswer>).await;
        for (w, answer) in work.iter_mut().zip(answers) {
            if let Some(answer) = answer {
                w.state = answer.state();
                w.detail = answer.failure();
            }
        }
        let (outcome, reason) = protocol.recover(self, &mut work).await;
        (outcome, Some(reason.to_string()), work)
    }

    async fn execute(&self, mut protocol: impl Protocol, priors: Option<GroupPriors>) -> Ended {
        let goal = self.change.goal();
        let Some(mut work) = self.read_prior(priors).await else {
            let work = self.nodes().iter().map(|_| NodeWork::unread()).collect();
            let reason = Some(self.control.stop_detail());
            return (TransactionOutcome::NotStarted, reason, work);
        };
        let mut nodes = self.nodes().iter().zip(&work);
        if let Some((node, w)) = nodes.find(|(_, w)| w.prior == NodeState::Unknown) {
            let reason = format!(
                "prior state of {} could not be read ({}); no node was changed",
                node.name(),
                w.detail.as_deref().unwrap_or("unknown")
            );
            return (TransactionOutcome::RolledBack, Some(reason), work);
        }
        let present = work
            .iter()
            .filter(|w| w.prior == NodeState::Present)
            .count();
        if present != 0 && present != work.len() {
            let absent = work.len() - present;
            tracing::warn!(target: LOG_TARGET, present, absent, "pre-existing inconsistency: the group is on some nodes only; converging to the goal");
        }
        if work.iter().all(|w| w.prior == goal) {
            return (TransactionOutcome::Committed, None, work);
        }
        if let Err(reason) = self.record_intent(&work, protocol.session()).await {
            return (TransactionOutcome::RolledBack, Some(reason), work);
        }
        let failure = protocol.apply(self, &mut work).await;
        if work.iter().all(|w| w.state == goal) {
            return (TransactionOutcome::Committed, None, work);
        }
        let reason = failure.unwrap_or_else(|| self.control.stop_detail());
        let outcome = protocol.undo(self, &mut work, &reason).await;
        (outcome, Some(reason), work)
    }

    /// Every node's prior state: from the lists where they tell it (see
    /// [`crate::engine::prior`]), read otherwise; `None` when the run was
    /// aborted first.
    async fn read_prior(&self, priors: Option<GroupPriors>) -> Option<Vec<NodeWork>> {
        let deleting = self.change == Change::Delete;
        let mut listed = priors.unwrap_or_default().into_iter();
        let known: Vec<Option<NodeWork>> = self
            .nodes()
            .iter()
            .map(|_| listed_prior(listed.next().flatten(), deleting))
            .map(|known| known.map(|(state, record)| NodeWork::listed(state, record)))
            .collect();
        let unknown = |index: usize| known.get(index).is_some_and(Option::is_none);
        let mut answers = read_nodes(self.client, self.group, unknown, self.control)
            .await?
            .into_iter();
        known
            .into_iter()
            .map(|known| known.or_else(|| answers.next().map(NodeWork::from_prior)))
            .collect()
    }

    /// Writes the intent before the first change; without a journal, there
    /// is nothing to write.
    async fn record_intent(&self, work: &[NodeWork], session: Option<&str>) -> Result<(), String> {
        let Some(journal) = self.journal else {
            return Ok(());
        };
        let intent = Intent {
            group_id: self.group.as_str().to_string(),
            operation: self.change,
            nodes: self
                .nodes()
                .iter()
                .zip(work)
                .map(|(node, w)| IntentNode {
                    node: node.name().to_string(),
                    prior: w.prior,
                    record: w.record.clone(),
                })
                .collect(),
            session: session.map(str::to_owned),
        };
        journal
            .intent(intent)
            .await
            .map_err(|e| format!("cannot record the intent, so no node was changed: {e}"))?;
        self.intent_recorded.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn report(&self, started: Instant, (outcome, reason, work): Ended) -> GroupReport {
        let nodes = self.nodes().iter().zip(work).map(|(node, w)| NodeDetail {
            node: node.name().to_string(),
            prior: w.prior,
            final_state: w.state,
            written: w.written,
            compensated: w.compensated,
            detail: w.detail,
        });
        let task = Task::Apply(self.change);
        let ended = (outcome.into(), reason);
        let mut report = GroupReport::new(self.group, task, ended, started, nodes.collect());
        report.unsettled = self.windows.unsettled();
        log_outcome(&report, outcome);
        if let Some(journal) = self.journal {
            // An inconsistent group keeps its intent, so the next run with
            // the journal tries again to return it to its prior state; so
            // does one with a node still unsettled, until the run has read
            // it once more.
            let recorded = self.intent_recorded.load(Ordering::Relaxed);
            let settled = report.unsettled.is_empty();
            if recorded && settled && outcome != TransactionOutcome::Inconsistent {
                if let Err(error) = journal.outcome(self.group.as_str(), report.outcome).await {
                    tracing::error!(target: LOG_TARGET, group_id = %self.group, error_message = %error, "cannot record the outcome in the journal; the next run will check the group again");
                }
            }
        }
        report
    }
}

fn log_outcome(report: &GroupReport, outcome: TransactionOutcome) {
    let (group_id, operation) = (report.group_id.as_str(), report.operation.as_str());
    let (outcome_name, duration_ms) = (report.outcome.to_string(), report.duration_ms);
    let reason = report.reason.as_deref().unwrap_or("");
    let nodes_written = report.nodes.iter().filter(|n| n.written).count();
    match outcome {
        TransactionOutcome::Committed => tracing::info!(target: LOG_TARGET, group_id, operation,
            outcome = outcome_name, nodes_written, duration_ms, "group committed"),
        TransactionOutcome::RolledBack | TransactionOutcome::NotStarted => tracing::warn!(
            target: LOG_TARGET, group_id, operation, outcome = outcome_name, reason, nodes_written,
            duration_ms, "group not applied; every node is at its prior state"),
        TransactionOutcome::Inconsistent => {
            for node in report.diverged_nodes() {
                tracing::error!(target: LOG_TARGET, group_id, operation, node = node.node.as_str(),
                    prior = node.prior.as_str(), state = node.final_state.as_str(),
                    detail = node.detail.as_deref().unwrap_or(""), "node left inconsistent");
            }
            tracing::error!(target: LOG_TARGET, group_id, operation, outcome = outcome_name,
                reason, duration_ms,
                "group inconsistent: some nodes are at neither the goal nor their prior state");
        }
    }
}
