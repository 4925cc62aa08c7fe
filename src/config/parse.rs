//! Checking and parsing the variables' values: the checks every value of a
//! kind gets ([`checked_against_table`]), the parsers that the fields of
//! [`super::Config`] name, and the settings several variables make up
//! (the shard, the ids). Every error names its variable and never repeats a
//! secret.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::variables::{
    DefaultValue, Kind, VariableDoc, AUTH_TOKEN, CA_CERT_PATH, GROUP_IDS, GROUP_IDS_FILE,
    JOB_COMPLETION_INDEX, LOG_LEVEL, MAX_NODES, METRICS_JOB, METRICS_PUSHGATEWAY_URL, NODES,
    REPORT_PATH, SHARD_COUNT, SHARD_INDEX, TERMINATION_MESSAGE_PATH, VARIABLES,
};
use super::ConfigError;
use crate::domain::{quote, GroupId, NodeAddress, Operation, Secret, Shard};
use crate::engine::id_list::GroupIds;

/// Every variable of the table as the fields' parsers get it: trimmed, the
/// documented default in place of an unset one, set-but-empty and missing
/// required ones refused, and the values of flags, choices and numbers
/// checked and written as serde reads them (`true`/`false`, lower case,
/// digits).
pub(super) fn checked_against_table(
    mut given: BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut checked = Vec::with_capacity(VARIABLES.len());
    for doc in VARIABLES {
        let value = match given.remove(doc.name) {
            Some(value) => present(doc, &value)?,
            None => match doc.default {
                DefaultValue::Required => {
                    let message = "is required but not set; see api-consumer --help";
                    return Err(ConfigError::new(doc.name, message));
                }
                DefaultValue::Value(default) => default.to_owned(),
                DefaultValue::Unset(_) => continue,
            },
        };
        checked.push((doc.name.to_owned(), of_kind(doc, value)?));
    }
    Ok(checked)
}

/// A set variable, trimmed; set-but-empty is an error.
fn present(doc: &VariableDoc, raw: &str) -> Result<String, ConfigError> {
    let value = raw.trim();
    if !value.is_empty() {
        return Ok(value.to_owned());
    }
    let message = match doc.default {
        DefaultValue::Required => "is set but empty; it is required".to_owned(),
        DefaultValue::Value(default) => {
            format!("is set but empty; unset it to use the default ({default})")
        }
        DefaultValue::Unset(meaning) => {
            format!("is set but empty; unset it to use the default (unset: {meaning})")
        }
    };
    Err(ConfigError::new(doc.name, message))
}

/// `text` checked against the variable's kind, as serde reads it.
fn of_kind(doc: &VariableDoc, text: String) -> Result<String, ConfigError> {
    let lower = text.to_ascii_lowercase();
    match doc.kind {
        Kind::Text => Ok(text),
        Kind::Flag => match lower.as_str() {
            "true" | "1" => Ok("true".to_owned()),
            "false" | "0" => Ok("false".to_owned()),
            _ => Err(ConfigError::new(
                doc.name,
                format!("must be true or false (or 1 or 0), got {}", quote(&text)),
            )),
        },
        Kind::Choice(choices) if choices.contains(&lower.as_str()) => Ok(lower),
        Kind::Choice(choices) => {
            let (last, rest) = choices.split_last().unwrap_or((&"", &[]));
            let words = format!("{} or {last}", rest.join(", "));
            Err(ConfigError::new(
                doc.name,
                format!("must be {words}, got {}", quote(&text)),
            ))
        }
        Kind::Number(range) => {
            let (min, max) = range.unwrap_or((0, u64::MAX));
            // `u64::from_str` would accept a leading `+`; only plain ASCII
            // digits are a number here.
            let number = text
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| text.parse::<u64>().ok())
                .flatten()
                .filter(|n| (min..=max).contains(n));
            match number {
                Some(number) => Ok(number.to_string()),
                None => Err(ConfigError::new(
                    doc.name,
                    format!(
                        "must be a whole number from {min} to {max}, got {}",
                        quote(&text)
                    ),
                )),
            }
        }
    }
}

/// The [`ConfigError`] of a failed field: the fields' parsers write theirs
/// as its display, `VARIABLE: message`, since envy does not say which
/// variable a value came from.
pub(super) fn named_error(error: envy::Error) -> ConfigError {
    let text = error.to_string();
    let named = VARIABLES.iter().find_map(|doc| {
        let message = text.strip_prefix(doc.name)?.strip_prefix(": ")?;
        Some(ConfigError::new(doc.name, message))
    });
    named.unwrap_or_else(|| ConfigError::new("environment", text))
}

/// A field's text, parsed by `parse`.
fn parsed<'de, D, T>(
    deserializer: D,
    parse: impl FnOnce(&str) -> Result<T, ConfigError>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let text = String::deserialize(deserializer)?;
    parse(&text).map_err(D::Error::custom)
}

pub(super) fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

pub(super) fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_secs)
}

/// Seconds, where 0 turns the setting off.
pub(super) fn secs_or_off<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let secs = u64::deserialize(d)?;
    Ok((secs > 0).then(|| Duration::from_secs(secs)))
}

/// A limit where 0 means none.
pub(super) fn zero_is_off<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<NonZeroU64>,
{
    let number = NonZeroU64::new(u64::deserialize(d)?);
    Ok(number.and_then(|n| T::try_from(n).ok()))
}

pub(super) fn nodes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NodeAddress>, D::Error> {
    parsed(d, parse_nodes)
}

pub(super) fn auth_token<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    parsed(d, parse_auth_token).map(Some)
}

pub(super) fn ca_certificates<'de, D>(d: D) -> Result<Vec<reqwest::Certificate>, D::Error>
where
    D: Deserializer<'de>,
{
    parsed(d, |path| read_ca_certificates(Path::new(path)))
}

pub(super) fn log_level<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parsed(d, |level| {
        validate_log_level(level).map(|()| level.to_owned())
    })
}

pub(super) fn report_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    parsed(d, |path| {
        writable_file_path(&REPORT_PATH, PathBuf::from(path))
    })
    .map(Some)
}

pub(super) fn termination_message_path<'de, D>(d: D) -> Result<PathBuf, D::Error>
where
    D: Deserializer<'de>,
{
    parsed(d, |path| {
        let path = PathBuf::from(path);
        if path.is_dir() {
            let shown = quote(&path.display().to_string());
            let message = format!("{shown} is a directory");
            return Err(ConfigError::new(TERMINATION_MESSAGE_PATH.name, message));
        }
        Ok(path)
    })
}

pub(super) fn metrics_job<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parsed(d, |job| {
        let valid = job.len() <= 128
            && job
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
        if !valid {
            return Err(ConfigError::new(
                METRICS_JOB.name,
                format!(
                    "must be 1 to 128 letters, digits, _ . : or -, got {}",
                    quote(job)
                ),
            ));
        }
        Ok(job.to_owned())
    })
}

/// `METRICS_PUSHGATEWAY_URL`. The URL is never repeated in an error: it may
/// hold credentials, which are refused.
pub(super) fn pushgateway_url<'de, D>(d: D) -> Result<Option<reqwest::Url>, D::Error>
where
    D: Deserializer<'de>,
{
    parsed(d, parse_pushgateway_url).map(Some)
}

fn parse_pushgateway_url(url: &str) -> Result<reqwest::Url, ConfigError> {
    let name = METRICS_PUSHGATEWAY_URL.name;
    let gateway = reqwest::Url::parse(url)
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
    Ok(gateway)
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

/// `SHARD_COUNT` and the shard index: `SHARD_INDEX`, or else
/// `JOB_COMPLETION_INDEX`. Above one shard an index is required, and an
/// index must be below the count (an Indexed Job left at `SHARD_COUNT=1`
/// would otherwise run the whole list in every pod).
pub(super) fn shard(
    count: u32,
    index: Option<u64>,
    completion_index: Option<u64>,
) -> Result<Shard, ConfigError> {
    let index = match index {
        Some(index) => Some((&SHARD_INDEX, index)),
        None => completion_index.map(|index| (&JOB_COMPLETION_INDEX, index)),
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

/// `GROUP_IDS` and every line of `GROUP_IDS_FILE`, checked and held (see
/// [`crate::engine::id_list`]).
pub(super) fn group_ids(
    inline: Option<&str>,
    file: Option<&str>,
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
    if let Some(path) = file {
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
