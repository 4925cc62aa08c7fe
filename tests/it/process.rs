//! The `api-consumer` binary as a process: exit codes, JSON lines on stdout,
//! the summary line, signals, bad input.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use api_consumer::api::{FaultsPatch, NodeOp};
use api_consumer::config::VARIABLES;
use serde_json::Value;

use crate::common::*;

const SECRET: &str = "tok-5ecret-d0-not-print";

fn command(dir: &tempfile::TempDir, vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_api-consumer"));
    // A clean environment in an empty directory: no stray `.env`.
    cmd.env_clear().current_dir(dir.path());
    for (key, value) in vars {
        cmd.env(key, value);
    }
    cmd
}

fn run_binary(vars: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    command(&dir, vars).output().expect("run api-consumer")
}

/// Every stdout line parsed as a flat JSON object with the common keys.
fn json_lines(stdout: &[u8]) -> Vec<serde_json::Map<String, Value>> {
    let text = String::from_utf8(stdout.to_vec()).expect("stdout is UTF-8");
    text.lines()
        .map(|line| {
            let value: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            let object = value.as_object().cloned().expect("a JSON object");
            for key in ["timestamp", "level", "severity", "message"] {
                assert!(object.contains_key(key), "no {key}: {line}");
            }
            assert_eq!(object["level"], object["severity"]);
            assert!(!line.contains('\u{1b}'), "colour codes in JSON: {line}");
            object
        })
        .collect()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_names_the_variable_and_sends_nothing() {
    let cluster = cluster(2).await;
    let nodes = cluster.urls().join(",");
    let nodes = nodes.as_str();
    let dir = tempfile::tempdir().unwrap();
    let missing_file = dir.path().join("missing.txt");
    let missing_file = missing_file.to_str().unwrap();
    let long_id = "x".repeat(257);
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("NODES", vec![("OPERATION", "create"), ("GROUP_IDS", "g")]),
        (
            "NODES",
            vec![("NODES", "  "), ("OPERATION", "create"), ("GROUP_IDS", "g")],
        ),
        (
            "NODES",
            vec![
                ("NODES", "http://a:1,http://a:1"),
                ("OPERATION", "create"),
                ("GROUP_IDS", "g"),
            ],
        ),
        (
            "NODES",
            vec![
                ("NODES", "ftp://a"),
                ("OPERATION", "create"),
                ("GROUP_IDS", "g"),
            ],
        ),
        ("OPERATION", vec![("NODES", nodes), ("GROUP_IDS", "g")]),
        (
            "OPERATION",
            vec![
                ("NODES", nodes),
                ("OPERATION", "upsert"),
                ("GROUP_IDS", "g"),
            ],
        ),
        ("GROUP_IDS", vec![("NODES", nodes), ("OPERATION", "create")]),
        (
            "GROUP_IDS",
            vec![
                ("NODES", nodes),
                ("OPERATION", "create"),
                ("GROUP_IDS", "a,,b"),
            ],
        ),
        (
            "GROUP_IDS",
            vec![
                ("NODES", nodes),
                ("OPERATION", "create"),
                ("GROUP_IDS", long_id.as_str()),
            ],
        ),
        (
            "GROUP_IDS",
            vec![
                ("NODES", nodes),
                ("OPERATION", "create"),
                ("GROUP_IDS", "bad\u{7}id"),
            ],
        ),
        (
            "GROUP_IDS_FILE",
            vec![
                ("NODES", nodes),
                ("OPERATION", "create"),
                ("GROUP_IDS_FILE", missing_file),
            ],
        ),
        (
            "MAX_RETRIES",
            vec![
                ("NODES", nodes),
                ("OPERATION", "create"),
                ("GROUP_IDS", "g"),
                ("MAX_RETRIES", "-1"),
            ],
        ),
        (
            "CONCURRENCY",
            vec![
                ("NODES", nodes),
                ("OPERATION", "create"),
                ("GROUP_IDS", "g"),
                ("CONCURRENCY", "0"),
            ],
        ),
        (
            "REQUEST_TIMEOUT_MS",
            vec![
                ("NODES", nodes),
                ("OPERATION", "create"),
                ("GROUP_IDS", "g"),
                ("REQUEST_TIMEOUT_MS", "99999999999999999999999"),
            ],
        ),
        (
            "LOG_FORMAT",
            vec![
                ("NODES", nodes),
                ("OPERATION", "create"),
                ("GROUP_IDS", "g"),
                ("LOG_FORMAT", "xml"),
            ],
        ),
        (
            "AUTH_TOKEN",
            vec![
                ("NODES", nodes),
                ("OPERATION", "create"),
                ("GROUP_IDS", "g"),
                ("AUTH_TOKEN", "tok-5ecret d0-not-print"),
            ],
        ),
    ];
    for (variable, vars) in &cases {
        let output = command(&dir, vars).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(2), "{variable}: {stdout}");
        let lines = json_lines(&output.stdout);
        assert_eq!(lines.len(), 1, "{variable}: one line: {stdout}");
        assert_eq!(lines[0]["level"], "ERROR");
        assert_eq!(lines[0]["variable"], *variable, "{stdout}");
        assert!(
            lines[0]["message"].as_str().unwrap().contains(variable),
            "{stdout}"
        );
        assert!(!stdout.contains("5ecret"), "secret echoed: {stdout}");
    }
    for state in states(&cluster).await {
        assert!(
            state.requests.values().all(|&n| n == 0),
            "a request was sent: {state:?}"
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
    let report: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["totals"]["committed"], 3);
    assert!(!report.to_string().contains(SECRET));
    assert_eq!(holders(&cluster, "g2").await, [true, true, true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inconsistent_group_exits_3_and_names_the_node() {
    let cluster = cluster(3).await;
    let fail = |op| FaultsPatch {
        fail_rate: Some(1.0),
        fail_ops: Some(vec![op]),
        ..FaultsPatch::default()
    };
    cluster.nodes()[1].set_faults(fail(NodeOp::Delete)).unwrap();
    cluster.nodes()[2].set_faults(fail(NodeOp::Create)).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_new_work_and_leaves_every_group_all_or_nothing() {
    let cluster = cluster(3).await;
    for node in cluster.nodes() {
        node.set_faults(FaultsPatch {
            latency_ms: Some(20),
            ..FaultsPatch::default()
        })
        .unwrap();
    }
    let ids: Vec<String> = (0..300).map(|i| format!("sig-{i}")).collect();
    let joined = ids.join(",");
    let nodes = cluster.urls().join(",");
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let cmd = command(
        &dir,
        &[
            ("NODES", nodes.as_str()),
            ("OPERATION", "create"),
            ("GROUP_IDS", joined.as_str()),
            ("CONCURRENCY", "4"),
            ("ROLLBACK_TIMEOUT_SECS", "10"),
            ("REPORT_PATH", report_path.to_str().unwrap()),
        ],
    );
    let (mut child, lines) = spawn_with_lines(cmd);
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
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .expect("wait");
    seen.extend(lines.try_iter());
    let stdout = seen.join("\n");
    let parsed = json_lines(stdout.as_bytes());
    let last = parsed.last().unwrap();
    assert_eq!(last["message"], "run summary", "{stdout}");
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert_eq!(last["exit_code"], 1);
    assert!(last["not_started"].as_u64().unwrap() > 0, "{stdout}");
    let report: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(report["stop_reason"], "signal");
    let after = states(&cluster).await;
    let mut on_all = 0;
    for id in &ids {
        let held = after.iter().filter(|s| s.groups.contains(id)).count();
        assert!(held == 0 || held == after.len(), "{id} on {held} nodes");
        if held == after.len() {
            on_all += 1;
        }
    }
    assert_eq!(Some(on_all), last["committed"].as_u64());
}
