//! A run: many groups, each its own [`Transaction`], under the run's limits.
//!
//! Groups start in list order while fewer than `CONCURRENCY` are in flight
//! (per-node limits live in the client), until the list ends, the run stops
//! or `MAX_FAILED_GROUPS` groups have failed. The run's life has three stages
//! (I4 in docs/TRANSACTIONS.md), driven by [`Control`]:
//!
//! - **stop** at `RUN_TIMEOUT_SECS` or the first SIGTERM/SIGINT: no new group
//!   starts; the entries not started are reported as not attempted;
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

use tokio::task::JoinSet;

use super::control::Control;
use super::id_list::{Entry, GroupIds};
use super::inspect;
use super::prior::{GroupPriors, ListedPriors};
use super::recheck::{close_intent, recheck, settle_now, Rechecked};
use super::transaction::Transaction;
use crate::domain::{
    GroupId, GroupReport, NodeProtocol, Operation, Outcome, OutcomeCounts, Shard, StopReason, Task,
};
use crate::node_api::NodeClient;
use crate::output::journal::Journal;
use crate::output::metrics::{Pusher, Sample};
use crate::output::progress::{Progress, ProgressDisplay, Tally};
use crate::output::report::{FailedGroups, NotAttempted};
use crate::output::telemetry::rfc3339;

/// The target these log lines carry, which `LOG_LEVEL` directives name
/// (`api_consumer::run=debug`): part of the log interface, kept whatever file
/// the code lives in.
const LOG_TARGET: &str = "api_consumer::run";

/// Limits of one run.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub operation: Operation,
    pub concurrency: usize,
    pub run_timeout: Duration,
    pub rollback_timeout: Duration,
    /// Failed groups after which no new group starts.
    pub max_failed_groups: Option<NonZeroU64>,
    pub progress: ProgressDisplay,
    /// The share of the list this run handles, named in progress lines.
    pub shard: Shard,
    /// How the nodes take creates and deletes.
    pub protocol: NodeProtocol,
    /// Where the metrics go every `progress_interval` while the run goes on
    /// (the caller pushes the final ones).
    pub metrics: Option<Arc<Pusher>>,
    pub progress_interval: Option<Duration>,
    /// The report file, next to which every group not committed is spooled
    /// (see [`crate::output::report`]); `None` = a sample in memory only.
    pub report_path: Option<std::path::PathBuf>,
}

/// One list of groups and what to do to each. A run starts the groups of
/// its phases in order (a reconcile: the listed groups, then those it
/// prunes), under one concurrency limit, so the last groups of one phase
/// may still run while the first of the next start; no id is in two
/// phases.
#[derive(Debug, Clone)]
pub struct Phase {
    pub ids: GroupIds,
    pub task: Task,
}

/// What a run did to its groups: everything the run report says of them.
#[derive(Debug)]
pub struct RunResult {
    /// When the run started (RFC 3339).
    pub started_at: String,
    pub duration_ms: u64,
    pub totals: OutcomeCounts,
    /// What stopped the starting of groups first.
    pub stop_reason: Option<StopReason>,
    /// The groups that did not commit: all of them, or a sample (see
    /// [`FailedGroups`]), and how many more.
    pub groups: Vec<GroupReport>,
    pub groups_omitted: u64,
    /// Where every group that did not commit was spooled.
    pub groups_spool: Option<std::path::PathBuf>,
    pub not_attempted: Option<NotAttempted>,
}

/// Runs every group of every phase, with the prior states the node lists
/// gave for their transactions.
///
/// Memory follows the list and the work in flight: committed groups are
/// counted and forgotten, and groups that did not commit go to a
/// [`FailedGroups`] list, which keeps a bounded sample in memory. A group
/// with a node where a lost write may still land is kept until the re-check
/// at the end of the run (one report per such group).
///
/// An id listed again waits until its earlier entry has finished and is
/// settled, so that two transactions never work on one group at the same
/// time, nor one while a lost write of the other can still land.
///
/// The stages of `control` are driven by [`supervise`], which the caller
/// starts (so that it also covers the journal's recovery).
pub async fn run_groups(
    client: Arc<NodeClient>,
    phases: &[Phase],
    mut priors: Option<&mut ListedPriors>,
    settings: RunSettings,
    control: Arc<Control>,
    journal: Option<Arc<Journal>>,
) -> RunResult {
    let operation = settings.operation;
    let started = Instant::now();
    let started_at = rfc3339(SystemTime::now());
    let listed: u64 = phases.iter().map(|phase| phase.ids.len()).sum();
    let progress = Progress::start(listed, settings.progress, settings.shard);
    let pushing = match (&settings.metrics, settings.progress_interval) {
        (Some(pusher), Some(every)) => Some(tokio::spawn(push_every(
            pusher.clone(),
            every,
            operation,
            progress.tally(),
            client.clone(),
            started,
        ))),
        _ => None,
    };
    let watching = tokio::spawn(name_nodes_down(client.clone(), progress.tally()));
    let mut run = Dispatch {
        running: JoinSet::new(),
        in_flight: HashMap::new(),
        in_flight_ids: HashSet::new(),
        totals: OutcomeCounts::default(),
        failed: match &settings.report_path {
            Some(path) => FailedGroups::spooled_for(path),
            None => FailedGroups::in_memory(),
        },
        unsettled: Vec::new(),
        unsettled_ids: HashSet::new(),
        progress: &progress,
        concurrency: settings.concurrency.max(1),
        max_failed: settings.max_failed_groups,
    };
    let mut started_groups = 0u64;
    let mut applied = 0usize;
    let mut stopped_by = None;
    let mut first_not_attempted: Option<&Entry> = None;

    'phases: for phase in phases {
        for entry in phase.ids.entries() {
            let mut admitted = run.admit(&entry.id, &client, &control).await;
            let earlier = (&entry.id, &*client, &*control, journal.as_deref());
            if admitted.is_ok() && run.settle_earlier(earlier).await {
                // The wait for the earlier entry may have met the stop.
                admitted = run.admit(&entry.id, &client, &control).await;
            }
            if let Err(reason) = admitted {
                stopped_by = reason;
                first_not_attempted = Some(entry);
                break 'phases;
            }
            started_groups += 1;
            // The lists' priors are kept per entry of the phases that apply.
            let listed = match phase.task {
                Task::Apply(_) => {
                    applied += 1;
                    priors.as_mut().and_then(|p| p.take(applied - 1))
                }
                Task::Verify | Task::Plan(_) => None,
            };
            let spawned = run.running.spawn(one_group(
                (client.clone(), control.clone()),
                entry.id.clone(),
                (phase.task, listed),
                (journal.clone(), settings.protocol),
            ));
            run.in_flight_ids.insert(entry.id.clone());
            run.in_flight.insert(spawned.id(), entry.id.clone());
        }
    }
    while let Some(done) = run.running.join_next_with_id().await {
        run.collect(done);
    }
    let unsettled = std::mem::take(&mut run.unsettled);
    for checked in recheck(&client, unsettled, &control, run.concurrency).await {
        run.settle(checked, journal.as_deref()).await;
    }
    let mut totals = run.totals;
    let (groups, groups_omitted, groups_spool) = run.failed.into_parts();
    let not_attempted = (started_groups < listed).then(|| {
        let count = listed - started_groups;
        totals.groups += count;
        totals.not_started += count;
        NotAttempted {
            count,
            from: first_not_attempted.map(|e| e.position),
            first_group_id: first_not_attempted.map(|e| e.id.clone()),
        }
    });
    progress.finish();
    watching.abort();
    if let Some(pushing) = pushing {
        pushing.abort();
    }
    RunResult {
        started_at,
        duration_ms: started.elapsed().as_millis() as u64,
        totals,
        stop_reason: stopped_by.or(control.reason()),
        groups,
        groups_omitted,
        groups_spool,
        not_attempted,
    }
}

/// One group's work, as its own task: `task` under the run's client and
/// control, a transaction with the run's journal and protocol.
async fn one_group(
    (client, control): (Arc<NodeClient>, Arc<Control>),
    group: GroupId,
    (task, listed): (Task, Option<GroupPriors>),
    (journal, protocol): (Option<Arc<Journal>>, NodeProtocol),
) -> GroupReport {
    match task {
        Task::Apply(change) => {
            Transaction::new(&client, &group, change, &control, journal.as_deref())
                .run(protocol, listed)
                .await
        }
        Task::Verify => inspect::verify(&client, &group, &control).await,
        Task::Plan(change) => inspect::plan(&client, &group, change, &control).await,
    }
}

/// The groups in flight and what the finished ones came to.
struct Dispatch<'a> {
    running: JoinSet<GroupReport>,
    in_flight: HashMap<tokio::task::Id, GroupId>,
    in_flight_ids: HashSet<GroupId>,
    totals: OutcomeCounts,
    failed: FailedGroups,
    /// Finished groups with a node where a write whose answer was lost may
    /// still land: counted, and kept for the run's re-check.
    unsettled: Vec<GroupReport>,
    unsettled_ids: HashSet<GroupId>,
    progress: &'a Progress,
    concurrency: usize,
    /// Failed groups after which no new group starts.
    max_failed: Option<NonZeroU64>,
}

impl Dispatch<'_> {
    /// Waits until the next group, `id`, may start: fewer than
    /// `CONCURRENCY` groups in flight and none of them `id`. It may not
    /// after the run's stop, a rejected certificate (which stops the run) or
    /// `MAX_FAILED_GROUPS` (which stops only the starting of groups: those
    /// in flight finish); the error is then the reason the run's [`Control`]
    /// does not already hold.
    async fn admit(
        &mut self,
        id: &GroupId,
        client: &NodeClient,
        control: &Control,
    ) -> Result<(), Option<StopReason>> {
        while let Some(done) = self.running.try_join_next_with_id() {
            self.collect(done);
        }
        while self.running.len() >= self.concurrency || self.in_flight_ids.contains(id) {
            tokio::select! {
                biased;
                _ = control.stop.cancelled() => return Err(None),
                done = self.running.join_next_with_id() => match done {
                    Some(done) => self.collect(done),
                    None => break,
                },
            }
        }
        if control.stop.is_cancelled() {
            return Err(None);
        }
        self.wait_for_nodes(client, control).await?;
        if let Some(failure) = client.tls_failure() {
            tracing::error!(target: LOG_TARGET, reason = failure, "a node's TLS certificate was rejected; no new group starts");
            control.stop(StopReason::Certificate);
            return Err(None);
        }
        let failed = self.totals.failed();
        match self.max_failed {
            Some(max) if failed >= max.get() => {
                tracing::warn!(target: LOG_TARGET, failed_groups = failed, max_failed_groups = max.get(),
                    "MAX_FAILED_GROUPS reached; no new group starts, groups in flight finish");
                Err(Some(StopReason::FailureLimit))
            }
            _ => Ok(()),
        }
    }

    /// While a node is down no group starts (every group needs every node):
    /// waits until every node is up, collecting finished groups meanwhile.
    /// The error: the run stopped, or a node stayed down past
    /// `NODE_DOWN_WAIT_SECS` (then no group starts any more, and those in
    /// flight finish).
    async fn wait_for_nodes(
        &mut self,
        client: &NodeClient,
        control: &Control,
    ) -> Result<(), Option<StopReason>> {
        if !client.any_down() {
            return Ok(());
        }
        let mut changes = client.health_changes();
        loop {
            changes.borrow_and_update();
            let down = client.nodes_down();
            if let Some((node, reason)) = down.given_up.first() {
                tracing::error!(target: LOG_TARGET, node, reason = reason.as_str(),
                    nodes_down = down.given_up.len(),
                    "a node stayed down past NODE_DOWN_WAIT_SECS; no new group starts, groups in flight finish");
                return Err(Some(StopReason::NodeDown));
            }
            if down.waiting.is_empty() {
                return Ok(());
            }
            tokio::select! {
                biased;
                _ = control.stop.cancelled() => return Err(None),
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
                Some(done) = self.running.join_next_with_id(), if !self.running.is_empty() => {
                    self.collect(done);
                }
            }
        }
    }

    fn collect(&mut self, done: Result<(tokio::task::Id, GroupReport), tokio::task::JoinError>) {
        let task = done.as_ref().map_or_else(|e| e.id(), |(id, _)| *id);
        if let Some(id) = self.in_flight.remove(&task) {
            self.in_flight_ids.remove(&id);
        }
        let outcome = match done {
            Ok((_, report)) => {
                let outcome = report.outcome;
                if !report.unsettled.is_empty() {
                    self.unsettled_ids.insert(report.group_id.clone());
                    self.unsettled.push(report);
                } else if outcome.is_reported() {
                    self.failed.push(report);
                }
                outcome
            }
            Err(error) => {
                // A panicking transaction may have left nodes in any state:
                // count it as inconsistent so the exit code never
                // understates it.
                tracing::error!(target: LOG_TARGET, error_message = %error, "a group's transaction panicked");
                Outcome::Inconsistent
            }
        };
        self.totals.add(outcome);
        self.progress.record(outcome);
    }

    /// Takes what the re-check found of a group [`Dispatch::collect`] kept.
    async fn settle(&mut self, checked: Rechecked, journal: Option<&Journal>) {
        close_intent(&checked, journal).await;
        self.count_settled(checked);
    }

    /// Counts what the re-check of a group found, its intent closed.
    fn count_settled(&mut self, checked: Rechecked) {
        let Rechecked {
            counted, report, ..
        } = checked;
        let outcome = report.outcome;
        if outcome != counted {
            self.totals.change(counted, outcome);
        }
        if outcome.is_reported() {
            self.failed.push(report);
        }
    }

    /// An id listed again starts only once its earlier entry is settled: a
    /// lost write of the earlier transaction could otherwise land while the
    /// later one reads and writes the same nodes (the windows are each
    /// transaction's own). The earlier entry is re-checked now, after its
    /// windows, instead of at the end of the run; starting groups waits
    /// meanwhile, as it waits for an id still in flight.
    ///
    /// `true` when there was an earlier entry to settle.
    async fn settle_earlier(
        &mut self,
        (id, client, control, journal): (&GroupId, &NodeClient, &Control, Option<&Journal>),
    ) -> bool {
        if !self.unsettled_ids.remove(id) {
            return false;
        }
        let (earlier, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unsettled)
            .into_iter()
            .partition(|report| &report.group_id == id);
        self.unsettled = rest;
        for report in earlier {
            let checked = settle_now(client, report, control, journal).await;
            self.count_settled(checked);
        }
        true
    }
}

/// Keeps the progress lines' list of down nodes current.
async fn name_nodes_down(client: Arc<NodeClient>, tally: Tally) {
    let mut changes = client.health_changes();
    loop {
        let down = client.nodes_down();
        let names: Vec<&str> = (down.waiting.iter().copied())
            .chain(down.given_up.iter().map(|(node, _)| *node))
            .collect();
        tally.set_nodes_down((!names.is_empty()).then(|| names.join(" ")));
        if changes.changed().await.is_err() {
            return;
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
            tracing::warn!(target: LOG_TARGET, run_timeout_secs = settings.run_timeout.as_secs(), "run deadline reached; no new group starts");
            control.stop(StopReason::Deadline);
        }
        _ = control.stop.cancelled() => {}
    }
    let stopped = tokio::time::Instant::now();
    tokio::select! {
        _ = tokio::time::sleep_until(stopped + settings.rollback_timeout / 4) => {
            tracing::warn!(target: LOG_TARGET, "groups still applying now roll back");
            control.abort.cancel();
        }
        _ = control.abort.cancelled() => {}
    }
    tokio::time::sleep_until(stopped + settings.rollback_timeout).await;
    let rollback_timeout_secs = settings.rollback_timeout.as_secs();
    tracing::error!(target: LOG_TARGET, rollback_timeout_secs, "shutdown budget spent; cutting off what is still running");
    control.kill.cancel();
}

/// Pushes the metrics of the run so far every `every`, one push at a time
/// (each bounded by its own timeout), until aborted.
async fn push_every(
    pusher: Arc<Pusher>,
    every: Duration,
    operation: Operation,
    tally: Tally,
    client: Arc<NodeClient>,
    started: Instant,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let totals = tally.finished();
        let nodes = client.stats();
        let sample = Sample {
            operation,
            totals: &totals,
            nodes: &nodes,
            duration: started.elapsed(),
            exit_code: None,
        };
        pusher.push(&sample).await;
    }
}
