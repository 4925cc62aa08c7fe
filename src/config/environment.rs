//! Where the variables come from: the process environment overlaid on a
//! `.env` file in the current directory (for local runs), merged without
//! ever modifying the process environment; and the lenient reading of the
//! two logging variables that lets `main` log a configuration error.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::path::Path;

use super::parse::validate_log_level;
use super::variables::{LOG_FORMAT, LOG_LEVEL, VARIABLES};
use super::ConfigError;
use crate::domain::quote;
use crate::output::telemetry::LogFormat;

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
    let bytes = std::fs::read(".env").unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let dotenv = dotenvy::from_read_iter(strip_bom(&text).as_bytes()).map_while(Result::ok);
    // Later pairs win, so the process environment overrides the file.
    let process = std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)));
    lenient_log_settings(dotenv.chain(process))
}

pub(super) fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Reads `path` as a dotenv file; a missing file is an empty one.
pub(super) fn read_dotenv(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    const NAME: &str = ".env";
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            let shown = quote(&path.display().to_string());
            let message = format!("cannot read {shown}: {}: {e}", e.kind());
            return Err(ConfigError::new(NAME, message));
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
pub(super) fn merge_environment<I>(
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
        if let Ok(value) = value.into_string() {
            merged.insert(name, value);
        } else if let Some(doc) = VARIABLES.iter().find(|doc| doc.name == name) {
            return Err(doc.error("is not valid UTF-8"));
        }
    }
    Ok(merged.into_iter().collect())
}
