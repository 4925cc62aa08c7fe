//! Node health (docs/FLOW_CONTROL.md) over real HTTP: a node goes down on
//! refused connections, on timeouts and on `5xx` answers; no group starts
//! while it is down; a probe brings it back; `NODE_DOWN_WAIT_SECS` runs
//! out; two nodes down; a node that flaps; verify and dry runs; two-phase
//! nodes; the journal. Every test reads every node afterwards.

use std::time::Duration;

use api_consumer::domain::{Outcome, StopReason};
use api_consumer::node_api::HealthSnapshot;
use api_consumer::output::report::RunReport;
use node_sim::{Faults, FaultsPatch, NodeOp, Protocol, SimCluster, SimOptions};

use crate::common::*;

const ALL_OPS: &[NodeOp] = &[NodeOp::Create, NodeOp::Delete, NodeOp::Get, NodeOp::List];

/// The breaker on (the tests' default has it off), with `wait_secs` of
/// `NODE_DOWN_WAIT_SECS`.
fn breaker(wait_secs: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("NODE_DOWN_AFTER_FAILURES", "5"),
        ("NODE_DOWN_WAIT_SECS", wait_secs),
        ("CONCURRENCY", "4"),
    ]
}

/// Nodes that answer after 2 ms, so that a run lasts long enough for an
/// outage in its middle.
async fn slow_cluster(count: usize, protocol: Protocol) -> SimCluster {
    let options = SimOptions {
        faults: Faults {
            latency_ms: 2,
            protocol,
            ..Faults::default()
        },
        ..SimOptions::default()
    };
    cluster_with(count, options).await
}

/// Creates on node `index` hang past the request timeout of
/// [`in_doubt_settings`] and are never applied: the job cannot know that.
fn silent_creates(cluster: &SimCluster, index: usize) {
    let patch = FaultsPatch {
        timeout_rate: Some(1.0),
        hang_ms: Some(1_000),
        ..on(&[NodeOp::Create])
    };
    fault(cluster, index, patch);
}

/// The breaker with `NODE_DOWN_WAIT_SECS=0`, two timeouts taking a node
/// down, `CONCURRENCY` at `concurrency`, and the journal at `journal`.
fn in_doubt_settings<'a>(journal: &'a str, concurrency: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut extra: Vec<(&'a str, &'a str)> = breaker("0");
    extra.extend([
        ("REQUEST_TIMEOUT_MS", "200"),
        ("NODE_DOWN_AFTER_FAILURES", "2"),
        ("CONCURRENCY", concurrency),
        ("JOURNAL_PATH", journal),
    ]);
    extra
}

/// Three nodes like [`slow_cluster`]'s that keep their groups in a data
/// file in `data` across a kill and a restart.
async fn restartable_cluster(data: &tempfile::TempDir) -> SimCluster {
    let options = SimOptions {
        data_file: Some(data.path().join("nodes.json")),
        faults: Faults {
            latency_ms: 2,
            ..Faults::default()
        },
        ..SimOptions::default()
    };
    cluster_with(3, options).await
}

/// Node `index` answers `500` to every call from `after` on, for `lasting`.
async fn failing_spell(cluster: &SimCluster, index: usize, after: Duration, lasting: Duration) {
    tokio::time::sleep(after).await;
    fault(cluster, index, failing(ALL_OPS));
    tokio::time::sleep(lasting).await;
    let healthy = FaultsPatch {
        fail_rate: Some(0.0),
        ..FaultsPatch::default()
    };
    fault(cluster, index, healthy);
}

/// Node `index` killed `after` from now and restarted with its data
/// `lasting` later.
async fn killed_spell(cluster: &SimCluster, index: usize, after: Duration, lasting: Duration) {
    tokio::time::sleep(after).await;
    cluster.nodes()[index].kill().await;
    tokio::time::sleep(lasting).await;
    cluster.nodes()[index].restart().await.unwrap();
}

fn ids(count: usize, prefix: &str) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i:03}")).collect()
}

fn health_of<'a>(report: &'a RunReport, url: &str) -> &'a HealthSnapshot {
    let node = report
        .nodes
        .iter()
        .find(|n| n.node.starts_with(url))
        .unwrap_or_else(|| panic!("{url} not in the report"));
    node.health
        .as_ref()
        .unwrap_or_else(|| panic!("{url} never went down: {:#?}", report.nodes))
}

fn never_down(report: &RunReport) {
    for node in &report.nodes {
        assert!(node.health.is_none(), "{} went down: {node:?}", node.node);
    }
}

/// Every group of `ids` on every node of `cluster` (`present`) or on none.
async fn assert_everywhere(cluster: &SimCluster, ids: &[String], present: bool) {
    for (i, held) in groups_by_node(cluster).await.iter().enumerate() {
        for id in ids {
            assert_eq!(held.contains(id), present, "node {i}, group {id}");
        }
    }
}

/// A node that refuses connections goes down on its fifth refusal; with
/// `NODE_DOWN_WAIT_SECS=0` the run starts no more groups, the groups in
/// flight roll back and the rest are not attempted: exit 1.
#[tokio::test]
async fn a_refusing_node_goes_down_and_the_run_stops_at_once() {
    let cluster = cluster(2).await;
    let dead = dead_node();
    let mut urls = cluster.urls();
    urls.push(dead.clone());
    let ids = ids(200, "refused");
    let refs = refs(&ids);
    let report = run_bounded(&config(&urls, "create", &refs, &breaker("0"))).await;
    assert_eq!(report.stop_reason, Some(StopReason::NodeDown));
    assert_eq!(u8::from(report.exit_code), 1);
    let health = health_of(&report, &dead);
    assert_eq!((health.times_down, health.given_up), (1, true));
    let reason = health.down_reason.as_deref().unwrap_or_default();
    assert!(reason.starts_with("5 failed attempts in a row"), "{reason}");
    let not_attempted = report.not_attempted.as_ref().expect("groups not attempted");
    assert!(
        not_attempted.count >= 190,
        "at most CONCURRENCY groups started: {report:#?}"
    );
    assert_eq!(report.totals.committed, 0);
    assert!(report.totals.rolled_back <= 8, "{:?}", report.totals);
    // A request to a node that is down and given up is not sent.
    let to_dead = report.nodes.iter().find(|n| n.node.starts_with(&dead));
    let requests = to_dead.map_or(0, |n| n.requests);
    assert!(
        requests <= 5 + 4 * 4,
        "{requests} attempts to the dead node"
    );
    assert_everywhere(&cluster, &ids, false).await;
    let stopped = report
        .groups
        .iter()
        .filter(|g| {
            g.nodes.iter().any(|n| {
                n.detail
                    .as_deref()
                    .is_some_and(|d| d.contains("the node is down"))
            })
        })
        .count();
    assert!(stopped > 0 || report.totals.rolled_back == 0, "{report:#?}");
}

/// A node that accepts connections and never answers goes down on
/// timeouts: the reads of its prior states time out, so no group writes
/// anything, and none is left in doubt: exit 1.
#[tokio::test]
async fn a_node_that_never_answers_goes_down_on_timeouts() {
    let cluster = cluster(2).await;
    let (_listener, silent) = never_accepting();
    let mut urls = cluster.urls();
    urls.push(silent.clone());
    let ids = ids(100, "silent");
    let refs = refs(&ids);
    let mut extra = breaker("0");
    extra.extend([
        ("REQUEST_TIMEOUT_MS", "200"),
        ("NODE_DOWN_AFTER_FAILURES", "3"),
        // A list's attempt may take a minute (its body may be large): the
        // node goes silent after the lists, as in the benchmark.
        ("PRIOR_STATE", "read"),
    ]);
    let started = std::time::Instant::now();
    let report = run_bounded(&config(&urls, "create", &refs, &extra)).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report.stop_reason, Some(StopReason::NodeDown));
    let health = health_of(&report, &silent);
    let reason = health.down_reason.as_deref().unwrap_or_default();
    assert!(reason.contains("timed out"), "{reason}");
    assert_eq!(report.totals.committed, 0);
    assert!(report.not_attempted.is_some());
    assert_eq!(u8::from(report.exit_code), 1, "{:?}", report.totals);
    assert_eq!(report.totals.inconsistent, 0);
    assert_everywhere(&cluster, &ids, false).await;
    assert_no_write(&cluster).await;
}

/// A node answering `500` to everything goes down; when it serves again a
/// probe brings it back, and the run goes on: every group committed,
/// exit 0.
#[tokio::test]
async fn a_probe_brings_a_node_back_and_the_run_goes_on() {
    let cluster = slow_cluster(3, Protocol::Standard).await;
    let ids = ids(300, "back");
    let refs = refs(&ids);
    let config = config(&cluster.urls(), "create", &refs, &breaker("30"));
    let outage = failing_spell(
        &cluster,
        2,
        Duration::from_millis(100),
        Duration::from_millis(1500),
    );
    let report = tokio::join!(run_bounded(&config), outage).0;
    assert_eq!(u8::from(report.exit_code), 0, "{report:#?}");
    assert_eq!(report.totals.committed, 300);
    let health = health_of(&report, &cluster.urls()[2]);
    assert_eq!(health.times_down, 1);
    assert!(!health.down_at_end && !health.given_up);
    assert!(health.down_ms >= 500, "{health:?}");
    assert_everywhere(&cluster, &ids, true).await;
    let probes = count(&states(&cluster).await[2].requests, "get");
    assert!(probes >= 1, "the probe is a read");
}

/// A node killed in the middle of a run and restarted with its data a
/// second later: the groups in flight wait for it instead of spending
/// their retries, and the run ends with every group on every node.
#[tokio::test]
async fn a_killed_node_restarted_with_its_data_costs_only_its_outage() {
    let data = tempfile::tempdir().unwrap();
    let cluster = restartable_cluster(&data).await;
    let ids = ids(400, "restart");
    let refs = refs(&ids);
    let config = config(&cluster.urls(), "create", &refs, &breaker("30"));
    let outage = killed_spell(
        &cluster,
        2,
        Duration::from_millis(100),
        Duration::from_millis(1000),
    );
    let report = tokio::join!(run_bounded(&config), outage).0;
    assert_eq!(u8::from(report.exit_code), 0, "{report:#?}");
    assert_eq!(report.totals.committed, 400);
    assert_eq!(health_of(&report, &cluster.urls()[2]).times_down, 1);
    assert_everywhere(&cluster, &ids, true).await;
}

/// `NODE_DOWN_WAIT_SECS` runs out while the node is still down: the run
/// waited about that long, starts no more groups and names the node.
#[tokio::test]
async fn the_wait_for_a_down_node_runs_out() {
    let cluster = cluster(3).await;
    fault(&cluster, 1, failing(ALL_OPS));
    let ids = ids(50, "wait");
    let refs = refs(&ids);
    let started = std::time::Instant::now();
    let report = run_bounded(&config(&cluster.urls(), "create", &refs, &breaker("1"))).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert_eq!(report.stop_reason, Some(StopReason::NodeDown));
    assert_eq!(u8::from(report.exit_code), 1);
    let health = health_of(&report, &cluster.urls()[1]);
    assert!(health.given_up && health.down_at_end, "{health:?}");
    assert!(health.down_ms >= 1000, "{health:?}");
    assert!(report.not_attempted.as_ref().is_some_and(|n| n.count >= 40));
    assert_everywhere(&cluster, &ids, false).await;
    // The probes found the node failing: reads it answered with 500.
    let state = &states(&cluster).await[1];
    assert!(count(&state.requests, "get") >= 1, "{state:?}");
}

/// Two nodes down at once: each goes down on its own, each is named.
#[tokio::test]
async fn two_nodes_down_are_each_named() {
    let cluster = cluster(2).await;
    let (a, b) = (dead_node(), dead_node());
    let mut urls = cluster.urls();
    urls.extend([a.clone(), b.clone()]);
    let ids = ids(100, "two");
    let refs = refs(&ids);
    let report = run_bounded(&config(&urls, "create", &refs, &breaker("0"))).await;
    assert_eq!(report.stop_reason, Some(StopReason::NodeDown));
    for url in [&a, &b] {
        let health = health_of(&report, url);
        assert!(health.given_up, "{url}: {health:?}");
    }
    assert_eq!(u8::from(report.exit_code), 1);
    assert_everywhere(&cluster, &ids, false).await;
}

/// A node that fails and recovers three times during the run: down and up
/// each time, and every group committed in the end. Each failing spell
/// (250 ms) is shorter than the first two probes' waits together, and each
/// healthy spell (800 ms) longer, so every spell is seen.
#[tokio::test]
async fn a_node_that_flaps_goes_down_and_up_each_time() {
    let cluster = slow_cluster(3, Protocol::Standard).await;
    let ids = ids(1500, "flap");
    let refs = refs(&ids);
    let mut extra = breaker("30");
    extra.extend([("NODE_CONCURRENCY", "1"), ("CONCURRENCY", "2")]);
    let config = config(&cluster.urls(), "create", &refs, &extra);
    let flapping = async {
        for _ in 0..3 {
            failing_spell(
                &cluster,
                0,
                Duration::from_millis(100),
                Duration::from_millis(250),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    };
    let (report, ()) = tokio::join!(run_bounded(&config), flapping);
    // The third spell starts 2.2 s in.
    assert!(
        report.duration_ms > 2_300,
        "the run ended before the node's last spell: {} ms",
        report.duration_ms
    );
    let health = health_of(&report, &cluster.urls()[0]);
    assert_eq!(health.times_down, 3, "{health:?}");
    assert!(!health.down_at_end, "{health:?}");
    assert_eq!(u8::from(report.exit_code), 0, "{report:#?}");
    assert_everywhere(&cluster, &ids, true).await;
}

/// A verify and a dry run stop the same way: the node goes down, no group
/// starts after it, and the report says why.
#[tokio::test]
async fn verify_and_dry_runs_stop_for_a_down_node() {
    let cluster = cluster(2).await;
    let dead = dead_node();
    let mut urls = cluster.urls();
    urls.push(dead.clone());
    let ids = ids(100, "read");
    let refs = refs(&ids);
    for (operation, dry_run) in [("verify", "false"), ("create", "true")] {
        let mut extra = breaker("0");
        extra.push(("DRY_RUN", dry_run));
        let report = run_bounded(&config(&urls, operation, &refs, &extra)).await;
        assert_eq!(
            report.stop_reason,
            Some(StopReason::NodeDown),
            "{operation}"
        );
        assert!(health_of(&report, &dead).given_up);
        assert!(report.not_attempted.as_ref().is_some_and(|n| n.count >= 80));
        assert_ne!(u8::from(report.exit_code), 0);
    }
    assert_no_write(&cluster).await;
}

/// Two-phase nodes: a node down mid-run and back; every session's groups
/// end at their goal, and with the wait at 0 every group is rolled back or
/// not attempted.
#[tokio::test]
async fn two_phase_nodes_wait_for_a_down_node_or_stop() {
    let cluster = slow_cluster(3, Protocol::TwoPhase).await;
    let ids = ids(200, "session");
    let refs = refs(&ids);
    let mut extra = breaker("30");
    extra.push(("NODE_PROTOCOL", "two-phase"));
    let config_back = config(&cluster.urls(), "create", &refs, &extra);
    let outage = failing_spell(
        &cluster,
        1,
        Duration::from_millis(80),
        Duration::from_millis(800),
    );
    let report = tokio::join!(run_bounded(&config_back), outage).0;
    assert_eq!(u8::from(report.exit_code), 0, "{report:#?}");
    assert_eq!(health_of(&report, &cluster.urls()[1]).times_down, 1);
    assert_everywhere(&cluster, &ids, true).await;

    let ids = self::ids(200, "session-stop");
    let refs = crate::common::refs(&ids);
    fault(&cluster, 1, failing(ALL_OPS));
    extra[1] = ("NODE_DOWN_WAIT_SECS", "0");
    let report = run_bounded(&config(&cluster.urls(), "create", &refs, &extra)).await;
    assert_eq!(report.stop_reason, Some(StopReason::NodeDown));
    assert_eq!(report.totals.committed, 0);
    assert_eq!(report.totals.inconsistent, 0, "{report:#?}");
    assert_everywhere(&cluster, &ids, false).await;
}

/// A node that goes silent leaves groups in doubt; they stay in the journal,
/// and the next run, with the node back, resolves them.
#[tokio::test]
async fn groups_left_in_doubt_by_a_down_node_are_resolved_by_the_next_run() {
    let cluster = cluster(3).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let journal = journal.to_str().unwrap();
    silent_creates(&cluster, 2);
    let ids = ids(40, "doubt");
    let refs = refs(&ids);
    let extra = in_doubt_settings(journal, "4");
    let first = run_bounded(&config(&cluster.urls(), "create", &refs, &extra)).await;
    assert_eq!(first.stop_reason, Some(StopReason::NodeDown));
    assert_eq!(u8::from(first.exit_code), 3, "{first:#?}");
    let in_doubt: Vec<&str> = first
        .groups
        .iter()
        .filter(|g| g.outcome == Outcome::Inconsistent)
        .map(|g| g.group_id.as_str())
        .collect();
    assert!(!in_doubt.is_empty());
    fault(
        &cluster,
        2,
        FaultsPatch {
            timeout_rate: Some(0.0),
            ..FaultsPatch::default()
        },
    );
    // The second run lists nothing new: it only resolves the journal.
    let second = run_bounded(&config(&cluster.urls(), "create", &refs[..1], &extra)).await;
    let recovered: Vec<&str> = second
        .recovered
        .iter()
        .map(|g| g.group_id.as_str())
        .collect();
    for id in &in_doubt {
        assert!(recovered.contains(id), "{id} not recovered: {recovered:?}");
    }
    for report in &second.recovered {
        assert_ne!(report.outcome, Outcome::Inconsistent, "{report:#?}");
    }
    // Every group is all or nothing now.
    let held = groups_by_node(&cluster).await;
    for id in &ids {
        let on: Vec<bool> = held.iter().map(|h| h.contains(id)).collect();
        assert!(
            on.iter().all(|x| *x) || on.iter().all(|x| !*x),
            "{id}: {on:?}"
        );
    }
    never_down(&second);
}

/// The binary, as an operator meets it: a node refusing connections with
/// `NODE_DOWN_WAIT_SECS=0`: exit 1, one `ERROR` line for the node's change
/// to down (node, from, to, reason), the run's line naming it, and the
/// termination message naming the node and why it went down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_names_the_down_node_in_its_logs_and_termination_message() {
    let cluster = cluster(2).await;
    let dead = dead_node();
    let nodes = format!("{},{dead}", cluster.urls().join(","));
    let dir = tempfile::tempdir().unwrap();
    let message = dir.path().join("termination-log");
    std::fs::write(&message, "").unwrap();
    let ids: Vec<String> = ids(50, "proc");
    let ids = ids.join(",");
    let mut job = command(
        &dir,
        &[
            ("NODES", nodes.as_str()),
            ("OPERATION", "create"),
            ("GROUP_IDS", ids.as_str()),
            ("NODE_DOWN_AFTER_FAILURES", "5"),
            ("NODE_DOWN_WAIT_SECS", "0"),
            ("RETRY_BASE_DELAY_MS", "5"),
            ("TERMINATION_MESSAGE_PATH", message.to_str().unwrap()),
        ],
    );
    // The nodes are served by this test's runtime: the wait for the
    // process must not block it.
    let output = tokio::task::spawn_blocking(move || job.output().unwrap())
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let lines = json_lines(&output.stdout);
    let changes: Vec<_> = lines
        .iter()
        .filter(|l| l["target"] == "api_consumer::health")
        .collect();
    assert_eq!(changes.len(), 1, "{changes:#?}");
    let down = changes[0];
    assert_eq!(down["level"], "ERROR");
    assert_eq!(
        (
            down["node"].as_str(),
            down["from"].as_str(),
            down["to"].as_str()
        ),
        (Some(dead.as_str()), Some("up"), Some("down"))
    );
    assert!(down["reason"]
        .as_str()
        .unwrap()
        .contains("5 failed attempts in a row"));
    assert!(lines.iter().any(|l| l["target"] == "api_consumer::run"
        && l["node"] == dead.as_str()
        && l["level"] == "ERROR"));
    let summary = lines.last().unwrap();
    assert_eq!(
        summary["stop_reason"],
        "a node stayed down past NODE_DOWN_WAIT_SECS"
    );
    assert!(summary["not_attempted_from"].as_str().is_some());
    let node_line = lines
        .iter()
        .find(|l| l["message"] == "node summary" && l["node"] == dead.as_str())
        .unwrap();
    assert_eq!(node_line["times_down"], 1);
    assert_eq!(node_line["down_at_end"], true);
    let text = std::fs::read_to_string(&message).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed["nodes_down"][0]["node"], dead.as_str());
    assert_eq!(parsed["nodes_down"][0]["down_at_end"], true);
    assert!(parsed["nodes_down"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("refused"));
    assert_everywhere(&cluster, &self::ids(50, "proc"), false).await;
}

/// The two shards of an Indexed Job at once, a node killed under both and
/// restarted with its data: each shard goes down and up on its own clock,
/// and between them every listed group is created once on every node.
#[tokio::test]
async fn shards_each_wait_for_a_node_killed_under_both() {
    let data = tempfile::tempdir().unwrap();
    let cluster = restartable_cluster(&data).await;
    let ids = ids(400, "shard");
    let refs = refs(&ids);
    let shard = |index: &'static str| {
        let mut extra = breaker("30");
        extra.extend([("SHARD_COUNT", "2"), ("SHARD_INDEX", index)]);
        config(&cluster.urls(), "create", &refs, &extra)
    };
    let (first, second) = (shard("0"), shard("1"));
    let outage = killed_spell(
        &cluster,
        1,
        Duration::from_millis(100),
        Duration::from_millis(800),
    );
    let (a, b, ()) = tokio::join!(run_bounded(&first), run_bounded(&second), outage);
    for report in [&a, &b] {
        assert_eq!(u8::from(report.exit_code), 0, "{report:#?}");
        assert_eq!(health_of(report, &cluster.urls()[1]).times_down, 1);
    }
    assert_eq!(a.totals.committed + b.totals.committed, 400);
    assert_everywhere(&cluster, &ids, true).await;
}

/// A journal's recovery over a node that is still down waits for it once,
/// not once per unfinished group: the recovery's entries share one client,
/// so the first finds the node down and the others know it.
#[tokio::test]
async fn a_journal_recovery_waits_for_a_down_node_once() {
    let cluster = cluster(3).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let journal = journal.to_str().unwrap();
    silent_creates(&cluster, 2);
    let ids = ids(64, "once");
    let refs = refs(&ids);
    let mut extra = in_doubt_settings(journal, "16");
    let first = run_bounded(&config(&cluster.urls(), "create", &refs, &extra)).await;
    let in_doubt = first.totals.inconsistent;
    assert!(in_doubt >= 6, "{:?}", first.totals);
    // Node 2 now refuses connections; the next run waits 1 s for it.
    cluster.nodes()[2].kill().await;
    extra[1] = ("NODE_DOWN_WAIT_SECS", "1");
    let started = std::time::Instant::now();
    let second = run_bounded(&config(&cluster.urls(), "create", &refs[..1], &extra)).await;
    let took = started.elapsed();
    assert_eq!(second.recovered.len() as u64, in_doubt);
    // Once for the recovery and once for the run's own group: far less
    // than a wait per recovered group.
    assert!(
        took < Duration::from_secs(in_doubt / 2),
        "{took:?} for {in_doubt} recovered groups"
    );
    for report in &second.recovered {
        assert_eq!(report.outcome, Outcome::Inconsistent, "{report:#?}");
    }
}
