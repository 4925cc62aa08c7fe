//! The `api-consumer` binary as a process: exit codes, JSON lines on stdout,
//! the summary line, signals (bad input: `hostile_config`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use api_consumer::config::VARIABLES;
use node_sim::FaultsPatch;
use node_sim::NodeOp;
use serde_json::Value;

use crate::common::*;

const SECRET: &str = "tok-5ecret-d0-not-print";

fn run_binary(vars: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    command(&dir, vars).output().expect("run api-consumer")
}

#[test]
fn help_lists_every_variable_and_version_prints_it() {
    let dir = tempfile::tempdir().unwrap();
    let help = command(&dir, &[]).arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for variable in VARIABLES {
        assert!(
            text.contains(variable.name),
            "--help lacks {}",
            variable.name
        );
    }
    let version = command(&dir, &[]).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("api-consumer {}", env!("CARGO_PKG_VERSION"))
    );
    let unknown = command(&dir, &[]).arg("--frobnicate").output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
}

/// Each text with its whitespace runs made one space.
fn normalised(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The EXIT CODES section of `--help`: each code and its text, in order. An
/// entry is a line starting with the code and two spaces; the lines after it
/// until the next entry, a blank line or the end continue its text.
fn help_exit_codes(help: &str) -> Vec<(String, String)> {
    let mut lines = help.lines().skip_while(|line| line.trim() != "EXIT CODES:");
    assert!(
        lines.next().is_some(),
        "--help has no EXIT CODES section:\n{help}"
    );
    let mut codes: Vec<(String, String)> = Vec::new();
    for line in lines.take_while(|line| !line.trim().is_empty()) {
        let trimmed = line.trim_start();
        let token = trimmed.split(' ').next().unwrap_or_default();
        let rest = &trimmed[token.len()..];
        if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) && rest.starts_with("  ")
        {
            codes.push((token.to_string(), normalised(rest)));
        } else {
            let (_, text) = codes
                .last_mut()
                .unwrap_or_else(|| panic!("EXIT CODES text before any code: {line:?}"));
            text.push(' ');
            text.push_str(&normalised(trimmed));
        }
    }
    codes
}

/// The `| code | meaning |` table under the `## Exit codes` heading of a
/// Markdown document: each code and its meaning, in order.
fn documented_exit_codes(markdown: &str) -> Vec<(String, String)> {
    let mut lines = markdown
        .lines()
        .skip_while(|line| line.trim() != "## Exit codes")
        .skip(1)
        .take_while(|line| !line.starts_with("## "))
        .skip_while(|line| !line.trim_start().starts_with('|'));
    let cells = |line: &str| -> Vec<String> {
        let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
        inner.split('|').map(normalised).collect()
    };
    let header = lines.next().expect("a table under \"## Exit codes\"");
    assert_eq!(cells(header), ["code", "meaning"], "{header}");
    let separator = lines.next().expect("the table's separator row");
    assert!(
        cells(separator)
            .iter()
            .all(|c| c.chars().all(|ch| ch == '-' || ch == ':')),
        "{separator}"
    );
    lines
        .take_while(|line| line.trim_start().starts_with('|'))
        .map(|line| {
            let row = cells(line);
            assert_eq!(row.len(), 2, "a row of two cells: {line}");
            (row[0].clone(), row[1].clone())
        })
        .collect()
}

/// The exit codes `--help` lists are the ones docs/TRANSACTIONS.md tables,
/// each with the same meaning, so that an operator reading either reads the
/// same contract.
#[test]
fn help_and_the_transactions_doc_list_the_same_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let help = command(&dir, &[]).arg("--help").output().unwrap();
    assert!(help.status.success());
    let help = help_exit_codes(&String::from_utf8_lossy(&help.stdout));
    let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/TRANSACTIONS.md");
    let doc = std::fs::read_to_string(doc_path).unwrap_or_else(|e| panic!("{doc_path}: {e}"));
    let table = documented_exit_codes(&doc);
    assert!(!help.is_empty() && !table.is_empty(), "{help:?} {table:?}");
    let codes = |list: &[(String, String)]| list.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>();
    assert_eq!(codes(&help), codes(&table), "--help, then {doc_path}");
    for ((code, said), (_, documented)) in help.iter().zip(&table) {
        assert_eq!(
            said, documented,
            "exit code {code}: --help, then {doc_path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_logs_json_lines_ending_with_the_summary() {
    let cluster = cluster(3).await;
    let nodes = cluster.urls().join(",");
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let vars = [
        ("NODES", nodes.as_str()),
        ("OPERATION", "create"),
        ("GROUP_IDS", "g1,g2,g3"),
        ("AUTH_TOKEN", SECRET),
        ("LOG_LEVEL", "trace"),
        ("REPORT_PATH", report_path.to_str().unwrap()),
    ];
    let output = command(&dir, &vars).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains(SECRET), "the token leaked into the logs");
    let lines = json_lines(&output.stdout);
    let last = lines.last().expect("a summary line");
    assert_eq!(last["message"], "run summary");
    assert_eq!(last["exit_code"], 0);
    assert_eq!(last["committed"], 3);
    assert!(last["duration_ms"].is_u64());
    let committed = lines
        .iter()
        .filter(|l| l["message"] == "group committed")
        .count();
    assert_eq!(committed, 3);
    assert_eq!(last["requests"], 18);
    assert_eq!(last["statuses"], serde_json::json!({"201": 9, "404": 9}));
    let started = lines
        .iter()
        .find(|l| l["message"] == "run started")
        .unwrap();
    assert_eq!(started["version"], env!("CARGO_PKG_VERSION"));
    // One line per node, just before the summary, in node order.
    let per_node: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "node summary")
        .collect();
    assert_eq!(per_node.len(), 3);
    for (line, url) in per_node.iter().zip(cluster.urls()) {
        assert_eq!(line["node"], url.as_str());
        assert_eq!(line["requests"], 6);
        assert_eq!(line["retries"], 0);
        assert_eq!(line["statuses"], serde_json::json!({"201": 3, "404": 3}));
        assert!(line["latency_p50_ms"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(lines[lines.len() - 2]["message"], "node summary");
    let report: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["totals"]["committed"], 3);
    assert!(!report.to_string().contains(SECRET));
    assert_eq!(holders(&cluster, "g2").await, [true, true, true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quieter_log_level_keeps_the_summary_and_off_keeps_nothing() {
    let cluster = cluster(2).await;
    let nodes = cluster.urls().join(",");
    let dir = tempfile::tempdir().unwrap();
    let run = |level: &str, ids: &str| {
        let vars = [
            ("NODES", nodes.as_str()),
            ("OPERATION", "create"),
            ("GROUP_IDS", ids),
            ("LOG_LEVEL", level),
        ];
        command(&dir, &vars).output().unwrap()
    };
    for level in ["warn", "error", "api_consumer=warn"] {
        let output = run(level, "quiet-1,quiet-2");
        assert_eq!(output.status.code(), Some(0));
        let lines = json_lines(&output.stdout);
        assert_eq!(lines.len(), 1, "{level}: {lines:?}");
        assert_eq!(lines[0]["message"], "run summary");
        assert_eq!(lines[0]["committed"], 2);
    }
    let output = run("off", "quiet-3");
    assert_eq!(output.status.code(), Some(0));
    assert!(output.stdout.is_empty(), "{:?}", output.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inconsistent_group_exits_3_and_names_the_node() {
    let cluster = cluster(3).await;
    fault(&cluster, 1, failing(&[NodeOp::Delete]));
    fault(&cluster, 2, failing(&[NodeOp::Create]));
    let nodes = cluster.urls().join(",");
    let output = run_binary(&[
        ("NODES", nodes.as_str()),
        ("OPERATION", "create"),
        ("GROUP_IDS", "g"),
        ("MAX_RETRIES", "1"),
        ("RETRY_BASE_DELAY_MS", "5"),
    ]);
    assert_eq!(output.status.code(), Some(3));
    let lines = json_lines(&output.stdout);
    let named = lines
        .iter()
        .find(|l| l["message"] == "node left inconsistent")
        .expect("a line naming the node");
    assert_eq!(named["node"], cluster.urls()[1].as_str());
    assert_eq!(named["group_id"], "g");
    assert_eq!(named["state"], "present");
    let last = lines.last().unwrap();
    assert_eq!(last["inconsistent"], 1);
    assert_eq!(last["exit_code"], 3);
}

fn spawn_with_lines(mut cmd: Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// A batch of groups against three nodes slow enough (20 ms a request) that
/// a run can be stopped in the middle.
struct SlowBatch {
    cluster: node_sim::SimCluster,
    ids: Vec<String>,
    dir: tempfile::TempDir,
}

impl SlowBatch {
    async fn new(prefix: &str, count: usize) -> Self {
        let cluster = cluster(3).await;
        for node in cluster.nodes() {
            node.set_faults(FaultsPatch {
                latency_ms: Some(20),
                ..FaultsPatch::default()
            })
            .unwrap();
        }
        let ids = (0..count).map(|i| format!("{prefix}-{i}")).collect();
        let dir = tempfile::tempdir().unwrap();
        SlowBatch { cluster, ids, dir }
    }

    fn report_path(&self) -> std::path::PathBuf {
        self.dir.path().join("report.json")
    }

    /// The job creating every id, with a report file and `extra` settings.
    fn command(&self, extra: &[(&str, &str)]) -> Command {
        let nodes = self.cluster.urls().join(",");
        let ids = self.ids.join(",");
        let report = self.report_path();
        let mut vars = vec![
            ("NODES", nodes.as_str()),
            ("OPERATION", "create"),
            ("GROUP_IDS", ids.as_str()),
            ("REPORT_PATH", report.to_str().unwrap()),
        ];
        vars.extend_from_slice(extra);
        command(&self.dir, &vars)
    }

    /// Checks every group is on all nodes or none; returns how many are on all.
    async fn assert_all_or_nothing(&self) -> u64 {
        let after = states(&self.cluster).await;
        let mut on_all = 0;
        for id in &self.ids {
            let held = after.iter().filter(|s| s.groups.contains(id)).count();
            assert!(held == 0 || held == after.len(), "{id} on {held} nodes");
            if held == after.len() {
                on_all += 1;
            }
        }
        on_all
    }
}

fn sigterm(child: &Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_new_work_and_leaves_every_group_all_or_nothing() {
    let batch = SlowBatch::new("sig", 300).await;
    let cmd = batch.command(&[("CONCURRENCY", "4"), ("ROLLBACK_TIMEOUT_SECS", "10")]);
    let (child, lines) = spawn_with_lines(cmd);
    let mut seen = Vec::new();
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("a group commits");
        let committed = line.contains("\"group committed\"");
        seen.push(line);
        if committed {
            break;
        }
    }
    sigterm(&child);
    let status = wait_within(child, Duration::from_secs(30)).await;
    seen.extend(lines.try_iter());
    let stdout = seen.join("\n");
    let parsed = json_lines(stdout.as_bytes());
    let last = parsed.last().unwrap();
    assert_eq!(last["message"], "run summary", "{stdout}");
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert_eq!(last["exit_code"], 1);
    assert!(last["not_started"].as_u64().unwrap() > 0, "{stdout}");
    assert_eq!(read_report(&batch.report_path())["stop_reason"], "signal");
    let on_all = batch.assert_all_or_nothing().await;
    assert_eq!(Some(on_all), last["committed"].as_u64());
}

/// Waits for the process, at most `limit`; kills it and fails past that.
async fn wait_within(mut child: Child, limit: Duration) -> std::process::ExitStatus {
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("the process did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap()
}

fn read_report(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("report written")).expect("report JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_deadline_stops_new_work_with_exit_1() {
    let batch = SlowBatch::new("dl", 400).await;
    let child = batch
        .command(&[("CONCURRENCY", "2"), ("RUN_TIMEOUT_SECS", "1")])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_within(child, Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(1));
    let report = read_report(&batch.report_path());
    assert_eq!(report["stop_reason"], "deadline");
    assert!(report["totals"]["not_started"].as_u64().unwrap() > 0);
    let on_all = batch.assert_all_or_nothing().await;
    assert_eq!(Some(on_all), report["totals"]["committed"].as_u64());
}

/// A rollback that cannot finish (the node hangs on deletes) is cut off at
/// ROLLBACK_TIMEOUT_SECS after the signal: the process exits 3 and names
/// the node whose state is in doubt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_is_cut_off_by_its_budget_and_reported() {
    let cluster = cluster(3).await;
    cluster.nodes()[1]
        .set_faults(FaultsPatch {
            timeout_rate: Some(1.0),
            hang_ms: Some(60_000),
            fail_ops: Some(vec![NodeOp::Delete]),
            ..FaultsPatch::default()
        })
        .unwrap();
    cluster.nodes()[2]
        .set_faults(FaultsPatch {
            throttle_rate: Some(1.0),
            retry_after_secs: Some(60),
            fail_ops: Some(vec![NodeOp::Create]),
            ..FaultsPatch::default()
        })
        .unwrap();
    let nodes = cluster.urls().join(",");
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let cmd = command(
        &dir,
        &[
            ("NODES", nodes.as_str()),
            ("OPERATION", "create"),
            ("GROUP_IDS", "g"),
            ("REQUEST_TIMEOUT_MS", "30000"),
            ("ROLLBACK_TIMEOUT_SECS", "2"),
            ("REPORT_PATH", report_path.to_str().unwrap()),
        ],
    );
    let (child, lines) = spawn_with_lines(cmd);
    // Node 3 throttles the create for a minute: the group is in flight.
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("a retry line");
        if line.contains("\"status\":429") {
            break;
        }
    }
    sigterm(&child);
    let status = wait_within(child, Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(3));
    let report = read_report(&report_path);
    let group = &report["groups"][0];
    assert_eq!(group["outcome"], "inconsistent");
    let node2 = &group["nodes"][1];
    assert_eq!(node2["node"], cluster.urls()[1].as_str());
    assert_eq!(node2["state"], "unknown");
    // Node 1 was rolled back; node 3 only ever answered 429, so it is known
    // to be untouched without a read (it asked for a minute's pause).
    assert_eq!(group["nodes"][0]["state"], "absent");
    assert_eq!(group["nodes"][0]["compensated"], true);
    assert_eq!(group["nodes"][2]["state"], "absent");
    assert_eq!(group["nodes"][2]["written"], false);
    let all: Vec<String> = lines.try_iter().collect();
    let last = json_lines(all.join("\n").as_bytes()).pop().unwrap();
    assert_eq!(last["message"], "run summary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sim_binary_serves_the_job() {
    let mut sim = Command::new(node_sim_binary())
        .args(["--nodes", "2", "--base-port", "0", "--seed", "1"])
        .env_clear()
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(sim.stdout.take().unwrap());
    let mut urls = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        urls.push(line.trim().to_string());
    }
    assert!(
        urls.iter().all(|u| u.starts_with("http://127.0.0.1:")),
        "{urls:?}"
    );
    let nodes = urls.join(",");
    let output = tokio::task::spawn_blocking(move || {
        run_binary(&[
            ("NODES", nodes.as_str()),
            ("OPERATION", "create"),
            ("GROUP_IDS", "a,b"),
        ])
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(0));
    for url in &urls {
        assert_eq!(sim_state(url).await.groups, ["a", "b"]);
    }
    sigterm(&sim);
    assert_eq!(
        wait_within(sim, Duration::from_secs(20)).await.code(),
        Some(0)
    );
}
