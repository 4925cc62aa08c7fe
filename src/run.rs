//! A run: many groups, each its own [`Transaction`], under the run's limits.
//!
//! Groups start in list order while fewer than `CONCURRENCY` are in flight
//! (per-node limits live in the client), until the list ends, the run stops
//! or `MAX_FAILED_GROUPS` groups have failed. The run's life has three stages
//! (BRIEF I4), driven by [`Control`]:
//!
//! - **stop** at `RUN_TIMEOUT_SECS` or the first SIGTERM/SIGINT: no new group
//!   starts; the entries not started are reported as [`NotAttempted`];
//! - **abort** a quarter of `ROLLBACK_TIMEOUT_SECS` later (or at a second
//!   signal): groups still applying give up and roll back;
//! - **kill** at `ROLLBACK_TIMEOUT_SECS` after the stop: whatever is still
//!   running is cut off and reported with its nodes in doubt.
//!
//! So the process always ends within `RUN_TIMEOUT_SECS +
//! ROLLBACK_TIMEOUT_SECS` plus one request timeout.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::task::JoinSet;

use crate::client::{NodeClient, NodeStatsSnapshot, RequestTotals};
use crate::config::{GroupId, Operation};
use crate::ids::{GroupIds, Position};
use crate::journal::Journal;
use crate::progress::{Progress, ProgressSettings};
use crate::report::FailedGroups;
use crate::transaction::{Control, GroupReport, Outcome, StopReason, Transaction};

/// Limits of one run.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub concurrency: usize,
    pub run_timeout: Duration,
    pub rollback_timeout: Duration,
    /// Failed groups after which no new group starts.
    pub max_failed_groups: Option<NonZeroU64>,
    pub progress: ProgressSettings,
    /// The report file, next to which every group not committed is spooled
    /// (see [`crate::report`]); `None` = a sample in memory only.
    pub report_path: Option<std::path::PathBuf>,
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

/// The entries a stopped run did not attempt: every entry from `from` to
/// the end of the list (the run starts groups in list order).
#[derive(Debug, Clone, Serialize)]
pub struct NotAttempted {
    pub count: u64,
    /// Where the first of them is listed (`GROUP_IDS_FILE line 5012`);
    /// absent when the list itself could no longer be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Position>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_group_id: Option<GroupId>,
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
    /// Requests over every node, as in `nodes`.
    pub requests: RequestTotals,
    pub nodes: Vec<NodeStatsSnapshot>,
    /// The groups whose transaction ended other than `committed`: all of
    /// them, or a sample within [`crate::report::KEPT_NODE_DETAILS`] (the
    /// report file lists all of them).
    pub groups: Vec<GroupReport>,
    /// Groups not committed that are not in `groups`.
    #[serde(skip_serializing_if = "is_zero")]
    pub groups_omitted: u64,
    /// Where every group not committed was spooled, for the report file.
    #[serde(skip)]
    pub groups_spool: Option<std::path::PathBuf>,
    /// The entries not attempted because the run stopped first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_attempted: Option<NotAttempted>,
    /// Groups a killed run left unfinished, resolved from the journal before
    /// this run's own groups (not counted in `totals`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recovered: Vec<GroupReport>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Runs every listed group and returns the report.
///
/// Memory follows the work in flight, not the length of the list: ids are
/// streamed from the list, committed groups are counted and forgotten, and
/// groups that did not commit go to a [`FailedGroups`] list, which keeps a
/// bounded sample in memory.
///
/// An id listed again waits until its earlier entry has finished, so that
/// two transactions never work on one group at the same time.
///
/// The stages of `control` are driven by [`supervise`], which the caller
/// starts (so that it also covers the journal's recovery).
pub async fn run_groups(
    client: Arc<NodeClient>,
    ids: &GroupIds,
    operation: Operation,
    settings: RunSettings,
    control: Arc<Control>,
    journal: Option<Arc<Journal>>,
) -> RunReport {
    let started = Instant::now();
    let started_at = crate::telemetry::rfc3339(SystemTime::now());
    let concurrency = settings.concurrency.max(1);
    let mut entries = ids.stream(concurrency.max(256));
    let progress = Progress::start(ids.len(), settings.progress);
    let mut run = Dispatch {
        running: JoinSet::new(),
        in_flight: HashMap::new(),
        in_flight_ids: HashSet::new(),
        totals: Totals::default(),
        failed: match &settings.report_path {
            Some(path) => FailedGroups::spooled_for(path),
            None => FailedGroups::in_memory(),
        },
        progress: &progress,
    };
    let mut started_groups = 0u64;
    let mut own_stop = None;
    let mut first_not_attempted = None;

    while let Some(next) = entries.recv().await {
        let entry = match next {
            Ok(entry) => entry,
            Err(error) => {
                tracing::error!(error = %error, "the id list changed; no new group starts");
                own_stop = Some(StopReason::InputChanged);
                break;
            }
        };
        run.reap();
        if !run.wait_for_room(&entry.id, concurrency, &control).await {
            first_not_attempted = Some(entry);
            break;
        }
        if let Some(reason) = run.limit_reached(&client, &control, settings.max_failed_groups) {
            own_stop = own_stop.or(reason);
            first_not_attempted = Some(entry);
            break;
        }
        started_groups += 1;
        let (client, control, journal) = (client.clone(), control.clone(), journal.clone());
        let id = entry.id.clone();
        let task = run.running.spawn(async move {
            Transaction::new(&client, &entry.id, operation, &control)
                .with_journal(journal.as_deref())
                .run()
                .await
        });
        run.in_flight_ids.insert(id.clone());
        run.in_flight.insert(task.id(), id);
    }
    drop(entries);
    while let Some(done) = run.running.join_next_with_id().await {
        run.collect(done);
    }
    let mut totals = run.totals;
    let (groups, groups_omitted, groups_spool) = run.failed.into_parts();
    let not_attempted = (started_groups < ids.len()).then(|| {
        let count = ids.len() - started_groups;
        totals.groups += count;
        totals.not_started += count;
        NotAttempted {
            count,
            from: first_not_attempted.as_ref().map(|e| e.position),
            first_group_id: first_not_attempted.map(|e| e.id),
        }
    });
    progress.finish();
    let nodes = client.stats();
    RunReport {
        operation,
        started_at,
        duration_ms: started.elapsed().as_millis() as u64,
        exit_code: totals.exit_status(),
        // What stopped the starting of groups first.
        stop_reason: own_stop.or(control.reason()),
        totals,
        requests: RequestTotals::over(&nodes),
        nodes,
        groups,
        groups_omitted,
        groups_spool,
        not_attempted,
        recovered: Vec::new(),
    }
}

/// The groups in flight and what the finished ones came to.
struct Dispatch<'a> {
    running: JoinSet<GroupReport>,
    in_flight: HashMap<tokio::task::Id, GroupId>,
    in_flight_ids: HashSet<GroupId>,
    totals: Totals,
    failed: FailedGroups,
    progress: &'a Progress,
}

impl Dispatch<'_> {
    /// Collects the groups that have finished, without waiting.
    fn reap(&mut self) {
        while let Some(done) = self.running.try_join_next_with_id() {
            self.collect(done);
        }
    }

    /// Waits until fewer than `concurrency` groups are in flight and `id`
    /// is not one of them; `false` when the run stopped meanwhile.
    async fn wait_for_room(&mut self, id: &GroupId, concurrency: usize, control: &Control) -> bool {
        loop {
            if control.stop.is_cancelled() {
                return false;
            }
            if self.running.len() < concurrency && !self.in_flight_ids.contains(id) {
                return true;
            }
            tokio::select! {
                biased;
                _ = control.stop.cancelled() => return false,
                done = self.running.join_next_with_id() => match done {
                    Some(done) => self.collect(done),
                    None => return true,
                },
            }
        }
    }

    /// Why no further group may start, if it may not: the run's stop, a
    /// rejected certificate (which stops the run), or `MAX_FAILED_GROUPS`
    /// (which stops only the starting of groups: those in flight finish).
    fn limit_reached(
        &self,
        client: &NodeClient,
        control: &Control,
        max_failed: Option<NonZeroU64>,
    ) -> Option<Option<StopReason>> {
        if control.stop.is_cancelled() {
            return Some(None);
        }
        if let Some(failure) = client.tls_failure() {
            tracing::error!(
                reason = failure,
                "a node's TLS certificate was rejected; no new group starts"
            );
            control.stop(StopReason::Certificate);
            return Some(None);
        }
        let max = max_failed?;
        let failed = self.totals.failed();
        (failed >= max.get()).then(|| {
            tracing::warn!(
                failed_groups = failed,
                max_failed_groups = max.get(),
                "MAX_FAILED_GROUPS reached; no new group starts, groups in flight finish"
            );
            Some(StopReason::FailureLimit)
        })
    }

    fn collect(&mut self, done: Result<(tokio::task::Id, GroupReport), tokio::task::JoinError>) {
        let task = done.as_ref().map_or_else(|e| e.id(), |(id, _)| *id);
        if let Some(id) = self.in_flight.remove(&task) {
            self.in_flight_ids.remove(&id);
        }
        let outcome = match done {
            Ok((_, report)) => {
                let outcome = report.outcome;
                if outcome != Outcome::Committed {
                    self.failed.push(report);
                }
                outcome
            }
            Err(error) => {
                // A panicking transaction may have left nodes in any state:
                // count it as inconsistent so the exit code never
                // understates it.
                tracing::error!(error = %error, "a group's transaction panicked");
                Outcome::Inconsistent
            }
        };
        self.totals.add(outcome);
        self.progress.record(outcome);
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
