//! Nodes that speak the two-phase session protocol (docs/TWO_PHASE.md):
//! node-sim in `--protocol two-phase` mode, over real HTTP.

use api_consumer::domain::GroupId;
use api_consumer::node_api::{ClientSettings, NodeClient, NodeOp, StepAnswer};
use api_consumer::sim::{Faults, FaultsPatch, IntentionOp, Protocol, SimCluster, SimOptions};
use tokio_util::sync::CancellationToken;

use crate::common::*;

pub async fn two_phase_cluster(count: usize) -> SimCluster {
    cluster_with(
        count,
        SimOptions {
            faults: Faults {
                protocol: Protocol::TwoPhase,
                ..Faults::default()
            },
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

    let (answer, attempts) = client.session_create(0, &group, "s1", &stop).await;
    assert_eq!(answer, StepAnswer::Accepted);
    assert_eq!(attempts.count, 1);
    assert_eq!(holders(&cluster, "team/ops 1").await, [false]);
    let (answer, _) = client.session_create(0, &group, "s2", &stop).await;
    assert!(
        matches!(&answer, StepAnswer::Conflict { detail } if detail.contains("another session")),
        "{answer:?}"
    );
    assert_eq!(
        client.session_create(0, &group, "s1", &stop).await.0,
        StepAnswer::Accepted
    );
    assert_eq!(holders(&cluster, "team/ops 1").await, [true]);

    assert_eq!(
        client.session_delete(0, &group, "s3", &stop).await.0,
        StepAnswer::Accepted
    );
    let state = sim_state(&cluster.urls()[0]).await;
    assert_eq!(state.intentions.len(), 1);
    assert_eq!(state.intentions[0].operation, IntentionOp::Delete);
    assert_eq!(
        client.session_delete(0, &group, "s3", &stop).await.0,
        StepAnswer::Accepted
    );
    assert_eq!(
        client.session_delete(0, &group, "s3", &stop).await.0,
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
        let cluster = cluster_with(
            1,
            SimOptions {
                seed,
                faults: Faults {
                    protocol: Protocol::TwoPhase,
                    ambiguous_rate: 0.5,
                    fail_ops: vec![NodeOp::Create],
                    ..Faults::default()
                },
                ..SimOptions::default()
            },
        )
        .await;
        let client = client(&cluster);
        let (answer, attempts) = client
            .session_create(0, &id("g"), "s", &CancellationToken::new())
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
    fault(
        &cluster,
        0,
        FaultsPatch {
            fail_rate: Some(1.0),
            ..on(&[NodeOp::Create, NodeOp::Delete])
        },
    );
    let (answer, attempts) = client.session_create(0, &id("g"), "s", &stop).await;
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
