//! Writes that land after the job stopped waiting for them: `node-sim`
//! applies a write whose client has gone, as real servers do, here later
//! than the job's `REQUEST_TIMEOUT_MS`. Every test reads every node directly
//! once the late writes have landed, and checks that late writes did happen
//! (`undelivered_writes` above 0), so that it cannot pass by accident.

use api_consumer::domain::{ExitStatus, Outcome};
use node_sim::{FaultsPatch, NodeOp, SimCluster};

use crate::common::*;

/// Writes on nodes 1 and 2 take this long; the job waits a quarter of it.
const WRITE_LATENCY_MS: u64 = 600;

/// A cluster of three whose first two nodes apply writes after
/// [`WRITE_LATENCY_MS`] and whose third refuses `refused` (answers `500`,
/// applying nothing), so that every group rolls back.
async fn slow_writers_and_a_refusal(refused: NodeOp) -> SimCluster {
    let cluster = cluster(3).await;
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
    let landed = || {
        cluster.nodes()[..2]
            .iter()
            .all(|node| node.state().undelivered_writes >= writes)
    };
    assert!(
        wait_for(HANG_BOUND, landed).await,
        "the slow nodes never carried out {writes} late writes each"
    );
    for node in &cluster.nodes()[..2] {
        assert_eq!(node.state().undelivered_writes, writes, "{}", node.url());
    }
    groups_by_node(cluster).await
}

const IDS: [&str; 6] = ["late-1", "late-2", "late-3", "late-4", "late-5", "late-6"];

#[tokio::test]
async fn a_create_rolled_back_while_its_timed_out_creates_land() {
    let cluster = slow_writers_and_a_refusal(NodeOp::Create).await;
    let config = config(&cluster.urls(), "create", &IDS, &settings("1500"));
    let report = run_bounded(&config).await;
    assert_eq!(report.exit_code, ExitStatus::RolledBack, "{report:#?}");
    assert_eq!(report.totals.rolled_back, IDS.len() as u64);
    // Each slow node: the forward create and its undo, both answered late.
    let groups = after_late_writes(&cluster, 2 * IDS.len() as u64).await;
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
    for id in IDS {
        seed(&cluster, id, &[0, 1, 2]).await;
    }
    let config = config(&cluster.urls(), "delete", &IDS, &settings("1500"));
    let report = run_bounded(&config).await;
    assert_eq!(report.exit_code, ExitStatus::RolledBack, "{report:#?}");
    assert_eq!(report.totals.rolled_back, IDS.len() as u64);
    let groups = after_late_writes(&cluster, 2 * IDS.len() as u64).await;
    let every: Vec<String> = IDS.iter().map(|id| id.to_string()).collect();
    assert_eq!(groups, vec![every; 3], "{report:#?}");
}

/// The same create with no window: the rollback reads the slow nodes before
/// their creates land, leaves them, and reports the groups rolled back while
/// the creates then land. What `WRITE_SETTLE_MS` is for.
#[tokio::test]
async fn without_a_window_the_late_creates_are_left_behind() {
    let cluster = slow_writers_and_a_refusal(NodeOp::Create).await;
    let config = config(&cluster.urls(), "create", &IDS, &settings("0"));
    let report = run_bounded(&config).await;
    assert_eq!(report.totals.rolled_back, IDS.len() as u64, "{report:#?}");
    let groups = after_late_writes(&cluster, IDS.len() as u64).await;
    let every: Vec<String> = IDS.iter().map(|id| id.to_string()).collect();
    assert_eq!(groups, vec![every.clone(), every, Vec::new()]);
}
