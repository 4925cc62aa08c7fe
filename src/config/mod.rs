//! Configuration: environment variables (and a `.env` file for local runs),
//! parsed once into a typed [`Config`]; nothing downstream re-parses strings.
//!
//! Every variable the job reads is described once, in [`VARIABLES`]: its
//! name, default, accepted range and meaning. `--help`, the defaults applied
//! when a variable is unset and the checks on `.env_example` all come from
//! that table, so they cannot drift apart.
//!
//! Validation is strict and happens up front, before any request is sent:
//! a variable that is set but empty, a number with a sign or a unit, a
//! duplicated node or a malformed group id is a [`ConfigError`] naming the
//! variable, never a silently applied default. The value of `AUTH_TOKEN`
//! never appears in an error or in `Debug` output.

mod environment;
mod help;
mod parse;
#[cfg(test)]
mod tests;
mod variables;

use std::collections::BTreeMap;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use environment::{environment, lenient_log_settings, log_settings_from_env_lenient};
pub use help::help_text;
pub use variables::{DefaultValue, VariableDoc, MAX_NODES, VARIABLES};

use self::parse::{
    collect_group_ids, flag, millis, number, parse_auth_token, parse_metrics, parse_node_protocol,
    parse_nodes, parse_operation, parse_prior_state, parse_shard, present, read_ca_certificates,
    required, secs, validate_log_level, with_default, writable_file_path,
};
use self::variables::*;
use crate::domain::{quote, NodeAddress, NodeProtocol, Operation, Secret, Shard};
use crate::engine::id_list::GroupIds;
use crate::engine::prior::PriorSource;
use crate::output::metrics::MetricsSettings;
use crate::output::telemetry::LogFormat;

#[derive(Debug, Clone)]
pub struct Config {
    pub nodes: Vec<NodeAddress>,
    pub operation: Operation,
    /// Plan only: read, never write.
    pub dry_run: bool,
    /// Reconcile also deletes the groups not listed.
    pub prune: bool,
    /// Most groups one reconcile may prune.
    pub prune_max: u64,
    /// Where the transactions' prior states come from.
    pub prior_state: PriorSource,
    /// The share of the ids (and of the groups found on the nodes) this run
    /// handles.
    pub shard: Shard,
    /// How the nodes take creates and deletes.
    pub node_protocol: NodeProtocol,
    /// The ids in the order given: `GROUP_IDS` first, then `GROUP_IDS_FILE`
    /// (every entry is one transaction, repeats included), of which this
    /// run takes its shard's. Empty only for a verify of every listed group.
    pub group_ids: GroupIds,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_retries: u32,
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    pub run_timeout: Duration,
    pub rollback_timeout: Duration,
    pub concurrency: usize,
    pub node_concurrency: usize,
    /// Requests per second per node; `None` = unlimited.
    pub node_rate_limit: Option<std::num::NonZeroU32>,
    /// Failed groups after which no new group starts; `None` = no limit.
    pub max_failed_groups: Option<NonZeroU64>,
    /// Time between progress lines; `None` = none.
    pub progress_interval: Option<Duration>,
    pub auth_token: Option<Secret>,
    /// Extra trust anchors from `CA_CERT_PATH` (empty = system store only).
    pub ca_certificates: Vec<reqwest::Certificate>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub report_path: Option<PathBuf>,
    /// Where the end-of-run summary for Kubernetes goes, if the file exists.
    pub termination_message_path: PathBuf,
    /// Where the crash journal lives; `None` = no journal.
    pub journal_path: Option<PathBuf>,
    /// Where the run's metrics are pushed; `None` = nowhere.
    pub metrics: Option<MetricsSettings>,
}

/// The journal of one shard: each shard resolves only what it left
/// unfinished, and two pods never hold the same file.
fn shard_file(path: PathBuf, shard: Shard) -> PathBuf {
    if !shard.is_split() {
        return path;
    }
    let mut name = path.into_os_string();
    name.push(format!(".shard-{}-of-{}", shard.index(), shard.count()));
    PathBuf::from(name)
}

/// A configuration problem: which variable, and what is wrong with it.
/// Displays as one line, `VARIABLE: message`. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    /// The variable at fault (or `.env` for the file itself).
    pub variable: &'static str,
    pub message: String,
}

impl ConfigError {
    /// The variable at fault, for a structured log field.
    pub fn variable(&self) -> &'static str {
        self.variable
    }

    pub(crate) fn new(variable: &'static str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            variable,
            message: message.into(),
        }
    }
}

/// The variables as envy maps them: everything optional and raw, so that
/// presence, trimming and every check are ours and errors name variables.
/// Deliberately not `Debug`: it holds the token.
#[derive(serde::Deserialize)]
struct Raw {
    nodes: Option<String>,
    operation: Option<String>,
    dry_run: Option<String>,
    prune: Option<String>,
    prune_max: Option<String>,
    prior_state: Option<String>,
    shard_count: Option<String>,
    shard_index: Option<String>,
    job_completion_index: Option<String>,
    node_protocol: Option<String>,
    group_ids: Option<String>,
    group_ids_file: Option<String>,
    request_timeout_ms: Option<String>,
    connect_timeout_ms: Option<String>,
    max_retries: Option<String>,
    retry_base_delay_ms: Option<String>,
    retry_max_delay_ms: Option<String>,
    run_timeout_secs: Option<String>,
    rollback_timeout_secs: Option<String>,
    concurrency: Option<String>,
    node_concurrency: Option<String>,
    node_rate_limit: Option<String>,
    max_failed_groups: Option<String>,
    progress_interval_secs: Option<String>,
    auth_token: Option<String>,
    ca_cert_path: Option<String>,
    log_format: Option<String>,
    log_level: Option<String>,
    report_path: Option<String>,
    termination_message_path: Option<String>,
    journal_path: Option<String>,
    metrics_pushgateway_url: Option<String>,
    metrics_job: Option<String>,
}

impl Raw {
    /// Keeps only the job's variables, matched case-sensitively (envy
    /// lower-cases names, and `nodes` is not `NODES` on Linux); the last
    /// occurrence of a name wins.
    fn from_vars<I>(vars: I) -> Result<Raw, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let known: BTreeMap<String, String> = vars
            .into_iter()
            .filter(|(name, _)| VARIABLES.iter().any(|doc| doc.name == name))
            .collect();
        // With only `Option<String>` fields envy cannot fail on a value; the
        // message is kept generic so that it can never carry one.
        envy::from_iter(known)
            .map_err(|_| ConfigError::new("environment", "cannot read the variables"))
    }
}

impl Config {
    /// Reads the configuration from the process environment, plus a `.env`
    /// file in the current directory when there is one (variables already
    /// set in the environment win over the file).
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_vars(environment()?)
    }

    /// Parses and validates the configuration from `(name, value)` pairs.
    /// Pure apart from reading `GROUP_IDS_FILE`. Unknown names are ignored.
    pub fn from_vars<I>(vars: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let raw = Raw::from_vars(vars)?;

        let nodes = parse_nodes(&required(&NODES, raw.nodes)?)?;
        let operation = parse_operation(&required(&OPERATION, raw.operation)?)?;
        let dry_run = flag(&DRY_RUN, raw.dry_run)?;
        let prune = flag(&PRUNE, raw.prune)?;
        let prune_max = number(&PRUNE_MAX, raw.prune_max)?;
        let prior_state = parse_prior_state(&with_default(&PRIOR_STATE, raw.prior_state)?)?;
        if prune && operation != Operation::Reconcile {
            return Err(ConfigError::new(
                PRUNE.name,
                format!("applies only to OPERATION=reconcile, not {operation}"),
            ));
        }

        let inline_ids = present(&GROUP_IDS, raw.group_ids)?;
        let ids_file = present(&GROUP_IDS_FILE, raw.group_ids_file)?;
        let shard = parse_shard(raw.shard_count, raw.shard_index, raw.job_completion_index)?;
        let node_protocol = parse_node_protocol(&with_default(&NODE_PROTOCOL, raw.node_protocol)?)?;
        let group_ids = collect_group_ids(inline_ids.as_deref(), ids_file, operation, shard)?;

        let request_timeout = millis(&REQUEST_TIMEOUT_MS, raw.request_timeout_ms)?;
        let connect_timeout = millis(&CONNECT_TIMEOUT_MS, raw.connect_timeout_ms)?;
        let max_retries = number(&MAX_RETRIES, raw.max_retries)?;
        let retry_base_delay = millis(&RETRY_BASE_DELAY_MS, raw.retry_base_delay_ms)?;
        let retry_max_delay = millis(&RETRY_MAX_DELAY_MS, raw.retry_max_delay_ms)?;
        if retry_max_delay < retry_base_delay {
            return Err(ConfigError::new(
                RETRY_MAX_DELAY_MS.name,
                format!(
                    "must be at least RETRY_BASE_DELAY_MS ({}), got {}",
                    retry_base_delay.as_millis(),
                    retry_max_delay.as_millis()
                ),
            ));
        }
        let run_timeout = secs(&RUN_TIMEOUT_SECS, raw.run_timeout_secs)?;
        let rollback_timeout = secs(&ROLLBACK_TIMEOUT_SECS, raw.rollback_timeout_secs)?;
        let concurrency = number(&CONCURRENCY, raw.concurrency)?;
        let node_concurrency = number(&NODE_CONCURRENCY, raw.node_concurrency)?;
        let node_rate_limit: u32 = number(&NODE_RATE_LIMIT, raw.node_rate_limit)?;
        let max_failed_groups: u64 = number(&MAX_FAILED_GROUPS, raw.max_failed_groups)?;
        let progress_interval = secs(&PROGRESS_INTERVAL_SECS, raw.progress_interval_secs)?;

        let auth_token = present(&AUTH_TOKEN, raw.auth_token)?
            .map(|token| parse_auth_token(&token))
            .transpose()?;

        let ca_certificates = match present(&CA_CERT_PATH, raw.ca_cert_path)? {
            Some(path) => read_ca_certificates(Path::new(&path))?,
            None => Vec::new(),
        };

        let log_format_text = with_default(&LOG_FORMAT, raw.log_format)?;
        let log_format = LogFormat::parse(&log_format_text).ok_or_else(|| {
            ConfigError::new(
                LOG_FORMAT.name,
                format!("must be json or pretty, got {}", quote(&log_format_text)),
            )
        })?;
        let log_level = with_default(&LOG_LEVEL, raw.log_level)?;
        validate_log_level(&log_level)?;

        let report_path = present(&REPORT_PATH, raw.report_path)?
            .map(|path| writable_file_path(&REPORT_PATH, PathBuf::from(path)))
            .transpose()?;
        let termination_message_path = PathBuf::from(with_default(
            &TERMINATION_MESSAGE_PATH,
            raw.termination_message_path,
        )?);
        if termination_message_path.is_dir() {
            return Err(ConfigError::new(
                TERMINATION_MESSAGE_PATH.name,
                format!(
                    "{} is a directory",
                    quote(&termination_message_path.display().to_string())
                ),
            ));
        }
        let journal_path = present(&JOURNAL_PATH, raw.journal_path)?
            .map(|path| writable_file_path(&JOURNAL_PATH, shard_file(PathBuf::from(path), shard)))
            .transpose()?;

        let metrics = parse_metrics(raw.metrics_pushgateway_url, raw.metrics_job)?;

        Ok(Config {
            nodes,
            operation,
            dry_run,
            prune,
            prune_max,
            prior_state,
            shard,
            node_protocol,
            group_ids,
            request_timeout,
            connect_timeout,
            max_retries,
            retry_base_delay,
            retry_max_delay,
            run_timeout,
            rollback_timeout,
            concurrency,
            node_concurrency,
            node_rate_limit: NonZeroU32::new(node_rate_limit),
            max_failed_groups: NonZeroU64::new(max_failed_groups),
            progress_interval: (!progress_interval.is_zero()).then_some(progress_interval),
            auth_token,
            ca_certificates,
            log_format,
            log_level,
            report_path,
            termination_message_path,
            journal_path,
            metrics,
        })
    }
}
