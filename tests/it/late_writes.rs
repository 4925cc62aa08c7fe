//! Writes that land after the job stopped waiting for them: `node-sim`
//! applies a write whose client has gone, as real servers do, here later
//! than the job's `REQUEST_TIMEOUT_MS`. Every test reads every node directly
//! once the late writes have landed, and checks that late writes did happen
//! (`undelivered_writes` above 0), so that it cannot pass by accident.

use std::time::Duration;

use api_consumer::domain::{ExitStatus, NodeState, Outcome};
use node_sim::{FaultsPatch, NodeOp, SimCluster};

use crate::common::*;
use crate::two_phase::two_phase_cluster;

/// Writes on nodes 1 and 2 take this long; the job waits a quarter of it.
pub(crate) const WRITE_LATENCY_MS: u64 = 600;

/// A cluster of three whose first two nodes apply writes after
/// [`WRITE_LATENCY_MS`] and whose third refuses `refused` (answers `500`,
/// applying nothing), so that every group rolls back.
pub(crate) async fn slow_writers_and_a_refusal(refused: NodeOp) -> SimCluster {
    slow_and_refusing(cluster(3).await, refused)
}

/// [`slow_writers_and_a_refusal`] over `cluster`, of three.
fn slow_and_refusing(cluster: SimCluster, refused: NodeOp) -> SimCluster {
    for index in [0, 1] {
        let slow = FaultsPatch {
            write_latency_ms: Some(WRITE_LATENCY_MS),
            ..FaultsPatch::default()
        };
        fault(&cluster, index, slow);
    }
    fault(&cluster, 2, failing(&[refused]));
    cluster
}

/// The job's settings: one attempt per request, far shorter than a write.
fn settings(write_settle_ms: &str) -> Vec<(&str, &str)> {
    vec![
        ("REQUEST_TIMEOUT_MS", "150"),
        ("MAX_RETRIES", "0"),
        ("WRITE_SETTLE_MS", write_settle_ms),
        ("CONCURRENCY", "8"),
        ("PRIOR_STATE", "read"),
    ]
}

/// Waits until the slow nodes have carried out `writes` writes each whose
/// answer found no client, and returns every node's groups then.
async fn after_late_writes(cluster: &SimCluster, writes: u64) -> Vec<Vec<String>> {
    after_late(cluster, writes).await;
    for node in &cluster.nodes()[..2] {
        assert_eq!(node.state().undelivered_writes, writes, "{}", node.url());
    }
    groups_by_node(cluster).await
}

/// Waits until the slow nodes have carried out at least `writes` writes
/// each whose answer found no client, and until none is in progress.
async fn after_late(cluster: &SimCluster, writes: u64) {
    let landed = || {
        cluster.nodes()[..2]
            .iter()
            .all(|node| node.state().undelivered_writes >= writes)
    };
    assert!(
        wait_for(HANG_BOUND, landed).await,
        "the slow nodes never carried out {writes} late writes each"
    );
    // A write still on its way would land after this look.
    tokio::time::sleep(Duration::from_millis(2 * WRITE_LATENCY_MS)).await;
}

pub(crate) const IDS: [&str; 6] = ["late-1", "late-2", "late-3", "late-4", "late-5", "late-6"];

#[tokio::test]
async fn a_create_rolled_back_while_its_timed_out_creates_land() {
    let cluster = slow_writers_and_a_refusal(NodeOp::Create).await;
    create_rolled_back(&cluster, &cluster.urls(), &settings("1500")).await;
}

/// [`IDS`] created through `urls` (the nodes of `cluster` from
/// [`slow_writers_and_a_refusal`], or a proxy in front of them) with
/// `settings`: every group rolls back, and once the late writes have landed
/// (each slow node: the forward create and its undo) no node holds one.
pub(crate) async fn create_rolled_back(
    cluster: &SimCluster,
    urls: &[String],
    settings: &[(&str, &str)],
) {
    let config = config(urls, "create", &IDS, settings);
    let report = run_bounded(&config).await;
    assert_eq!(report.exit_code, ExitStatus::RolledBack, "{report:#?}");
    assert_eq!(report.totals.rolled_back, IDS.len() as u64);
    let groups = after_late_writes(cluster, 2 * IDS.len() as u64).await;
    assert_eq!(groups, vec![Vec::<String>::new(); 3], "{report:#?}");
    for id in IDS {
        let group = group(&report, id);
        assert_eq!(group.outcome, Outcome::RolledBack);
        assert!(group.nodes[..2].iter().all(|n| n.written && n.compensated));
    }
}

#[tokio::test]
async fn a_delete_rolled_back_while_its_timed_out_deletes_land() {
    let cluster = slow_writers_and_a_refusal(NodeOp::Delete).await;
    delete_rolled_back(&cluster, &cluster.urls(), &settings("1500")).await;
}

/// [`IDS`], held by every node of `cluster`, deleted through `urls` as in
/// [`create_rolled_back`]: every node keeps them.
pub(crate) async fn delete_rolled_back(
    cluster: &SimCluster,
    urls: &[String],
    settings: &[(&str, &str)],
) {
    for id in IDS {
        seed(cluster, id, &[0, 1, 2]).await;
    }
    let config = config(urls, "delete", &IDS, settings);
    let report = run_bounded(&config).await;
    assert_eq!(report.exit_code, ExitStatus::RolledBack, "{report:#?}");
    assert_eq!(report.totals.rolled_back, IDS.len() as u64);
    let groups = after_late_writes(cluster, 2 * IDS.len() as u64).await;
    let every: Vec<String> = IDS.iter().map(|id| id.to_string()).collect();
    assert_eq!(groups, vec![every; 3], "{report:#?}");
}

/// [`IDS`] created through `urls` with no window: the rollback reads the
/// slow nodes before their creates land and leaves them; the groups are
/// reported rolled back while the creates land afterwards.
pub(crate) async fn late_creates_left_behind(
    cluster: &SimCluster,
    urls: &[String],
    settings: &[(&str, &str)],
) {
    let config = config(urls, "create", &IDS, settings);
    let report = run_bounded(&config).await;
    assert_eq!(report.totals.rolled_back, IDS.len() as u64, "{report:#?}");
    let groups = after_late_writes(cluster, IDS.len() as u64).await;
    let every: Vec<String> = IDS.iter().map(|id| id.to_string()).collect();
    assert_eq!(groups, vec![every.clone(), every, Vec::new()]);
}

/// The same create with no window: the late creates are left behind. What
/// `WRITE_SETTLE_MS` is for.
#[tokio::test]
async fn without_a_window_the_late_creates_are_left_behind() {
    let cluster = slow_writers_and_a_refusal(NodeOp::Create).await;
    late_creates_left_behind(&cluster, &cluster.urls(), &settings("0")).await;
}

/// Two-phase nodes: every prepare, commit and undo call to the slow nodes
/// outlives its request, and each lands during the undo, which waits for
/// every one of them before its next call or read. The group ends at its
/// prior state with no intention of the job's left.
#[tokio::test]
async fn a_two_phase_create_rolled_back_while_its_timed_out_calls_land() {
    let cluster = two_phase_cluster(3).await;
    for index in [0, 1] {
        let slow = FaultsPatch {
            write_latency_ms: Some(WRITE_LATENCY_MS),
            ..FaultsPatch::default()
        };
        fault(&cluster, index, slow);
    }
    let ids = &IDS[..3];
    // Another session holds every group on node 2: the prepares there are
    // `409`, refused unapplied.
    api_consumer::node_api::install_tls_provider();
    let http = reqwest::Client::new();
    for id in ids {
        let url = format!("{}/v1/group", cluster.urls()[2]);
        let body = serde_json::json!({"groupId": id, "sessionId": "someone-else"});
        let answer = http
            .post(url)
            .json(&body)
            .send()
            .await
            .expect("a foreign prepare");
        assert_eq!(answer.status(), 200);
    }
    let mut extra = settings("1500");
    extra.push(("NODE_PROTOCOL", "two-phase"));
    let config = config(&cluster.urls(), "create", ids, &extra);
    let report = run_bounded(&config).await;
    assert_eq!(report.exit_code, ExitStatus::RolledBack, "{report:#?}");
    assert_eq!(report.totals.rolled_back, ids.len() as u64);
    // Each slow node: the prepare, the release (its commit), and the two
    // calls of the undo session, all answered late.
    after_late(&cluster, 4 * ids.len() as u64).await;
    for (index, node) in cluster.nodes().iter().enumerate() {
        let state = node.state();
        assert!(
            state.groups.is_empty(),
            "{}: {:?}",
            node.url(),
            state.groups
        );
        let held: Vec<&str> = state
            .intentions
            .iter()
            .map(|i| i.session_id.as_str())
            .collect();
        let foreign = if index == 2 { ids.len() } else { 0 };
        assert_eq!(held, vec!["someone-else"; foreign], "{}", node.url());
    }
}

/// A reconcile's prune is a delete like any other: refused on one node, its
/// timed-out deletes landing on the others, it is rolled back and every
/// node keeps the group.
#[tokio::test]
async fn a_prune_rolled_back_while_its_timed_out_deletes_land() {
    let cluster = slow_writers_and_a_refusal(NodeOp::Delete).await;
    let pruned = &IDS[1..];
    for id in IDS {
        seed(&cluster, id, &[0, 1, 2]).await;
    }
    let mut extra = settings("1500");
    extra.extend([("PRUNE", "true"), ("PRIOR_STATE", "list")]);
    let config = config(&cluster.urls(), "reconcile", &IDS[..1], &extra);
    let report = run_bounded(&config).await;
    assert_eq!(report.exit_code, ExitStatus::RolledBack, "{report:#?}");
    assert_eq!(report.totals.rolled_back, pruned.len() as u64);
    let groups = after_late_writes(&cluster, 2 * pruned.len() as u64).await;
    let every: Vec<String> = IDS.iter().map(|id| id.to_string()).collect();
    assert_eq!(groups, vec![every; 3], "{report:#?}");
}

/// SIGKILL while creates are on their way to slow nodes: the next run with
/// the journal waits `WRITE_SETTLE_MS` before it reads the nodes, so it sees
/// the creates that landed after the kill and names the group for what the
/// nodes hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sigkill_the_journal_waits_for_writes_still_on_their_way() {
    let cluster = cluster(3).await;
    let slow = FaultsPatch {
        write_latency_ms: Some(1_500),
        ..FaultsPatch::default()
    };
    for index in 0..3 {
        fault(&cluster, index, slow.clone());
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = dir.path().join("journal");
    let journal = journal.to_str().expect("a UTF-8 temp path");
    let nodes = cluster.urls().join(",");
    let vars = |ids| {
        [
            ("NODES", nodes.as_str()),
            ("OPERATION", "create"),
            ("GROUP_IDS", ids),
            ("JOURNAL_PATH", journal),
            ("WRITE_SETTLE_MS", "4000"),
            ("REPORT_PATH", "report.json"),
        ]
    };
    let mut killed = command(&dir, &vars("sent-1,sent-2"))
        .spawn()
        .expect("spawn the job");
    let sent = || {
        cluster
            .nodes()
            .iter()
            .all(|n| count(&n.state().requests, "create") >= 2)
    };
    assert!(wait_for(HANG_BOUND, sent).await, "the creates never left");
    let _ = killed.kill();
    let _ = tokio::task::spawn_blocking(move || killed.wait()).await;
    assert!(
        cluster.nodes().iter().all(|n| n.state().groups.is_empty()),
        "the creates landed before the kill: the test proves nothing"
    );
    let mut rerun = command(&dir, &vars("after-the-kill"));
    let status = tokio::task::spawn_blocking(move || rerun.status().expect("run the job"))
        .await
        .expect("the rerun");
    assert_eq!(status.code(), Some(0));
    let report = std::fs::read_to_string(dir.path().join("report.json")).expect("the report");
    let report: serde_json::Value = serde_json::from_str(&report).expect("a JSON report");
    let recovered = report["recovered"].as_array().expect("recovered groups");
    assert_eq!(recovered.len(), 2, "{report:#}");
    let late: u64 = cluster
        .nodes()
        .iter()
        .map(|n| n.state().undelivered_writes)
        .sum();
    assert!(late >= 6, "only {late} creates landed after the kill");
    for group in recovered {
        assert_eq!(group["outcome"], "committed", "{group:#}");
    }
    for node in cluster.nodes() {
        let mut groups = node.state().groups;
        groups.sort();
        assert_eq!(
            groups,
            ["after-the-kill", "sent-1", "sent-2"],
            "{}",
            node.url()
        );
    }
}

/// A committed group whose create succeeded on a retry after an attempt
/// answered `500` keeps that node's window open when it ends: the run reads
/// the node once more after the window, and a node that changed since (here
/// by hand, as a late write would) makes the group inconsistent, exit 3.
#[tokio::test]
async fn the_end_of_the_run_reads_again_a_node_whose_window_outlived_its_group() {
    let cluster = cluster(3).await;
    fault(&cluster, 0, failing(&[NodeOp::Create]));
    let ids = &IDS[..3];
    let extra = [
        ("WRITE_SETTLE_MS", "3000"),
        ("MAX_RETRIES", "8"),
        ("RETRY_BASE_DELAY_MS", "150"),
        ("RETRY_MAX_DELAY_MS", "150"),
        ("PRIOR_STATE", "read"),
    ];
    let config = config(&cluster.urls(), "create", ids, &extra);
    let run = tokio::spawn(async move { run_bounded(&config).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let healed = FaultsPatch {
        fail_rate: Some(0.0),
        ..FaultsPatch::default()
    };
    fault(&cluster, 0, healed);
    let committed = || {
        let held = |n: &node_sim::SimNode| {
            let groups = n.state().groups;
            ids.iter().all(|id| groups.iter().any(|g| g == id))
        };
        cluster.nodes().iter().all(held)
    };
    assert!(
        wait_for(HANG_BOUND, committed).await,
        "the groups never landed"
    );
    for id in ids {
        assert!(cluster.nodes()[0].remove_group(id).await.expect("remove"));
    }
    let report = run.await.expect("the run");
    assert_eq!(report.exit_code, ExitStatus::Inconsistent, "{report:#?}");
    assert_eq!(report.totals.inconsistent, ids.len() as u64, "{report:#?}");
    for id in ids {
        let group = group(&report, id);
        assert_eq!(group.outcome, Outcome::Inconsistent);
        assert_eq!(group.nodes[0].final_state, NodeState::Absent, "{group:#?}");
        let reason = group.reason.as_deref().unwrap_or("");
        assert!(reason.contains(&cluster.urls()[0]), "{reason}");
    }
}

/// A lost answer holds up its group only where it could change what the job
/// decides. Node 0 applies every create and answers `500`: the job cannot
/// tell whether its create landed, reads the node back, and finds the group
/// there, the state its late write would leave too. Each group commits at
/// once (one that waited would last the whole 15 s window); the run as a
/// whole waits out the window and reads node 0 once more before it ends.
#[tokio::test]
async fn a_lost_answer_whose_read_back_finds_the_goal_does_not_hold_up_its_group() {
    let cluster = applying_creates_then_500().await;
    let nodes = cluster.urls().join(",");
    let ids = IDS.join(",");
    let mut vars = settings("15000");
    vars.retain(|(key, _)| *key != "REQUEST_TIMEOUT_MS");
    vars.extend([
        ("NODES", nodes.as_str()),
        ("OPERATION", "create"),
        ("GROUP_IDS", ids.as_str()),
    ]);
    let lines = run_to_success(&vars).await;
    let committed: Vec<_> = lines
        .iter()
        .filter(|l| message(l) == "group committed")
        .collect();
    assert_eq!(committed.len(), IDS.len());
    for line in committed {
        let took = line.get("duration_ms").and_then(|d| d.as_u64());
        assert!(took.is_some_and(|ms| ms < 15_000), "{line:?}");
    }
    assert!(lines
        .iter()
        .any(|l| message(l).starts_with("re-checking nodes")));
    let state = cluster.nodes()[0].state();
    assert_eq!(state.responses.get("500"), Some(&(IDS.len() as u64)));
    // A prior read and a read-back per group, then the end-of-run read.
    assert_eq!(state.requests.get("get"), Some(&(3 * IDS.len() as u64)));
    let every: Vec<String> = IDS.iter().map(|id| id.to_string()).collect();
    assert_eq!(groups_by_node(&cluster).await, vec![every; 3]);
}

type Line = serde_json::Map<String, serde_json::Value>;

/// Runs the binary with `vars`, asserts exit 0, and returns its log lines.
async fn run_to_success(vars: &[(&str, &str)]) -> Vec<Line> {
    let dir = tempfile::tempdir().expect("a directory");
    let mut job = command(&dir, vars);
    let output = tokio::task::spawn_blocking(move || job.output()).await;
    let output = output.expect("join").expect("run api-consumer");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    json_lines(&output.stdout)
}

fn message(line: &Line) -> String {
    let text = line.get("message").and_then(|m| m.as_str());
    text.unwrap_or("").to_string()
}

/// An id listed twice: its first entry commits with a window still open on
/// node 0 (the create applied there, its answer a `500`), so the second
/// entry starts only once that window has ended and node 0 has been read
/// again. A lost write of the first transaction cannot land under the
/// second one.
#[tokio::test]
async fn an_id_listed_again_waits_until_the_earlier_entry_is_settled() {
    let cluster = applying_creates_then_500().await;
    let nodes = cluster.urls().join(",");
    let mut vars = settings("1500");
    vars.retain(|(key, _)| *key != "REQUEST_TIMEOUT_MS" && *key != "MAX_RETRIES");
    vars.extend([
        ("NODES", nodes.as_str()),
        ("OPERATION", "create"),
        ("GROUP_IDS", "twice,twice"),
        ("MAX_RETRIES", "2"),
    ]);
    let lines = run_to_success(&vars).await;
    let at = |wanted: &str| -> Vec<usize> {
        let found = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| message(l) == wanted);
        found.map(|(i, _)| i).collect()
    };
    let committed = at("group committed");
    let rechecks: Vec<usize> = (0..lines.len())
        .filter(|&i| message(&lines[i]).starts_with("re-checking nodes"))
        .collect();
    assert_eq!(committed.len(), 2, "{lines:#?}");
    assert_eq!(rechecks.len(), 1, "{lines:#?}");
    assert!(
        committed[0] < rechecks[0] && rechecks[0] < committed[1],
        "the second entry started before the first was settled: {lines:#?}"
    );
    let state = cluster.nodes()[0].state();
    // The first entry's create and its two retries, each answered 500
    // (the first applied); the second entry finds the group and writes none.
    assert_eq!(state.requests.get("create"), Some(&3));
    // Its prior read and read-back, the re-check, the second's prior read.
    assert_eq!(state.requests.get("get"), Some(&4));
    assert_eq!(
        groups_by_node(&cluster).await,
        vec![vec!["twice".to_string()]; 3]
    );
}

/// Three nodes, the first of which applies every create and answers `500`.
async fn applying_creates_then_500() -> SimCluster {
    let cluster = cluster(3).await;
    let applied_then_500 = FaultsPatch {
        ambiguous_rate: Some(1.0),
        ..on(&[NodeOp::Create])
    };
    fault(&cluster, 0, applied_then_500);
    cluster
}
