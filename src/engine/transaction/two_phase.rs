//! The transaction against nodes that speak the two-phase session protocol
//! (`NODE_PROTOCOL=two-phase`). docs/TWO_PHASE.md is the analysis of record:
//! the states a node can be in, which answers are ambiguous, and why these
//! rules keep I1–I4.
//!
//! 1. **Prior state**, as for standard nodes (read, or from the lists).
//! 2. **Prepare**: the first call of a new session `s` on every node that
//!    needs a change. A `200` on the only attempt is the intention; any other
//!    answer, and a `200` after an attempt that got none, is settled by
//!    reading the node.
//! 3. **Commit** once every such node holds the intention: the same call
//!    again, each confirmed by a read (a node that restarted since the
//!    prepare lost the intention, and the "commit" recorded a new one).
//! 4. **Undo** otherwise. There is no abort, so the session's own
//!    intentions are committed first, and every change of the session is
//!    then reversed through its undo session `u` (`s` with `-undo`
//!    appended), with the opposite call twice.
//!    A node where it is not known whether the session's intention is held is
//!    probed with the session's own call (docs/TWO_PHASE.md, "Undo").

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::rules::{outcome_of, Compensation, NodeWork};
use super::{Protocol, Transaction, TransactionOutcome, CUT_OFF, LOG_TARGET};
use crate::domain::NodeState;
use crate::engine::fan_out::{each_node, each_node_in_order};
use crate::node_api::{Attempts, Node, StepAnswer};

/// What one node holds of this transaction's session, as far as known.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hold {
    /// No call of the session went to the node: it was at the goal already.
    NotCalled,
    /// The node holds the session's intention.
    Intention,
    /// The node may hold the session's intention, or its commit: a call
    /// went unanswered, and no read could settle it.
    Unknown(String),
    /// The session's change is committed there (read back).
    Committed,
    /// At the goal through another writer; never undone.
    Foreign(String),
    /// Nothing of the session's is there: the node refused unapplied, or
    /// another session holds the group.
    Refused(String),
}

impl Hold {
    /// Whether the node lets the group commit: at the goal, or holding the
    /// intention that a commit carries out.
    fn ready(&self) -> bool {
        matches!(
            self,
            Hold::NotCalled | Hold::Intention | Hold::Committed | Hold::Foreign(_)
        )
    }

    /// Whether the node is where a commit leaves it: at the goal.
    fn done(&self) -> bool {
        matches!(self, Hold::NotCalled | Hold::Committed | Hold::Foreign(_))
    }

    fn detail(&self) -> Option<String> {
        match self {
            Hold::Unknown(d) | Hold::Foreign(d) | Hold::Refused(d) => Some(d.clone()),
            Hold::NotCalled | Hold::Intention | Hold::Committed => None,
        }
    }
}

/// A new session id: unguessable, and unique across runs and pods.
pub(super) fn new_session() -> String {
    format!(
        "api-consumer-{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

/// The two-phase protocol for one transaction: its session, and what each
/// node holds of it.
pub(super) struct TwoPhase {
    session: String,
    holds: Vec<Hold>,
}

impl TwoPhase {
    /// `session`, new (see [`new_session`]) or the one a killed run
    /// recorded in the journal.
    pub(super) fn of(session: String) -> Self {
        Self {
            session,
            holds: Vec::new(),
        }
    }
}

impl Protocol for TwoPhase {
    fn session(&self) -> Option<&str> {
        Some(&self.session)
    }

    /// Steps 2 and 3 for `work`, whose prior states are known and some of
    /// which differ from the goal; the intent is already in the journal.
    async fn apply(&mut self, tx: &Transaction<'_>, work: &mut [NodeWork]) -> Option<String> {
        let goal = tx.change.goal();
        let (abort, kill) = (&tx.control.abort, &tx.control.kill);
        self.holds = vec![Hold::NotCalled; work.len()];
        let session = &self.session;
        let cut_off = || Hold::Unknown(CUT_OFF.to_string());
        let prepares = tx.steps(
            work,
            |_, w| w.prior != goal,
            |_, node, _| tx.prepare(node, session, abort),
        );
        for w in work.iter_mut().filter(|w| w.prior != goal) {
            w.written = true;
        }
        record(
            &mut self.holds,
            each_node(kill, prepares, cut_off).collect().await,
        );
        let failure = tx.first_failure(&self.holds, "prepare", Hold::ready);
        if failure.is_some() || abort.is_cancelled() {
            return failure;
        }
        let holds = &self.holds;
        let intention = |i: usize, _: &NodeWork| holds.get(i) == Some(&Hold::Intention);
        let commits = tx.steps(work, intention, |_, node, _| {
            tx.commit(node, session, abort)
        });
        record(
            &mut self.holds,
            each_node(kill, commits, cut_off).collect().await,
        );
        let failure = tx.first_failure(&self.holds, "commit", Hold::done);
        if failure.is_none() {
            for (w, hold) in work.iter_mut().zip(&self.holds) {
                settle(w, hold, goal);
            }
        }
        failure
    }

    /// Step 4: every node back to its prior state, from what it holds.
    async fn undo(
        &mut self,
        tx: &Transaction<'_>,
        work: &mut [NodeWork],
        reason: &str,
    ) -> TransactionOutcome {
        let goal = tx.change.goal();
        tracing::warn!(target: LOG_TARGET, reason = %reason, "two-phase: the group cannot commit everywhere; undoing this session's changes");
        let session = &self.session;
        let holds = &self.holds;
        let undos = tx.steps(
            work,
            |_, _| true,
            |i, node, w| {
                tx.undo_node(
                    node,
                    holds.get(i).unwrap_or(&Hold::NotCalled),
                    w.prior,
                    session,
                )
            },
        );
        let cut_off = || Compensation::CutOff(CUT_OFF.to_string());
        let undone = each_node_in_order(&tx.control.kill, undos, cut_off).await;
        for ((w, hold), done) in work.iter_mut().zip(&self.holds).zip(undone) {
            match hold {
                // Another writer's change: the node's state is now its.
                Hold::Foreign(_) => {
                    w.prior = goal;
                    w.written = false;
                }
                Hold::Refused(_) | Hold::NotCalled => w.written = false,
                Hold::Intention | Hold::Unknown(_) | Hold::Committed => {}
            }
            w.compensate(done);
            if w.detail.is_none() {
                w.detail = hold.detail();
            }
        }
        outcome_of(work, goal)
    }

    /// Recovery from the journal: every node the killed run meant to change
    /// may hold the session's intention, which no read can see. Each is
    /// released, and reversed where the change is there, so that the group
    /// ends at its prior state; the outcome says where it did. (Intentions
    /// are invisible to reads, so even a group that reads at its goal
    /// everywhere may hold one, a half-done undo's.)
    async fn recover(
        &mut self,
        tx: &Transaction<'_>,
        work: &mut [NodeWork],
    ) -> (TransactionOutcome, &'static str) {
        let goal = tx.change.goal();
        let kill = &tx.control.kill;
        let session = &self.session;
        let releases = tx.steps(
            work,
            |_, w| w.prior != goal,
            |_, node, _| tx.release(node, session, kill),
        );
        let cut_off = || Compensation::CutOff(CUT_OFF.to_string());
        let mut released = each_node(kill, releases, cut_off);
        while let Some((i, done)) = released.next().await {
            if let Some(w) = work.get_mut(i) {
                w.compensate(done);
            }
        }
        let outcome = if work.iter().all(|w| w.state == w.prior) {
            TransactionOutcome::RolledBack
        } else {
            TransactionOutcome::Inconsistent
        };
        let reason = "recovered from the journal: a killed run left the group unfinished";
        (outcome, reason)
    }
}

impl Transaction<'_> {
    /// The first node whose hold fails `ok` at `step`, named with why.
    fn first_failure(&self, holds: &[Hold], step: &str, ok: fn(&Hold) -> bool) -> Option<String> {
        let (i, hold) = holds.iter().enumerate().find(|(_, h)| !ok(h))?;
        let why = hold.detail().unwrap_or_else(|| "not committed".into());
        let node = self.nodes().get(i).map_or("?", Node::name);
        Some(format!("{node}: {step}: {why}"))
    }

    /// Reads the node; `None` when the read failed.
    async fn read_state(&self, node: &Node, cancel: &CancellationToken) -> Option<NodeState> {
        let state = self.read(node, cancel).await.state();
        (state != NodeState::Unknown).then_some(state)
    }

    /// Step 2 on one node.
    async fn prepare(&self, node: &Node, session: &str, cancel: &CancellationToken) -> Hold {
        let (answer, attempts) = self.session_call(node, self.change, session, cancel).await;
        let hold = match answer {
            StepAnswer::Accepted if !attempts.earlier_maybe_applied => Hold::Intention,
            // A resend of a recorded first call is the commit.
            answer => {
                let what = "prepared after a lost answer";
                let hold = self.answered(node, answer, &attempts, what, cancel).await;
                hold.unwrap_or_else(Hold::Refused)
            }
        };
        tracing::debug!(target: LOG_TARGET, node = node.name(), attempts = attempts.count, hold = ?hold, "two-phase: prepared");
        hold
    }

    /// What the node holds after a prepare or commit answered `answer`: an
    /// accepted call may have been the first or the second of the session,
    /// and the read says which (`what` names the call for a failed read); a
    /// refused one is read too. `Err` is a failure that did not apply.
    async fn answered(
        &self,
        node: &Node,
        answer: StepAnswer,
        attempts: &Attempts,
        what: &str,
        cancel: &CancellationToken,
    ) -> Result<Hold, String> {
        let refused = match answer {
            StepAnswer::Accepted => {
                return Ok(match self.read_state(node, cancel).await {
                    Some(state) if state == self.change.goal() => Hold::Committed,
                    Some(_) => Hold::Intention,
                    None => Hold::Unknown(format!("{what}, and the read failed")),
                })
            }
            StepAnswer::Conflict { detail } => detail,
            StepAnswer::Absent => "the group is absent".into(),
            StepAnswer::Failed { detail, .. } if attempts.maybe_applied => {
                return Ok(Hold::Unknown(detail))
            }
            StepAnswer::Failed { detail, .. } => return Err(detail),
        };
        Ok(self.refused(node, attempts, refused, cancel).await)
    }

    /// A prepare or commit refused (`409`, or `404` to a delete): the read
    /// says whether the node is at the goal (this session's resend, or
    /// another writer) or held by another session.
    async fn refused(
        &self,
        node: &Node,
        attempts: &Attempts,
        detail: String,
        cancel: &CancellationToken,
    ) -> Hold {
        let goal = self.change.goal();
        match self.read_state(node, cancel).await {
            // After an attempt that got no answer, the session's own resend
            // carried the change out (the single-writer assumption).
            Some(state) if state == goal && attempts.earlier_maybe_applied => Hold::Committed,
            Some(state) if state == goal => Hold::Foreign(format!(
                "already {} through another writer ({detail})",
                goal.as_str()
            )),
            Some(_) => Hold::Refused(format!("held by another session ({detail})")),
            None => Hold::Unknown(format!("refused ({detail}), and the read failed")),
        }
    }

    /// Step 3 on one node holding the intention: the same call again, read
    /// back. A node that lost the intention (a restart) records a new one,
    /// which one more call commits.
    async fn commit(&self, node: &Node, session: &str, cancel: &CancellationToken) -> Hold {
        for _ in 0..2 {
            let (answer, attempts) = self.session_call(node, self.change, session, cancel).await;
            match self
                .answered(node, answer, &attempts, "committed", cancel)
                .await
            {
                Ok(Hold::Intention) => {}
                Ok(hold) => return hold,
                // Not applied: the intention is still held.
                Err(detail) => {
                    tracing::warn!(target: LOG_TARGET, node = node.name(), reason = %detail, "two-phase: commit refused unapplied");
                    return Hold::Unknown(format!("commit failed: {detail}"));
                }
            }
        }
        Hold::Unknown("the commit recorded an intention again".into())
    }

    /// Step 4 on one node: back to its prior state, from what it holds.
    async fn undo_node(
        &self,
        node: &Node,
        hold: &Hold,
        prior: NodeState,
        session: &str,
    ) -> Compensation {
        let kill = &self.control.kill;
        match hold {
            // Nothing of this session's is there.
            Hold::NotCalled | Hold::Refused(_) => Compensation::NotNeeded(prior),
            Hold::Foreign(_) => Compensation::NotNeeded(self.change.goal()),
            Hold::Committed => self.reverse(node, session, kill).await,
            Hold::Intention | Hold::Unknown(_) => self.release(node, session, kill).await,
        }
    }

    /// Releases an intention the node holds, or may hold. There is no abort:
    /// the session's own call carries it out, and the change is reversed. A
    /// node that held nothing records an intention at that call where the
    /// group allows it; one more call commits that, and it is reversed too.
    async fn release(&self, node: &Node, session: &str, kill: &CancellationToken) -> Compensation {
        // A late call of the session landing after this one would carry it
        // a step further than the reads say.
        if !self.wait_out(node, kill).await {
            return Compensation::CutOff(CUT_OFF.to_string());
        }
        let goal = self.change.goal();
        let mut last = String::new();
        let mut state = None;
        for _ in 0..3 {
            let (answer, attempts) = self.session_call(node, self.change, session, kill).await;
            state = self.read_state(node, kill).await;
            // The read waited until a call whose answer was lost had landed
            // or never would: where it landed, it was a step like any other.
            let lost = attempts.settles_at.is_some();
            match (&answer, state) {
                (_, Some(now)) if now == goal => return self.reverse(node, session, kill).await,
                (StepAnswer::Accepted, Some(_)) => {}
                (StepAnswer::Failed { .. }, Some(_)) if lost => {}
                // Refused, and not at the goal: nothing of this session's is
                // left on the node.
                (StepAnswer::Conflict { .. } | StepAnswer::Absent, Some(now)) => {
                    return Compensation::Undone(now)
                }
                (answer, _) => {
                    last = answer.to_string();
                    break;
                }
            }
        }
        // Intentions are invisible to reads: whatever a read shows, the node
        // is not known to be back at its prior state.
        let why = may_hold(session, state.map_or("unknown", NodeState::as_str), &last);
        tracing::error!(target: LOG_TARGET, node = node.name(), reason = %why, "two-phase: cannot release the session's intention");
        Compensation::Failed {
            state: NodeState::Unknown,
            detail: why,
        }
    }

    /// Reverses a committed change through the undo session: the opposite
    /// call twice, then a read. The undo session is the forward one's id with
    /// `-undo` appended, so that a later run that releases the forward
    /// session also completes an undo a killed run left half-done: the first
    /// opposite call then commits that undo's intention.
    async fn reverse(
        &self,
        node: &Node,
        session: &str,
        cancel: &CancellationToken,
    ) -> Compensation {
        let undo = format!("{session}-undo");
        let opposite = self.change.opposite();
        let name = node.name();
        tracing::info!(target: LOG_TARGET, node = name, session = %undo, "two-phase: undoing this session's change");
        let mut last = String::new();
        // Whether an intention of the undo session may now be held: the
        // node may have applied one of its calls.
        let mut maybe_held = false;
        for _ in 0..2 {
            // Each call leaves once the one before can no longer land after
            // it.
            if !self.wait_out(node, cancel).await {
                return Compensation::CutOff(CUT_OFF.to_string());
            }
            let (answer, attempts) = self.session_call(node, opposite, &undo, cancel).await;
            let accepted = matches!(answer, StepAnswer::Accepted);
            maybe_held |= accepted || attempts.maybe_applied;
            last = answer.to_string();
            // A call whose answer was lost may have been the first: the
            // second is sent all the same.
            if !accepted && attempts.settles_at.is_none() {
                break;
            }
        }
        let state = self.read(node, cancel).await.state();
        if state == self.change.changed_from() {
            tracing::info!(target: LOG_TARGET, node = name, state = state.as_str(), "compensated");
            return Compensation::Undone(state);
        }
        let reads = state.as_str();
        // An intention is invisible: a node that reads as the goal may hold
        // the undo's intention, so it is not known to be at the goal either.
        let (state, detail) = if maybe_held {
            (NodeState::Unknown, may_hold(&undo, reads, &last))
        } else {
            let why = format!("undo through session {undo} left the node {reads}: {last}");
            (state, why)
        };
        tracing::error!(target: LOG_TARGET, node = name, reason = %detail, "compensation failed");
        Compensation::Failed { state, detail }
    }
}

/// Why a node is not known to be back at its prior state: it may hold an
/// intention of `session`, which no read shows.
fn may_hold(session: &str, reads: &str, last: &str) -> String {
    format!("may still hold an intention of session {session} (reads {reads}; last answer {last})")
}

/// Records what each node named by index now holds.
fn record(holds: &mut [Hold], now: Vec<(usize, Hold)>) {
    for (i, hold) in now {
        if let Some(slot) = holds.get_mut(i) {
            *slot = hold;
        }
    }
}

/// The node's final record after a commit.
fn settle(work: &mut NodeWork, hold: &Hold, goal: NodeState) {
    match hold {
        Hold::NotCalled => {}
        Hold::Committed => work.state = goal,
        Hold::Foreign(detail) => {
            work.state = goal;
            work.prior = goal;
            work.written = false;
            work.detail = Some(detail.clone());
        }
        Hold::Intention | Hold::Unknown(_) | Hold::Refused(_) => {}
    }
}
