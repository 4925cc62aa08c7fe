//! The job as one call: configuration in, report out, logged as it goes.
//! Below the binary, the only reader of [`Config`]: it turns it into the
//! settings of the client and the run, and assembles the run report.

use std::io::IsTerminal as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::domain::{
    ExitStatus, GroupId, GroupReport, NodeAddress, NodeDetail, NodeProtocol, NodeState, Operation,
    Outcome, StopReason, Task,
};
use crate::engine::phases::{prepare, Request};
use crate::engine::{run_groups, settle_now, supervise, Control, RunSettings, Transaction};
use crate::node_api::{
    ClientError, ClientSettings, HealthSettings, NodeClient, RequestTotals, RetrySettings,
};
use crate::output::journal::{Intent, Journal, JournalError};
use crate::output::metrics::{Pusher, Sample};
use crate::output::progress::ProgressDisplay;
use crate::output::report::{
    write_report, write_termination_message, RunReport, ShardReport, PLAN_FORMAT_VERSION,
};
use crate::output::telemetry::LogFormat;

/// The target of these log lines, which `LOG_LEVEL` directives name
/// (`api_consumer::job=debug`): part of the log interface.
const LOG_TARGET: &str = "api_consumer::job";

impl From<&Config> for ClientSettings {
    fn from(config: &Config) -> Self {
        ClientSettings {
            request_timeout: config.request_timeout,
            connect_timeout: config.connect_timeout,
            write_settle: config.write_settle,
            retry: RetrySettings {
                max_retries: config.max_retries,
                base_delay: config.retry_base_delay,
                max_delay: config.retry_max_delay,
            },
            auth_token: config.auth_token.clone(),
            node_concurrency: config.node_concurrency,
            node_rate_limit: config.node_rate_limit,
            health: HealthSettings {
                down_after: config.node_down_after_failures,
                down_wait: config.node_down_wait,
            },
            ca_certificates: config.ca_certificates.clone(),
        }
    }
}

impl From<&Config> for RunSettings {
    fn from(config: &Config) -> Self {
        RunSettings {
            operation: config.operation,
            concurrency: config.concurrency,
            run_timeout: config.run_timeout,
            rollback_timeout: config.rollback_timeout,
            max_failed_groups: config.max_failed_groups,
            progress: progress_display(config),
            shard: config.shard,
            protocol: config.node_protocol,
            metrics: None,
            progress_interval: config.progress_interval,
            report_path: config.report_path.clone(),
        }
    }
}

/// Progress lines every `PROGRESS_INTERVAL_SECS`, or a bar instead for a
/// person watching: pretty logs, and both streams on a terminal (the bar is
/// drawn on stderr).
fn progress_display(config: &Config) -> ProgressDisplay {
    let Some(interval) = config.progress_interval else {
        return ProgressDisplay::Off;
    };
    let watched = config.log_format == LogFormat::Pretty
        && std::io::stdout().is_terminal()
        && std::io::stderr().is_terminal();
    if watched {
        ProgressDisplay::Bar
    } else {
        ProgressDisplay::Lines(interval)
    }
}

/// Why a job could not run at all (before any request was sent).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("JOURNAL_PATH: {0}")]
    Journal(#[from] JournalError),
}

impl JobError {
    /// The variable to blame, for the error's log line.
    pub fn variable(&self) -> Option<&'static str> {
        match self {
            JobError::Client(ClientError::InvalidToken) => Some("AUTH_TOKEN"),
            JobError::Client(ClientError::Build(_)) => None,
            JobError::Journal(_) => Some("JOURNAL_PATH"),
        }
    }
}

/// Runs every group of `config` and writes the report file if one is asked
/// for. With a journal, the groups a killed run left unfinished are resolved
/// first. The caller logs the summary
/// ([`crate::output::summary::log_summary`]) once nothing else can
/// log, so that it is the last line.
pub async fn run_job(config: &Config, control: Arc<Control>) -> Result<RunReport, JobError> {
    let settings = ClientSettings::from(config);
    let client = Arc::new(NodeClient::new(&settings, &config.nodes)?);
    // A run that never writes never opens the journal: resolving what a
    // killed run left would write.
    let writes = !config.dry_run && config.operation != Operation::Verify;
    let mut lands_by = tokio::time::Instant::now();
    let (journal, unfinished) = match &config.journal_path {
        Some(path) if writes => {
            let (journal, unfinished) = open_journal(path, config.rollback_timeout).await?;
            // The run that left these intents has ended: its last write was
            // sent before now.
            lands_by = tokio::time::Instant::now() + config.write_settle;
            (Some(Arc::new(journal)), unfinished)
        }
        _ => (None, Vec::new()),
    };
    let (shard, two_phase) = (config.shard, config.node_protocol == NodeProtocol::TwoPhase);
    tracing::info!(target: LOG_TARGET, operation = config.operation.to_string(),
        dry_run = config.dry_run.then_some(true), prune = config.prune.then_some(true),
        nodes = config.nodes.len(), groups = config.group_ids.len(),
        node_protocol = two_phase.then(|| config.node_protocol.as_str()),
        shard = shard.is_split().then(|| shard.index()),
        shard_count = shard.is_split().then(|| shard.count()),
        list_entries = shard.is_split().then(|| config.group_ids.listed()),
        concurrency = config.concurrency, node_concurrency = config.node_concurrency,
        unfinished_in_journal = unfinished.len(), version = env!("CARGO_PKG_VERSION"),
        "run started");
    let pusher = config.metrics.as_ref().and_then(|metrics| {
        match Pusher::new(metrics, config.shard, &config.ca_certificates) {
            Ok(pusher) => Some(Arc::new(pusher)),
            Err(reason) => {
                tracing::warn!(target: LOG_TARGET, reason = %reason, "no metrics will be pushed");
                None
            }
        }
    });
    let mut run_settings = RunSettings::from(config);
    run_settings.metrics = pusher.clone();
    let supervisor = supervise(control.clone(), run_settings.clone());
    let mut recovered = Vec::new();
    if let Some(journal) = &journal {
        // One client per node list, so that a node found down by one
        // entry's recovery is known down to the next (and waited for once).
        let mut clients = RecoveryClients::default();
        for intent in unfinished {
            let unfinished = (intent, lands_by);
            let report = recover((&settings, &mut clients), journal, unfinished, &control).await;
            recovered.push(report);
        }
    }
    let request = Request {
        operation: config.operation,
        dry_run: config.dry_run,
        prune: config.prune,
        prune_max: config.prune_max,
        prior_source: config.prior_state,
        ids: config.group_ids.clone(),
    };
    let mut prepared = prepare(&client, request, &control).await;
    if prepared.refused.is_some() {
        control.stop(StopReason::ListsUnavailable);
    }
    let mut priors = prepared.priors.take();
    let phases = &prepared.phases;
    let run = run_groups(
        client.clone(),
        phases,
        priors.as_mut(),
        run_settings,
        control,
        journal,
    )
    .await;
    supervisor.abort();
    let mut nodes = client.stats();
    if let Some(priors) = &priors {
        for (node, source) in nodes.iter_mut().zip(priors.sources()) {
            node.prior_state = Some(source.as_str().to_string());
        }
    }
    let mut exit_code = run.totals.exit_status();
    if recovered.iter().any(|r| r.outcome == Outcome::Inconsistent) {
        exit_code = ExitStatus::Inconsistent;
    }
    if prepared.incomplete {
        exit_code = exit_code.or_incomplete();
    }
    // Verify is read-only anyway: its report is not a plan.
    let plan = config.dry_run && config.operation != Operation::Verify;
    let report = RunReport {
        format_version: plan.then_some(PLAN_FORMAT_VERSION),
        operation: config.operation,
        dry_run: plan,
        shard: config.shard.is_split().then(|| ShardReport {
            index: config.shard.index(),
            count: config.shard.count(),
            list_entries: config.group_ids.listed(),
            entries: config.group_ids.len(),
        }),
        started_at: run.started_at,
        duration_ms: run.duration_ms,
        exit_code,
        stop_reason: run.stop_reason,
        totals: run.totals,
        requests: RequestTotals::over(&nodes),
        nodes,
        groups: run.groups,
        groups_omitted: run.groups_omitted,
        groups_spool: run.groups_spool,
        not_attempted: run.not_attempted,
        recovered,
        listing: prepared.listing,
        unlisted: prepared.unlisted,
    };
    if let Some(path) = &config.report_path {
        if let Err(error) = write_report(path, &report, report.groups_spool.as_deref()) {
            tracing::error!(target: LOG_TARGET, path = %path.display(), error_message = %error, "cannot write the run report");
        }
    }
    write_termination_message(&config.termination_message_path, &report);
    if let Some(pusher) = &pusher {
        let sample = Sample {
            operation: report.operation,
            totals: &report.totals,
            nodes: &report.nodes,
            duration: Duration::from_millis(report.duration_ms),
            exit_code: Some(u8::from(report.exit_code)),
        };
        pusher.push(&sample).await;
    }
    Ok(report)
}

/// Opens the journal, waiting while another run holds it: a run that is
/// still rolling back releases it within its own ROLLBACK_TIMEOUT_SECS.
async fn open_journal(
    path: &Path,
    rollback_timeout: Duration,
) -> Result<(Journal, Vec<Intent>), JournalError> {
    let deadline = tokio::time::Instant::now() + rollback_timeout + JOURNAL_WAIT_MARGIN;
    let mut waiting = false;
    loop {
        match Journal::open(path) {
            Err(JournalError::Busy { .. }) if tokio::time::Instant::now() < deadline => {
                if !waiting {
                    tracing::warn!(target: LOG_TARGET, path = %path.display(), "another run holds the journal; waiting for it to finish");
                    waiting = true;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => return other,
        }
    }
}

/// Time allowed beyond the other run's rollback budget for it to exit.
const JOURNAL_WAIT_MARGIN: Duration = Duration::from_secs(30);

/// Resolves one unfinished intent over the nodes it names (which may differ
/// from this run's `NODES`).
async fn recover(
    (settings, clients): (&ClientSettings, &mut RecoveryClients),
    journal: &Journal,
    (intent, lands_by): (Intent, tokio::time::Instant),
    control: &Control,
) -> GroupReport {
    let nodes: Result<Vec<NodeAddress>, String> = intent
        .nodes
        .iter()
        .map(|n| NodeAddress::parse(&n.node))
        .collect();
    let group = GroupId::new(intent.group_id.clone());
    let client = nodes.and_then(|nodes| {
        let key: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = Arc::new(NodeClient::new(settings, &nodes).map_err(|e| e.to_string())?);
        clients.insert(key, client.clone());
        Ok(client)
    });
    match (group, client) {
        (Ok(group), Ok(client)) => {
            tracing::warn!(target: LOG_TARGET, group_id = %group, operation = intent.operation.as_str(), "resolving a group a killed run left unfinished");
            let transaction =
                Transaction::new(&client, &group, intent.operation, control, Some(journal));
            let session = intent.session.as_deref();
            let report = transaction.recover(&intent.nodes, session, lands_by).await;
            // Settled before the run's own groups start: one of them may be
            // this group, and a lost write of the recovery must not land
            // under it.
            settle_now(&client, report, control, Some(journal))
                .await
                .report
        }
        (group, client) => {
            let problem = group.err().or(client.err()).unwrap_or_default();
            tracing::error!(target: LOG_TARGET, group_id = %intent.group_id, problem = %problem, "a journal intent cannot be resolved");
            unresolvable(&intent, problem)
        }
    }
}

/// The clients of a journal's recovery, by the node list of the intents.
type RecoveryClients = std::collections::HashMap<Vec<String>, Arc<NodeClient>>;

/// A journal intent that names an id or node this build cannot parse:
/// reported inconsistent, with every node in doubt, and left in the journal.
fn unresolvable(intent: &Intent, problem: String) -> GroupReport {
    let nodes = intent.nodes.iter().map(|n| NodeDetail {
        node: n.node.clone(),
        prior: n.prior,
        final_state: NodeState::Unknown,
        written: true,
        compensated: false,
        detail: None,
    });
    let group = GroupId::unchecked(&intent.group_id);
    let reason = format!("journal intent cannot be resolved: {problem}");
    let ended = (Outcome::Inconsistent, Some(reason));
    let task = Task::Apply(intent.operation);
    GroupReport::new(&group, task, ended, Instant::now(), nodes.collect())
}
