//! One test per answer class a node can give, each checked by reading every
//! node back through `/_sim/state` (or, for a node that redirects, a raw
//! node's own records).

use std::time::{Duration, Instant};

use api_consumer::domain::ExitStatus;
use api_consumer::domain::{NodeState, Outcome};
use node_sim::FaultsPatch;
use node_sim::NodeOp;
use node_sim::{SimCluster, SimOptions};

use crate::common::*;
use crate::raw_node::{answer, contract, Call, RawNode};

/// Starts fresh clusters with seeds 0, 1, ... until `shape` holds for node
/// `node` after running `scenario` (the fault draws are random per seed), and
/// returns that cluster. The scenario's own assertions run every time.
async fn find_seed<F, Fut>(
    nodes: usize,
    node: usize,
    patch: FaultsPatch,
    mut scenario: F,
    shape: impl Fn(&node_sim::SimState) -> bool,
) -> SimCluster
where
    F: FnMut(SimCluster) -> Fut,
    Fut: std::future::Future<Output = SimCluster>,
{
    for seed in 0..200 {
        let cluster = cluster_with(
            nodes,
            SimOptions {
                seed,
                ..SimOptions::default()
            },
        )
        .await;
        cluster.nodes()[node]
            .set_faults(patch.clone())
            .expect("valid faults");
        let cluster = scenario(cluster).await;
        if shape(&sim_state(cluster.nodes()[node].url()).await) {
            return cluster;
        }
    }
    panic!("no seed in 0..200 produced the wanted sequence of answers");
}

#[tokio::test]
async fn created_everywhere_with_201() {
    let cluster = cluster(3).await;
    let report = run_on(&cluster, "create", &["g1", "g2"], &[]).await;
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal);
    assert_eq!(report.totals.committed, 2);
    for state in states(&cluster).await {
        assert_eq!(state.groups, ["g1", "g2"]);
        assert_eq!(count(&state.responses, "201"), 2);
        // One probe per group, no read-back after a clean 201.
        assert_eq!(count(&state.requests, "get"), 2);
    }
}

#[tokio::test]
async fn pre_existing_group_is_not_written_and_survives_a_rollback() {
    let cluster = cluster(3).await;
    cluster.nodes()[0].insert_group("g").await.unwrap();
    fault(&cluster, 2, failing(&[NodeOp::Create]));
    let report = run_on(&cluster, "create", &["g"], &[]).await;
    assert_eq!(report.exit_code, ExitStatus::RolledBack);
    assert_eq!(group(&report, "g").outcome, Outcome::RolledBack);
    assert_eq!(holders(&cluster, "g").await, [true, false, false]);
    let node1 = sim_state(&cluster.urls()[0]).await;
    assert_eq!(count(&node1.requests, "create"), 0);
    assert_eq!(count(&node1.requests, "delete"), 0);
    // Node 2 got the group and gave it back; node 3 refused it.
    let node2 = sim_state(&cluster.urls()[1]).await;
    assert_eq!(count(&node2.responses, "201"), 1);
    assert_eq!(count(&node2.requests, "delete"), 1);
}

#[tokio::test]
async fn group_already_everywhere_is_committed_without_writes() {
    let cluster = cluster(3).await;
    for node in cluster.nodes() {
        node.insert_group("g").await.unwrap();
    }
    let report = run_on(&cluster, "create", &["g"], &[]).await;
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal);
    for state in states(&cluster).await {
        assert_eq!(count(&state.requests, "create"), 0);
    }
}

/// A `400` to our only create: another writer created the group after our
/// read. It is not ours, so the rollback leaves it.
#[tokio::test]
async fn create_answered_400_for_a_group_created_meanwhile_is_left_alone() {
    let cluster = cluster(3).await;
    // Node 2 is slow, so the test can create the group there between the
    // job's read (answered 404) and its create.
    fault(
        &cluster,
        1,
        FaultsPatch {
            latency_ms: Some(300),
            ..FaultsPatch::default()
        },
    );
    fault(&cluster, 2, failing(&[NodeOp::Create]));
    let config = config(&cluster.urls(), "create", &["g"], &[]);
    let job = tokio::spawn(async move { run(&config).await });
    let node2 = &cluster.nodes()[1];
    assert!(
        wait_for(Duration::from_secs(10), || count(
            &node2.state().responses,
            "404"
        ) == 1)
        .await
    );
    node2.insert_group("g").await.unwrap();
    let report = job.await.unwrap();
    assert_eq!(count(&node2.state().responses, "400"), 1);
    assert_eq!(report.exit_code, ExitStatus::RolledBack);
    let g = group(&report, "g");
    assert_eq!(g.outcome, Outcome::RolledBack);
    assert!(!g.nodes[1].written);
    assert_eq!(holders(&cluster, "g").await, [false, true, false]);
    assert_eq!(
        count(&sim_state(&cluster.urls()[1]).await.requests, "delete"),
        0
    );
}

/// A `500` that was applied, then a `400` to the retry: the group is ours,
/// and a rollback removes it.
#[tokio::test]
async fn create_answered_400_after_our_own_attempt_landed_is_ours() {
    let patch = FaultsPatch {
        ambiguous_rate: Some(0.5),
        ..on(&[NodeOp::Create])
    };
    // Commit: the landed attempt is recognised as present.
    let cluster = find_seed(
        3,
        1,
        patch.clone(),
        |cluster| async move {
            let report = run_on(&cluster, "create", &["g"], &[]).await;
            assert_eq!(report.exit_code, ExitStatus::AllAtGoal, "{report:#?}");
            assert_eq!(holders(&cluster, "g").await, [true, true, true]);
            cluster
        },
        |s| count(&s.responses, "500") == 1 && count(&s.responses, "400") == 1,
    )
    .await;
    drop(cluster);
    // Rollback: node 3 refuses, and node 2's group (ours) is removed.
    find_seed(
        3,
        1,
        patch,
        |cluster| async move {
            fault(&cluster, 2, failing(&[NodeOp::Create]));
            let report = run_on(&cluster, "create", &["g"], &[]).await;
            assert_eq!(report.exit_code, ExitStatus::RolledBack, "{report:#?}");
            assert_eq!(holders(&cluster, "g").await, [false, false, false]);
            cluster
        },
        |s| count(&s.responses, "500") == 1 && count(&s.responses, "400") == 1,
    )
    .await;
}

/// A delete that was applied behind a `500`, retried, answered `404`.
#[tokio::test]
async fn delete_answered_404_after_our_own_attempt_landed() {
    let patch = FaultsPatch {
        ambiguous_rate: Some(0.5),
        ..on(&[NodeOp::Delete])
    };
    find_seed(
        3,
        1,
        patch,
        |cluster| async move {
            for node in cluster.nodes() {
                node.insert_group("g").await.unwrap();
            }
            let report = run_on(&cluster, "delete", &["g"], &[]).await;
            assert_eq!(report.exit_code, ExitStatus::AllAtGoal, "{report:#?}");
            assert_eq!(holders(&cluster, "g").await, [false, false, false]);
            cluster
        },
        |s| count(&s.responses, "500") == 1 && count(&s.responses, "404") >= 1,
    )
    .await;
}

/// A delete of a group absent from one node: that node gets no delete, and
/// a rollback never creates the group there.
#[tokio::test]
async fn delete_of_a_group_absent_from_a_node_never_creates_it() {
    let cluster = cluster(3).await;
    cluster.nodes()[0].insert_group("g").await.unwrap();
    cluster.nodes()[2].insert_group("g").await.unwrap();
    fault(&cluster, 2, failing(&[NodeOp::Delete]));
    let report = run_on(&cluster, "delete", &["g"], &[]).await;
    assert_eq!(report.exit_code, ExitStatus::RolledBack);
    assert_eq!(holders(&cluster, "g").await, [true, false, true]);
    let node2 = sim_state(&cluster.urls()[1]).await;
    assert_eq!(count(&node2.requests, "delete"), 0);
    assert_eq!(count(&node2.requests, "create"), 0);
    // Node 1's record was deleted and restored.
    let node1 = sim_state(&cluster.urls()[0]).await;
    // The probe, the delete and the read after the restore.
    assert_eq!(count(&node1.responses, "200"), 3);
    assert_eq!(count(&node1.responses, "201"), 1); // the restore
}

#[tokio::test]
async fn create_answered_500_not_applied_is_retried_then_rolled_back() {
    let cluster = cluster(3).await;
    fault(&cluster, 2, failing(&[NodeOp::Create]));
    let report = run_on(&cluster, "create", &["g"], &[("MAX_RETRIES", "2")]).await;
    assert_eq!(report.exit_code, ExitStatus::RolledBack);
    let g = group(&report, "g");
    assert!(
        g.reason
            .as_deref()
            .unwrap_or("")
            .contains(&cluster.urls()[2]),
        "{g:#?}"
    );
    assert_eq!(holders(&cluster, "g").await, [false, false, false]);
    let node3 = sim_state(&cluster.urls()[2]).await;
    assert_eq!(count(&node3.responses, "500"), 3);
    for state in &states(&cluster).await[..2] {
        assert_eq!(count(&state.responses, "201"), 1);
        assert_eq!(count(&state.requests, "delete"), 1);
    }
}

#[tokio::test]
async fn create_answered_500_after_applying_is_read_back_as_present() {
    let cluster = cluster(3).await;
    fault(
        &cluster,
        1,
        FaultsPatch {
            ambiguous_rate: Some(1.0),
            ..on(&[NodeOp::Create])
        },
    );
    let report = run_on(&cluster, "create", &["g"], &[("MAX_RETRIES", "0")]).await;
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal);
    assert_eq!(holders(&cluster, "g").await, [true, true, true]);
    let node2 = sim_state(&cluster.urls()[1]).await;
    assert_eq!(count(&node2.responses, "500"), 1);
    assert_eq!(count(&node2.requests, "get"), 2, "probe and read-back");
}

#[tokio::test]
async fn answered_503_is_retried_until_it_commits() {
    let patch = FaultsPatch {
        unavailable_rate: Some(0.3),
        ..on(&[NodeOp::Create])
    };
    find_seed(
        3,
        0,
        patch,
        |cluster| async move {
            let report = run_on(&cluster, "create", &["g"], &[("MAX_RETRIES", "8")]).await;
            assert_eq!(report.exit_code, ExitStatus::AllAtGoal, "{report:#?}");
            assert_eq!(holders(&cluster, "g").await, [true, true, true]);
            cluster
        },
        |s| count(&s.responses, "503") >= 1 && count(&s.responses, "201") == 1,
    )
    .await;
}

#[tokio::test]
async fn answered_503_every_time_rolls_back() {
    let cluster = cluster(3).await;
    fault(
        &cluster,
        0,
        FaultsPatch {
            unavailable_rate: Some(1.0),
            ..on(&[NodeOp::Create])
        },
    );
    let report = run_on(&cluster, "create", &["g"], &[("MAX_RETRIES", "2")]).await;
    assert_eq!(report.exit_code, ExitStatus::RolledBack);
    assert_eq!(holders(&cluster, "g").await, [false, false, false]);
    assert_eq!(
        count(&sim_state(&cluster.urls()[0]).await.responses, "503"),
        3
    );
}

/// A `429` with `Retry-After: 2`: the node gets no request for 2 seconds,
/// although the backoff alone would retry within milliseconds.
#[tokio::test]
async fn answered_429_waits_for_retry_after() {
    let cluster = cluster(3).await;
    let node = &cluster.nodes()[1];
    node.set_faults(FaultsPatch {
        throttle_rate: Some(1.0),
        retry_after_secs: Some(2),
        ..on(&[NodeOp::Create])
    })
    .unwrap();
    let config = config(&cluster.urls(), "create", &["g"], &[("MAX_RETRIES", "5")]);
    let job = tokio::spawn(async move { run(&config).await });
    assert!(
        wait_for(Duration::from_secs(10), || count(
            &node.state().responses,
            "429"
        ) == 1)
        .await
    );
    let throttled = Instant::now();
    node.set_faults(FaultsPatch {
        throttle_rate: Some(0.0),
        ..FaultsPatch::default()
    })
    .unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || count(
            &node.state().requests,
            "create"
        ) == 2)
        .await
    );
    let waited = throttled.elapsed();
    let report = job.await.unwrap();
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal);
    assert_eq!(holders(&cluster, "g").await, [true, true, true]);
    assert!(
        waited >= Duration::from_millis(1500),
        "retried after {waited:?}"
    );
}

#[tokio::test]
async fn timeout_rolls_back_and_reads_the_node_back() {
    let cluster = cluster(3).await;
    fault(
        &cluster,
        1,
        FaultsPatch {
            timeout_rate: Some(1.0),
            hang_ms: Some(3_000),
            ..on(&[NodeOp::Create])
        },
    );
    let extra = [("MAX_RETRIES", "1"), ("REQUEST_TIMEOUT_MS", "200")];
    let report = run_on(&cluster, "create", &["g"], &extra).await;
    assert_eq!(report.exit_code, ExitStatus::RolledBack);
    let g = group(&report, "g");
    assert!(
        g.reason.as_deref().unwrap_or("").contains("timeout"),
        "{g:#?}"
    );
    assert_eq!(g.nodes[1].final_state, NodeState::Absent);
    assert_eq!(holders(&cluster, "g").await, [false, false, false]);
}

#[tokio::test]
async fn node_down_stops_the_group_before_any_write() {
    let cluster = cluster(2).await;
    let mut nodes = cluster.urls();
    nodes.push(dead_node());
    let report = run(&config(&nodes, "create", &["g"], &[("MAX_RETRIES", "1")])).await;
    assert_eq!(report.exit_code, ExitStatus::RolledBack);
    let g = group(&report, "g");
    assert!(
        g.reason
            .as_deref()
            .unwrap_or("")
            .contains("could not be read"),
        "{g:#?}"
    );
    assert_eq!(g.nodes[2].prior, NodeState::Unknown);
    for state in states(&cluster).await {
        assert!(state.groups.is_empty());
        assert_eq!(count(&state.requests, "create"), 0);
    }
}

/// Node 3 refuses the create, node 2 refuses the rollback's delete: the
/// group is inconsistent and node 2 is named.
#[tokio::test]
async fn node_failing_deletes_during_rollback_is_inconsistent_and_named() {
    let cluster = cluster(3).await;
    fault(&cluster, 1, failing(&[NodeOp::Delete]));
    fault(&cluster, 2, failing(&[NodeOp::Create]));
    let report = run_on(&cluster, "create", &["g"], &[]).await;
    assert_eq!(report.exit_code, ExitStatus::Inconsistent);
    assert_eq!(report.totals.inconsistent, 1);
    let g = group(&report, "g");
    assert_eq!(g.outcome, Outcome::Inconsistent);
    let diverged: Vec<_> = g.diverged_nodes().map(|n| n.node.clone()).collect();
    assert_eq!(diverged, [cluster.urls()[1].clone()]);
    assert_eq!(g.nodes[1].final_state, NodeState::Present);
    assert_eq!(holders(&cluster, "g").await, [false, true, false]);
}

#[tokio::test]
async fn ids_with_reserved_characters_are_read_back_exactly() {
    let cluster = cluster(2).await;
    let ids = ["a/b", "q?x=1", "h#f", "p%20c", "sp ace", "ünï-çødé"];
    let report = run(&config(&cluster.urls(), "create", &ids, &[])).await;
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal, "{report:#?}");
    let mut expected: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    expected.sort();
    for state in states(&cluster).await {
        assert_eq!(state.groups, expected);
    }
    let report = run(&config(&cluster.urls(), "delete", &ids, &[])).await;
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal, "{report:#?}");
    for state in states(&cluster).await {
        assert!(state.groups.is_empty());
    }
}

/// A node that answers `POST /v1/group/` with a 307 to `location`, and the
/// rest (creates under `/moved/` included) as the contract says: a redirect
/// of a create to another host (never followed), or to another path of its
/// own (followed).
async fn redirecting_node(location: String) -> RawNode {
    RawNode::start(move |request, held| match request.call {
        Call::Create(_) if !request.path.starts_with("/moved/") => {
            answer("307 Temporary Redirect", &[("Location", &location)], "")
        }
        _ => contract(request, held),
    })
    .await
}

#[tokio::test]
async fn redirect_to_another_host_is_never_followed() {
    let cluster = cluster(2).await;
    let elsewhere = format!("{}/v1/group/", cluster.urls()[1]);
    let redirecting = redirecting_node(elsewhere).await;
    let nodes = [cluster.urls()[0].clone(), redirecting.url.clone()];
    let report = run(&config(&nodes, "create", &["g"], &[])).await;
    assert_eq!(report.exit_code, ExitStatus::RolledBack);
    let other = sim_state(&cluster.urls()[1]).await;
    assert!(other.requests.values().all(|&n| n == 0), "{other:?}");
    assert_eq!(holders(&cluster, "g").await, [false, false]);
}

#[tokio::test]
async fn redirect_within_the_same_node_is_followed() {
    let cluster = cluster(1).await;
    let redirecting = redirecting_node("/moved/v1/group/".to_string()).await;
    let nodes = [cluster.urls()[0].clone(), redirecting.url.clone()];
    let report = run(&config(&nodes, "create", &["g"], &[])).await;
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal, "{report:#?}");
    assert_eq!(redirecting.ids(), ["g"]);
}
