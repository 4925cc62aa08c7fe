//! The job as one call: configuration in, report out, logged as it goes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use std::io::IsTerminal as _;

use crate::client::{ClientError, ClientSettings, NodeClient};
use crate::config::{Config, GroupId, LogFormat, NodeAddress};
use crate::journal::{Intent, Journal, JournalError};
use crate::progress::ProgressSettings;
use crate::report::{write_report, write_termination_message};
use crate::retry::RetrySettings;
use crate::run::{run_groups, supervise, ExitStatus, RunReport, RunSettings};
use crate::transaction::{Control, GroupReport, Outcome, Transaction};

impl From<&Config> for ClientSettings {
    fn from(config: &Config) -> Self {
        ClientSettings {
            request_timeout: config.request_timeout,
            connect_timeout: config.connect_timeout,
            retry: RetrySettings {
                max_retries: config.max_retries,
                base_delay: config.retry_base_delay,
                max_delay: config.retry_max_delay,
            },
            auth_token: config.auth_token.clone(),
            node_concurrency: config.node_concurrency,
            node_rate_limit: config.node_rate_limit,
            ca_certificates: config.ca_certificates.clone(),
        }
    }
}

impl From<&Config> for RunSettings {
    fn from(config: &Config) -> Self {
        RunSettings {
            concurrency: config.concurrency,
            run_timeout: config.run_timeout,
            rollback_timeout: config.rollback_timeout,
            max_failed_groups: config.max_failed_groups,
            progress: ProgressSettings {
                interval: config.progress_interval,
                // A bar only for a person watching: pretty logs, and both
                // streams on a terminal (the bar is drawn on stderr).
                bar: config.progress_interval.is_some()
                    && config.log_format == LogFormat::Pretty
                    && std::io::stdout().is_terminal()
                    && std::io::stderr().is_terminal(),
            },
            report_path: config.report_path.clone(),
        }
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
/// first. The caller logs the summary ([`log_summary`]) once nothing else can
/// log, so that it is the last line.
pub async fn run_job(config: &Config, control: Arc<Control>) -> Result<RunReport, JobError> {
    let settings = ClientSettings::from(config);
    let client = Arc::new(NodeClient::new(&settings, &config.nodes)?);
    let (journal, unfinished) = match &config.journal_path {
        Some(path) => {
            let (journal, unfinished) = open_journal(path, config.rollback_timeout).await?;
            (Some(Arc::new(journal)), unfinished)
        }
        None => (None, Vec::new()),
    };
    tracing::info!(
        operation = config.operation.as_str(),
        nodes = config.nodes.len(),
        groups = config.group_ids.len(),
        concurrency = config.concurrency,
        node_concurrency = config.node_concurrency,
        unfinished_in_journal = unfinished.len(),
        "run started"
    );
    let run_settings = RunSettings::from(config);
    let supervisor = supervise(control.clone(), run_settings.clone());
    let mut recovered = Vec::new();
    if let Some(journal) = &journal {
        for intent in unfinished {
            recovered.push(recover(&settings, journal, intent, &control).await);
        }
    }
    let mut report = run_groups(
        client,
        &config.group_ids,
        config.operation,
        run_settings,
        control,
        journal,
    )
    .await;
    supervisor.abort();
    if recovered.iter().any(|r| r.outcome == Outcome::Inconsistent) {
        report.exit_code = ExitStatus::Inconsistent;
    }
    report.recovered = recovered;
    if let Some(path) = &config.report_path {
        if let Err(error) = write_report(path, &report, report.groups_spool.as_deref()) {
            tracing::error!(path = %path.display(), error = %error, "cannot write the run report");
        }
    }
    write_termination_message(&config.termination_message_path, &report);
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
                    tracing::warn!(path = %path.display(), "another run holds the journal; waiting for it to finish");
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
    settings: &ClientSettings,
    journal: &Journal,
    intent: Intent,
    control: &Control,
) -> GroupReport {
    let nodes: Result<Vec<NodeAddress>, String> = intent
        .nodes
        .iter()
        .map(|n| NodeAddress::parse(&n.node))
        .collect();
    let group = GroupId::new(intent.group_id.clone());
    let client =
        nodes.and_then(|nodes| NodeClient::new(settings, &nodes).map_err(|e| e.to_string()));
    match (group, client) {
        (Ok(group), Ok(client)) => {
            tracing::warn!(group_id = %group, operation = intent.operation.as_str(), "resolving a group a killed run left unfinished");
            Transaction::new(&client, &group, intent.operation, control)
                .with_journal(Some(journal))
                .recover(&intent.nodes)
                .await
        }
        (group, client) => {
            let problem = group.err().or(client.err()).unwrap_or_default();
            tracing::error!(group_id = %intent.group_id, problem = %problem, "a journal intent cannot be resolved");
            GroupReport::unresolvable(&intent, problem)
        }
    }
}

/// Logs one `node summary` line per node (requests, retries, transport
/// errors, answers per status, latency), then the run summary: totals per
/// outcome, requests, retries, latency, answers per status, exit code,
/// duration. The run summary is the last line: nothing is logged after it
/// (see [`crate::telemetry::SUMMARY_TARGET`]).
pub fn log_summary(report: &RunReport) {
    for node in &report.nodes {
        tracing::info!(
            target: "api_consumer::nodes",
            node = node.node.as_str(),
            requests = node.requests,
            retries = node.retries,
            transport_errors = node.transport_errors,
            statuses = statuses_text(&node.statuses),
            latency_p50_ms = node.latency.p50_ms,
            latency_p99_ms = node.latency.p99_ms,
            latency_max_ms = node.latency.max_ms,
            "node summary"
        );
    }
    let totals = &report.totals;
    let requests = &report.requests;
    tracing::info!(
        target: "api_consumer::summary",
        operation = report.operation.as_str(),
        groups = totals.groups,
        committed = totals.committed,
        rolled_back = totals.rolled_back,
        inconsistent = totals.inconsistent,
        not_started = totals.not_started,
        not_attempted_from = report
            .not_attempted
            .as_ref()
            .and_then(|n| n.from)
            .map(|from| from.to_string()),
        requests = requests.requests,
        retries = requests.retries,
        transport_errors = requests.transport_errors,
        statuses = statuses_text(&requests.statuses),
        latency_p50_ms = requests.latency.p50_ms,
        latency_p99_ms = requests.latency.p99_ms,
        stop_reason = report.stop_reason.map(|r| r.as_str()),
        exit_code = u8::from(report.exit_code),
        duration_ms = report.duration_ms,
        "run summary"
    );
}

/// Answers per status as one flat field, e.g. `201:3000 429:2`.
fn statuses_text(statuses: &std::collections::BTreeMap<String, u64>) -> String {
    statuses
        .iter()
        .map(|(status, count)| format!("{status}:{count}"))
        .collect::<Vec<_>>()
        .join(" ")
}
