//! Shared helpers: clusters on random ports, node state read over HTTP,
//! configurations with fast retries, runs bounded in time, and the report's
//! sections.

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use api_consumer::config::{Config, ConfigError};
use api_consumer::domain::{GroupId, GroupReport};
use api_consumer::engine::Control;
use api_consumer::job::run_job;
use api_consumer::output::report::{Listing, RunReport, Unlisted};
use node_sim::NodeOp;
use node_sim::{FaultsPatch, SimState};
use node_sim::{SimCluster, SimOptions};
use serde_json::Value;

pub async fn cluster(count: usize) -> SimCluster {
    cluster_with(count, SimOptions::default()).await
}

pub async fn cluster_with(count: usize, options: SimOptions) -> SimCluster {
    SimCluster::start(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, count, options)
        .await
        .expect("start simulated nodes")
}

/// Reads a node's state the way an outside observer does: `GET /_sim/state`.
pub async fn sim_state(url: &str) -> SimState {
    api_consumer::node_api::install_tls_provider();
    let response = reqwest::get(format!("{url}/_sim/state"))
        .await
        .expect("GET /_sim/state");
    assert!(response.status().is_success());
    response.json().await.expect("SimState JSON")
}

/// Every node's state, in node order.
pub async fn states(cluster: &SimCluster) -> Vec<SimState> {
    let mut out = Vec::new();
    for url in cluster.urls() {
        out.push(sim_state(&url).await);
    }
    out
}

/// Which nodes hold `group`, in node order.
pub async fn holders(cluster: &SimCluster, group: &str) -> Vec<bool> {
    states(cluster)
        .await
        .iter()
        .map(|s| s.groups.iter().any(|g| g == group))
        .collect()
}

/// Every node's groups, in node order.
pub async fn groups_by_node(cluster: &SimCluster) -> Vec<Vec<String>> {
    states(cluster)
        .await
        .into_iter()
        .map(|s| s.groups)
        .collect()
}

/// Puts `id` on the nodes of `cluster` at `indices`, as if it had been there
/// before the test (bypassing the request counters).
pub async fn seed(cluster: &SimCluster, id: &str, indices: &[usize]) {
    for &i in indices {
        assert!(
            cluster.nodes()[i].insert_group(id).await.unwrap(),
            "{id} already on node {i}"
        );
    }
}

/// No node received a create or a delete.
pub async fn assert_no_write(cluster: &SimCluster) {
    for (i, state) in states(cluster).await.iter().enumerate() {
        assert_eq!(count(&state.requests, "create"), 0, "node {i}: {state:?}");
        assert_eq!(count(&state.requests, "delete"), 0, "node {i}: {state:?}");
    }
}

pub fn count(map: &std::collections::BTreeMap<String, u64>, key: &str) -> u64 {
    map.get(key).copied().unwrap_or(0)
}

/// A faults patch that limits the rates to `ops`; set the rates with
/// `FaultsPatch { fail_rate: Some(1.0), ..on(&[NodeOp::Create]) }`.
pub fn on(ops: &[NodeOp]) -> FaultsPatch {
    FaultsPatch {
        fail_ops: Some(ops.to_vec()),
        ..FaultsPatch::default()
    }
}

/// A faults patch that answers every call of `ops` with a `500`.
pub fn failing(ops: &[NodeOp]) -> FaultsPatch {
    FaultsPatch {
        fail_rate: Some(1.0),
        ..on(ops)
    }
}

/// Fast retries, so that a failing node costs milliseconds, a request
/// timeout long enough that a `node-sim` slowed by a loaded machine does not
/// decide a case, and a short window for lost answers (`node-sim` applies a
/// write at once unless a test gives it write latency). What [`config`] sets
/// unless told otherwise. Nodes never go down unless a test turns the
/// breaker on (node_health.rs): the other suites exercise each request's own
/// retries against nodes that fail everything.
pub const FAST: &[(&str, &str)] = &[
    ("NODE_DOWN_AFTER_FAILURES", "0"),
    ("MAX_RETRIES", "3"),
    ("WRITE_SETTLE_MS", "0"),
    ("RETRY_BASE_DELAY_MS", "5"),
    ("RETRY_MAX_DELAY_MS", "50"),
    ("REQUEST_TIMEOUT_MS", "2000"),
    ("ROLLBACK_TIMEOUT_SECS", "30"),
];

/// Far beyond what any run of the tests needs: reaching it means the job
/// hung.
pub const HANG_BOUND: Duration = Duration::from_secs(60);

/// A configuration with [`FAST`] settings; `extra` overrides or adds
/// variables. Without `ids` it has no `GROUP_IDS` (a verify by discovery).
pub fn config(nodes: &[String], operation: &str, ids: &[&str], extra: &[(&str, &str)]) -> Config {
    let mut vars = vec![
        ("NODES".to_string(), nodes.join(",")),
        ("OPERATION".to_string(), operation.to_string()),
    ];
    if !ids.is_empty() {
        vars.push(("GROUP_IDS".to_string(), ids.join(",")));
    }
    for (key, value) in FAST.iter().chain(extra) {
        vars.retain(|(k, _)| k != key);
        vars.push((key.to_string(), value.to_string()));
    }
    Config::from_vars(vars).expect("valid test configuration")
}

/// `pairs` on top of a node list, as the job parses them.
pub fn parse_vars(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut vars = vec![("NODES".to_string(), "127.0.0.1:1".to_string())];
    vars.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_vars(vars)
}

/// The variable the configuration error of `pairs` names; fails if `pairs`
/// are accepted.
pub fn variable_of_error(pairs: &[(&str, &str)]) -> &'static str {
    parse_vars(pairs)
        .map(|_| ())
        .expect_err(&format!("{pairs:?} was accepted"))
        .variable
}

/// Runs the job over every node of `cluster` (see [`config`]).
pub async fn run_on(
    cluster: &SimCluster,
    operation: &str,
    ids: &[&str],
    extra: &[(&str, &str)],
) -> RunReport {
    run(&config(&cluster.urls(), operation, ids, extra)).await
}

/// Sets faults on node `index`.
pub fn fault(cluster: &SimCluster, index: usize, patch: FaultsPatch) {
    cluster.nodes()[index]
        .set_faults(patch)
        .expect("valid faults");
}

pub async fn run(config: &Config) -> RunReport {
    run_job(config, Arc::new(Control::default()))
        .await
        .expect("client builds")
}

/// [`run`], failing past [`HANG_BOUND`].
pub async fn run_bounded(config: &Config) -> RunReport {
    tokio::time::timeout(HANG_BOUND, run(config))
        .await
        .unwrap_or_else(|_| {
            let nodes: Vec<String> = config.nodes.iter().map(|n| n.to_string()).collect();
            panic!("the job ran past {HANG_BOUND:?} against {nodes:?}")
        })
}

/// The report of one group that did not commit.
pub fn group<'a>(report: &'a RunReport, id: &str) -> &'a GroupReport {
    report
        .groups
        .iter()
        .find(|g| g.group_id.as_str() == id)
        .unwrap_or_else(|| panic!("group {id} not in the report: {report:#?}"))
}

/// The report's listing (`GET /v1/groups` on every node).
pub fn listing_of(report: &RunReport) -> &Listing {
    report
        .listing
        .as_ref()
        .unwrap_or_else(|| panic!("no listing in the report: {report:#?}"))
}

/// The report's account of the groups outside a reconcile's list.
pub fn unlisted_of(report: &RunReport) -> &Unlisted {
    report
        .unlisted
        .as_ref()
        .unwrap_or_else(|| panic!("no unlisted section in the report: {report:#?}"))
}

pub fn ids_of(list: &[GroupId]) -> Vec<&str> {
    list.iter().map(GroupId::as_str).collect()
}

/// The ids as the `&str`s a config takes.
pub fn refs(ids: &[String]) -> Vec<&str> {
    ids.iter().map(String::as_str).collect()
}

/// Polls `probe` every 2 ms until it holds (at most `limit`).
pub async fn wait_for(limit: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if probe() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    probe()
}

/// A loopback port with nothing listening: connections are refused.
pub fn dead_node() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// A loopback port whose connections the kernel completes (its backlog) but
/// no one ever accepts, with its URL; it lasts as long as the listener.
pub fn never_accepting() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    (listener, url)
}

/// The `api-consumer` binary with only `vars` in its environment, run in
/// `dir`.
pub fn command(dir: &tempfile::TempDir, vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_api-consumer"));
    // A clean environment in an empty directory: no stray `.env`. No window
    // for lost answers unless a test sets one: `node-sim` applies a write
    // before it answers unless it is given write latency. Nodes never go
    // down unless a test turns the breaker on, as in [`FAST`].
    cmd.env_clear().current_dir(dir.path());
    cmd.env("WRITE_SETTLE_MS", "0");
    cmd.env("NODE_DOWN_AFTER_FAILURES", "0");
    for (key, value) in vars {
        cmd.env(key, value);
    }
    cmd
}

/// The `node-sim` binary, built beside `api-consumer` by `cargo test` or
/// `cargo build` at the workspace root (another package's binary has no
/// `CARGO_BIN_EXE_` variable here).
pub fn node_sim_binary() -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_api-consumer")).with_file_name("node-sim");
    assert!(
        path.is_file(),
        "{} is missing; build it with `cargo build -p node-sim`",
        path.display()
    );
    path
}

/// Every stdout line parsed as a flat JSON object with the common keys.
pub fn json_lines(stdout: &[u8]) -> Vec<serde_json::Map<String, Value>> {
    let text = String::from_utf8(stdout.to_vec()).expect("stdout is UTF-8");
    text.lines()
        .map(|line| {
            let value: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            let object = value.as_object().cloned().expect("a JSON object");
            for key in ["timestamp", "level", "severity", "message"] {
                assert!(object.contains_key(key), "no {key}: {line}");
            }
            // Cloud Logging's names for tracing's levels.
            let severity = match object["level"].as_str() {
                Some("TRACE" | "DEBUG") => "DEBUG",
                Some("WARN") => "WARNING",
                Some(other) => other,
                None => panic!("no level: {line}"),
            };
            assert_eq!(object["severity"], severity, "{line}");
            assert!(!object.contains_key("error"), "an `error` field: {line}");
            assert!(!line.contains('\u{1b}'), "colour codes in JSON: {line}");
            object
        })
        .collect()
}

/// What every configuration error looks like: exit code 2 and exactly one
/// JSON line, at `ERROR`, naming `variable` in its `variable` field and in
/// its message.
pub fn assert_config_error(output: &Output, variable: &str) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{variable}: {stdout}");
    let lines = json_lines(&output.stdout);
    assert_eq!(lines.len(), 1, "{variable}: one line: {stdout}");
    assert_eq!(lines[0]["level"], "ERROR", "{stdout}");
    assert_eq!(lines[0]["variable"], variable, "{stdout}");
    let message = lines[0]["message"].as_str().unwrap_or_default();
    assert!(message.contains(variable), "{variable}: {stdout}");
}

/// A whole number from the environment (how the heavy suites are scaled),
/// or `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The path of a third-party binary a suite runs against: `env_var` if set,
/// else the first of `paths` that exists. Without one the suite says so and
/// passes, except under CI (`CI` set), where it fails: `.ci/run` installs
/// `package`.
pub fn installed(env_var: &str, paths: &[&str], package: &str) -> Option<String> {
    if let Ok(path) = std::env::var(env_var) {
        return Some(path);
    }
    let found = paths
        .iter()
        .find(|path| std::path::Path::new(path).exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{package} is not installed; CI needs it for these tests"
        );
        eprintln!("skipped: {package} is not installed (apt-get install {package}, or {env_var})");
    }
    found.map(|path| path.to_string())
}
