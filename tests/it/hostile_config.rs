//! Hostile configuration, through the real binary: every variable the job
//! reads set to empty, malformed, huge, negative, overflowing, unicode and
//! whitespace values, and broken `.env` files. Every case must exit 2 with
//! exactly one JSON line naming the variable, send no request to the live
//! nodes listed in `NODES`, and never echo the token.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::Output;

use api_consumer::config::VARIABLES;

use crate::common::*;

/// Every case runs with this token, so that an error in any variable is
/// checked for echoing it; the `AUTH_TOKEN` cases embed it in bad values.
const SECRET: &str = "tok-5ecret-hostile-cfg";
/// The part of [`SECRET`] that must appear in no output.
const SECRET_CORE: &str = "5ecret";

/// An error line quotes at most an excerpt of a value; a huge value must not
/// make a huge log line.
const MAX_LINE_BYTES: usize = 2048;

/// The `.env` file in the working directory of a case.
enum DotEnv {
    File(Vec<u8>),
    /// A directory named `.env`: the file exists but cannot be read.
    Directory,
}

/// One hostile configuration: changes to a valid environment.
struct Case {
    /// The variable the error must name.
    names: &'static str,
    /// A value for a variable, or `None` to unset it.
    changes: Vec<(&'static str, Option<OsString>)>,
    dotenv: Option<DotEnv>,
}

/// `variable` set to `value`; the error must name it.
fn set(variable: &'static str, value: impl Into<OsString>) -> Case {
    Case {
        names: variable,
        changes: vec![(variable, Some(value.into()))],
        dotenv: None,
    }
}

/// `variable` set to `value` next to `other` set to `other_value`; the error
/// must name `variable`.
fn shard(variable: &'static str, value: &str, other: &'static str, other_value: &str) -> Case {
    Case {
        names: variable,
        changes: vec![
            (other, Some(other_value.into())),
            (variable, Some(value.into())),
        ],
        dotenv: None,
    }
}

/// `variable` unset; the error must name it.
fn unset(variable: &'static str) -> Case {
    Case {
        names: variable,
        changes: vec![(variable, None)],
        dotenv: None,
    }
}

/// A `.env` file; the error must name `names`.
fn dotenv(names: &'static str, file: DotEnv) -> Case {
    Case {
        names,
        changes: Vec::new(),
        dotenv: Some(file),
    }
}

impl Case {
    /// Also sets `other` (the error still names [`Case::names`]).
    fn and(mut self, other: &'static str, value: impl Into<OsString>) -> Case {
        self.changes.push((other, Some(value.into())));
        self
    }

    /// Also unsets `other`.
    fn without(mut self, other: &'static str) -> Case {
        self.changes.push((other, None));
        self
    }

    /// How failure messages name the case: the variable and its values, cut
    /// short.
    fn label(&self) -> String {
        let changes: Vec<String> = self
            .changes
            .iter()
            .map(|(name, value)| match value {
                Some(value) => {
                    let shown: String = value.to_string_lossy().chars().take(40).collect();
                    format!("{name}={shown:?}")
                }
                None => format!("{name} unset"),
            })
            .collect();
        let file = match &self.dotenv {
            Some(DotEnv::File(content)) => format!(" .env={:?}", String::from_utf8_lossy(content)),
            Some(DotEnv::Directory) => " .env is a directory".to_string(),
            None => String::new(),
        };
        format!("{}: {}{file}", self.names, changes.join(" "))
    }
}

fn bytes(value: &[u8]) -> OsString {
    OsString::from_vec(value.to_vec())
}

fn path(path: &Path) -> OsString {
    path.as_os_str().to_owned()
}

/// Files and directories the path-valued cases point at.
struct Fixtures {
    dir: tempfile::TempDir,
}

impl Fixtures {
    fn new() -> Fixtures {
        let dir = tempfile::tempdir().unwrap();
        let files: [(&str, &[u8]); 6] = [
            ("not-utf8.txt", b"good\nbad-\xff\n"),
            ("control.txt", b"# ids\nfine\nbad\x07id\n"),
            (
                "comments-only.txt",
                b"# nothing but comments\n\n   \n# and blanks\n",
            ),
            ("long-id.txt", &[b'x'; 257]),
            (
                "not-a-cert.pem",
                b"-----BEGIN CERTIFICATE-----\nnot base64!\n",
            ),
            ("empty.pem", b""),
        ];
        std::fs::write(dir.path().join("token"), format!("{SECRET}\n")).unwrap();
        std::fs::write(
            dir.path().join("bearer-token"),
            format!("Bearer {SECRET}\n"),
        )
        .unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        // 100,000 good ids, then a bad one: every line is checked before
        // the first request.
        let mut late = String::with_capacity(1_600_000);
        for i in 0..100_000 {
            late.push_str(&format!("group-{i:06}\n"));
        }
        late.push_str("bad\u{1b}[31m\n");
        std::fs::write(dir.path().join("bad-last-line.txt"), late).unwrap();
        let mut long_line = b"ok\n# ".to_vec();
        long_line.extend(std::iter::repeat_n(b'x', 100_000));
        std::fs::write(dir.path().join("long-line.txt"), long_line).unwrap();
        nix::unistd::mkfifo(&dir.path().join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        Fixtures { dir }
    }

    fn file(&self, name: &str) -> OsString {
        path(&self.dir.path().join(name))
    }
}

fn cases(fixtures: &Fixtures) -> Vec<Case> {
    let many_nodes: Vec<String> = (0..=10_000).map(|i| format!("n{i}")).collect();
    let huge_host = "h".repeat(50_000);
    let missing_dir = fixtures.dir.path().join("missing-dir");
    vec![
        unset("NODES"),
        set("NODES", ""),
        set("NODES", " \t "),
        set("NODES", "http://a:1,http://a:1"),
        set("NODES", "HTTP://Node1:80/, node1"),
        set("NODES", "ftp://a"),
        set("NODES", "http://"),
        set("NODES", "a,,b"),
        set("NODES", "node:99999"),
        set("NODES", "node:-1"),
        set("NODES", "http://[::1"),
        set("NODES", "nöde:８０８０"),
        set("NODES", "http://exa mple"),
        set("NODES", "http://a/?x=1"),
        set("NODES", format!("http://admin:{SECRET}@node")),
        set("NODES", many_nodes.join(",")),
        set("NODES", format!("{huge_host},{huge_host}")),
        set("NODES", bytes(b"http://n\xff")),
        unset("OPERATION"),
        set("OPERATION", ""),
        set("OPERATION", "upsert"),
        set("OPERATION", "créate"),
        set("OPERATION", "cre ate"),
        set("OPERATION", "plan"),
        set("OPERATION", "x".repeat(100_000)),
        set("DRY_RUN", ""),
        set("DRY_RUN", "yes"),
        set("DRY_RUN", "2"),
        set("DRY_RUN", bytes(b"tru\xff")),
        set("PRUNE", ""),
        set("PRUNE", "true"),
        set("PRUNE", "on"),
        set("PRUNE_MAX", ""),
        set("PRUNE_MAX", "-1"),
        set("PRUNE_MAX", "1e3"),
        set("PRUNE_MAX", "4294967296"),
        set("PRIOR_STATE", ""),
        set("PRIOR_STATE", "lists"),
        set("PRIOR_STATE", "reads,list"),
        set("SHARD_COUNT", ""),
        set("SHARD_COUNT", "0"),
        set("SHARD_COUNT", "100001"),
        set("SHARD_COUNT", "４"),
        // More than one shard, and no index from anywhere.
        set("SHARD_COUNT", "2"),
        shard("SHARD_INDEX", "2", "SHARD_COUNT", "2"),
        shard("SHARD_INDEX", "-1", "SHARD_COUNT", "2"),
        shard("SHARD_INDEX", " ", "SHARD_COUNT", "2"),
        set("SHARD_INDEX", "1"),
        shard("JOB_COMPLETION_INDEX", "x", "SHARD_COUNT", "2"),
        shard(
            "JOB_COMPLETION_INDEX",
            "18446744073709551616",
            "SHARD_COUNT",
            "2",
        ),
        // An Indexed Job without SHARD_COUNT.
        set("JOB_COMPLETION_INDEX", "1"),
        set("NODE_PROTOCOL", ""),
        set("NODE_PROTOCOL", "2pc"),
        set("NODE_PROTOCOL", "two phase"),
        unset("GROUP_IDS"),
        set("GROUP_IDS", ""),
        set("GROUP_IDS", "   "),
        set("GROUP_IDS", "a,,b"),
        set("GROUP_IDS", ","),
        set("GROUP_IDS", "x".repeat(257)),
        set("GROUP_IDS", "é".repeat(129)),
        set("GROUP_IDS", "bad\u{7}id"),
        set("GROUP_IDS", "a\u{85}b"),
        set("GROUP_IDS", "x".repeat(100_000)),
        set("GROUP_IDS_FILE", ""),
        set("GROUP_IDS_FILE", fixtures.file("missing.txt")),
        set("GROUP_IDS_FILE", path(fixtures.dir.path())),
        set("GROUP_IDS_FILE", fixtures.file("not-utf8.txt")),
        set("GROUP_IDS_FILE", fixtures.file("control.txt")),
        set("GROUP_IDS_FILE", fixtures.file("long-id.txt")),
        set("GROUP_IDS_FILE", fixtures.file("bad-last-line.txt")),
        set("GROUP_IDS_FILE", fixtures.file("long-line.txt")),
        // Neither can be read twice; opening the FIFO would wait for a writer.
        set("GROUP_IDS_FILE", fixtures.file("fifo")),
        set("GROUP_IDS_FILE", "/dev/null"),
        // No ids anywhere: the error is about the ids, named GROUP_IDS.
        unset("GROUP_IDS").and("GROUP_IDS_FILE", fixtures.file("comments-only.txt")),
        set("REQUEST_TIMEOUT_MS", "0"),
        set("REQUEST_TIMEOUT_MS", "-1"),
        set("REQUEST_TIMEOUT_MS", "1.5"),
        set("REQUEST_TIMEOUT_MS", "5s"),
        set("REQUEST_TIMEOUT_MS", "5 000"),
        set("REQUEST_TIMEOUT_MS", "+5"),
        set("REQUEST_TIMEOUT_MS", "٥"),
        set("REQUEST_TIMEOUT_MS", "600001"),
        set("REQUEST_TIMEOUT_MS", "99999999999999999999999"),
        set("WRITE_SETTLE_MS", "-1"),
        set("WRITE_SETTLE_MS", "600001"),
        set("WRITE_SETTLE_MS", "10s"),
        set("NODE_DOWN_WAIT_SECS", "-1"),
        set("NODE_DOWN_WAIT_SECS", "1m"),
        set("NODE_DOWN_WAIT_SECS", "86401"),
        set("NODE_DOWN_WAIT_SECS", ""),
        set("NODE_DOWN_AFTER_FAILURES", "-5"),
        set("NODE_DOWN_AFTER_FAILURES", "1001"),
        set("NODE_DOWN_AFTER_FAILURES", "five"),
        set("CONNECT_TIMEOUT_MS", " "),
        set("CONNECT_TIMEOUT_MS", "18446744073709551616"),
        set("CONNECT_TIMEOUT_MS", "0x10"),
        set("MAX_RETRIES", "-1"),
        set("MAX_RETRIES", "101"),
        set("MAX_RETRIES", "３"),
        set("RETRY_BASE_DELAY_MS", "0"),
        set("RETRY_BASE_DELAY_MS", "1e3"),
        set("RETRY_MAX_DELAY_MS", "10").and("RETRY_BASE_DELAY_MS", "100"),
        set("RETRY_MAX_DELAY_MS", "3600001"),
        set("RUN_TIMEOUT_SECS", "0"),
        set("RUN_TIMEOUT_SECS", "604801"),
        set("RUN_TIMEOUT_SECS", "1h"),
        set("ROLLBACK_TIMEOUT_SECS", "0"),
        set("ROLLBACK_TIMEOUT_SECS", "-5"),
        set("ROLLBACK_TIMEOUT_SECS", "3601"),
        set("CONCURRENCY", "0"),
        set("CONCURRENCY", "10001"),
        set("CONCURRENCY", "4294967296"),
        set("NODE_CONCURRENCY", "0"),
        set("NODE_CONCURRENCY", "1001"),
        set("NODE_CONCURRENCY", "Ⅴ"),
        set("NODE_RATE_LIMIT", "-1"),
        set("NODE_RATE_LIMIT", "2.5"),
        set("NODE_RATE_LIMIT", "4294967296"),
        set("MAX_FAILED_GROUPS", ""),
        set("MAX_FAILED_GROUPS", "-1"),
        set("MAX_FAILED_GROUPS", "ten"),
        set("MAX_FAILED_GROUPS", "4294967296"),
        set("PROGRESS_INTERVAL_SECS", ""),
        set("PROGRESS_INTERVAL_SECS", "-1"),
        set("PROGRESS_INTERVAL_SECS", "0.5"),
        set("PROGRESS_INTERVAL_SECS", "86401"),
        set("AUTH_TOKEN", ""),
        set("AUTH_TOKEN", "  "),
        set("AUTH_TOKEN", format!("{SECRET} more")),
        set("AUTH_TOKEN", format!("Bearer {SECRET}")),
        set("AUTH_TOKEN", format!("{SECRET}é")),
        set("AUTH_TOKEN", format!("{SECRET}\u{7f}")),
        set("AUTH_TOKEN", format!("{}é", SECRET.repeat(4_000))),
        set("AUTH_TOKEN", bytes(&[SECRET.as_bytes(), b"\xff"].concat())),
        set("LOG_FORMAT", ""),
        set("LOG_FORMAT", "xml"),
        set("LOG_FORMAT", "ｊｓｏｎ"),
        set("LOG_LEVEL", ""),
        set("LOG_LEVEL", "api_consumer=loud"),
        set("LOG_LEVEL", "[{"),
        // Not levels, but valid `tracing` target names: taken as filters,
        // they would silence every log line, errors and summary included.
        set("LOG_LEVEL", "verbose"),
        set("LOG_LEVEL", "warning"),
        // A filter must not silence the one line a configuration error has.
        unset("NODES").and("LOG_LEVEL", "off"),
        set("REPORT_PATH", ""),
        set("REPORT_PATH", "   "),
        set("REPORT_PATH", path(&missing_dir.join("report.json"))),
        set("REPORT_PATH", path(fixtures.dir.path())),
        set("REPORT_PATH", bytes(b"report-\xff.json")),
        set("TERMINATION_MESSAGE_PATH", ""),
        set("TERMINATION_MESSAGE_PATH", " "),
        set("TERMINATION_MESSAGE_PATH", path(fixtures.dir.path())),
        set("CA_CERT_PATH", ""),
        set("AUTH_TOKEN_FILE", fixtures.file("missing-token")),
        set("AUTH_TOKEN_FILE", fixtures.file("empty.pem")),
        set("AUTH_TOKEN_FILE", path(fixtures.dir.path())),
        set("AUTH_TOKEN_FILE", fixtures.file("fifo")),
        set("AUTH_TOKEN_FILE", fixtures.file("bearer-token")),
        set("AUTH_TOKEN_FILE", fixtures.file("not-utf8.txt")),
        set("AUTH_TOKEN_FILE", fixtures.file("token")).and("AUTH_TOKEN", SECRET),
        set("CA_CERT_PATH", fixtures.file("missing.pem")),
        set("CA_CERT_PATH", path(fixtures.dir.path())),
        set("CA_CERT_PATH", fixtures.file("not-a-cert.pem")),
        set("CA_CERT_PATH", fixtures.file("empty.pem")),
        set("JOURNAL_PATH", ""),
        set("JOURNAL_PATH", path(&missing_dir.join("journal"))),
        set("METRICS_PUSHGATEWAY_URL", ""),
        set(
            "METRICS_PUSHGATEWAY_URL",
            format!("http://user:{SECRET}@127.0.0.1:9091"),
        ),
        set("METRICS_PUSHGATEWAY_URL", format!("http://{SECRET}:@gw")),
        set("METRICS_PUSHGATEWAY_URL", "ftp://127.0.0.1:9091"),
        set("METRICS_PUSHGATEWAY_URL", "http://127.0.0.1:9091/?job=x"),
        set("METRICS_PUSHGATEWAY_URL", "not a url"),
        set("METRICS_JOB", ""),
        set("METRICS_JOB", "a/b"),
        set("METRICS_JOB", "x".repeat(129)),
        dotenv(
            ".env",
            DotEnv::File(format!("NODES=a\nAUTH_TOKEN='{SECRET}\n").into_bytes()),
        ),
        dotenv(
            ".env",
            DotEnv::File(format!("NODES=a\n\nAUTH_TOKEN {SECRET}\n").into_bytes()),
        ),
        dotenv(
            ".env",
            DotEnv::File([b"AUTH_TOKEN=".as_slice(), SECRET.as_bytes(), b"\xff\n"].concat()),
        ),
        dotenv(".env", DotEnv::Directory),
        // A bad value in `.env` is named like one in the environment.
        dotenv("CONCURRENCY", DotEnv::File(b"CONCURRENCY=zero\n".to_vec())),
        dotenv(
            "MAX_RETRIES",
            DotEnv::File(b"\xef\xbb\xbfMAX_RETRIES=-3\n".to_vec()),
        ),
        dotenv("NODES", DotEnv::File(b"NODES=\n".to_vec())).without("NODES"),
        // The environment wins over `.env`, a valid value there included.
        dotenv("OPERATION", DotEnv::File(b"OPERATION=create\n".to_vec())).and("OPERATION", "drop"),
    ]
}

/// Runs the binary with a valid environment (the live `nodes`, the token)
/// changed as the case says, in an empty directory holding only its `.env`.
fn run_case(case: &Case, nodes: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    match &case.dotenv {
        Some(DotEnv::File(content)) => std::fs::write(dir.path().join(".env"), content).unwrap(),
        Some(DotEnv::Directory) => std::fs::create_dir(dir.path().join(".env")).unwrap(),
        None => {}
    }
    let mut cmd = command(
        &dir,
        &[
            ("NODES", nodes),
            ("OPERATION", "create"),
            ("GROUP_IDS", "g"),
            ("AUTH_TOKEN", SECRET),
        ],
    );
    for (name, value) in &case.changes {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
    cmd.output().unwrap()
}

fn check(case: &Case, output: &Output, requests_sent: u64) {
    let label = case.label();
    assert_eq!(requests_sent, 0, "{label}: requests were sent");
    for stream in [&output.stdout, &output.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert!(
            !text.contains(SECRET_CORE),
            "{label}: the token was echoed: {text}"
        );
    }
    assert_config_error(output, case.names);
    let line = output.stdout.len();
    assert!(line <= MAX_LINE_BYTES, "{label}: a {line} byte line");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_variable_exits_2_naming_it_without_sending_or_echoing() {
    let cluster = cluster(2).await;
    let nodes = cluster.urls().join(",");
    let fixtures = Fixtures::new();
    let cases = cases(&fixtures);
    for variable in VARIABLES {
        assert!(
            cases.iter().any(|case| case.names == variable.name),
            "no case for {}",
            variable.name
        );
    }
    let requests = || -> u64 {
        cluster
            .nodes()
            .iter()
            .flat_map(|node| node.state().requests.into_values())
            .sum()
    };
    let mut failed = Vec::new();
    for case in &cases {
        let before = requests();
        let output = run_case(case, &nodes);
        let sent = requests() - before;
        if catch_unwind(AssertUnwindSafe(|| check(case, &output, sent))).is_err() {
            failed.push(case.label());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} cases failed (their messages are above): {failed:#?}",
        failed.len(),
        cases.len()
    );
}
