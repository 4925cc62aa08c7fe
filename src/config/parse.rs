//! Parsing and checking one variable's value: presence and trimming,
//! numbers within the documented range, the node list, the operation, the
//! id list, paths, certificates, the token and the log filter. Every error
//! names its variable and never repeats a secret.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::variables::{
    DefaultValue, VariableDoc, AUTH_TOKEN, CA_CERT_PATH, GROUP_IDS, GROUP_IDS_FILE,
    JOB_COMPLETION_INDEX, LOG_LEVEL, MAX_NODES, METRICS_JOB, METRICS_PUSHGATEWAY_URL, NODES,
    NODE_PROTOCOL, OPERATION, PRIOR_STATE, SHARD_COUNT, SHARD_INDEX,
};
use super::ConfigError;
use crate::domain::{quote, GroupId, NodeAddress, NodeProtocol, Operation, Secret, Shard};
use crate::engine::id_list::GroupIds;
use crate::engine::prior::PriorSource;
use crate::output::metrics::MetricsSettings;

/// A set variable, trimmed; set-but-empty is an error.
pub(super) fn present(
    doc: &VariableDoc,
    raw: Option<String>,
) -> Result<Option<String>, ConfigError> {
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

pub(super) fn required(doc: &VariableDoc, raw: Option<String>) -> Result<String, ConfigError> {
    present(doc, raw)?.ok_or_else(|| {
        ConfigError::new(doc.name, "is required but not set; see api-consumer --help")
    })
}

/// The set value, or the documented default when unset.
pub(super) fn with_default(doc: &VariableDoc, raw: Option<String>) -> Result<String, ConfigError> {
    match (present(doc, raw)?, doc.default) {
        (Some(value), _) => Ok(value),
        (None, DefaultValue::Value(default)) => Ok(default.to_owned()),
        (None, _) => Err(ConfigError::new(doc.name, "is required but not set")),
    }
}

/// A whole number in the variable's documented range, converted to `T`.
pub(super) fn number<T: TryFrom<u64>>(
    doc: &VariableDoc,
    raw: Option<String>,
) -> Result<T, ConfigError> {
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

pub(super) fn millis(doc: &VariableDoc, raw: Option<String>) -> Result<Duration, ConfigError> {
    number(doc, raw).map(Duration::from_millis)
}

pub(super) fn secs(doc: &VariableDoc, raw: Option<String>) -> Result<Duration, ConfigError> {
    number(doc, raw).map(Duration::from_secs)
}

pub(super) fn parse_nodes(value: &str) -> Result<Vec<NodeAddress>, ConfigError> {
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

pub(super) fn parse_operation(value: &str) -> Result<Operation, ConfigError> {
    const OPERATIONS: [Operation; 4] = [
        Operation::Create,
        Operation::Delete,
        Operation::Verify,
        Operation::Reconcile,
    ];
    OPERATIONS
        .into_iter()
        .find(|op| value.eq_ignore_ascii_case(op.as_str()))
        .ok_or_else(|| {
            ConfigError::new(
                OPERATION.name,
                format!(
                    "must be create, delete, verify or reconcile, got {}",
                    quote(value)
                ),
            )
        })
}

/// `SHARD_COUNT` and the shard index: `SHARD_INDEX`, or else
/// `JOB_COMPLETION_INDEX`. Above one shard an index is required, and an
/// index must be below the count (an Indexed Job left at `SHARD_COUNT=1`
/// would otherwise run the whole list in every pod).
pub(super) fn parse_shard(
    count: Option<String>,
    index: Option<String>,
    completion_index: Option<String>,
) -> Result<Shard, ConfigError> {
    let count: u32 = number(&SHARD_COUNT, count)?;
    let index = match present(&SHARD_INDEX, index)? {
        Some(index) => Some((&SHARD_INDEX, index)),
        None => present(&JOB_COMPLETION_INDEX, completion_index)?
            .map(|index| (&JOB_COMPLETION_INDEX, index)),
    };
    let Some((doc, index)) = index else {
        if count > 1 {
            return Err(ConfigError::new(
                SHARD_COUNT.name,
                format!(
                    "is {count}, but neither SHARD_INDEX nor JOB_COMPLETION_INDEX is set, \
                     so this pod's shard is not known"
                ),
            ));
        }
        return Ok(Shard::WHOLE);
    };
    let index: u64 = number(doc, Some(index))?;
    u32::try_from(index)
        .ok()
        .and_then(|index| Shard::new(index, count))
        .ok_or_else(|| {
            ConfigError::new(
                doc.name,
                format!(
                    "is {index}, but must be below SHARD_COUNT ({count}); in an Indexed Job, \
                 set SHARD_COUNT to the Job's completions"
                ),
            )
        })
}

/// `METRICS_PUSHGATEWAY_URL` and `METRICS_JOB`. The URL is never repeated
/// in an error: it may hold credentials, which are refused.
pub(super) fn parse_metrics(
    url: Option<String>,
    job: Option<String>,
) -> Result<Option<MetricsSettings>, ConfigError> {
    let job = with_default(&METRICS_JOB, job)?;
    let job_ok = job.len() <= 128
        && job
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if !job_ok {
        return Err(ConfigError::new(
            METRICS_JOB.name,
            format!(
                "must be 1 to 128 letters, digits, _ . : or -, got {}",
                quote(&job)
            ),
        ));
    }
    let Some(url) = present(&METRICS_PUSHGATEWAY_URL, url)? else {
        return Ok(None);
    };
    let name = METRICS_PUSHGATEWAY_URL.name;
    let gateway = reqwest::Url::parse(&url)
        .map_err(|e| ConfigError::new(name, format!("is not a valid URL ({e})")))?;
    if !gateway.username().is_empty() || gateway.password().is_some() {
        return Err(ConfigError::new(
            name,
            "must not carry credentials (user:password@): they would be kept in the \
             configuration and could reach logs",
        ));
    }
    if !matches!(gateway.scheme(), "http" | "https") {
        return Err(ConfigError::new(
            name,
            format!(
                "must be an http or https URL, not {}",
                quote(gateway.scheme())
            ),
        ));
    }
    if gateway.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::new(name, "has no host"));
    }
    if gateway.query().is_some() || gateway.fragment().is_some() {
        return Err(ConfigError::new(
            name,
            "must not have a query or fragment: the grouping key is appended as a path",
        ));
    }
    Ok(Some(MetricsSettings { gateway, job }))
}

/// `NODE_PROTOCOL`: `standard` or `two-phase`, case-insensitive.
pub(super) fn parse_node_protocol(text: &str) -> Result<NodeProtocol, ConfigError> {
    match text.to_ascii_lowercase().as_str() {
        "standard" => Ok(NodeProtocol::Standard),
        "two-phase" => Ok(NodeProtocol::TwoPhase),
        _ => Err(ConfigError::new(
            NODE_PROTOCOL.name,
            format!("must be standard or two-phase, got {}", quote(text)),
        )),
    }
}

/// `PRIOR_STATE`: `auto`, `list` or `read`, case-insensitive.
pub(super) fn parse_prior_state(value: &str) -> Result<PriorSource, ConfigError> {
    [PriorSource::Auto, PriorSource::List, PriorSource::Read]
        .into_iter()
        .find(|source| value.eq_ignore_ascii_case(source.as_str()))
        .ok_or_else(|| {
            ConfigError::new(
                PRIOR_STATE.name,
                format!("must be auto, list or read, got {}", quote(value)),
            )
        })
}

/// A yes/no variable: `true`/`false` or `1`/`0`, case-insensitive.
pub(super) fn flag(doc: &VariableDoc, raw: Option<String>) -> Result<bool, ConfigError> {
    let text = with_default(doc, raw)?;
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ConfigError::new(
            doc.name,
            format!("must be true or false (or 1 or 0), got {}", quote(&text)),
        )),
    }
}

/// Checks `GROUP_IDS` and every line of `GROUP_IDS_FILE` (read here once,
/// and streamed again during the run; see [`crate::engine::id_list`]).
pub(super) fn collect_group_ids(
    inline: Option<&str>,
    file: Option<String>,
    operation: Operation,
    shard: Shard,
) -> Result<GroupIds, ConfigError> {
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
    let mut ids = GroupIds::inline(ids, shard);
    if let Some(path) = &file {
        ids = ids
            .with_file(Path::new(path), &quote(path))
            .map_err(|e| ConfigError::new(GROUP_IDS_FILE.name, e.0))?;
    }
    // Verify without ids checks every group the nodes list; a file given
    // but empty is a mistake, not a request for that.
    let everything = operation == Operation::Verify && inline.is_none() && file.is_none();
    // The whole list, every shard's: a shard's share may well be empty.
    if ids.listed() == 0 && !everything {
        let detail = match &file {
            Some(path) => format!(
                "no group ids given: GROUP_IDS is unset and GROUP_IDS_FILE {} holds no ids",
                quote(path)
            ),
            None => "no group ids given: set GROUP_IDS (comma-separated) and/or \
                     GROUP_IDS_FILE (one id per line)"
                .to_owned(),
        };
        let why = match operation {
            // An empty desired set would prune every group.
            Operation::Reconcile => {
                "; reconcile needs the desired set, and with PRUNE=true \
                                        an empty one would delete every group"
            }
            _ => "",
        };
        return Err(ConfigError::new(GROUP_IDS.name, format!("{detail}{why}")));
    }
    Ok(ids)
}

/// A path the job will write a file at: not a directory, in a directory that
/// exists. Checked up front so a bad path fails before any request.
pub(super) fn writable_file_path(doc: &VariableDoc, path: PathBuf) -> Result<PathBuf, ConfigError> {
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
pub(super) fn read_named_file(
    doc: &VariableDoc,
    path: &Path,
) -> Result<(Vec<u8>, String), ConfigError> {
    let shown = quote(&path.display().to_string());
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigError::new(doc.name, format!("cannot read {shown}: {}: {e}", e.kind()))
    })?;
    Ok((bytes, shown))
}

/// The certificates of a PEM bundle; at least one.
pub(super) fn read_ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, ConfigError> {
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
pub(super) fn parse_auth_token(token: &str) -> Result<Secret, ConfigError> {
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

pub(super) fn validate_log_level(value: &str) -> Result<(), ConfigError> {
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
