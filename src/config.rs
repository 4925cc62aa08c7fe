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

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::ids::GroupIds;

/// What the run does to every group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Goal: the group is present on every node.
    Create,
    /// Goal: the group is absent from every node.
    Delete,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Delete => "delete",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated group id: non-empty, at most 256 bytes, no control characters,
/// not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct GroupId(String);

impl GroupId {
    pub const MAX_BYTES: usize = 256;

    /// Validates `id` as given (no trimming): non-empty, at most
    /// [`GroupId::MAX_BYTES`] bytes of UTF-8, no control characters, and not
    /// exactly `.` or `..`.
    /// The error describes the problem without repeating the id.
    pub fn new(id: impl Into<String>) -> Result<GroupId, String> {
        let id = id.into();
        if id.is_empty() {
            return Err("group id is empty".to_owned());
        }
        if id.len() > Self::MAX_BYTES {
            return Err(format!(
                "group id is {} bytes long; at most {} bytes are allowed",
                id.len(),
                Self::MAX_BYTES
            ));
        }
        if let Some((at, c)) = id.char_indices().find(|(_, c)| c.is_control()) {
            return Err(format!(
                "group id contains the control character U+{:04X} at byte {at}",
                u32::from(c)
            ));
        }
        // URL parsers resolve a path segment of `.` or `..` (even encoded as
        // `%2E`) against its parent, so `GET /v1/group/<id>/` cannot address
        // these two ids: reading them back would read something else.
        if id == "." || id == ".." {
            return Err(format!(
                "group id {id:?} cannot be addressed in a URL path (GET /v1/group/<id>/)"
            ));
        }
        Ok(GroupId(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps an id read back from the job's own journal, for reporting it
    /// when it no longer validates; nothing is sent for such an id.
    pub(crate) fn unchecked(id: &str) -> GroupId {
        GroupId(id.to_string())
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One node's base URL, normalised (scheme, host, port, path ending in `/`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeAddress {
    /// Base URL that API paths are joined onto; always ends with `/`.
    pub base: Url,
    /// How logs and reports name the node: the base URL without the trailing `/`.
    pub name: String,
}

impl NodeAddress {
    /// Parses one `NODES` entry (already trimmed): a base URL
    /// (`http://host[:port][/prefix]`, `https://...`) or `host[:port]`,
    /// which means `http://host[:port]`. IPv6 literals need brackets
    /// (`[::1]:8080`). The scheme and host are lower-cased, a default port
    /// is dropped and the path gets a trailing `/`, so two spellings of the
    /// same node normalise to the same address.
    ///
    /// The error never repeats an entry that may hold credentials.
    pub fn parse(entry: &str) -> Result<NodeAddress, String> {
        if entry.is_empty() {
            return Err("is empty".to_owned());
        }
        // An `@` means `user:pass@host`: refuse it before any parsing so
        // that no error message can ever carry the password.
        if entry.contains('@') {
            return Err(
                "contains '@': credentials (user:pass@) are not accepted in NODES; \
                 use AUTH_TOKEN (the entry is not shown)"
                    .to_owned(),
            );
        }
        let shown = quote(entry);
        let with_scheme = if entry.contains("://") {
            entry.to_owned()
        } else {
            // `host:port` looks like `scheme:rest` to a URL parser; only a
            // port (digits) may follow the first colon of a scheme-less
            // entry, otherwise it is a malformed URL such as `http:/host`.
            if let Some((before, after)) = entry.split_once(':') {
                let scheme_like = before
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                    && before
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
                let port_like = after
                    .split('/')
                    .next()
                    .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
                if scheme_like && !port_like {
                    return Err(format!(
                        "{shown} is neither a URL (http://host[:port]) nor host[:port]"
                    ));
                }
            }
            format!("http://{entry}")
        };
        let mut url = Url::parse(&with_scheme).map_err(|e| {
            let hint = if !entry.contains('[') && entry.matches(':').count() > 1 {
                " (IPv6 addresses need brackets, e.g. [::1]:8080)"
            } else {
                ""
            };
            format!("{shown} is not a valid URL or host[:port]: {e}{hint}")
        })?;
        match url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(format!(
                    "{shown} has the scheme {}; only http and https are supported",
                    quote(other)
                ))
            }
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{shown} has no host"));
        }
        // Unreachable after the `@` check, kept so that credentials can
        // never slip through a URL form the check did not anticipate.
        if !url.username().is_empty() || url.password().is_some() {
            return Err("contains credentials (user:pass@); use AUTH_TOKEN \
                 (the entry is not shown)"
                .to_owned());
        }
        if url.query().is_some() {
            return Err(format!("{shown} has a query (?...); a node is a base URL"));
        }
        if url.fragment().is_some() {
            return Err(format!(
                "{shown} has a fragment (#...); a node is a base URL"
            ));
        }
        // Exactly one trailing `/`: the name (the URL without it) then
        // re-parses to the same node, and `/api/` and `/api//` are one node.
        let path = format!("{}/", url.path().trim_end_matches('/'));
        url.set_path(&path);
        let name = url.as_str().trim_end_matches('/').to_owned();
        Ok(NodeAddress { base: url, name })
    }
}

impl fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A secret value: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl LogFormat {
    fn parse(value: &str) -> Option<LogFormat> {
        if value.eq_ignore_ascii_case("json") {
            Some(LogFormat::Json)
        } else if value.eq_ignore_ascii_case("pretty") {
            Some(LogFormat::Pretty)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub nodes: Vec<NodeAddress>,
    pub operation: Operation,
    /// The ids in the order given: `GROUP_IDS` first, then `GROUP_IDS_FILE`
    /// (every entry is one transaction, repeats included).
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

    fn new(variable: &'static str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            variable,
            message: message.into(),
        }
    }
}

/// The default of a variable, as documented and as applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// The variable must be set.
    Required,
    /// Applied when the variable is unset; parsed like a set value.
    Value(&'static str),
    /// Leaving the variable unset is meaningful; the text says what it means.
    Unset(&'static str),
}

impl fmt::Display for DefaultValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefaultValue::Required => f.write_str("required"),
            DefaultValue::Value(v) => write!(f, "default: {v}"),
            DefaultValue::Unset(meaning) => write!(f, "default: unset, {meaning}"),
        }
    }
}

/// Documentation of one environment variable: the single source for
/// `--help`, the defaults, the numeric ranges and `.env_example`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VariableDoc {
    pub name: &'static str,
    pub default: DefaultValue,
    /// Inclusive range of a whole-number variable.
    pub range: Option<(u64, u64)>,
    pub description: &'static str,
}

const NODES: VariableDoc = VariableDoc {
    name: "NODES",
    default: DefaultValue::Required,
    range: None,
    description: "Comma-separated node base URLs (http://host[:port][/prefix] or https://...) \
        or host[:port] entries, which mean http://host[:port]. IPv6 literals need brackets \
        ([::1]:8080). Entries are trimmed; empty entries, credentials, queries and nodes \
        listed twice are errors. At most 10000 nodes.",
};
const OPERATION: VariableDoc = VariableDoc {
    name: "OPERATION",
    default: DefaultValue::Required,
    range: None,
    description: "create (make every group present on every node) or delete (make every \
        group absent from every node); case-insensitive.",
};
const GROUP_IDS: VariableDoc = VariableDoc {
    name: "GROUP_IDS",
    default: DefaultValue::Unset("ids come only from GROUP_IDS_FILE"),
    range: None,
    description: "Comma-separated group ids, each trimmed. A group id is 1 to 256 bytes of \
        UTF-8 without control characters, and not exactly . or .. (which no URL path can \
        address). GROUP_IDS and GROUP_IDS_FILE together must give \
        at least one id. Every entry is one transaction; an id listed again runs again \
        after its earlier entry has finished, never at the same time.",
};
const GROUP_IDS_FILE: VariableDoc = VariableDoc {
    name: "GROUP_IDS_FILE",
    default: DefaultValue::Unset("ids come only from GROUP_IDS"),
    range: None,
    description: "Path of a UTF-8 file with one group id per line (use it for ids that \
        contain commas). Lines are trimmed; blank lines and lines starting with # are \
        skipped. Its ids follow those of GROUP_IDS. Any size: every line is checked \
        before the first request, then the ids are streamed, not held in memory.",
};
const REQUEST_TIMEOUT_MS: VariableDoc = VariableDoc {
    name: "REQUEST_TIMEOUT_MS",
    default: DefaultValue::Value("5000"),
    range: Some((1, 600_000)),
    description: "Time limit of one HTTP attempt (connecting, sending and reading the \
        whole answer), in milliseconds.",
};
const CONNECT_TIMEOUT_MS: VariableDoc = VariableDoc {
    name: "CONNECT_TIMEOUT_MS",
    default: DefaultValue::Value("2000"),
    range: Some((1, 600_000)),
    description: "Time limit for opening a TCP (and TLS) connection to a node, in \
        milliseconds.",
};
const MAX_RETRIES: VariableDoc = VariableDoc {
    name: "MAX_RETRIES",
    default: DefaultValue::Value("5"),
    range: Some((0, 100)),
    description: "Retries of a request after a transient failure (connection error, \
        timeout, 408, 429, 5xx), on top of the first attempt.",
};
const RETRY_BASE_DELAY_MS: VariableDoc = VariableDoc {
    name: "RETRY_BASE_DELAY_MS",
    default: DefaultValue::Value("100"),
    range: Some((1, 600_000)),
    description: "First delay of the exponential backoff between retries, in \
        milliseconds; it doubles per retry up to RETRY_MAX_DELAY_MS, and each wait is \
        drawn at random below it (full jitter).",
};
const RETRY_MAX_DELAY_MS: VariableDoc = VariableDoc {
    name: "RETRY_MAX_DELAY_MS",
    default: DefaultValue::Value("10000"),
    range: Some((1, 3_600_000)),
    description: "Longest backoff wait between retries, in milliseconds; at least \
        RETRY_BASE_DELAY_MS. A node's Retry-After is honoured even when longer.",
};
const RUN_TIMEOUT_SECS: VariableDoc = VariableDoc {
    name: "RUN_TIMEOUT_SECS",
    default: DefaultValue::Value("3600"),
    range: Some((1, 604_800)),
    description: "Deadline for starting work, in seconds from start-up. Groups not started \
        by then are not attempted; groups in flight get ROLLBACK_TIMEOUT_SECS more.",
};
const ROLLBACK_TIMEOUT_SECS: VariableDoc = VariableDoc {
    name: "ROLLBACK_TIMEOUT_SECS",
    default: DefaultValue::Value("20"),
    range: Some((1, 3_600)),
    description: "Budget after the run deadline or a SIGTERM/SIGINT in which groups in \
        flight finish or roll back, in seconds. Keep it below the pod's \
        terminationGracePeriodSeconds.",
};
const CONCURRENCY: VariableDoc = VariableDoc {
    name: "CONCURRENCY",
    default: DefaultValue::Value("16"),
    range: Some((1, 10_000)),
    description: "Groups processed at the same time.",
};
const NODE_CONCURRENCY: VariableDoc = VariableDoc {
    name: "NODE_CONCURRENCY",
    default: DefaultValue::Value("8"),
    range: Some((1, 1_000)),
    description: "Requests in flight to one node at the same time.",
};
const NODE_RATE_LIMIT: VariableDoc = VariableDoc {
    name: "NODE_RATE_LIMIT",
    default: DefaultValue::Value("0"),
    range: Some((0, 1_000_000)),
    description: "Requests per second sent to one node, spread evenly (no bursts); 0 \
        turns the limit off. A 429 from a node also pauses every request to it until its \
        Retry-After has passed.",
};
const MAX_FAILED_GROUPS: VariableDoc = VariableDoc {
    name: "MAX_FAILED_GROUPS",
    default: DefaultValue::Value("0"),
    range: Some((0, u32::MAX as u64)),
    description: "Stop starting new groups once this many have failed (rolled back or \
        inconsistent); groups in flight still finish, the report says from which entry \
        on groups were not attempted. 0 means no limit.",
};
const PROGRESS_INTERVAL_SECS: VariableDoc = VariableDoc {
    name: "PROGRESS_INTERVAL_SECS",
    default: DefaultValue::Value("10"),
    range: Some((0, 86_400)),
    description: "Seconds between progress lines (done/total, outcomes, rate, ETA); 0 \
        turns them off. With LOG_FORMAT=pretty on a terminal, a progress bar instead.",
};
const AUTH_TOKEN: VariableDoc = VariableDoc {
    name: "AUTH_TOKEN",
    default: DefaultValue::Unset("no Authorization header is sent"),
    range: None,
    description: "Token sent to every node as `Authorization: Bearer <token>` (the token \
        alone, visible ASCII without spaces). Never logged or shown in errors.",
};
const LOG_FORMAT: VariableDoc = VariableDoc {
    name: "LOG_FORMAT",
    default: DefaultValue::Value("json"),
    range: None,
    description: "json: one flat JSON object per line on stdout (timestamp, level, \
        severity, message, target, fields); pretty: human-readable lines, coloured only \
        on a terminal.",
};
const LOG_LEVEL: VariableDoc = VariableDoc {
    name: "LOG_LEVEL",
    default: DefaultValue::Value("info"),
    range: None,
    description: "Log filter: a level (error, warn, info, debug, trace) or tracing \
        EnvFilter directives such as api_consumer=debug,info. The run summary is \
        logged at every level but off.",
};
const REPORT_PATH: VariableDoc = VariableDoc {
    name: "REPORT_PATH",
    default: DefaultValue::Unset("no report file; the summary is still logged"),
    range: None,
    description: "Path of the JSON run report written at the end of the run (its \
        directory must exist).",
};
const TERMINATION_MESSAGE_PATH: VariableDoc = VariableDoc {
    name: "TERMINATION_MESSAGE_PATH",
    default: DefaultValue::Value("/dev/termination-log"),
    range: None,
    description: "Where a compact run summary (at most 4 KiB of JSON) is written at the \
        end, for kubectl describe pod; written only when the file already exists, as \
        Kubernetes creates it (keep it equal to the container's terminationMessagePath).",
};
const CA_CERT_PATH: VariableDoc = VariableDoc {
    name: "CA_CERT_PATH",
    default: DefaultValue::Unset("the system's trust store only"),
    range: None,
    description: "PEM file with the certificate(s) of a private CA that signs the nodes' \
        https certificates; trusted in addition to the system's trust store. A \
        certificate error is never retried, and no new group starts after one.",
};
const JOURNAL_PATH: VariableDoc = VariableDoc {
    name: "JOURNAL_PATH",
    default: DefaultValue::Unset("no journal"),
    range: None,
    description: "Path of the crash journal (on a volume that outlives the pod). Before \
        changing a group the job records its intent there; a run started after a killed \
        one first returns every group the killed run left unfinished to all-or-nothing, \
        restoring deleted records exactly. Its directory must exist.",
};

/// Every variable the job reads, in documentation order.
pub const VARIABLES: &[VariableDoc] = &[
    NODES,
    OPERATION,
    GROUP_IDS,
    GROUP_IDS_FILE,
    REQUEST_TIMEOUT_MS,
    CONNECT_TIMEOUT_MS,
    MAX_RETRIES,
    RETRY_BASE_DELAY_MS,
    RETRY_MAX_DELAY_MS,
    RUN_TIMEOUT_SECS,
    ROLLBACK_TIMEOUT_SECS,
    CONCURRENCY,
    NODE_CONCURRENCY,
    NODE_RATE_LIMIT,
    MAX_FAILED_GROUPS,
    PROGRESS_INTERVAL_SECS,
    AUTH_TOKEN,
    CA_CERT_PATH,
    LOG_FORMAT,
    LOG_LEVEL,
    REPORT_PATH,
    TERMINATION_MESSAGE_PATH,
    JOURNAL_PATH,
];

/// Most nodes one run accepts: beyond this a typo (a pasted id list?) is
/// far likelier than a real cluster.
pub const MAX_NODES: usize = 10_000;

/// Longest excerpt of a value quoted in an error message.
const QUOTE_MAX_CHARS: usize = 64;

/// The variables as envy maps them: everything optional and raw, so that
/// presence, trimming and every check are ours and errors name variables.
/// Deliberately not `Debug`: it holds the token.
#[derive(serde::Deserialize)]
struct Raw {
    nodes: Option<String>,
    operation: Option<String>,
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

        let inline_ids = present(&GROUP_IDS, raw.group_ids)?;
        let ids_file = present(&GROUP_IDS_FILE, raw.group_ids_file)?;
        let group_ids = collect_group_ids(inline_ids.as_deref(), ids_file)?;

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
            .map(|path| writable_file_path(&JOURNAL_PATH, PathBuf::from(path)))
            .transpose()?;

        Ok(Config {
            nodes,
            operation,
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
        })
    }
}

/// The variables the job sees: `.env` in the current directory (if any)
/// overlaid by the process environment. The process environment itself is
/// never modified.
///
/// Errors: a `.env` that exists but cannot be read or parsed (named `.env`),
/// or one of the job's variables holding bytes that are not UTF-8.
pub fn environment() -> Result<Vec<(String, String)>, ConfigError> {
    merge_environment(read_dotenv(Path::new(".env"))?, std::env::vars_os())
}

/// `LOG_FORMAT` and `LOG_LEVEL` as far as they are valid, else the defaults
/// (`json`, `info`), never an error: lets `main` set up logging first and
/// then report a configuration error as a log line in the expected format.
pub fn lenient_log_settings<I>(vars: I) -> (LogFormat, String)
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut format = LogFormat::Json;
    let mut level = String::from("info");
    for (name, value) in vars {
        let value = value.trim();
        if name == LOG_FORMAT.name {
            format = LogFormat::parse(value).unwrap_or(LogFormat::Json);
        } else if name == LOG_LEVEL.name {
            level = if !value.is_empty() && validate_log_level(value).is_ok() {
                value.to_owned()
            } else {
                "info".to_owned()
            };
        }
    }
    (format, level)
}

/// [`lenient_log_settings`] over the process environment and `.env`; a
/// `.env` that cannot be parsed contributes the lines before the problem.
pub fn log_settings_from_env_lenient() -> (LogFormat, String) {
    let dotenv = match std::fs::read(".env") {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            dotenvy::from_read_iter(strip_bom(&text).as_bytes())
                .map_while(Result::ok)
                .collect()
        }
        Err(_) => Vec::new(),
    };
    let mut merged: BTreeMap<String, String> = dotenv.into_iter().collect();
    for (name, value) in std::env::vars_os() {
        if let (Ok(name), Ok(value)) = (name.into_string(), value.into_string()) {
            merged.insert(name, value);
        }
    }
    lenient_log_settings(merged)
}

/// The `--help` text.
pub fn help_text() -> String {
    let mut out = String::new();
    out.push_str(&format!("api-consumer {}\n\n", env!("CARGO_PKG_VERSION")));
    push_wrapped(
        &mut out,
        "",
        "Creates or deletes groups on every node of a cluster, all-or-nothing: a group ends \
         up present on all nodes or on none. For each group the job reads every node's \
         state, changes only the nodes that differ from the goal, retries transient \
         failures with backoff, resolves ambiguous answers by reading the node back, and \
         rolls back exactly the nodes it changed when the group cannot reach its goal. \
         Groups that cannot be made consistent are named in the logs and the run report. \
         Logs go to stdout; the last line is the run summary.",
    );
    out.push_str("\nUSAGE:\n    api-consumer [--help | --version]\n\n");
    push_wrapped(
        &mut out,
        "",
        "Without arguments the job runs. It takes no other arguments: it is configured \
         only through the environment variables below. For local runs a .env file in the \
         current directory is read too (variables already set in the environment win). \
         Values are trimmed; a variable that is set but empty is an error (unset it to \
         get the default).",
    );
    out.push_str("\nENVIRONMENT:\n");
    for doc in VARIABLES {
        let mut heading = format!("    {}  ({}", doc.name, doc.default);
        if let Some((min, max)) = doc.range {
            heading.push_str(&format!("; {min} to {max}"));
        }
        heading.push_str(")\n");
        out.push_str(&heading);
        push_wrapped(&mut out, "        ", doc.description);
    }
    out.push_str(
        "\nEXIT CODES:\n\
         \x20   0  every group is at its goal on every node (already being there counts)\n\
         \x20   1  at least one group was rolled back cleanly, or not attempted because of\n\
         \x20      the run deadline, a signal, MAX_FAILED_GROUPS or an id file edited\n\
         \x20      during the run; no group is inconsistent\n\
         \x20   2  configuration or input error; no request was sent\n\
         \x20   3  at least one group is inconsistent (on some nodes only); see the logs\n\
         \x20      and the run report for the group, node and state\n",
    );
    out
}

/// Appends `text` wrapped at 80 columns, every line prefixed by `indent`.
fn push_wrapped(out: &mut String, indent: &str, text: &str) {
    const WIDTH: usize = 80;
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        if line.len() > indent.len() && line.len() + 1 + word.len() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = String::from(indent);
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if line.len() > indent.len() {
        out.push_str(&line);
        out.push('\n');
    }
}

/// Quotes a value for an error message: `{:?}` escaping (so control
/// characters stay visible and the message stays on one line), truncated
/// to the first 64 characters plus `…`.
fn quote(value: &str) -> String {
    let mut chars = value.chars();
    let mut shown: String = chars.by_ref().take(QUOTE_MAX_CHARS).collect();
    if chars.next().is_some() {
        shown.push('…');
    }
    format!("{shown:?}")
}

fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Reads `path` as a dotenv file; a missing file is an empty one.
fn read_dotenv(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    const NAME: &str = ".env";
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ConfigError::new(
                NAME,
                format!(
                    "cannot read {}: {}: {e}",
                    quote(&path.display().to_string()),
                    e.kind()
                ),
            ))
        }
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        ConfigError::new(NAME, format!("line {line} is not valid UTF-8"))
    })?;
    let text = strip_bom(&text);
    let mut pairs = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok(pair) => pairs.push(pair),
            // The parser's own message quotes the line, which may hold a
            // token: report only where the problem is.
            Err(dotenvy::Error::LineParse(line, _)) => {
                let message = match text.find(line.as_str()) {
                    Some(at) => format!(
                        "line {} cannot be parsed (expected NAME=value; quote values \
                         containing spaces or #)",
                        1 + text[..at].matches('\n').count()
                    ),
                    None => "cannot be parsed (expected NAME=value lines)".to_owned(),
                };
                return Err(ConfigError::new(NAME, message));
            }
            Err(_) => return Err(ConfigError::new(NAME, "cannot be parsed")),
        }
    }
    Ok(pairs)
}

/// Overlays the process environment on the `.env` pairs.
fn merge_environment<I>(
    dotenv: Vec<(String, String)>,
    process: I,
) -> Result<Vec<(String, String)>, ConfigError>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    let mut merged: BTreeMap<String, String> = dotenv.into_iter().collect();
    for (name, value) in process {
        // Other programs' variables may hold anything; only ours must be text.
        let Ok(name) = name.into_string() else {
            continue;
        };
        match value.into_string() {
            Ok(value) => {
                merged.insert(name, value);
            }
            Err(_) => {
                if let Some(doc) = VARIABLES.iter().find(|doc| doc.name == name) {
                    return Err(ConfigError::new(doc.name, "is not valid UTF-8"));
                }
            }
        }
    }
    Ok(merged.into_iter().collect())
}

/// A set variable, trimmed; set-but-empty is an error.
fn present(doc: &VariableDoc, raw: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let value = raw.trim();
    if value.is_empty() {
        let message = match doc.default {
            DefaultValue::Required => "is set but empty; it is required".to_owned(),
            DefaultValue::Value(default) => {
                format!("is set but empty; unset it to use the default ({default})")
            }
            DefaultValue::Unset(meaning) => {
                format!("is set but empty; unset it to use the default (unset: {meaning})")
            }
        };
        return Err(ConfigError::new(doc.name, message));
    }
    Ok(Some(value.to_owned()))
}

fn required(doc: &VariableDoc, raw: Option<String>) -> Result<String, ConfigError> {
    present(doc, raw)?.ok_or_else(|| {
        ConfigError::new(doc.name, "is required but not set; see api-consumer --help")
    })
}

/// The set value, or the documented default when unset.
fn with_default(doc: &VariableDoc, raw: Option<String>) -> Result<String, ConfigError> {
    match (present(doc, raw)?, doc.default) {
        (Some(value), _) => Ok(value),
        (None, DefaultValue::Value(default)) => Ok(default.to_owned()),
        (None, _) => Err(ConfigError::new(doc.name, "is required but not set")),
    }
}

/// A whole number in the variable's documented range, converted to `T`.
fn number<T: TryFrom<u64>>(doc: &VariableDoc, raw: Option<String>) -> Result<T, ConfigError> {
    let text = with_default(doc, raw)?;
    let (min, max) = doc.range.unwrap_or((0, u64::MAX));
    let invalid = || {
        ConfigError::new(
            doc.name,
            format!(
                "must be a whole number from {min} to {max}, got {}",
                quote(&text)
            ),
        )
    };
    // `u64::from_str` would accept a leading `+`; only plain ASCII digits
    // are a number here.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let value: u64 = text.parse().map_err(|_| invalid())?;
    if !(min..=max).contains(&value) {
        return Err(invalid());
    }
    T::try_from(value).map_err(|_| invalid())
}

fn millis(doc: &VariableDoc, raw: Option<String>) -> Result<Duration, ConfigError> {
    number(doc, raw).map(Duration::from_millis)
}

fn secs(doc: &VariableDoc, raw: Option<String>) -> Result<Duration, ConfigError> {
    number(doc, raw).map(Duration::from_secs)
}

fn parse_nodes(value: &str) -> Result<Vec<NodeAddress>, ConfigError> {
    let entries: Vec<&str> = value.split(',').collect();
    if entries.len() > MAX_NODES {
        return Err(ConfigError::new(
            NODES.name,
            format!(
                "lists {} entries; at most {MAX_NODES} nodes are supported",
                entries.len()
            ),
        ));
    }
    let mut nodes = Vec::with_capacity(entries.len());
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let position = index + 1;
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(ConfigError::new(
                NODES.name,
                format!("entry {position} is empty"),
            ));
        }
        let node = NodeAddress::parse(entry)
            .map_err(|e| ConfigError::new(NODES.name, format!("entry {position}: {e}")))?;
        if let Some(first) = seen.insert(node.name.clone(), position) {
            return Err(ConfigError::new(
                NODES.name,
                format!(
                    "entries {first} and {position} are the same node ({})",
                    quote(&node.name)
                ),
            ));
        }
        nodes.push(node);
    }
    Ok(nodes)
}

fn parse_operation(value: &str) -> Result<Operation, ConfigError> {
    if value.eq_ignore_ascii_case("create") {
        return Ok(Operation::Create);
    }
    if value.eq_ignore_ascii_case("delete") {
        return Ok(Operation::Delete);
    }
    let later = ["plan", "verify", "reconcile"]
        .iter()
        .any(|op| value.eq_ignore_ascii_case(op));
    let note = if later {
        " (this operation is not available yet)"
    } else {
        ""
    };
    Err(ConfigError::new(
        OPERATION.name,
        format!("must be create or delete, got {}{note}", quote(value)),
    ))
}

/// Checks `GROUP_IDS` and every line of `GROUP_IDS_FILE` (read here once,
/// and streamed again during the run; see [`crate::ids`]).
fn collect_group_ids(inline: Option<&str>, file: Option<String>) -> Result<GroupIds, ConfigError> {
    let mut ids = Vec::new();
    if let Some(inline) = inline {
        for (index, entry) in inline.split(',').enumerate() {
            let position = index + 1;
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(ConfigError::new(
                    GROUP_IDS.name,
                    format!("entry {position} is empty"),
                ));
            }
            let id = GroupId::new(entry)
                .map_err(|e| ConfigError::new(GROUP_IDS.name, format!("entry {position}: {e}")))?;
            ids.push(id);
        }
    }
    let mut ids = GroupIds::inline(ids);
    if let Some(path) = &file {
        ids = ids
            .with_file(Path::new(path), quote(path))
            .map_err(|e| ConfigError::new(GROUP_IDS_FILE.name, e.0))?;
    }
    if ids.is_empty() {
        let detail = match &file {
            Some(path) => format!(
                "no group ids given: GROUP_IDS is unset and GROUP_IDS_FILE {} holds no ids",
                quote(path)
            ),
            None => "no group ids given: set GROUP_IDS (comma-separated) and/or \
                     GROUP_IDS_FILE (one id per line)"
                .to_owned(),
        };
        return Err(ConfigError::new(GROUP_IDS.name, detail));
    }
    Ok(ids)
}

/// A path the job will write a file at: not a directory, in a directory that
/// exists. Checked up front so a bad path fails before any request.
fn writable_file_path(doc: &VariableDoc, path: PathBuf) -> Result<PathBuf, ConfigError> {
    let shown = quote(&path.display().to_string());
    if path.is_dir() {
        return Err(ConfigError::new(
            doc.name,
            format!("{shown} is a directory"),
        ));
    }
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(ConfigError::new(
            doc.name,
            format!("the directory of {shown} does not exist"),
        ));
    }
    Ok(path)
}

/// Reads the file a variable names; returns its bytes and the path as error
/// messages quote it.
fn read_named_file(doc: &VariableDoc, path: &Path) -> Result<(Vec<u8>, String), ConfigError> {
    let shown = quote(&path.display().to_string());
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigError::new(doc.name, format!("cannot read {shown}: {}: {e}", e.kind()))
    })?;
    Ok((bytes, shown))
}

/// The certificates of a PEM bundle; at least one.
fn read_ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, ConfigError> {
    let (bytes, shown) = read_named_file(&CA_CERT_PATH, path)?;
    let certificates = reqwest::Certificate::from_pem_bundle(&bytes).map_err(|_| {
        ConfigError::new(
            CA_CERT_PATH.name,
            format!("{shown} is not a PEM certificate bundle"),
        )
    })?;
    if certificates.is_empty() {
        return Err(ConfigError::new(
            CA_CERT_PATH.name,
            format!("{shown} holds no PEM certificate"),
        ));
    }
    Ok(certificates)
}

/// The token must fit an HTTP header value after `Bearer `: visible ASCII
/// only. Errors say what is wrong and where, never what the token is.
fn parse_auth_token(token: &str) -> Result<Secret, ConfigError> {
    let lower = token.to_ascii_lowercase();
    if lower.starts_with("bearer ") || lower.starts_with("bearer\t") {
        return Err(ConfigError::new(
            AUTH_TOKEN.name,
            "must be the token alone, without the \"Bearer \" prefix (the value is not shown)",
        ));
    }
    if let Some(at) = token.bytes().position(|b| !(0x21..=0x7e).contains(&b)) {
        return Err(ConfigError::new(
            AUTH_TOKEN.name,
            format!(
                "must be visible ASCII without spaces; byte {} is not (the value is not shown)",
                at + 1
            ),
        ));
    }
    Ok(Secret::new(token))
}

fn validate_log_level(value: &str) -> Result<(), ConfigError> {
    // A directive without `=` is a level, or a target to log at every
    // level; a misspelt level (`verbose`, `warning`) would then silently
    // become a target and hide every line, so bare words must be levels.
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !directive.contains('=') && !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            return Err(ConfigError::new(
                LOG_LEVEL.name,
                format!(
                    "{} is not a level; use off, error, warn, info, debug or trace, or \
                     target=level directives such as api_consumer=debug,info",
                    quote(directive)
                ),
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(value)
        .map(|_| ())
        .map_err(|e| {
            ConfigError::new(
                LOG_LEVEL.name,
                format!(
                    "must be a level (error, warn, info, debug, trace) or filter directives \
                     such as api_consumer=debug,info, got {}: {e}",
                    quote(value)
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    type Vars = Vec<(String, String)>;
    type Pairs<'a> = &'a [(&'a str, &'a str)];

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const BASE: &[(&str, &str)] = &[
        ("NODES", "http://127.0.0.1:8080,http://127.0.0.1:8081"),
        ("OPERATION", "create"),
        ("GROUP_IDS", "g1,g2"),
    ];

    /// BASE with `overrides` applied (an empty override value removes nothing:
    /// use `without` for that).
    fn with(overrides: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut all = vars(BASE);
        all.extend(vars(overrides));
        all
    }

    #[test]
    fn ca_cert_path_must_name_a_pem_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let missing = dir.path().join("missing.pem");
        for path in [&not_pem, &missing] {
            let error =
                Config::from_vars(with(&[("CA_CERT_PATH", path.to_str().unwrap())])).unwrap_err();
            assert_eq!(error.variable, "CA_CERT_PATH", "{error}");
        }
        let config = Config::from_vars(with(&[])).unwrap();
        assert!(config.ca_certificates.is_empty());
    }

    fn without(name: &str, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
        with(overrides)
            .into_iter()
            .filter(|(k, _)| k != name)
            .collect()
    }

    fn err(vars: Vec<(String, String)>) -> ConfigError {
        match Config::from_vars(vars) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(e) => e,
        }
    }

    fn ok(vars: Vec<(String, String)>) -> Config {
        match Config::from_vars(vars) {
            Ok(config) => config,
            Err(e) => panic!("expected a config, got {e}"),
        }
    }

    fn names(config: &Config) -> Vec<&str> {
        config.nodes.iter().map(|n| n.name.as_str()).collect()
    }

    fn ids(config: &Config) -> Vec<String> {
        config
            .group_ids
            .to_vec()
            .unwrap()
            .into_iter()
            .map(|entry| entry.id.as_str().to_owned())
            .collect()
    }

    #[test]
    fn defaults() {
        let config = ok(vars(BASE));
        assert_eq!(
            names(&config),
            ["http://127.0.0.1:8080", "http://127.0.0.1:8081"]
        );
        assert_eq!(config.operation, Operation::Create);
        assert_eq!(ids(&config), ["g1", "g2"]);
        assert_eq!(config.request_timeout, Duration::from_millis(5000));
        assert_eq!(config.connect_timeout, Duration::from_millis(2000));
        assert_eq!(config.max_retries, 5);
        assert_eq!(config.retry_base_delay, Duration::from_millis(100));
        assert_eq!(config.retry_max_delay, Duration::from_millis(10_000));
        assert_eq!(config.run_timeout, Duration::from_secs(3600));
        assert_eq!(config.rollback_timeout, Duration::from_secs(20));
        assert_eq!(config.concurrency, 16);
        assert_eq!(config.node_concurrency, 8);
        assert_eq!(config.node_rate_limit, None);
        assert_eq!(config.auth_token, None);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.log_level, "info");
        assert_eq!(config.report_path, None);
        assert_eq!(config.max_failed_groups, None);
        assert_eq!(config.progress_interval, Some(Duration::from_secs(10)));
        assert_eq!(
            config.termination_message_path,
            PathBuf::from("/dev/termination-log")
        );
    }

    #[test]
    fn every_setting_is_read_and_trimmed() {
        let config = ok(vars(&[
            (
                "NODES",
                "  node01.app.internal.com ,\thttps://n2:8443/api/v1 ",
            ),
            ("OPERATION", " DeLeTe "),
            ("GROUP_IDS", " a , b c ,d"),
            ("REQUEST_TIMEOUT_MS", " 1 "),
            ("CONNECT_TIMEOUT_MS", "600000"),
            ("MAX_RETRIES", "0"),
            ("RETRY_BASE_DELAY_MS", "250"),
            ("RETRY_MAX_DELAY_MS", "250"),
            ("RUN_TIMEOUT_SECS", "604800"),
            ("ROLLBACK_TIMEOUT_SECS", "3600"),
            ("CONCURRENCY", "10000"),
            ("NODE_CONCURRENCY", "1"),
            ("NODE_RATE_LIMIT", "007"),
            ("MAX_FAILED_GROUPS", " 3 "),
            ("PROGRESS_INTERVAL_SECS", "0"),
            ("AUTH_TOKEN", "  abc.DEF-123~_+/= "),
            ("LOG_FORMAT", " Pretty "),
            ("LOG_LEVEL", " api_consumer=debug,info "),
            ("REPORT_PATH", " /tmp/report.json "),
            ("TERMINATION_MESSAGE_PATH", " /tmp/termination "),
            ("UNRELATED", "whatever"),
            ("nodes", "lower-case names are other variables"),
        ]));
        assert_eq!(
            names(&config),
            ["http://node01.app.internal.com", "https://n2:8443/api/v1"]
        );
        assert_eq!(config.nodes[1].base.as_str(), "https://n2:8443/api/v1/");
        assert_eq!(config.operation, Operation::Delete);
        assert_eq!(ids(&config), ["a", "b c", "d"]);
        assert_eq!(config.request_timeout, Duration::from_millis(1));
        assert_eq!(config.connect_timeout, Duration::from_millis(600_000));
        assert_eq!(config.max_retries, 0);
        assert_eq!(config.retry_base_delay, Duration::from_millis(250));
        assert_eq!(config.retry_max_delay, Duration::from_millis(250));
        assert_eq!(config.run_timeout, Duration::from_secs(604_800));
        assert_eq!(config.rollback_timeout, Duration::from_secs(3600));
        assert_eq!(config.concurrency, 10_000);
        assert_eq!(config.node_concurrency, 1);
        assert_eq!(config.node_rate_limit, NonZeroU32::new(7));
        assert_eq!(
            config.auth_token.as_ref().map(Secret::expose),
            Some("abc.DEF-123~_+/=")
        );
        assert_eq!(config.log_format, LogFormat::Pretty);
        assert_eq!(config.log_level, "api_consumer=debug,info");
        assert_eq!(config.report_path, Some(PathBuf::from("/tmp/report.json")));
        assert_eq!(config.max_failed_groups, NonZeroU64::new(3));
        assert_eq!(config.progress_interval, None);
        assert_eq!(
            config.termination_message_path,
            PathBuf::from("/tmp/termination")
        );
    }

    #[test]
    fn last_occurrence_of_a_variable_wins() {
        let config = ok(with(&[("OPERATION", "delete")]));
        assert_eq!(config.operation, Operation::Delete);
    }

    #[test]
    fn node_forms_normalise() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "node01.app.internal.com",
                "http://node01.app.internal.com/",
                "http://node01.app.internal.com",
            ),
            (
                "127.0.0.1:8080",
                "http://127.0.0.1:8080/",
                "http://127.0.0.1:8080",
            ),
            (
                "http://127.0.0.1:8080",
                "http://127.0.0.1:8080/",
                "http://127.0.0.1:8080",
            ),
            (
                "http://127.0.0.1:8080/",
                "http://127.0.0.1:8080/",
                "http://127.0.0.1:8080",
            ),
            ("HTTP://Node1:80", "http://node1/", "http://node1"),
            ("https://node1:443/", "https://node1/", "https://node1"),
            (
                "https://node1:8443/api",
                "https://node1:8443/api/",
                "https://node1:8443/api",
            ),
            (
                "node1/prefix/v2/",
                "http://node1/prefix/v2/",
                "http://node1/prefix/v2",
            ),
            ("[::1]:8080", "http://[::1]:8080/", "http://[::1]:8080"),
            (
                "http://[2001:db8::1]/",
                "http://[2001:db8::1]/",
                "http://[2001:db8::1]",
            ),
            ("[::1]", "http://[::1]/", "http://[::1]"),
            ("localhost", "http://localhost/", "http://localhost"),
        ];
        for (entry, base, name) in cases {
            let node =
                NodeAddress::parse(entry).unwrap_or_else(|e| panic!("{entry:?} should parse: {e}"));
            assert_eq!(node.base.as_str(), *base, "base of {entry:?}");
            assert_eq!(node.name, *name, "name of {entry:?}");
            let config = ok(with(&[("NODES", entry)]));
            assert_eq!(config.nodes, vec![node]);
        }
    }

    /// Error cases: (variables over BASE, variable named, text in message).
    #[test]
    fn errors_name_the_variable() {
        let long = "x".repeat(300);
        let cases: Vec<(Vars, &str, &str)> = vec![
            // Presence and emptiness.
            (without("NODES", &[]), "NODES", "is required but not set"),
            (
                without("OPERATION", &[]),
                "OPERATION",
                "is required but not set",
            ),
            (with(&[("NODES", "  ")]), "NODES", "is set but empty"),
            (with(&[("OPERATION", "")]), "OPERATION", "is set but empty"),
            (with(&[("GROUP_IDS", " ")]), "GROUP_IDS", "is set but empty"),
            (
                with(&[("GROUP_IDS_FILE", "")]),
                "GROUP_IDS_FILE",
                "is set but empty",
            ),
            (
                with(&[("REQUEST_TIMEOUT_MS", " ")]),
                "REQUEST_TIMEOUT_MS",
                "unset it to use the default (5000)",
            ),
            (
                with(&[("AUTH_TOKEN", "")]),
                "AUTH_TOKEN",
                "is set but empty",
            ),
            (with(&[("LOG_FORMAT", "")]), "LOG_FORMAT", "default (json)"),
            (with(&[("LOG_LEVEL", "")]), "LOG_LEVEL", "default (info)"),
            (
                with(&[("REPORT_PATH", "\t")]),
                "REPORT_PATH",
                "is set but empty",
            ),
            // Nodes.
            (with(&[("NODES", "a,,b")]), "NODES", "entry 2 is empty"),
            (with(&[("NODES", "a,b,")]), "NODES", "entry 3 is empty"),
            (with(&[("NODES", ",")]), "NODES", "entry 1 is empty"),
            (
                with(&[("NODES", "ftp://node1")]),
                "NODES",
                "only http and https",
            ),
            (with(&[("NODES", "http://")]), "NODES", "entry 1"),
            (with(&[("NODES", "http:/node1")]), "NODES", "neither a URL"),
            (with(&[("NODES", "node1:")]), "NODES", "neither a URL"),
            (with(&[("NODES", "mailto:ops")]), "NODES", "neither a URL"),
            (with(&[("NODES", "node1:http")]), "NODES", "entry 1"),
            (
                with(&[("NODES", "node1:99999")]),
                "NODES",
                "not a valid URL",
            ),
            (with(&[("NODES", "node 1")]), "NODES", "not a valid URL"),
            (with(&[("NODES", "::1")]), "NODES", "need brackets"),
            (
                with(&[("NODES", "n1,http://n2/?x=1")]),
                "NODES",
                "entry 2: \"http://n2/?x=1\" has a query",
            ),
            (
                with(&[("NODES", "http://n2/#top")]),
                "NODES",
                "has a fragment",
            ),
            (
                with(&[("NODES", "node1,http://node1/")]),
                "NODES",
                "entries 1 and 2 are the same node (\"http://node1\")",
            ),
            (
                with(&[("NODES", "a,HTTP://B:80,c,b")]),
                "NODES",
                "entries 2 and 4",
            ),
            (
                with(&[("NODES", "[::1]:8080,http://[0:0::1]:8080/")]),
                "NODES",
                "entries 1 and 2",
            ),
            // Operation.
            (
                with(&[("OPERATION", "create,delete")]),
                "OPERATION",
                "must be create or delete",
            ),
            (
                with(&[("OPERATION", "plan")]),
                "OPERATION",
                "not available yet",
            ),
            (
                with(&[("OPERATION", "Reconcile")]),
                "OPERATION",
                "not available yet",
            ),
            // Group ids.
            (without("GROUP_IDS", &[]), "GROUP_IDS", "GROUP_IDS_FILE"),
            (
                with(&[("GROUP_IDS", "a,,b")]),
                "GROUP_IDS",
                "entry 2 is empty",
            ),
            (
                with(&[("GROUP_IDS", "a,")]),
                "GROUP_IDS",
                "entry 2 is empty",
            ),
            (
                with(&[("GROUP_IDS", "a,b\u{7}c")]),
                "GROUP_IDS",
                "entry 2: group id contains the control character U+0007",
            ),
            (with(&[("GROUP_IDS", &long)]), "GROUP_IDS", "300 bytes"),
            (
                with(&[("GROUP_IDS_FILE", "/nonexistent/ids.txt")]),
                "GROUP_IDS_FILE",
                "\"/nonexistent/ids.txt\"",
            ),
            // Numbers.
            (
                with(&[("REQUEST_TIMEOUT_MS", "0")]),
                "REQUEST_TIMEOUT_MS",
                "must be a whole number from 1 to 600000, got \"0\"",
            ),
            (
                with(&[("REQUEST_TIMEOUT_MS", "600001")]),
                "REQUEST_TIMEOUT_MS",
                "got \"600001\"",
            ),
            (
                with(&[("REQUEST_TIMEOUT_MS", "+5")]),
                "REQUEST_TIMEOUT_MS",
                "got \"+5\"",
            ),
            (
                with(&[("REQUEST_TIMEOUT_MS", "-1")]),
                "REQUEST_TIMEOUT_MS",
                "whole number",
            ),
            (
                with(&[("REQUEST_TIMEOUT_MS", "1.5")]),
                "REQUEST_TIMEOUT_MS",
                "whole number",
            ),
            (
                with(&[("REQUEST_TIMEOUT_MS", "1e3")]),
                "REQUEST_TIMEOUT_MS",
                "whole number",
            ),
            (
                with(&[("REQUEST_TIMEOUT_MS", "0x10")]),
                "REQUEST_TIMEOUT_MS",
                "whole number",
            ),
            (
                with(&[("REQUEST_TIMEOUT_MS", "5s")]),
                "REQUEST_TIMEOUT_MS",
                "whole number",
            ),
            (
                with(&[("REQUEST_TIMEOUT_MS", "1 000")]),
                "REQUEST_TIMEOUT_MS",
                "whole number",
            ),
            (
                with(&[("REQUEST_TIMEOUT_MS", "١٢٣")]),
                "REQUEST_TIMEOUT_MS",
                "whole number",
            ),
            (
                with(&[("REQUEST_TIMEOUT_MS", "99999999999999999999999")]),
                "REQUEST_TIMEOUT_MS",
                "whole number",
            ),
            (
                with(&[("CONNECT_TIMEOUT_MS", "0")]),
                "CONNECT_TIMEOUT_MS",
                "from 1 to 600000",
            ),
            (
                with(&[("MAX_RETRIES", "101")]),
                "MAX_RETRIES",
                "from 0 to 100",
            ),
            (
                with(&[("RETRY_BASE_DELAY_MS", "0")]),
                "RETRY_BASE_DELAY_MS",
                "from 1 to 600000",
            ),
            (
                with(&[("RETRY_MAX_DELAY_MS", "3600001")]),
                "RETRY_MAX_DELAY_MS",
                "from 1 to 3600000",
            ),
            (
                with(&[
                    ("RETRY_BASE_DELAY_MS", "500"),
                    ("RETRY_MAX_DELAY_MS", "499"),
                ]),
                "RETRY_MAX_DELAY_MS",
                "must be at least RETRY_BASE_DELAY_MS (500), got 499",
            ),
            (
                with(&[("RUN_TIMEOUT_SECS", "604801")]),
                "RUN_TIMEOUT_SECS",
                "from 1 to 604800",
            ),
            (
                with(&[("ROLLBACK_TIMEOUT_SECS", "0")]),
                "ROLLBACK_TIMEOUT_SECS",
                "from 1 to 3600",
            ),
            (
                with(&[("CONCURRENCY", "0")]),
                "CONCURRENCY",
                "from 1 to 10000",
            ),
            (
                with(&[("NODE_CONCURRENCY", "1001")]),
                "NODE_CONCURRENCY",
                "from 1 to 1000",
            ),
            (
                with(&[("NODE_RATE_LIMIT", "1000001")]),
                "NODE_RATE_LIMIT",
                "from 0 to 1000000",
            ),
            // Logging.
            (
                with(&[("LOG_FORMAT", "text")]),
                "LOG_FORMAT",
                "must be json or pretty, got \"text\"",
            ),
            (
                with(&[("LOG_LEVEL", "api_consumer=loud")]),
                "LOG_LEVEL",
                "got \"api_consumer=loud\"",
            ),
        ];
        for (vars, variable, text) in cases {
            let shown: Vec<String> = vars
                .iter()
                .skip(3)
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            let e = err(vars);
            assert_eq!(e.variable, variable, "variable for {shown:?}: {e}");
            assert!(
                e.message.contains(text),
                "message for {shown:?} should contain {text:?}: {e}"
            );
            let line = e.to_string();
            assert!(line.starts_with(&format!("{variable}: ")), "{line}");
            assert!(!line.contains('\n'), "one line: {line:?}");
        }
    }

    #[test]
    fn every_variable_rejects_set_but_empty() {
        for doc in VARIABLES {
            let e = err(with(&[(doc.name, "   ")]));
            assert_eq!(e.variable, doc.name, "{e}");
            assert!(e.message.starts_with("is set but empty"), "{e}");
        }
    }

    #[test]
    fn long_and_odd_values_are_truncated_and_escaped() {
        let long = format!("{}\u{1b}[31m", "9".repeat(100));
        let e = err(with(&[("CONCURRENCY", &long)]));
        assert!(
            e.message.contains(&format!("\"{}…\"", "9".repeat(64))),
            "{e}"
        );
        assert!(!e.message.contains('\u{1b}'));
        let e = err(with(&[("LOG_FORMAT", "js\non")]));
        assert!(e.message.contains("\"js\\non\""), "{e}");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn secrets_never_shown() {
        const TOKEN: &str = "s3cr3t-T0KEN";
        let bad_tokens = [
            format!("{TOKEN} more"),
            format!("Bearer {TOKEN}"),
            format!("{TOKEN}\u{7f}"),
            format!("{TOKEN}é"),
            format!("{TOKEN}\t\"x"),
            format!("a\n{TOKEN}"),
        ];
        for token in &bad_tokens {
            let e = err(with(&[("AUTH_TOKEN", token)]));
            assert_eq!(e.variable, "AUTH_TOKEN");
            assert!(!e.to_string().contains(TOKEN), "{e}");
            assert!(!format!("{e:?}").contains(TOKEN), "{e:?}");
        }
        // A valid token is kept but hidden from Debug, and errors in other
        // variables do not mention it.
        let config = ok(with(&[("AUTH_TOKEN", TOKEN)]));
        assert_eq!(config.auth_token.as_ref().map(Secret::expose), Some(TOKEN));
        assert!(!format!("{config:?}").contains(TOKEN));
        let e = err(with(&[("AUTH_TOKEN", TOKEN), ("CONCURRENCY", "x")]));
        assert!(!e.to_string().contains(TOKEN));
    }

    #[test]
    fn node_credentials_never_shown() {
        for entry in [
            "http://admin:hunter2@node1",
            "admin:hunter2@node1:8080",
            "http://admin:hunter2@",
            "https://:hunter2@node1/x",
        ] {
            let e = err(with(&[("NODES", &format!("node0,{entry}"))]));
            assert_eq!(e.variable, "NODES");
            assert!(e.message.starts_with("entry 2: "), "{e}");
            assert!(e.message.contains("credentials"), "{e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn too_many_nodes() {
        let list: Vec<String> = (0..=MAX_NODES).map(|i| format!("n{i}")).collect();
        let e = err(with(&[("NODES", &list.join(","))]));
        assert_eq!(e.variable, "NODES");
        assert!(e.message.contains("at most 10000"), "{e}");
        let config = ok(with(&[("NODES", &list[..MAX_NODES].join(","))]));
        assert_eq!(config.nodes.len(), MAX_NODES);
    }

    #[test]
    fn group_id_rules() {
        assert!(GroupId::new("a").is_ok());
        assert!(GroupId::new("x".repeat(256)).is_ok());
        assert!(GroupId::new("é".repeat(128)).is_ok());
        assert!(GroupId::new("é".repeat(129)).is_err());
        assert!(GroupId::new("with space/and%2F?#").is_ok());
        assert!(GroupId::new("").is_err());
        assert!(GroupId::new("a\tb").is_err());
        assert!(GroupId::new("a\u{85}b").is_err());
        assert!(GroupId::new("a\u{7f}").is_err());
        // Validation does not trim: that is the parser's job.
        assert_eq!(GroupId::new(" a ").map(|g| g.0), Ok(" a ".to_owned()));
    }

    fn ids_file(content: &[u8]) -> tempfile::NamedTempFile {
        let mut file = match tempfile::NamedTempFile::new() {
            Ok(file) => file,
            Err(e) => panic!("temp file: {e}"),
        };
        if let Err(e) = file.write_all(content) {
            panic!("write temp file: {e}");
        }
        file
    }

    fn path_of(file: &tempfile::NamedTempFile) -> String {
        file.path().display().to_string()
    }

    #[test]
    fn ids_file_parsing() {
        let file = ids_file(
            b"\xEF\xBB\xBF# comment\r\nf1\r\n\r\n   \n  f2  \n#f3\n  # indented comment\nwith,comma\nf1\ng2\nlast-without-newline",
        );
        let config = ok(with(&[("GROUP_IDS_FILE", &path_of(&file))]));
        assert_eq!(
            ids(&config),
            [
                "g1",
                "g2",
                "f1",
                "f2",
                "with,comma",
                "f1",
                "g2",
                "last-without-newline"
            ]
        );
        assert_eq!(config.group_ids.file_ids(), Some(6));

        // The file alone is enough.
        let config = ok(without("GROUP_IDS", &[("GROUP_IDS_FILE", &path_of(&file))]));
        assert_eq!(
            ids(&config),
            ["f1", "f2", "with,comma", "f1", "g2", "last-without-newline"]
        );
    }

    #[test]
    fn ids_file_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"a\nb\n\xff\xfe\n", "line 3 is not valid UTF-8"),
            (
                b"a\nb\x07c\n",
                "line 2: group id contains the control character U+0007",
            ),
            (b"# only comments\n\n", "holds no ids"),
            (b"", "holds no ids"),
        ];
        for (content, text) in cases {
            let file = ids_file(content);
            let e = err(without("GROUP_IDS", &[("GROUP_IDS_FILE", &path_of(&file))]));
            assert!(e.message.contains(text), "{e}");
            let expected = if text.contains("no ids") {
                "GROUP_IDS"
            } else {
                "GROUP_IDS_FILE"
            };
            assert_eq!(e.variable, expected, "{e}");
        }
        let long = ids_file(format!("ok\n{}\n", "x".repeat(257)).as_bytes());
        let e = err(with(&[("GROUP_IDS_FILE", &path_of(&long))]));
        assert_eq!(e.variable, "GROUP_IDS_FILE");
        assert!(e.message.contains("line 2: group id is 257 bytes"), "{e}");

        let e = err(with(&[("GROUP_IDS_FILE", "/definitely/not/here.txt")]));
        assert_eq!(e.variable, "GROUP_IDS_FILE");
        assert!(
            e.message
                .contains("cannot read \"/definitely/not/here.txt\": entity not found"),
            "{e}"
        );

        // A directory or a device is not a list of ids either.
        for path in [
            std::env::temp_dir().display().to_string(),
            "/dev/null".into(),
        ] {
            let e = err(with(&[("GROUP_IDS_FILE", &path)]));
            assert_eq!(e.variable, "GROUP_IDS_FILE");
            assert!(e.message.contains("is not a regular file"), "{e}");
        }
    }

    #[test]
    fn repeated_ids_stay_in_order_each_entry_one_transaction() {
        let config = ok(with(&[("GROUP_IDS", "b, a ,b,c,a,a")]));
        assert_eq!(ids(&config), ["b", "a", "b", "c", "a", "a"]);
        assert_eq!(config.group_ids.len(), 6);
    }

    #[test]
    fn lenient_log_settings_fall_back_to_defaults() {
        let cases: &[(Pairs, LogFormat, &str)] = &[
            (&[], LogFormat::Json, "info"),
            (
                &[("LOG_FORMAT", " PRETTY "), ("LOG_LEVEL", " debug ")],
                LogFormat::Pretty,
                "debug",
            ),
            (
                &[("LOG_FORMAT", "xml"), ("LOG_LEVEL", "a=b=c")],
                LogFormat::Json,
                "info",
            ),
            (
                &[("LOG_FORMAT", ""), ("LOG_LEVEL", "")],
                LogFormat::Json,
                "info",
            ),
            (
                &[("LOG_LEVEL", "api_consumer=trace,warn")],
                LogFormat::Json,
                "api_consumer=trace,warn",
            ),
        ];
        for (pairs, format, level) in cases {
            assert_eq!(
                lenient_log_settings(vars(pairs)),
                (*format, (*level).to_owned()),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn dotenv_is_overlaid_by_the_process_environment() {
        let file = ids_file(
            b"# local run\nNODES=127.0.0.1:8080\nOPERATION=create\nexport GROUP_IDS='a,b'\n",
        );
        let dotenv = match read_dotenv(file.path()) {
            Ok(pairs) => pairs,
            Err(e) => panic!("{e}"),
        };
        let process = vec![
            (OsString::from("OPERATION"), OsString::from("delete")),
            (OsString::from("OTHER"), OsString::from("x")),
        ];
        let merged = match merge_environment(dotenv, process) {
            Ok(merged) => merged,
            Err(e) => panic!("{e}"),
        };
        let config = ok(merged);
        assert_eq!(config.operation, Operation::Delete);
        assert_eq!(ids(&config), ["a", "b"]);
        assert_eq!(names(&config), ["http://127.0.0.1:8080"]);

        // A missing file is no file.
        assert_eq!(read_dotenv(Path::new("/nonexistent/.env")), Ok(Vec::new()));
    }

    #[test]
    fn broken_dotenv_is_named_without_its_content() {
        let cases: &[(&[u8], &str)] = &[
            (b"NODES=a\nAUTH_TOKEN='s3cr3t\n", "cannot be parsed"),
            (b"NODES=a\n\nAUTH_TOKEN s3cr3t\n", "line 3 cannot be parsed"),
            (
                b"NODES=a\nAUTH_TOKEN=s3cr3t\xff\n",
                "line 2 is not valid UTF-8",
            ),
        ];
        for (content, text) in cases {
            let file = ids_file(content);
            match read_dotenv(file.path()) {
                Ok(pairs) => panic!("expected an error, got {} pairs", pairs.len()),
                Err(e) => {
                    assert_eq!(e.variable, ".env");
                    assert!(e.message.contains(text), "{e}");
                    assert!(!e.to_string().contains("s3cr3t"), "{e}");
                }
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_values_of_our_variables_are_errors() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'a', 0xff]);
        let ignored = vec![(OsString::from("SOMETHING_ELSE"), bad.clone())];
        assert_eq!(merge_environment(Vec::new(), ignored), Ok(Vec::new()));
        let ours = vec![(OsString::from("AUTH_TOKEN"), bad)];
        let e = match merge_environment(Vec::new(), ours) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        };
        assert_eq!(e.to_string(), "AUTH_TOKEN: is not valid UTF-8");
    }

    #[test]
    fn table_defaults_parse_and_match() {
        for doc in VARIABLES {
            match (doc.default, doc.range) {
                (DefaultValue::Value(default), Some((min, max))) => {
                    let n: u64 = default.parse().unwrap_or(u64::MAX);
                    assert!(min <= n && n <= max, "{} default {default}", doc.name);
                }
                (DefaultValue::Value(_), None) => {}
                (_, range) => assert_eq!(range, None, "{} has a range but no default", doc.name),
            }
        }
        let mut names: Vec<&str> = VARIABLES.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), VARIABLES.len(), "duplicate names in VARIABLES");
    }

    fn env_example() -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/.env_example");
        match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => panic!("{path}: {e}"),
        }
    }

    /// `NAME=value` or `# NAME=value` lines of `.env_example`, in order.
    fn example_assignments(text: &str) -> Vec<(bool, String, String)> {
        text.lines()
            .filter_map(|line| {
                let (commented, rest) = match line.strip_prefix('#') {
                    Some(rest) => (true, rest.trim_start()),
                    None => (false, line),
                };
                let (name, value) = rest.split_once('=')?;
                VARIABLES
                    .iter()
                    .any(|d| d.name == name)
                    .then(|| (commented, name.to_owned(), value.to_owned()))
            })
            .collect()
    }

    #[test]
    fn env_example_documents_every_variable_in_order() {
        let text = env_example();
        let assignments = example_assignments(&text);
        let mut order = Vec::new();
        for (_, name, _) in &assignments {
            if order.last() != Some(name) {
                order.push(name.clone());
            }
        }
        let expected: Vec<String> = VARIABLES.iter().map(|d| d.name.to_owned()).collect();
        assert_eq!(
            order, expected,
            ".env_example must list every variable once, in table order"
        );
        for doc in VARIABLES {
            if let DefaultValue::Value(default) = doc.default {
                assert!(
                    assignments
                        .iter()
                        .any(|(c, n, v)| *c && n == doc.name && v == default),
                    ".env_example should show `# {}={default}`",
                    doc.name
                );
            }
        }
    }

    #[test]
    fn env_example_is_a_valid_configuration_and_its_defaults_are_the_defaults() {
        let text = env_example();
        let plain = match dotenvy::from_read_iter(text.as_bytes()).collect::<Result<Vec<_>, _>>() {
            Ok(pairs) => pairs,
            Err(e) => panic!(".env_example does not parse: {e}"),
        };
        let as_is = ok(plain.clone());
        // Uncommenting every documented default must change nothing.
        let mut uncommented = plain;
        for (commented, name, value) in example_assignments(&text) {
            let is_default = VARIABLES.iter().any(|d| {
                d.name == name && matches!(d.default, DefaultValue::Value(v) if v == value)
            });
            if commented && is_default {
                uncommented.push((name, value));
            }
        }
        let with_defaults = ok(uncommented);
        assert_eq!(format!("{as_is:?}"), format!("{with_defaults:?}"));
        assert_eq!(as_is.nodes.len(), 3);
    }

    #[test]
    fn help_lists_every_variable_with_its_default_and_exit_codes() {
        let help = help_text();
        for doc in VARIABLES {
            let heading = help
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{}  (", doc.name)))
                .unwrap_or_else(|| panic!("{} missing from --help", doc.name));
            match doc.default {
                DefaultValue::Required => assert!(heading.contains("required"), "{heading}"),
                DefaultValue::Value(v) => {
                    assert!(heading.contains(&format!("default: {v}")), "{heading}")
                }
                DefaultValue::Unset(_) => assert!(heading.contains("default: unset"), "{heading}"),
            }
            if let Some((min, max)) = doc.range {
                assert!(heading.contains(&format!("{min} to {max}")), "{heading}");
            }
        }
        for code in ["    0  ", "    1  ", "    2  ", "    3  "] {
            assert!(help.contains(code), "exit code line {code:?}");
        }
        assert!(help.contains("api-consumer [--help | --version]"));
        assert!(help.lines().all(|l| l.chars().count() <= 80), "{help}");
    }
}
