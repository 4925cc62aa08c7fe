//! A run: many groups, each its own [`Transaction`], under the run's limits.
//!
//! Groups start in input order while fewer than `CONCURRENCY` are in flight
//! (per-node limits live in the client). The run's life has three stages
//! (BRIEF I4), driven by [`Control`]:
//!
//! - **stop** at `RUN_TIMEOUT_SECS` or the first SIGTERM/SIGINT: no new group
//!   starts; the groups not started are reported [`Outcome::NotStarted`];
//! - **abort** a quarter of `ROLLBACK_TIMEOUT_SECS` later (or at a second
//!   signal): groups still applying give up and roll back;
//! - **kill** at `ROLLBACK_TIMEOUT_SECS` after the stop: whatever is still
//!   running is cut off and reported with its nodes in doubt.
//!
//! So the process always ends within `RUN_TIMEOUT_SECS +
//! ROLLBACK_TIMEOUT_SECS` plus one request timeout.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::{NodeClient, NodeStatsSnapshot};
use crate::config::{GroupId, Operation};
use crate::journal::Journal;
use crate::transaction::{Control, GroupReport, Outcome, StopReason, Transaction};

/// Limits of one run.
#[derive(Debug, Clone, Copy)]
pub struct RunSettings {
    pub concurrency: usize,
    pub run_timeout: Duration,
    pub rollback_timeout: Duration,
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
}

impl From<ExitStatus> for u8 {
    fn from(status: ExitStatus) -> u8 {
        status as u8
    }
}

/// Number of groups per outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub groups: u64,
    pub committed: u64,
    pub rolled_back: u64,
    pub inconsistent: u64,
    pub not_started: u64,
}

impl Totals {
    fn add(&mut self, outcome: Outcome) {
        self.groups += 1;
        match outcome {
            Outcome::Committed => self.committed += 1,
            Outcome::RolledBack => self.rolled_back += 1,
            Outcome::Inconsistent => self.inconsistent += 1,
            Outcome::NotStarted => self.not_started += 1,
        }
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

/// What a run did: the totals, and the detail of every group not committed.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub operation: Operation,
    pub started_at: String,
    pub duration_ms: u64,
    pub exit_code: ExitStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
    pub totals: Totals,
    pub nodes: Vec<NodeStatsSnapshot>,
    /// Every group whose outcome is not `committed`.
    pub groups: Vec<GroupReport>,
    /// Groups a killed run left unfinished, resolved from the journal before
    /// this run's own groups (not counted in `totals`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recovered: Vec<GroupReport>,
}

/// Runs every group and returns the report. Committed groups are counted,
/// not kept, so memory follows the groups in flight and the failures.
/// The stages of `control` are driven by [`supervise`], which the caller
/// starts (so that it also covers the journal's recovery).
pub async fn run_groups(
    client: Arc<NodeClient>,
    ids: impl IntoIterator<Item = GroupId>,
    operation: Operation,
    settings: RunSettings,
    control: Arc<Control>,
    journal: Option<Arc<Journal>>,
) -> RunReport {
    let started = Instant::now();
    let started_at = crate::telemetry::rfc3339(SystemTime::now());
    let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut running = JoinSet::new();
    let mut totals = Totals::default();
    let mut failed = Vec::new();
    let mut ids = ids.into_iter();

    for id in ids.by_ref() {
        let slot = tokio::select! {
            biased;
            _ = control.stop.cancelled() => None,
            slot = slots.clone().acquire_owned() => slot.ok(),
        };
        let Some(slot) = slot.filter(|_| !control.stop.is_cancelled()) else {
            skip(id, operation, &mut totals, &mut failed);
            break;
        };
        while let Some(done) = running.try_join_next() {
            collect(done, &mut totals, &mut failed);
        }
        if let Some(failure) = client.tls_failure() {
            if !control.stop.is_cancelled() {
                tracing::error!(
                    reason = failure,
                    "a node's TLS certificate was rejected; no new group starts"
                );
                control.stop(StopReason::Certificate);
            }
            drop(slot);
            skip(id, operation, &mut totals, &mut failed);
            break;
        }
        let (client, control, journal) = (client.clone(), control.clone(), journal.clone());
        running.spawn(async move {
            let report = Transaction::new(&client, &id, operation, &control)
                .with_journal(journal.as_deref())
                .run()
                .await;
            drop(slot);
            report
        });
    }
    for id in ids {
        skip(id, operation, &mut totals, &mut failed);
    }
    while let Some(done) = running.join_next().await {
        collect(done, &mut totals, &mut failed);
    }
    RunReport {
        operation,
        started_at,
        duration_ms: started.elapsed().as_millis() as u64,
        exit_code: totals.exit_status(),
        stop_reason: control.reason(),
        totals,
        nodes: client.stats(),
        groups: failed,
        recovered: Vec::new(),
    }
}

/// Records a group the run stopped before starting.
fn skip(id: GroupId, operation: Operation, totals: &mut Totals, failed: &mut Vec<GroupReport>) {
    totals.add(Outcome::NotStarted);
    failed.push(GroupReport {
        group_id: id,
        operation,
        outcome: Outcome::NotStarted,
        reason: Some("not attempted: the run stopped first".to_string()),
        duration_ms: 0,
        nodes: Vec::new(),
    });
}

fn collect(
    done: Result<GroupReport, tokio::task::JoinError>,
    totals: &mut Totals,
    failed: &mut Vec<GroupReport>,
) {
    match done {
        Ok(report) => {
            totals.add(report.outcome);
            if report.outcome != Outcome::Committed {
                failed.push(report);
            }
        }
        Err(error) => {
            // A panicking transaction may have left nodes in any state: count
            // it as inconsistent so the exit code never understates it.
            tracing::error!(error = %error, "a group's transaction panicked");
            totals.add(Outcome::Inconsistent);
        }
    }
}

/// Escalates from stop to abort to kill on the run's clock, from now on;
/// abort the returned task when the run is over.
pub fn supervise(control: Arc<Control>, settings: RunSettings) -> tokio::task::JoinHandle<()> {
    tokio::spawn(escalate(control, settings))
}

async fn escalate(control: Arc<Control>, settings: RunSettings) {
    tokio::select! {
        _ = tokio::time::sleep(settings.run_timeout) => {
            tracing::warn!(run_timeout_secs = settings.run_timeout.as_secs(), "run deadline reached; no new group starts");
            control.stop(StopReason::Deadline);
        }
        _ = control.stop.cancelled() => {}
    }
    let stopped = tokio::time::Instant::now();
    tokio::select! {
        _ = tokio::time::sleep_until(stopped + settings.rollback_timeout / 4) => {
            tracing::warn!("groups still applying now roll back");
            control.abort.cancel();
        }
        _ = control.abort.cancelled() => {}
    }
    tokio::time::sleep_until(stopped + settings.rollback_timeout).await;
    tracing::error!(
        rollback_timeout_secs = settings.rollback_timeout.as_secs(),
        "shutdown budget spent; cutting off what is still running"
    );
    control.kill.cancel();
}
