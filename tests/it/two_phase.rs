//! Nodes that speak the two-phase session protocol (docs/TWO_PHASE.md):
//! node-sim in `--protocol two-phase` mode, over real HTTP.

use api_consumer::domain::{Change, GroupId};
use api_consumer::node_api::{ClientSettings, NodeClient, StepAnswer};
use node_sim::NodeOp;
use node_sim::{Faults, FaultsPatch, IntentionOp, Protocol, SimCluster, SimOptions};
use tokio_util::sync::CancellationToken;

use crate::common::*;

pub async fn two_phase_cluster(count: usize) -> SimCluster {
    seeded(count, 0, Faults::default()).await
}

/// Two-phase nodes seeded with `seed`, starting with `faults`.
async fn seeded(count: usize, seed: u64, faults: Faults) -> SimCluster {
    let faults = Faults {
        protocol: Protocol::TwoPhase,
        ..faults
    };
    cluster_with(
        count,
        SimOptions {
            seed,
            faults,
            ..SimOptions::default()
        },
    )
    .await
}

fn client(cluster: &SimCluster) -> NodeClient {
    let config = config(&cluster.urls(), "create", &["unused"], &[]);
    NodeClient::new(&ClientSettings::from(&config), &config.nodes).unwrap()
}

fn id(text: &str) -> GroupId {
    GroupId::new(text).unwrap()
}

#[tokio::test]
async fn the_client_steps_through_intention_and_commit() {
    let cluster = two_phase_cluster(1).await;
    let client = client(&cluster);
    let stop = CancellationToken::new();
    let group = id("team/ops 1");

    let (answer, attempts) = client
        .session_step(&client.nodes()[0], Change::Create, &group, "s1", &stop)
        .await;
    assert_eq!(answer, StepAnswer::Accepted);
    assert_eq!(attempts.count, 1);
    assert_eq!(holders(&cluster, "team/ops 1").await, [false]);
    let (answer, _) = client
        .session_step(&client.nodes()[0], Change::Create, &group, "s2", &stop)
        .await;
    assert!(
        matches!(&answer, StepAnswer::Conflict { detail } if detail.contains("another session")),
        "{answer:?}"
    );
    assert_eq!(
        client
            .session_step(&client.nodes()[0], Change::Create, &group, "s1", &stop)
            .await
            .0,
        StepAnswer::Accepted
    );
    assert_eq!(holders(&cluster, "team/ops 1").await, [true]);

    assert_eq!(
        client
            .session_step(&client.nodes()[0], Change::Delete, &group, "s3", &stop)
            .await
            .0,
        StepAnswer::Accepted
    );
    let state = sim_state(&cluster.urls()[0]).await;
    assert_eq!(state.intentions.len(), 1);
    assert_eq!(state.intentions[0].operation, IntentionOp::Delete);
    assert_eq!(
        client
            .session_step(&client.nodes()[0], Change::Delete, &group, "s3", &stop)
            .await
            .0,
        StepAnswer::Accepted
    );
    assert_eq!(
        client
            .session_step(&client.nodes()[0], Change::Delete, &group, "s3", &stop)
            .await
            .0,
        StepAnswer::Absent
    );
    assert_eq!(holders(&cluster, "team/ops 1").await, [false]);
    assert!(sim_state(&cluster.urls()[0]).await.intentions.is_empty());
}

#[tokio::test]
async fn an_answer_lost_after_the_node_applied_it_makes_the_resend_a_commit() {
    // A seed whose first create is applied and then answered 500, and whose
    // retry, the same call again, goes through: it commits.
    for seed in 0..200 {
        let faults = Faults {
            ambiguous_rate: 0.5,
            fail_ops: vec![NodeOp::Create],
            ..Faults::default()
        };
        let cluster = seeded(1, seed, faults).await;
        let client = client(&cluster);
        let (answer, attempts) = client
            .session_step(
                &client.nodes()[0],
                Change::Create,
                &id("g"),
                "s",
                &CancellationToken::new(),
            )
            .await;
        let state = sim_state(&cluster.urls()[0]).await;
        if state.responses != [("200".to_owned(), 1), ("500".to_owned(), 1)].into() {
            continue;
        }
        assert_eq!(answer, StepAnswer::Accepted);
        assert_eq!(attempts.count, 2);
        assert!(attempts.earlier_maybe_applied, "{attempts:?}");
        assert_eq!(state.groups, ["g"], "the resend committed");
        assert!(state.intentions.is_empty());
        return;
    }
    panic!("no seed in 0..200 gave a 500 after applying, then a 200");
}

#[tokio::test]
async fn refusals_and_exhausted_retries_are_told_apart() {
    let cluster = two_phase_cluster(1).await;
    let client = client(&cluster);
    let stop = CancellationToken::new();
    fault(&cluster, 0, failing(&[NodeOp::Create, NodeOp::Delete]));
    let (answer, attempts) = client
        .session_step(&client.nodes()[0], Change::Create, &id("g"), "s", &stop)
        .await;
    assert!(
        matches!(
            answer,
            StepAnswer::Failed {
                status: Some(500),
                ..
            }
        ),
        "{answer:?}"
    );
    assert_eq!(attempts.count, 4, "MAX_RETRIES=3 in the test configuration");
    assert!(sim_state(&cluster.urls()[0]).await.intentions.is_empty());
}

const TWO_PHASE: (&str, &str) = ("NODE_PROTOCOL", "two-phase");

/// Every node's intentions, by node.
async fn intentions(cluster: &SimCluster) -> Vec<Vec<(String, String)>> {
    states(cluster)
        .await
        .into_iter()
        .map(|s| {
            s.intentions
                .into_iter()
                .map(|i| (i.group_id, i.session_id))
                .collect()
        })
        .collect()
}

fn no_intentions(count: usize) -> Vec<Vec<(String, String)>> {
    vec![Vec::new(); count]
}

#[tokio::test]
async fn a_group_commits_on_every_node_with_a_prepare_and_a_commit_each() {
    let cluster = two_phase_cluster(3).await;
    let report = run_on(
        &cluster,
        "create",
        &["a", "b"],
        &[TWO_PHASE, ("PRIOR_STATE", "read")],
    )
    .await;
    assert_eq!(report.totals.committed, 2, "{report:#?}");
    for group in ["a", "b"] {
        assert_eq!(holders(&cluster, group).await, [true, true, true]);
    }
    assert_eq!(intentions(&cluster).await, no_intentions(3));
    for state in states(&cluster).await {
        // Per group: a prepare and a commit; a read before and one after.
        assert_eq!(count(&state.requests, "create"), 4);
        assert_eq!(count(&state.requests, "get"), 4);
    }
    // And back.
    let report = run_on(&cluster, "delete", &["a", "b"], &[TWO_PHASE]).await;
    assert_eq!(report.totals.committed, 2, "{report:#?}");
    assert_eq!(holders(&cluster, "a").await, [false, false, false]);
    assert_eq!(intentions(&cluster).await, no_intentions(3));
}

#[tokio::test]
async fn a_prepare_refused_on_one_node_leaves_no_group_and_no_intention_of_ours() {
    let cluster = two_phase_cluster(3).await;
    // Another session holds the group on node 2: every prepare there is 409.
    let client = client(&cluster);
    let stop = CancellationToken::new();
    let foreign = client
        .session_step(
            &client.nodes()[2],
            Change::Create,
            &id("g"),
            "someone-else",
            &stop,
        )
        .await;
    assert_eq!(foreign.0, StepAnswer::Accepted);

    let report = run_on(&cluster, "create", &["g"], &[TWO_PHASE]).await;
    assert_eq!(report.totals.rolled_back, 1, "{report:#?}");
    let reason = group(&report, "g").reason.clone().unwrap_or_default();
    assert!(reason.contains("held by another session"), "{reason}");
    assert!(
        reason.contains(&cluster.urls()[2]),
        "the node is named: {reason}"
    );
    assert_eq!(holders(&cluster, "g").await, [false, false, false]);
    // Only the other session's intention is left, untouched.
    assert_eq!(
        intentions(&cluster).await,
        [
            vec![],
            vec![],
            vec![("g".to_owned(), "someone-else".to_owned())]
        ]
    );
}

#[tokio::test]
async fn a_delete_that_cannot_prepare_everywhere_is_restored() {
    let cluster = two_phase_cluster(3).await;
    for node in cluster.nodes() {
        node.insert_group("keep").await.unwrap();
    }
    // Another session holds a delete of the group on node 2.
    let client = client(&cluster);
    let stop = CancellationToken::new();
    let foreign = client
        .session_step(
            &client.nodes()[1],
            Change::Delete,
            &id("keep"),
            "someone-else",
            &stop,
        )
        .await;
    assert_eq!(foreign.0, StepAnswer::Accepted);
    let report = run_on(&cluster, "delete", &["keep"], &[TWO_PHASE]).await;
    assert_eq!(report.totals.rolled_back, 1, "{report:#?}");
    assert_eq!(holders(&cluster, "keep").await, [true, true, true]);
    assert_eq!(
        intentions(&cluster).await,
        [
            vec![],
            vec![("keep".to_owned(), "someone-else".to_owned())],
            vec![]
        ]
    );
    // The nodes that prepared were released: their delete was committed,
    // then the group re-created through a new session.
    let detail = &group(&report, "keep").nodes;
    assert!(detail[0].compensated && detail[2].compensated, "{detail:?}");
    assert!(!detail[1].compensated, "node 2 held nothing of the run's");
}

#[tokio::test]
async fn a_commit_that_fails_on_one_node_is_undone_everywhere() {
    // A seed where node 2 takes the prepare and then fails the commit (no
    // retries): the group must end absent everywhere, with no intention of
    // the run's left behind.
    for seed in 0..300 {
        let cluster = seeded(3, seed, Faults::default()).await;
        fault(
            &cluster,
            1,
            FaultsPatch {
                fail_rate: Some(0.5),
                ..on(&[NodeOp::Create])
            },
        );
        let report = run_on(
            &cluster,
            "create",
            &["c"],
            &[TWO_PHASE, ("MAX_RETRIES", "0")],
        )
        .await;
        let Some(entry) = report.groups.iter().find(|g| g.group_id.as_str() == "c") else {
            continue; // committed
        };
        let reason = entry.reason.clone().unwrap_or_default();
        if report.totals.rolled_back != 1 || !reason.contains(": commit:") {
            continue;
        }
        assert!(reason.contains(&cluster.urls()[1]), "{reason}");
        assert_eq!(holders(&cluster, "c").await, [false, false, false]);
        assert_eq!(intentions(&cluster).await, no_intentions(3));
        return;
    }
    panic!("no seed in 0..300 gave a prepare, then a failed commit, rolled back");
}

#[tokio::test]
async fn a_node_that_fails_every_call_is_reported_with_the_session_it_may_hold() {
    // Node 2 answers 500 to every create, applied or not, as far as the job
    // can tell: it may hold the run's intention, and no call can release it.
    let cluster = two_phase_cluster(3).await;
    fault(&cluster, 1, failing(&[NodeOp::Create]));
    let report = run_on(&cluster, "create", &["x"], &[TWO_PHASE]).await;
    assert_eq!(report.totals.inconsistent, 1, "{report:#?}");
    let nodes = &group(&report, "x").nodes;
    let detail = nodes[1].detail.clone().unwrap_or_default();
    assert!(
        detail.contains("may still hold an intention of session api-consumer-"),
        "{detail}"
    );
    assert_eq!(
        nodes[1].final_state,
        api_consumer::domain::NodeState::Unknown
    );
    // The other nodes were released and are back at their prior state.
    assert_eq!(holders(&cluster, "x").await, [false, false, false]);
    let left = intentions(&cluster).await;
    assert!(left[0].is_empty() && left[2].is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_standard_node_behind_node_protocol_two_phase_is_named() {
    // Node 3 speaks the standard protocol: it creates at the first call and
    // ignores the session. The run cannot take that for an intention.
    let cluster = two_phase_cluster(3).await;
    fault(
        &cluster,
        2,
        FaultsPatch {
            protocol: Some(Protocol::Standard),
            ..FaultsPatch::default()
        },
    );
    let report = run_on(&cluster, "create", &["m"], &[TWO_PHASE]).await;
    assert_ne!(report.totals.committed, 1, "{report:#?}");
    let text = format!("{:?}", group(&report, "m"));
    assert!(
        text.contains("seems to speak the standard protocol"),
        "{text}"
    );
}

#[tokio::test]
async fn verify_dry_run_and_reconcile_with_prune_work_against_two_phase_nodes() {
    let cluster = two_phase_cluster(3).await;
    for node in cluster.nodes() {
        node.insert_group("keep").await.unwrap();
        node.insert_group("old").await.unwrap();
    }
    cluster.nodes()[0].insert_group("drift").await.unwrap();

    // Verify reads only.
    let report = run_on(&cluster, "verify", &["keep", "drift"], &[TWO_PHASE]).await;
    assert_eq!(report.totals.consistent_present, 1, "{report:#?}");
    assert_eq!(report.totals.inconsistent, 1);

    // A dry run of the reconcile plans both phases and sends no write.
    let before = states(&cluster).await;
    let plan = [TWO_PHASE, ("PRUNE", "true"), ("DRY_RUN", "true")];
    let report = run_on(&cluster, "reconcile", &["keep", "new"], &plan).await;
    assert_eq!(
        report.totals.would_change, 3,
        "new, old and drift: {report:#?}"
    );
    for (was, now) in before.iter().zip(states(&cluster).await) {
        assert_eq!(was.groups, now.groups);
        assert_eq!(count(&now.requests, "create"), 0);
        assert_eq!(count(&now.requests, "delete"), 0);
    }

    // The reconcile itself, every transaction two-phase.
    let report = run_on(
        &cluster,
        "reconcile",
        &["keep", "new"],
        &[TWO_PHASE, ("PRUNE", "true")],
    )
    .await;
    assert_eq!(u8::from(report.exit_code), 0, "{report:#?}");
    assert_eq!(holders(&cluster, "new").await, [true, true, true]);
    assert_eq!(holders(&cluster, "old").await, [false, false, false]);
    assert_eq!(holders(&cluster, "drift").await, [false, false, false]);
    assert_eq!(holders(&cluster, "keep").await, [true, true, true]);
    assert_eq!(intentions(&cluster).await, no_intentions(3));
}

#[tokio::test]
async fn sharded_runs_work_against_two_phase_nodes() {
    let cluster = two_phase_cluster(2).await;
    let ids: Vec<String> = (0..12).map(|i| format!("s{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut handled = 0;
    for index in ["0", "1"] {
        let report = run_on(
            &cluster,
            "create",
            &ids,
            &[TWO_PHASE, ("SHARD_COUNT", "2"), ("SHARD_INDEX", index)],
        )
        .await;
        assert_eq!(u8::from(report.exit_code), 0, "{report:#?}");
        assert_eq!(report.totals.committed, report.totals.groups);
        handled += report.totals.groups;
    }
    assert_eq!(handled, 12);
    for id in &ids {
        assert_eq!(holders(&cluster, id).await, [true, true]);
    }
    assert_eq!(intentions(&cluster).await, no_intentions(2));
    for state in states(&cluster).await {
        // Each group once: a prepare and a commit per node.
        assert_eq!(count(&state.requests, "create"), 24);
    }
}
