use super::environment::{merge_environment, read_dotenv};
use super::variables::*;
use super::*;
use std::ffi::OsString;
use std::io::Write as _;
use std::path::Path;

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
        .entries()
        .iter()
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
fn operations_dry_run_and_prune() {
    let config = ok(vars(BASE));
    assert_eq!(
        (config.dry_run, config.prune, config.prune_max),
        (false, false, 100)
    );
    for (text, operation) in [
        ("Verify", Operation::Verify),
        ("RECONCILE", Operation::Reconcile),
        ("delete", Operation::Delete),
    ] {
        assert_eq!(ok(with(&[("OPERATION", text)])).operation, operation);
    }
    for (text, value) in [("TRUE", true), ("1", true), ("False", false), ("0", false)] {
        assert_eq!(ok(with(&[("DRY_RUN", text)])).dry_run, value, "{text}");
    }
    let reconcile = ok(with(&[
        ("OPERATION", "reconcile"),
        ("PRUNE", "true"),
        ("PRUNE_MAX", "0"),
    ]));
    assert_eq!((reconcile.prune, reconcile.prune_max), (true, 0));
    assert_eq!(config.prior_state, PriorSource::Auto);
    assert_eq!(
        ok(with(&[("PRIOR_STATE", "List")])).prior_state,
        PriorSource::List
    );
    assert_eq!(
        ok(with(&[("PRIOR_STATE", "read")])).prior_state,
        PriorSource::Read
    );
    // Verify without ids checks every group the nodes list.
    let verify = ok(without("GROUP_IDS", &[("OPERATION", "verify")]));
    assert!(verify.group_ids.is_empty());
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
        // Change.
        (
            with(&[("OPERATION", "create,delete")]),
            "OPERATION",
            "must be create, delete, verify or reconcile",
        ),
        (
            with(&[("OPERATION", "plan")]),
            "OPERATION",
            "must be create, delete, verify or reconcile",
        ),
        // Prior state.
        (
            with(&[("PRIOR_STATE", "both")]),
            "PRIOR_STATE",
            "must be auto, list or read",
        ),
        // Shards.
        (
            with(&[("SHARD_COUNT", "0")]),
            "SHARD_COUNT",
            "must be a whole number from 1 to 100000, got \"0\"",
        ),
        (
            with(&[("SHARD_COUNT", "4")]),
            "SHARD_COUNT",
            "is 4, but neither SHARD_INDEX nor JOB_COMPLETION_INDEX is set",
        ),
        (
            with(&[("SHARD_COUNT", "4"), ("SHARD_INDEX", "4")]),
            "SHARD_INDEX",
            "is 4, but must be below SHARD_COUNT (4)",
        ),
        (
            with(&[("SHARD_COUNT", "4"), ("JOB_COMPLETION_INDEX", "two")]),
            "JOB_COMPLETION_INDEX",
            "must be a whole number",
        ),
        (
            with(&[("SHARD_COUNT", "4"), ("SHARD_INDEX", "-1")]),
            "SHARD_INDEX",
            "must be a whole number",
        ),
        // An Indexed Job that forgot SHARD_COUNT must not run the whole
        // list in every pod.
        (
            with(&[("JOB_COMPLETION_INDEX", "2")]),
            "JOB_COMPLETION_INDEX",
            "is 2, but must be below SHARD_COUNT (1); in an Indexed Job, set SHARD_COUNT",
        ),
        (
            with(&[("SHARD_COUNT", "2"), ("SHARD_INDEX", "99999999999")]),
            "SHARD_INDEX",
            "must be below SHARD_COUNT (2)",
        ),
        // Node protocol.
        (
            with(&[("NODE_PROTOCOL", "2pc")]),
            "NODE_PROTOCOL",
            "must be standard or two-phase",
        ),
        // Metrics.
        (
            with(&[("METRICS_PUSHGATEWAY_URL", "http://user:hunter2@gw:9091")]),
            "METRICS_PUSHGATEWAY_URL",
            "must not carry credentials",
        ),
        (
            with(&[("METRICS_PUSHGATEWAY_URL", "ftp://gw:9091")]),
            "METRICS_PUSHGATEWAY_URL",
            "must be an http or https URL",
        ),
        (
            with(&[("METRICS_PUSHGATEWAY_URL", "http://gw:9091/?x=1")]),
            "METRICS_PUSHGATEWAY_URL",
            "must not have a query or fragment",
        ),
        (
            with(&[("METRICS_PUSHGATEWAY_URL", "gw:9091")]),
            "METRICS_PUSHGATEWAY_URL",
            "must be an http or https URL",
        ),
        (
            with(&[("METRICS_JOB", "api/consumer")]),
            "METRICS_JOB",
            "must be 1 to 128 letters, digits",
        ),
        // Dry run and prune.
        (
            with(&[("DRY_RUN", "maybe")]),
            "DRY_RUN",
            "must be true or false (or 1 or 0)",
        ),
        (
            with(&[("PRUNE", "true")]),
            "PRUNE",
            "applies only to OPERATION=reconcile, not create",
        ),
        (with(&[("PRUNE", "yes")]), "PRUNE", "must be true or false"),
        (
            with(&[("PRUNE_MAX", "-1")]),
            "PRUNE_MAX",
            "must be a whole number from 0 to 4294967295",
        ),
        (
            without(
                "GROUP_IDS",
                &[("OPERATION", "reconcile"), ("PRUNE", "true")],
            ),
            "GROUP_IDS",
            "an empty one would delete every group",
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
fn auth_token_file_is_read_once_trimmed_and_checked_like_the_variable() {
    const TOKEN: &str = "file-token-5c1d";
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, content: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let good = write("token", format!("{TOKEN}\n").as_bytes());
    let config = ok(with(&[("AUTH_TOKEN_FILE", &good)]));
    assert_eq!(config.auth_token.as_ref().map(Secret::expose), Some(TOKEN));
    assert!(!format!("{config:?}").contains(TOKEN));
    let missing = dir.path().join("missing").to_str().unwrap().to_owned();
    let empty = write("empty", b" \n");
    let spaced = write("spaced", format!("{TOKEN} {TOKEN}").as_bytes());
    let bearer = write("bearer", format!("Bearer {TOKEN}").as_bytes());
    let not_utf8 = write("not-utf8", &[b'a', 0xff, b'b']);
    let huge = write("huge", &vec![b'a'; 20_000]);
    let directory = dir.path().to_str().unwrap().to_owned();
    for (path, says) in [
        (&missing, "cannot read"),
        (&empty, "is empty"),
        (&spaced, "visible ASCII"),
        (&bearer, "Bearer"),
        (&not_utf8, "not UTF-8"),
        (&huge, "longer than"),
        (&directory, "not a regular file"),
    ] {
        let e = err(with(&[("AUTH_TOKEN_FILE", path)]));
        assert_eq!(e.variable, "AUTH_TOKEN_FILE", "{path}");
        assert!(e.to_string().contains(says), "{path}: {e}");
        assert!(!e.to_string().contains(TOKEN), "{e}");
    }
    // One way only.
    let e = err(with(&[("AUTH_TOKEN_FILE", &good), ("AUTH_TOKEN", "other")]));
    assert_eq!(e.variable, "AUTH_TOKEN_FILE");
    assert!(e.to_string().contains("AUTH_TOKEN"), "{e}");
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
    let file =
        ids_file(b"# local run\nNODES=127.0.0.1:8080\nOPERATION=create\nexport GROUP_IDS='a,b'\n");
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
        match (doc.default, doc.range()) {
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
        let is_default = VARIABLES
            .iter()
            .any(|d| d.name == name && matches!(d.default, DefaultValue::Value(v) if v == value));
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
        if let Some((min, max)) = doc.range() {
            assert!(heading.contains(&format!("{min} to {max}")), "{heading}");
        }
    }
    for code in [
        "    0  ", "    1  ", "    2  ", "    3  ", "    4  ", "   70  ",
    ] {
        assert!(help.contains(code), "exit code line {code:?}");
    }
    assert!(help.contains("api-consumer [--help | --version]"));
    assert!(help.lines().all(|l| l.chars().count() <= 80), "{help}");
}

#[test]
fn the_shard_index_comes_from_shard_index_or_else_the_job_completion_index() {
    assert_eq!(ok(with(&[])).shard, Shard::WHOLE);
    // One shard: an Indexed Job of one completion is fine.
    assert_eq!(
        ok(with(&[("JOB_COMPLETION_INDEX", "0")])).shard,
        Shard::WHOLE
    );
    let from_kubernetes = ok(with(&[("SHARD_COUNT", "4"), ("JOB_COMPLETION_INDEX", "3")]));
    assert_eq!(from_kubernetes.shard, Shard::new(3, 4).unwrap());
    // SHARD_INDEX wins over JOB_COMPLETION_INDEX.
    let explicit = ok(with(&[
        ("SHARD_COUNT", "4"),
        ("SHARD_INDEX", " 1 "),
        ("JOB_COMPLETION_INDEX", "3"),
    ]));
    assert_eq!(explicit.shard, Shard::new(1, 4).unwrap());
}

#[test]
fn a_shard_takes_its_share_of_the_ids_and_keeps_their_positions() {
    let ids: Vec<String> = (0..40).map(|i| format!("g{i}")).collect();
    let joined = ids.join(",");
    let mut seen = Vec::new();
    for index in 0..4 {
        let index = index.to_string();
        let config = ok(with(&[
            ("GROUP_IDS", &joined),
            ("SHARD_COUNT", "4"),
            ("SHARD_INDEX", &index),
        ]));
        assert_eq!(config.group_ids.listed(), 40);
        let entries = config.group_ids.entries().to_vec();
        assert_eq!(entries.len() as u64, config.group_ids.len());
        for entry in entries {
            let crate::domain::Position::GroupIds(n) = entry.position else {
                panic!("{:?}", entry.position);
            };
            assert_eq!(ids[n as usize - 1], entry.id.as_str());
            seen.push(entry.id.as_str().to_owned());
        }
    }
    seen.sort();
    let mut all = ids.clone();
    all.sort();
    assert_eq!(seen, all, "every id in exactly one shard");
}

#[test]
fn each_shard_keeps_its_own_journal_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let path_text = path.to_str().unwrap();
    let whole = ok(with(&[("JOURNAL_PATH", path_text)]));
    assert_eq!(whole.journal_path.as_deref(), Some(path.as_path()));
    let sharded = ok(with(&[
        ("JOURNAL_PATH", path_text),
        ("SHARD_COUNT", "4"),
        ("JOB_COMPLETION_INDEX", "2"),
    ]));
    assert_eq!(
        sharded.journal_path,
        Some(dir.path().join("journal.shard-2-of-4"))
    );
}

#[test]
fn metrics_are_off_unless_a_gateway_is_given_and_credentials_never_show() {
    assert_eq!(ok(with(&[])).metrics, None);
    let metrics = ok(with(&[(
        "METRICS_PUSHGATEWAY_URL",
        " http://gw:9091/prefix ",
    )]))
    .metrics
    .unwrap();
    assert_eq!(metrics.gateway.as_str(), "http://gw:9091/prefix");
    assert_eq!(metrics.job, "api-consumer");
    let named = ok(with(&[
        ("METRICS_PUSHGATEWAY_URL", "https://gw"),
        ("METRICS_JOB", "nightly.create"),
    ]));
    assert_eq!(named.metrics.unwrap().job, "nightly.create");
    let error = err(with(&[(
        "METRICS_PUSHGATEWAY_URL",
        "http://admin:s3cr3t-pass@gw:9091",
    )]));
    assert!(!error.to_string().contains("s3cr3t"), "{error}");
    assert!(!error.to_string().contains("admin"), "{error}");
}
