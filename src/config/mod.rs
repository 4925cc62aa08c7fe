//! Configuration: environment variables (and a `.env` file for local runs),
//! parsed once into a typed [`Config`]; nothing downstream re-parses strings.
//!
//! A setting lives in two places: its entry in [`VARIABLES`] (name,
//! default, the kind of value it takes, meaning) and its field of
//! [`Config`], whose type, or the parser named on it, reads the value.
//! `--help`, the defaults, `.env_example`'s checks and the checks every
//! value of a kind gets come from the table. envy maps the variables onto
//! the fields; it does not trim, apply documented defaults or say which
//! variable a bad value came from, so [`Config::from_vars`] first checks
//! every variable against the table and afterwards names the variable of
//! any parser's error.
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
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use environment::{environment, lenient_log_settings, log_settings_from_env_lenient};
pub use help::help_text;
pub use variables::{DefaultValue, Kind, VariableDoc, MAX_NODES, VARIABLES};

use self::parse as p;
use self::variables::{JOURNAL_PATH, PRUNE, RETRY_MAX_DELAY_MS};
use crate::domain::{NodeAddress, NodeProtocol, Operation, Secret, Shard};
use crate::engine::id_list::GroupIds;
use crate::engine::prior::PriorSource;
use crate::output::metrics::MetricsSettings;
use crate::output::telemetry::LogFormat;

/// The job's settings, one field per variable (envy maps `NAME` to the
/// field `name`, or to the one renamed so) and, marked `skip`, the few that
/// several variables make up.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(deserialize_with = "p::nodes")]
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
    /// handles: `SHARD_COUNT` and `SHARD_INDEX` or `JOB_COMPLETION_INDEX`.
    #[serde(skip)]
    pub shard: Shard,
    shard_count: u32,
    shard_index: Option<u64>,
    job_completion_index: Option<u64>,
    /// How the nodes take creates and deletes.
    pub node_protocol: NodeProtocol,
    /// The ids in the order given: `GROUP_IDS` first, then `GROUP_IDS_FILE`
    /// (every entry is one transaction, repeats included), of which this
    /// run takes its shard's. Empty only for a verify of every listed group.
    #[serde(skip)]
    pub group_ids: GroupIds,
    #[serde(rename = "group_ids")]
    group_ids_inline: Option<String>,
    group_ids_file: Option<String>,
    #[serde(rename = "request_timeout_ms", deserialize_with = "p::millis")]
    pub request_timeout: Duration,
    #[serde(rename = "connect_timeout_ms", deserialize_with = "p::millis")]
    pub connect_timeout: Duration,
    /// How long a node may take to apply a write whose answer the job did
    /// not get.
    #[serde(rename = "write_settle_ms", deserialize_with = "p::millis")]
    pub write_settle: Duration,
    pub max_retries: u32,
    #[serde(rename = "retry_base_delay_ms", deserialize_with = "p::millis")]
    pub retry_base_delay: Duration,
    #[serde(rename = "retry_max_delay_ms", deserialize_with = "p::millis")]
    pub retry_max_delay: Duration,
    #[serde(rename = "run_timeout_secs", deserialize_with = "p::secs")]
    pub run_timeout: Duration,
    #[serde(rename = "rollback_timeout_secs", deserialize_with = "p::secs")]
    pub rollback_timeout: Duration,
    pub concurrency: usize,
    pub node_concurrency: usize,
    /// Requests per second per node; `None` = unlimited.
    #[serde(deserialize_with = "p::zero_is_off")]
    pub node_rate_limit: Option<NonZeroU32>,
    /// Failed attempts in a row that take a node down; 0 = never.
    pub node_down_after_failures: u32,
    /// How long the run waits for a down node.
    #[serde(rename = "node_down_wait_secs", deserialize_with = "p::secs")]
    pub node_down_wait: Duration,
    /// Failed groups after which no new group starts; `None` = no limit.
    #[serde(deserialize_with = "p::zero_is_off")]
    pub max_failed_groups: Option<NonZeroU64>,
    /// Time between progress lines; `None` = none.
    #[serde(rename = "progress_interval_secs", deserialize_with = "p::secs_or_off")]
    pub progress_interval: Option<Duration>,
    #[serde(default, deserialize_with = "p::auth_token")]
    pub auth_token: Option<Secret>,
    /// The token read from `AUTH_TOKEN_FILE`, moved into `auth_token`.
    #[serde(default, deserialize_with = "p::auth_token_file")]
    auth_token_file: Option<Secret>,
    /// Extra trust anchors from `CA_CERT_PATH` (empty = system store only).
    #[serde(rename = "ca_cert_path", default)]
    #[serde(deserialize_with = "p::ca_certificates")]
    pub ca_certificates: Vec<reqwest::Certificate>,
    pub log_format: LogFormat,
    #[serde(deserialize_with = "p::log_level")]
    pub log_level: String,
    #[serde(default, deserialize_with = "p::report_path")]
    pub report_path: Option<PathBuf>,
    /// Where the end-of-run summary for Kubernetes goes, if the file exists.
    #[serde(deserialize_with = "p::termination_message_path")]
    pub termination_message_path: PathBuf,
    /// Where the crash journal lives (this shard's file); `None` = no
    /// journal.
    pub journal_path: Option<PathBuf>,
    /// Where the run's metrics are pushed; `None` = nowhere.
    #[serde(skip)]
    pub metrics: Option<MetricsSettings>,
    #[serde(default, deserialize_with = "p::pushgateway_url")]
    metrics_pushgateway_url: Option<reqwest::Url>,
    #[serde(deserialize_with = "p::metrics_job")]
    metrics_job: String,
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

impl VariableDoc {
    /// An error in this variable's value.
    pub(crate) fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.name, message)
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
    /// Pure apart from reading `GROUP_IDS_FILE` and `CA_CERT_PATH`.
    /// Unknown names are ignored; the last occurrence of a name wins.
    pub fn from_vars<I>(vars: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        // Names are matched case-sensitively (envy lower-cases them, and
        // `nodes` is not `NODES` on Linux).
        let given: BTreeMap<String, String> = vars
            .into_iter()
            .filter(|(name, _)| VARIABLES.iter().any(|doc| doc.name == name))
            .collect();
        let checked = p::checked_against_table(given)?;
        let mut config: Config = envy::from_iter(checked).map_err(p::named_error)?;
        config.derive()?;
        Ok(config)
    }

    /// The settings several variables make up, and the checks across them.
    fn derive(&mut self) -> Result<(), ConfigError> {
        if self.prune && self.operation != Operation::Reconcile {
            return Err(PRUNE.error(format!(
                "applies only to OPERATION=reconcile, not {}",
                self.operation
            )));
        }
        if self.retry_max_delay < self.retry_base_delay {
            return Err(RETRY_MAX_DELAY_MS.error(format!(
                "must be at least RETRY_BASE_DELAY_MS ({}), got {}",
                self.retry_base_delay.as_millis(),
                self.retry_max_delay.as_millis()
            )));
        }
        if let Some(token) = self.auth_token_file.take() {
            if self.auth_token.is_some() {
                return Err(variables::AUTH_TOKEN_FILE
                    .error("cannot be set together with AUTH_TOKEN: give the token one way"));
            }
            self.auth_token = Some(token);
        }
        self.shard = p::shard(
            self.shard_count,
            self.shard_index,
            self.job_completion_index,
        )?;
        // The raw values are taken, not kept beside what they became.
        self.group_ids = p::group_ids(
            self.group_ids_inline.take().as_deref(),
            self.group_ids_file.as_deref(),
            self.operation,
            self.shard,
        )?;
        if let Some(path) = self.journal_path.take() {
            let path = shard_file(path, self.shard);
            self.journal_path = Some(p::writable_file_path(&JOURNAL_PATH, path)?);
        }
        let job = std::mem::take(&mut self.metrics_job);
        self.metrics = self
            .metrics_pushgateway_url
            .take()
            .map(|gateway| MetricsSettings { gateway, job });
        Ok(())
    }
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
