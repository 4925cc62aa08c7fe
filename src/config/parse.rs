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
    DefaultValue, Kind, VariableDoc, AUTH_TOKEN, AUTH_TOKEN_FILE, CA_CERT_PATH, GROUP_IDS,
    GROUP_IDS_FILE, JOB_COMPLETION_INDEX, LOG_LEVEL, MAX_NODES, METRICS_JOB,
    METRICS_PUSHGATEWAY_URL, NODES, REPORT_PATH, SHARD_COUNT, SHARD_INDEX,
    TERMINATION_MESSAGE_PATH, VARIABLES,
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
                    return Err(doc.error("is required but not set; see api-consumer --help"));
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
    Err(doc.error(message))
}

/// `text` checked against the variable's kind, as serde reads it.
fn of_kind(doc: &VariableDoc, text: String) -> Result<String, ConfigError> {
    let lower = || text.to_ascii_lowercase();
    match doc.kind {
        Kind::Text => Ok(text),
        Kind::Flag => match lower().as_str() {
            "true" | "1" => Ok("true".to_owned()),
            "false" | "0" => Ok("false".to_owned()),
            _ => Err(doc.error(format!(
                "must be true or false (or 1 or 0), got {}",
                quote(&text)
            ))),
        },
        Kind::Choice(choices) if choices.contains(&lower().as_str()) => Ok(lower()),
        Kind::Choice(choices) => {
            let (last, rest) = choices.split_last().unwrap_or((&"", &[]));
            let words = format!("{} or {last}", rest.join(", "));
            Err(doc.error(format!("must be {words}, got {}", quote(&text))))
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
                None => Err(doc.error(format!(
                    "must be a whole number from {min} to {max}, got {}",
                    quote(&text)
                ))),
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
        Some(doc.error(message))
    });
    named.unwrap_or_else(|| ConfigError::new("environment", text))
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

// `deserialize_with` names one function per field: each made here reads the
// field's text and parses it with the parser after `=`, whose value becomes
// the field (wrapped in `Some` for an optional one).
macro_rules! text_fields {
    ($($field:ident: $type:ty = $parse:expr;)*) => {$(
        pub(super) fn $field<'de, D: Deserializer<'de>>(d: D) -> Result<$type, D::Error> {
            parsed(d, $parse)
        }
    )*};
}

text_fields! {
    nodes: Vec<NodeAddress> = parse_nodes;
    auth_token: Option<Secret> = |token| parse_token(&AUTH_TOKEN, token);
    auth_token_file: Option<Secret> = read_auth_token_file;
    ca_certificates: Vec<reqwest::Certificate> = read_ca_certificates;
    log_level: String = |level| validate_log_level(level).map(|()| level.to_owned());
    report_path: Option<PathBuf> = |path| writable_file_path(&REPORT_PATH, path);
    termination_message_path: PathBuf = |path| not_a_directory(&TERMINATION_MESSAGE_PATH, path);
    pushgateway_url: Option<reqwest::Url> = parse_pushgateway_url;
    metrics_job: String = parse_metrics_job;
}

/// A field's text, parsed by `parse`.
fn parsed<'de, D, T, U>(
    deserializer: D,
    parse: impl FnOnce(&str) -> Result<U, ConfigError>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: From<U>,
{
    let text = String::deserialize(deserializer)?;
    parse(&text).map(T::from).map_err(D::Error::custom)
}

fn parse_metrics_job(job: &str) -> Result<String, ConfigError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-');
    if job.len() > 128 || !job.bytes().all(allowed) {
        let message = format!(
            "must be 1 to 128 letters, digits, _ . : or -, got {}",
            quote(job)
        );
        return Err(METRICS_JOB.error(message));
    }
    Ok(job.to_owned())
}

/// `METRICS_PUSHGATEWAY_URL`. The URL is never repeated in an error: it may
/// hold credentials, which are refused.
fn parse_pushgateway_url(url: &str) -> Result<reqwest::Url, ConfigError> {
    let doc = &METRICS_PUSHGATEWAY_URL;
    let gateway =
        reqwest::Url::parse(url).map_err(|e| doc.error(format!("is not a valid URL ({e})")))?;
    if !gateway.username().is_empty() || gateway.password().is_some() {
        return Err(doc.error(
            "must not carry credentials (user:password@): they would be kept in the \
             configuration and could reach logs",
        ));
    }
    if !matches!(gateway.scheme(), "http" | "https") {
        let scheme = quote(gateway.scheme());
        return Err(doc.error(format!("must be an http or https URL, not {scheme}")));
    }
    if gateway.host_str().is_none_or(str::is_empty) {
        return Err(doc.error("has no host"));
    }
    if gateway.query().is_some() || gateway.fragment().is_some() {
        return Err(doc.error(
            "must not have a query or fragment: the grouping key is appended as a \
             path",
        ));
    }
    Ok(gateway)
}

/// The entries of a comma-separated list, trimmed, each parsed by `parse`;
/// an empty entry is an error, and every error names the entry.
fn comma_list<T>(
    doc: &VariableDoc,
    value: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, ConfigError> {
    value
        .split(',')
        .enumerate()
        .map(|(index, entry)| match entry.trim() {
            "" => Err(doc.error(format!("entry {} is empty", index + 1))),
            entry => parse(entry).map_err(|e| doc.error(format!("entry {}: {e}", index + 1))),
        })
        .collect()
}

fn parse_nodes(value: &str) -> Result<Vec<NodeAddress>, ConfigError> {
    let count = value.split(',').count();
    if count > MAX_NODES {
        let message = format!("lists {count} entries; at most {MAX_NODES} nodes are supported");
        return Err(NODES.error(message));
    }
    let nodes = comma_list(&NODES, value, NodeAddress::parse)?;
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(nodes.len());
    for (index, node) in nodes.iter().enumerate() {
        if let Some(first) = seen.insert(&node.name, index + 1) {
            let name = quote(&node.name);
            let message = format!(
                "entries {first} and {} are the same node ({name})",
                index + 1
            );
            return Err(NODES.error(message));
        }
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
            return Err(SHARD_COUNT.error(format!(
                "is {count}, but neither SHARD_INDEX nor JOB_COMPLETION_INDEX is set, \
                 so this pod's shard is not known"
            )));
        }
        return Ok(Shard::WHOLE);
    };
    let shard = u32::try_from(index).ok().and_then(|i| Shard::new(i, count));
    shard.ok_or_else(|| {
        doc.error(format!(
            "is {index}, but must be below SHARD_COUNT ({count}); in an Indexed Job, \
             set SHARD_COUNT to the Job's completions"
        ))
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
    let inline_ids = match inline {
        Some(inline) => comma_list(&GROUP_IDS, inline, |id| GroupId::new(id))?,
        None => Vec::new(),
    };
    let mut ids = GroupIds::inline(inline_ids, shard);
    if let Some(path) = file {
        ids = ids
            .with_file(Path::new(path), &quote(path))
            .map_err(|e| GROUP_IDS_FILE.error(e.0))?;
    }
    // Verify without ids checks every group the nodes list; a file given
    // but empty is a mistake, not a request for that. The whole list
    // counts, every shard's: a shard's share may well be empty.
    let everything = operation == Operation::Verify && inline.is_none() && file.is_none();
    if ids.listed() > 0 || everything {
        return Ok(ids);
    }
    let detail = match file {
        Some(path) => format!(
            "no group ids given: GROUP_IDS is unset and GROUP_IDS_FILE {} holds no ids",
            quote(path)
        ),
        None => "no group ids given: set GROUP_IDS (comma-separated) and/or \
                 GROUP_IDS_FILE (one id per line)"
            .to_owned(),
    };
    // An empty desired set would prune every group.
    let why = match operation {
        Operation::Reconcile => {
            "; reconcile needs the desired set, and with PRUNE=true an empty one would \
             delete every group"
        }
        _ => "",
    };
    Err(GROUP_IDS.error(format!("{detail}{why}")))
}

/// A path the job will write a file at: not a directory, in a directory that
/// exists. Checked up front so a bad path fails before any request.
pub(super) fn writable_file_path(
    doc: &VariableDoc,
    path: impl Into<PathBuf>,
) -> Result<PathBuf, ConfigError> {
    let path = not_a_directory(doc, path)?;
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        let shown = quote(&path.display().to_string());
        return Err(doc.error(format!("the directory of {shown} does not exist")));
    }
    Ok(path)
}

/// A path the job may write a file at, refused when it names a directory.
fn not_a_directory(doc: &VariableDoc, path: impl Into<PathBuf>) -> Result<PathBuf, ConfigError> {
    let path = path.into();
    if path.is_dir() {
        let shown = quote(&path.display().to_string());
        return Err(doc.error(format!("{shown} is a directory")));
    }
    Ok(path)
}

/// The certificates of a PEM bundle; at least one.
fn read_ca_certificates(path: &str) -> Result<Vec<reqwest::Certificate>, ConfigError> {
    let shown = quote(path);
    let error = |message: String| CA_CERT_PATH.error(message);
    let bytes = std::fs::read(path)
        .map_err(|e| error(format!("cannot read {shown}: {}: {e}", e.kind())))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&bytes)
        .map_err(|_| error(format!("{shown} is not a PEM certificate bundle")))?;
    if certificates.is_empty() {
        return Err(error(format!("{shown} holds no PEM certificate")));
    }
    Ok(certificates)
}

/// The longest token file read: far more than any bearer token.
const MAX_TOKEN_FILE_BYTES: u64 = 16 * 1024;

/// The token in the file at `path`: a regular file of at most
/// [`MAX_TOKEN_FILE_BYTES`], UTF-8, trimmed, then [`parse_token`]'s rules.
/// Errors name the file, never its content.
fn read_auth_token_file(path: &str) -> Result<Secret, ConfigError> {
    let shown = quote(path);
    let error = |message: String| AUTH_TOKEN_FILE.error(message);
    let metadata = std::fs::metadata(path)
        .map_err(|e| error(format!("cannot read {shown}: {}: {e}", e.kind())))?;
    if !metadata.is_file() {
        return Err(error(format!("{shown} is not a regular file")));
    }
    if metadata.len() > MAX_TOKEN_FILE_BYTES {
        return Err(error(format!(
            "{shown} is longer than {MAX_TOKEN_FILE_BYTES} bytes"
        )));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| error(format!("cannot read {shown}: {}: {e}", e.kind())))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        error(format!(
            "{shown} is not UTF-8 text (the content is not shown)"
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(error(format!("{shown} is empty")));
    }
    parse_token(&AUTH_TOKEN_FILE, token)
}

/// The token must fit an HTTP header value after `Bearer `: visible ASCII
/// only. Errors name `doc` (where the token came from) and say what is
/// wrong and where, never what the token is.
fn parse_token(doc: &VariableDoc, token: &str) -> Result<Secret, ConfigError> {
    let lower = token.to_ascii_lowercase();
    if lower.starts_with("bearer ") || lower.starts_with("bearer\t") {
        return Err(doc.error(
            "must be the token alone, without the \"Bearer \" prefix (the value is not shown)",
        ));
    }
    if let Some(at) = token.bytes().position(|b| !(0x21..=0x7e).contains(&b)) {
        return Err(doc.error(format!(
            "must be visible ASCII without spaces; byte {} is not (the value is not shown)",
            at + 1
        )));
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
            return Err(LOG_LEVEL.error(format!(
                "{} is not a level; use off, error, warn, info, debug or trace, or \
                 target=level directives such as api_consumer=debug,info",
                quote(directive)
            )));
        }
    }
    match tracing_subscriber::EnvFilter::try_new(value) {
        Ok(_) => Ok(()),
        Err(e) => Err(LOG_LEVEL.error(format!(
            "must be a level (error, warn, info, debug, trace) or filter directives \
             such as api_consumer=debug,info, got {}: {e}",
            quote(value)
        ))),
    }
}
