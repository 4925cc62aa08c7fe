//! `Config::from_vars`: any set of variables, mostly the job's own names
//! with any values, optionally on top of a valid configuration so that the
//! later checks are reached. Never panics; an error names one of the job's
//! variables (or `.env`/`environment`) in one line of at most 2 KiB and
//! never depends on the value of `AUTH_TOKEN`; an accepted configuration
//! is consistent. The four path variables only ever point into a private
//! temporary directory, at files the input writes there.
#![no_main]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use api_consumer::config::{Config, ConfigError, VARIABLES};
use api_consumer::domain::{GroupId, Operation};
use api_consumer_fuzz::{assert_short_line, text};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

/// Variables whose value is a path: the fuzzer never chooses the path.
const PATH_VARIABLES: [&str; 4] = [
    "GROUP_IDS_FILE",
    "CA_CERT_PATH",
    "REPORT_PATH",
    "JOURNAL_PATH",
];

#[derive(Arbitrary, Debug)]
struct Input {
    /// Start from a valid NODES, OPERATION and GROUP_IDS (later ones win).
    valid_base: bool,
    vars: Vec<Var>,
}

#[derive(Arbitrary, Debug)]
enum Var {
    /// One of the job's variables other than the path ones.
    Known {
        index: u8,
        value: Value,
    },
    GroupIdsFile(FileContent),
    CaCertPath(FileContent),
    ReportPath(OutputPath),
    JournalPath(OutputPath),
    /// Any other name (ignored by the job, unless it is one of its names).
    Other {
        name: String,
        value: String,
    },
}

#[derive(Arbitrary, Debug)]
enum Value {
    Text(String),
    Number { value: u64, padded: bool },
    List(Vec<String>),
}

#[derive(Arbitrary, Debug)]
enum FileContent {
    Bytes(Vec<u8>),
    Lines(Vec<String>),
    Missing,
    Directory,
}

#[derive(Arbitrary, Debug)]
enum OutputPath {
    File(String),
    Directory,
    MissingDirectory(String),
}

/// A directory of this process's own: the only place path variables name.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("api-consumer-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("dir")).expect("cannot create the scratch directory");
        dir
    })
}

/// A file name made of safe characters only (no separator, never empty).
fn file_name(name: &str) -> String {
    let safe: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(32)
        .collect();
    format!("f{safe}")
}

/// The variables as the job would get them, and every value and file
/// content other than the token's (for the token checks).
fn build(input: &Input) -> (Vec<(String, String)>, Vec<String>) {
    let plain: Vec<&str> = VARIABLES
        .iter()
        .map(|doc| doc.name)
        .filter(|name| !PATH_VARIABLES.contains(name))
        .collect();
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut other_text = Vec::new();
    if input.valid_base {
        for (name, value) in [
            ("NODES", "http://127.0.0.1:8080,http://127.0.0.1:8081"),
            ("OPERATION", "create"),
            ("GROUP_IDS", "g1,g2"),
        ] {
            vars.push((name.to_owned(), value.to_owned()));
        }
    }
    for var in &input.vars {
        let (name, value) = match var {
            Var::Known { index, value } => {
                let name = plain[usize::from(*index) % plain.len()];
                let value = match value {
                    Value::Text(text) => text.clone(),
                    Value::Number {
                        value,
                        padded: false,
                    } => value.to_string(),
                    Value::Number {
                        value,
                        padded: true,
                    } => format!(" {value}\t"),
                    Value::List(items) => items.join(","),
                };
                (name.to_owned(), value)
            }
            Var::GroupIdsFile(content) => {
                let path = write_file("ids.txt", content, &mut other_text);
                ("GROUP_IDS_FILE".to_owned(), path)
            }
            Var::CaCertPath(content) => {
                let path = write_file("ca.pem", content, &mut other_text);
                ("CA_CERT_PATH".to_owned(), path)
            }
            Var::ReportPath(path) => ("REPORT_PATH".to_owned(), output_path(path)),
            Var::JournalPath(path) => ("JOURNAL_PATH".to_owned(), output_path(path)),
            Var::Other { name, value } => {
                if PATH_VARIABLES.contains(&name.as_str()) {
                    continue;
                }
                (name.clone(), value.clone())
            }
        };
        if name != "AUTH_TOKEN" {
            other_text.push(value.clone());
        }
        vars.push((name, value));
    }
    (vars, other_text)
}

fn write_file(name: &str, content: &FileContent, other_text: &mut Vec<String>) -> String {
    let dir = scratch();
    let path = match content {
        FileContent::Bytes(bytes) => {
            other_text.push(text(bytes));
            std::fs::write(dir.join(name), bytes).expect("cannot write a scratch file");
            dir.join(name)
        }
        FileContent::Lines(lines) => {
            let joined = lines.join("\n");
            std::fs::write(dir.join(name), &joined).expect("cannot write a scratch file");
            other_text.push(joined);
            dir.join(name)
        }
        FileContent::Missing => dir.join("missing").join(name),
        FileContent::Directory => dir.join("dir"),
    };
    path.display().to_string()
}

fn output_path(path: &OutputPath) -> String {
    let dir = scratch();
    let path = match path {
        OutputPath::File(name) => dir.join(file_name(name)),
        OutputPath::Directory => dir.join("dir"),
        OutputPath::MissingDirectory(name) => dir.join("missing").join(file_name(name)),
    };
    path.display().to_string()
}

/// ROT47 on visible ASCII: another token of the same length, with the same
/// bytes outside visible ASCII at the same places, so exactly as valid or
/// invalid as the original.
fn other_token(token: &str) -> String {
    token
        .chars()
        .map(|c| match c {
            '!'..='~' => char::from(b'!' + (c as u8 - b'!' + 47) % 94),
            _ => c,
        })
        .collect()
}

fn has_bearer_prefix(token: &str) -> bool {
    token.trim().to_ascii_lowercase().starts_with("bearer")
}

/// What a result shows to an operator, with the token's value redacted by
/// construction (`Secret` prints no value).
fn shown(result: &Result<Config, ConfigError>) -> String {
    match result {
        Ok(config) => format!("{config:?}"),
        Err(error) => format!("{error}"),
    }
}

fuzz_target!(|input: Input| {
    let (vars, other_text) = build(&input);
    let result = Config::from_vars(vars.clone());
    match &result {
        Ok(config) => check_config(config),
        Err(error) => check_error(error),
    }

    let tokens: Vec<&str> = vars
        .iter()
        .filter(|(name, _)| name == "AUTH_TOKEN")
        .map(|(_, value)| value.as_str())
        .collect();
    let Some(token) = tokens.last().map(|t| t.trim()) else {
        return;
    };
    // The same run with another token of the same shape must show exactly
    // the same: whatever differs came from the token's value. (Not for a
    // token that starts like "Bearer": its image would not be refused alike.)
    let comparable = !tokens
        .iter()
        .any(|t| has_bearer_prefix(t) || has_bearer_prefix(&other_token(t)));
    let again = comparable.then(|| {
        let swapped: Vec<(String, String)> = vars
            .iter()
            .map(|(name, value)| match name.as_str() {
                "AUTH_TOKEN" => (name.clone(), other_token(value)),
                _ => (name.clone(), value.clone()),
            })
            .collect();
        shown(&Config::from_vars(swapped))
    });
    if let Some(again) = &again {
        assert_eq!(
            &shown(&result),
            again,
            "what the configuration shows depends on AUTH_TOKEN's value"
        );
    }
    // The plain check, for a token distinctive enough that finding it in
    // a message cannot be chance (unless the other token's run shows it too).
    let distinctive = token.len() >= 8 && !other_text.iter().any(|t| t.contains(token));
    if let (true, Err(error)) = (distinctive, &result) {
        let by_chance = again.as_ref().is_some_and(|again| again.contains(token));
        assert!(
            by_chance || !error.message.contains(token),
            "{}: the message holds AUTH_TOKEN's value: {}",
            error.variable,
            error.message
        );
    }
});

fn check_error(error: &ConfigError) {
    let named = VARIABLES.iter().any(|doc| doc.name == error.variable)
        || matches!(error.variable, ".env" | "environment");
    assert!(named, "error names no variable: {error}");
    assert_eq!(error.variable(), error.variable);
    assert_short_line("ConfigError message", &error.message);
    assert_short_line("ConfigError", &error.to_string());
}

fn check_config(config: &Config) {
    assert!(!config.nodes.is_empty(), "no nodes");
    let names: HashSet<&str> = config.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names.len(), config.nodes.len(), "a node listed twice");
    // Only a verify may come without ids: it checks every group the nodes list.
    assert!(
        !config.group_ids.is_empty() || config.operation == Operation::Verify,
        "no group ids"
    );
    assert!(
        !config.prune || config.operation == Operation::Reconcile,
        "PRUNE accepted outside reconcile"
    );
    let entries = config.group_ids.entries();
    assert_eq!(
        entries.len() as u64,
        config.group_ids.len(),
        "ids counted wrongly"
    );
    for entry in entries {
        let id = &entry.id;
        assert!(GroupId::new(id.as_str()).is_ok(), "invalid id {id:?}");
    }
    assert!(config.retry_base_delay <= config.retry_max_delay);
    assert!(!config.request_timeout.is_zero() && !config.connect_timeout.is_zero());
    assert!(config.concurrency >= 1 && config.node_concurrency >= 1);
    if let Some(token) = &config.auth_token {
        let token = token.expose();
        assert!(
            !token.is_empty() && token.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "AUTH_TOKEN accepted but not a header-safe token"
        );
    }
}
