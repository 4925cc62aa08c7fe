//! Reconcile, with and without prune, and its `PRUNE_MAX` guard; how its
//! settings are parsed, and the binary's refusal of bad ones. Every run
//! talks real HTTP to `node-sim` nodes on loopback.

use api_consumer::domain::{Change, ExitStatus, Operation, Outcome, Task};
use node_sim::NodeOp;

use crate::common::*;

#[tokio::test]
async fn reconcile_without_prune_creates_the_listed_and_leaves_the_rest() {
    let cluster = cluster(3).await;
    seed(&cluster, "a", &[0]).await; // listed, on one node
    seed(&cluster, "u-all", &[0, 1, 2]).await;
    seed(&cluster, "u-some", &[1]).await;

    let report = run_on(&cluster, "reconcile", &["a", "b"], &[]).await;

    assert_eq!(report.exit_code, ExitStatus::AllAtGoal, "{report:#?}");
    assert_eq!(report.totals.groups, 2);
    assert_eq!(report.totals.committed, 2);
    assert_eq!(holders(&cluster, "a").await, [true, true, true]);
    assert_eq!(holders(&cluster, "b").await, [true, true, true]);
    assert_eq!(holders(&cluster, "u-all").await, [true, true, true]);
    assert_eq!(holders(&cluster, "u-some").await, [false, true, false]);
    let listing = listing_of(&report);
    assert_eq!(listing.nodes_listed, 3);
    assert_eq!(listing.groups_found, 3);
    let unlisted = unlisted_of(&report);
    assert_eq!(unlisted.groups, 2);
    assert_eq!(unlisted.inconsistent, 1);
    assert_eq!(ids_of(&unlisted.inconsistent_first), ["u-some"]);
    assert!(unlisted.prune_refused.is_none());
    assert!(unlisted.prune_first.is_empty());
    for state in states(&cluster).await {
        assert_eq!(count(&state.requests, "delete"), 0, "{state:?}");
        assert_eq!(count(&state.requests, "list"), 1, "{state:?}");
    }
}

#[tokio::test]
async fn reconcile_with_prune_deletes_every_unlisted_group_everywhere() {
    let cluster = cluster(3).await;
    seed(&cluster, "a", &[0, 1, 2]).await; // listed, already everywhere
    seed(&cluster, "u-all", &[0, 1, 2]).await;
    seed(&cluster, "u-some", &[0, 2]).await;

    let report = run_on(&cluster, "reconcile", &["a", "b"], &[("PRUNE", "true")]).await;

    assert_eq!(report.exit_code, ExitStatus::AllAtGoal, "{report:#?}");
    assert_eq!(report.totals.groups, 4);
    assert_eq!(report.totals.committed, 4);
    for state in states(&cluster).await {
        assert_eq!(state.groups, ["a", "b"], "{state:?}");
    }
    let unlisted = unlisted_of(&report);
    assert_eq!(unlisted.groups, 2);
    assert_eq!(unlisted.inconsistent, 1);
    assert!(unlisted.prune_refused.is_none(), "{unlisted:?}");
    // Writes only where needed: `b` created on each node, `u-all` deleted
    // on each, `u-some` only where it was; `a` untouched.
    let deletes: Vec<u64> = states(&cluster)
        .await
        .iter()
        .map(|s| count(&s.requests, "delete"))
        .collect();
    assert_eq!(deletes, [2, 1, 2]);
    for state in states(&cluster).await {
        assert_eq!(count(&state.requests, "create"), 1, "{state:?}");
    }
}

#[tokio::test]
async fn a_prune_refused_by_a_node_rolls_back_and_the_group_stays_everywhere() {
    let cluster = cluster(3).await;
    seed(&cluster, "x", &[0, 1, 2]).await;
    fault(&cluster, 1, failing(&[NodeOp::Delete]));

    let report = run_on(&cluster, "reconcile", &["a"], &[("PRUNE", "true")]).await;

    assert_eq!(report.exit_code, ExitStatus::RolledBack, "{report:#?}");
    assert_eq!(report.totals.committed, 1);
    assert_eq!(report.totals.rolled_back, 1);
    let x = group(&report, "x");
    assert_eq!(x.outcome, Outcome::RolledBack);
    assert_eq!(x.operation, Task::Apply(Change::Delete));
    assert!(
        x.reason
            .as_deref()
            .unwrap_or("")
            .contains(&cluster.urls()[1]),
        "{x:#?}"
    );
    // Nodes 0 and 2 got it restored (or never lost it); node 1 refused.
    assert_eq!(holders(&cluster, "x").await, [true, true, true]);
    assert_eq!(holders(&cluster, "a").await, [true, true, true]);
    let refusing = sim_state(&cluster.urls()[1]).await;
    assert!(count(&refusing.responses, "500") >= 1, "{refusing:?}");
}

#[tokio::test]
async fn more_unlisted_groups_than_prune_max_prunes_none() {
    let cluster = cluster(3).await;
    seed(&cluster, "x1", &[0, 1, 2]).await;
    seed(&cluster, "x2", &[0]).await;
    seed(&cluster, "x3", &[1, 2]).await;
    let extra = [("PRUNE", "true"), ("PRUNE_MAX", "2")];

    let report = run_on(&cluster, "reconcile", &["a"], &extra).await;

    assert_eq!(report.exit_code, ExitStatus::RolledBack, "{report:#?}");
    let unlisted = unlisted_of(&report);
    assert_eq!(unlisted.groups, 3);
    let refused = unlisted.prune_refused.as_deref().unwrap_or("");
    assert!(refused.contains("more than PRUNE_MAX"), "{unlisted:?}");
    assert_eq!(ids_of(&unlisted.prune_first), ["x1", "x2", "x3"]);
    // No delete was sent; every group is where it was.
    assert_eq!(holders(&cluster, "x1").await, [true, true, true]);
    assert_eq!(holders(&cluster, "x2").await, [true, false, false]);
    assert_eq!(holders(&cluster, "x3").await, [false, true, true]);
    for state in states(&cluster).await {
        assert_eq!(count(&state.requests, "delete"), 0, "{state:?}");
    }
    // The listed group is still made present.
    assert_eq!(report.totals.groups, 1);
    assert_eq!(report.totals.committed, 1);
    assert_eq!(holders(&cluster, "a").await, [true, true, true]);
}

#[tokio::test]
async fn exactly_prune_max_unlisted_groups_are_pruned() {
    let cluster = cluster(3).await;
    seed(&cluster, "x1", &[0, 1, 2]).await;
    seed(&cluster, "x2", &[1]).await;
    let extra = [("PRUNE", "true"), ("PRUNE_MAX", "2")];
    let report = run_on(&cluster, "reconcile", &["a"], &extra).await;
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal, "{report:#?}");
    assert!(unlisted_of(&report).prune_refused.is_none());
    for state in states(&cluster).await {
        assert_eq!(state.groups, ["a"], "{state:?}");
    }
}

#[tokio::test]
async fn prune_is_refused_when_a_node_cannot_be_listed() {
    let cluster = cluster(3).await;
    seed(&cluster, "x", &[0, 1, 2]).await;
    fault(&cluster, 2, failing(&[NodeOp::List]));

    let report = run_on(&cluster, "reconcile", &["a"], &[("PRUNE", "true")]).await;

    assert_eq!(report.exit_code, ExitStatus::RolledBack, "{report:#?}");
    let listing = listing_of(&report);
    assert_eq!(listing.failures.len(), 1, "{listing:?}");
    assert_eq!(listing.failures[0].node, cluster.urls()[2]);
    let unlisted = unlisted_of(&report);
    assert!(unlisted.prune_refused.is_some(), "{unlisted:?}");
    assert_eq!(ids_of(&unlisted.prune_first), ["x"]);
    assert_eq!(holders(&cluster, "x").await, [true, true, true]);
    assert_eq!(holders(&cluster, "a").await, [true, true, true]);
    for state in states(&cluster).await {
        assert_eq!(count(&state.requests, "delete"), 0, "{state:?}");
    }
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

#[test]
fn prune_is_an_error_outside_reconcile() {
    for operation in ["create", "delete", "verify"] {
        let pairs = [
            ("OPERATION", operation),
            ("GROUP_IDS", "g"),
            ("PRUNE", "true"),
        ];
        assert_eq!(variable_of_error(&pairs), "PRUNE", "{operation}");
    }
    let error = parse_vars(&[("OPERATION", "create"), ("GROUP_IDS", "g"), ("PRUNE", "1")])
        .map(|_| ())
        .unwrap_err();
    assert!(error.message.contains("reconcile"), "{error}");
    // Off is fine anywhere; on is fine with reconcile.
    let off = [
        ("OPERATION", "create"),
        ("GROUP_IDS", "g"),
        ("PRUNE", "false"),
    ];
    assert!(!parse_vars(&off).unwrap().prune);
    let on = [
        ("OPERATION", "reconcile"),
        ("GROUP_IDS", "g"),
        ("PRUNE", "TRUE"),
    ];
    assert!(parse_vars(&on).unwrap().prune);
    let odd = [
        ("OPERATION", "reconcile"),
        ("GROUP_IDS", "g"),
        ("PRUNE", "yes"),
    ];
    assert_eq!(variable_of_error(&odd), "PRUNE");
}

#[test]
fn reconcile_needs_ids_and_verify_does_not() {
    for extra in [None, Some(("PRUNE", "true"))] {
        let mut pairs = vec![("OPERATION", "reconcile")];
        pairs.extend(extra);
        assert_eq!(variable_of_error(&pairs), "GROUP_IDS", "{pairs:?}");
    }
    for operation in ["create", "delete"] {
        assert_eq!(variable_of_error(&[("OPERATION", operation)]), "GROUP_IDS");
    }
    let config = parse_vars(&[("OPERATION", "verify")]).expect("verify without ids");
    assert_eq!(config.operation, Operation::Verify);
    assert!(config.group_ids.is_empty());
    let config = parse_vars(&[("OPERATION", "VERIFY"), ("GROUP_IDS", "a,b")]).unwrap();
    assert_eq!(config.operation, Operation::Verify);
    assert_eq!(config.group_ids.len(), 2);
}

#[test]
fn prune_max_defaults_to_100_and_is_a_whole_number() {
    let base = [("OPERATION", "reconcile"), ("GROUP_IDS", "g")];
    assert_eq!(parse_vars(&base).unwrap().prune_max, 100);
    let mut pairs = base.to_vec();
    pairs.push(("PRUNE_MAX", "0"));
    assert_eq!(parse_vars(&pairs).unwrap().prune_max, 0);
    for value in ["-1", "ten", "4294967296", "+5"] {
        let mut pairs = base.to_vec();
        pairs.push(("PRUNE_MAX", value));
        assert_eq!(variable_of_error(&pairs), "PRUNE_MAX", "{value}");
    }
}

#[test]
fn the_binary_rejects_bad_operation_settings_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![
                ("OPERATION", "create"),
                ("GROUP_IDS", "g"),
                ("PRUNE", "true"),
            ],
            "PRUNE",
        ),
        (
            vec![
                ("OPERATION", "create"),
                ("GROUP_IDS", "g"),
                ("DRY_RUN", "maybe"),
            ],
            "DRY_RUN",
        ),
        (
            vec![("OPERATION", "reconcile"), ("PRUNE", "true")],
            "GROUP_IDS",
        ),
    ];
    for (pairs, variable) in cases {
        let mut vars = vec![("NODES", "127.0.0.1:1")];
        vars.extend_from_slice(&pairs);
        let output = command(&dir, &vars).output().expect("run api-consumer");
        assert_config_error(&output, variable);
    }
}
