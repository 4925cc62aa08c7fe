//! Batches at scale: ids streamed from a file, repeated ids, the failure
//! limit, a list edited during the run, rate limits, progress lines, the
//! run report's request figures and the termination message.

use std::io::Write as _;

use api_consumer::domain::ExitStatus;
use api_consumer::domain::{Outcome, StopReason};
use api_consumer::output::report::TERMINATION_MESSAGE_MAX_BYTES;
use node_sim::FaultsPatch;
use node_sim::NodeOp;
use node_sim::SimOptions;
use serde_json::Value;

use crate::common::*;

fn ids_file(content: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(content.as_bytes()).unwrap();
    file
}

fn path_of(file: &tempfile::NamedTempFile) -> String {
    file.path().display().to_string()
}

/// `count` nodes that each answer after `latency_ms`.
async fn slow_cluster(count: usize, latency_ms: u64) -> node_sim::SimCluster {
    let cluster = cluster(count).await;
    for i in 0..count {
        let latency = FaultsPatch {
            latency_ms: Some(latency_ms),
            ..FaultsPatch::default()
        };
        fault(&cluster, i, latency);
    }
    cluster
}

/// `prefix0`, `prefix1`, ... up to `count` ids.
fn numbered(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_stream_from_a_file_and_every_one_reaches_every_node() {
    let cluster = cluster(3).await;
    let mut content = String::from("# generated\n\n");
    for i in 0..3_000 {
        content.push_str(&format!("  batch-{i:05}\r\n"));
        if i % 500 == 0 {
            content.push_str("# a comment between ids\n\n");
        }
    }
    let file = ids_file(&content);
    let config = config(
        &cluster.urls(),
        "create",
        &[],
        &[
            ("GROUP_IDS", "inline-1"),
            ("GROUP_IDS_FILE", &path_of(&file)),
            ("CONCURRENCY", "64"),
            // The prior state read per group (tests/it/prior_state.rs
            // covers the lists).
            ("PRIOR_STATE", "read"),
        ],
    );
    assert_eq!(config.group_ids.len(), 3_001);
    let report = run(&config).await;
    assert_eq!(
        report.exit_code,
        ExitStatus::AllAtGoal,
        "{:?}",
        report.totals
    );
    assert_eq!(report.totals.groups, 3_001);
    assert_eq!(report.totals.committed, 3_001);
    assert!(report.groups.is_empty() && report.not_attempted.is_none());
    for state in states(&cluster).await {
        assert_eq!(state.groups.len(), 3_001);
        assert!(state.groups.iter().any(|g| g == "batch-02999"));
        assert!(state.groups.iter().any(|g| g == "inline-1"));
    }
    // One read and one write per group and node, and the report agrees
    // with what the nodes counted.
    assert_eq!(report.requests.requests, 3 * 2 * 3_001);
    assert_eq!(report.requests.retries, 0);
    assert_eq!(count(&report.requests.statuses, "201"), 3 * 3_001);
    for (node, state) in report.nodes.iter().zip(states(&cluster).await) {
        let served: u64 = state.requests.values().sum();
        assert_eq!(node.requests, served, "{}", node.node);
        assert!(node.latency.p50_ms > 0.0 && node.latency.p50_ms <= node.latency.p99_ms);
        assert!(node.latency.p99_ms <= node.latency.max_ms);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_to_a_node_are_kept_alive_and_reused() {
    let cluster = cluster(2).await;
    let ids = numbered("ka", 100);
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let report = run_on(
        &cluster,
        "create",
        &ids,
        &[
            ("CONCURRENCY", "8"),
            ("NODE_CONCURRENCY", "2"),
            ("PRIOR_STATE", "read"),
        ],
    )
    .await;
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal);
    for state in states(&cluster).await {
        let served: u64 = state.requests.values().sum();
        assert_eq!(served, 200);
        // A handful of connections for 200 requests (and one for each read
        // of the state); without keep-alive there would be 200.
        assert!(state.connections <= 12, "{state:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_id_runs_again_only_after_its_earlier_entry() {
    // Slow nodes keep the first entry in flight while the repeats come up.
    let cluster = slow_cluster(2, 30).await;
    let file = ids_file("dup\nother\ndup\ndup\n");
    let config = config(
        &cluster.urls(),
        "create",
        &[],
        &[
            ("GROUP_IDS", "dup"),
            ("GROUP_IDS_FILE", &path_of(&file)),
            ("CONCURRENCY", "16"),
        ],
    );
    let report = run(&config).await;
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal);
    assert_eq!(report.totals.groups, 5);
    assert_eq!(report.totals.committed, 5);
    for state in states(&cluster).await {
        assert_eq!(state.groups, ["dup", "other"]);
        // Had two entries of `dup` run at once, both would have read it
        // absent and both would have created it.
        assert_eq!(count(&state.requests, "create"), 2, "{state:?}");
        assert_eq!(count(&state.requests, "get"), 5, "{state:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_failed_groups_stops_new_groups_and_says_where() {
    let cluster = cluster(2).await;
    fault(&cluster, 1, failing(&[NodeOp::Create]));
    let ids: Vec<String> = (1..=10).map(|i| format!("g{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let report = run_on(
        &cluster,
        "create",
        &ids,
        &[
            ("MAX_FAILED_GROUPS", "2"),
            ("CONCURRENCY", "1"),
            ("MAX_RETRIES", "0"),
        ],
    )
    .await;
    assert_eq!(report.exit_code, ExitStatus::RolledBack);
    assert_eq!(report.stop_reason, Some(StopReason::FailureLimit));
    assert_eq!(report.totals.groups, 10);
    assert_eq!(report.totals.rolled_back, 2);
    assert_eq!(report.totals.not_started, 8);
    let not_attempted = report.not_attempted.as_ref().unwrap();
    assert_eq!(not_attempted.count, 8);
    assert_eq!(
        not_attempted.from.map(|p| p.to_string()).as_deref(),
        Some("GROUP_IDS entry 3")
    );
    assert_eq!(
        not_attempted.first_group_id.as_ref().unwrap().as_str(),
        "g3"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["not_attempted"]["from"], "GROUP_IDS entry 3");
    assert_eq!(json["stop_reason"], "failure_limit");
    // Nothing was sent for the groups not attempted, and the failed ones
    // were rolled back (node 0 had them created, then undone).
    for state in states(&cluster).await {
        assert!(state.groups.is_empty(), "{state:?}");
        assert_eq!(count(&state.requests, "create"), 2, "{state:?}");
    }
    for id in ["g1", "g2"] {
        assert_eq!(group(&report, id).outcome, Outcome::RolledBack);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_file_edited_during_the_run_changes_nothing() {
    let cluster = cluster(1).await;
    let file = ids_file("a\nb\nc\nd\n");
    let config = config(
        &cluster.urls(),
        "create",
        &[],
        &[("GROUP_IDS", "x"), ("GROUP_IDS_FILE", &path_of(&file))],
    );
    assert_eq!(config.group_ids.len(), 5);
    // Edited in place after the check: the run works through the ids it
    // checked, which it holds.
    std::fs::write(file.path(), "a\nb\u{7}\nc\nd\n").unwrap();
    let report = run(&config).await;
    assert_eq!(report.stop_reason, None);
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal);
    assert_eq!(report.totals.committed, 5);
    assert_eq!(report.totals.not_started, 0);
    assert!(report.not_attempted.is_none());
    assert_eq!(states(&cluster).await[0].groups, ["a", "b", "c", "d", "x"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_statuses_are_counted_per_node() {
    let cluster = cluster(2).await;
    fault(&cluster, 0, failing(&[NodeOp::Create]));
    let report = run_on(&cluster, "create", &["r1"], &[("MAX_RETRIES", "2")]).await;
    assert_eq!(report.exit_code, ExitStatus::RolledBack);
    let failing = &report.nodes[0];
    // The read of the prior state, three 500s, the read back.
    assert_eq!(failing.requests, 5);
    assert_eq!(failing.retries, 2);
    assert_eq!(count(&failing.statuses, "500"), 3);
    assert_eq!(count(&failing.statuses, "404"), 2);
    let healthy = &report.nodes[1];
    assert_eq!(healthy.retries, 0);
    assert_eq!(count(&healthy.statuses, "201"), 1);
    assert_eq!(report.requests.retries, 2);
    assert_eq!(
        report.requests.requests,
        failing.requests + healthy.requests
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_rate_limit_keeps_a_limited_node_from_refusing() {
    // The node refuses (429) past 50 requests a second; the job keeps to 50.
    let options = SimOptions::default();
    let cluster = cluster_with(1, options).await;
    fault(
        &cluster,
        0,
        FaultsPatch {
            rate_limit: Some(50),
            ..FaultsPatch::default()
        },
    );
    let ids = numbered("rl", 40);
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let report = run_on(
        &cluster,
        "create",
        &ids,
        &[("NODE_RATE_LIMIT", "50"), ("CONCURRENCY", "40")],
    )
    .await;
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal);
    let state = &states(&cluster).await[0];
    assert_eq!(count(&state.responses, "429"), 0, "{state:?}");
    assert_eq!(report.requests.requests, 80);
}

fn binary_vars<'a>(nodes: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut vars = vec![
        ("NODES", nodes),
        ("OPERATION", "create"),
        ("MAX_RETRIES", "0"),
        ("RETRY_BASE_DELAY_MS", "5"),
    ];
    vars.extend_from_slice(extra);
    vars
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_lines_report_done_total_rate_and_eta() {
    let cluster = slow_cluster(1, 100).await;
    let nodes = cluster.urls().join(",");
    let ids = numbered("p", 14).join(",");
    let dir = tempfile::tempdir().unwrap();
    let output = command(
        &dir,
        &binary_vars(
            &nodes,
            &[
                ("GROUP_IDS", &ids),
                ("CONCURRENCY", "1"),
                ("PROGRESS_INTERVAL_SECS", "1"),
            ],
        ),
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let lines = json_lines(&output.stdout);
    let progress: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "progress")
        .collect();
    assert!(!progress.is_empty(), "no progress line");
    let mut last_done = 0;
    for line in &progress {
        assert_eq!(line["total"], 14);
        let done = line["done"].as_u64().unwrap();
        assert!(done >= last_done && done <= 14);
        last_done = done;
        let sum: u64 = ["committed", "rolled_back", "inconsistent", "not_started"]
            .iter()
            .map(|k| line[*k].as_u64().unwrap())
            .sum();
        assert_eq!(sum, done, "{line:?}");
        assert!(line["groups_per_sec"].as_f64().unwrap() >= 0.0);
        if done > 0 {
            assert!(line["eta_secs"].as_u64().is_some(), "{line:?}");
        }
    }
    assert_eq!(lines.last().unwrap()["message"], "run summary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pretty_logs_on_a_terminal_get_a_progress_bar_cleared_before_the_summary() {
    use std::io::Read as _;

    let cluster = slow_cluster(1, 20).await;
    let nodes = cluster.urls().join(",");
    let ids = numbered("bar", 60).join(",");
    let size = nix::pty::Winsize {
        ws_row: 40,
        ws_col: 200,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(&size, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(
        &dir,
        &binary_vars(
            &nodes,
            &[
                ("GROUP_IDS", &ids),
                ("CONCURRENCY", "2"),
                ("LOG_FORMAT", "pretty"),
                ("TERM", "xterm"),
            ],
        ),
    );
    cmd.stdout(pty.slave.try_clone().unwrap()).stderr(pty.slave);
    let mut child = cmd.spawn().unwrap();
    // Only the child holds the terminal now: reading ends when it exits.
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut screen = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = master.read(&mut chunk) {
            screen.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&screen).into_owned()
    });
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let screen = reader.join().unwrap();
    assert!(
        screen.contains("/60 groups, ETA"),
        "no progress bar: {screen}"
    );
    let summary = screen.rfind("run summary").expect("the summary is printed");
    assert!(screen[..summary].contains("group committed"), "{screen}");
    assert!(
        !screen[summary..].contains("groups, ETA"),
        "the bar was drawn after the summary: {screen}"
    );
}

/// Runs the binary on `nodes` for `ids` with `TERMINATION_MESSAGE_PATH` at
/// a file that exists when `create` is set; returns the exit code and the
/// file's content afterwards (`None` when there is no file).
fn run_with_termination_file(
    nodes: &str,
    ids: &str,
    create: bool,
) -> (Option<i32>, Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("termination-log");
    if create {
        std::fs::write(&path, "").unwrap();
    }
    let output = command(
        &dir,
        &binary_vars(
            nodes,
            &[
                ("GROUP_IDS", ids),
                ("TERMINATION_MESSAGE_PATH", path.to_str().unwrap()),
            ],
        ),
    )
    .output()
    .unwrap();
    (output.status.code(), std::fs::read_to_string(&path).ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_termination_message_fits_4_kib_and_names_failures_first() {
    let cluster = cluster(2).await;
    fault(&cluster, 1, failing(&[NodeOp::Create]));
    let nodes = cluster.urls().join(",");
    let ids: Vec<String> = (0..200)
        .map(|i| format!("{i:03}-{}", "x".repeat(60)))
        .collect();
    let (code, message) = run_with_termination_file(&nodes, &ids.join(","), true);
    assert_eq!(code, Some(1));
    let message = message.unwrap();
    assert!(
        message.len() <= TERMINATION_MESSAGE_MAX_BYTES,
        "{}",
        message.len()
    );
    let message: Value = serde_json::from_str(&message).unwrap();
    assert_eq!(message["exit_code"], 1);
    assert_eq!(message["groups"], 200);
    assert_eq!(message["rolled_back"], 200);
    let listed = message["failed"].as_array().unwrap();
    assert!(!listed.is_empty());
    assert_eq!(
        listed.len() as u64 + message["failed_omitted"].as_u64().unwrap(),
        200
    );
    assert_eq!(listed[0]["outcome"], "rolled_back");
    assert!(listed[0]["reason"].as_str().unwrap().chars().count() <= 121);

    // No file, no message: the job does not create it.
    let (code, message) = run_with_termination_file(&nodes, "ok-1", false);
    assert_eq!((code, message), (Some(1), None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_run_leaves_its_summary_as_termination_message() {
    let cluster = cluster(2).await;
    let nodes = cluster.urls().join(",");
    let (code, message) = run_with_termination_file(&nodes, "t1,t2", true);
    assert_eq!(code, Some(0));
    let message: Value = serde_json::from_str(&message.unwrap()).unwrap();
    assert_eq!(message["exit_code"], 0);
    assert_eq!(message["committed"], 2);
    assert_eq!(message["requests"], 8);
    assert!(message.get("failed").is_none());
}
