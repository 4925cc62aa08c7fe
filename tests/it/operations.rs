//! The operations beyond create and delete: verify (with ids, and by
//! discovery through `GET /v1/groups`), dry runs, and reconcile with and
//! without prune, with its `PRUNE_MAX` guard; their configuration; and the
//! list endpoint in every accepted shape and in hostile ones. Every run talks
//! real HTTP to `node-sim` nodes on loopback, or to a raw node (raw_node.rs)
//! that answers the list as the test chooses.

use std::time::{Duration, Instant};

use api_consumer::config::{Config, ConfigError};
use api_consumer::domain::{Change, ExitStatus, GroupId, NodeState, Operation, Outcome, Task};
use api_consumer::node_api::LIST_MAX_BYTES;
use api_consumer::output::report::{Listing, RunReport, Unlisted};
use node_sim::NodeOp;
use node_sim::{FaultsPatch, SimCluster};
use serde_json::Value;

use crate::common::*;
use crate::raw_node::{ListReply, RawNode};

/// Far beyond what any run here needs: reaching it means the job hung.
const HANG_BOUND: Duration = Duration::from_secs(60);

/// Fast retries, as `common::config` sets them (without `GROUP_IDS`).
const FAST: &[(&str, &str)] = &[
    ("MAX_RETRIES", "3"),
    ("RETRY_BASE_DELAY_MS", "5"),
    ("RETRY_MAX_DELAY_MS", "50"),
    ("REQUEST_TIMEOUT_MS", "2000"),
    ("ROLLBACK_TIMEOUT_SECS", "30"),
];

// ---------------------------------------------------------------------------
// Shared setup
// ---------------------------------------------------------------------------

/// A configuration without `GROUP_IDS` (a verify by discovery), with
/// [`FAST`] settings overridden by `extra`.
fn discovery_config(nodes: &[String], operation: &str, extra: &[(&str, &str)]) -> Config {
    let mut vars = vec![
        ("NODES".to_string(), nodes.join(",")),
        ("OPERATION".to_string(), operation.to_string()),
    ];
    for (key, value) in FAST.iter().chain(extra.iter()) {
        vars.retain(|(k, _)| k != key);
        vars.push((key.to_string(), value.to_string()));
    }
    Config::from_vars(vars).expect("valid test configuration")
}

/// Runs `config`, failing past [`HANG_BOUND`].
async fn run_bounded(config: &Config) -> RunReport {
    tokio::time::timeout(HANG_BOUND, run(config))
        .await
        .unwrap_or_else(|_| panic!("the job ran past {HANG_BOUND:?}"))
}

/// Puts `id` on the nodes of `cluster` at `indices`, as if it had been there
/// before the test.
async fn seed(cluster: &SimCluster, id: &str, indices: &[usize]) {
    for &i in indices {
        assert!(
            cluster.nodes()[i].insert_group(id).await.unwrap(),
            "{id} already on node {i}"
        );
    }
}

/// Every node's groups, in node order.
async fn groups_by_node(cluster: &SimCluster) -> Vec<Vec<String>> {
    states(cluster)
        .await
        .into_iter()
        .map(|s| s.groups)
        .collect()
}

/// No node received a create or a delete.
async fn assert_no_write(cluster: &SimCluster) {
    for (i, state) in states(cluster).await.iter().enumerate() {
        assert_eq!(count(&state.requests, "create"), 0, "node {i}: {state:?}");
        assert_eq!(count(&state.requests, "delete"), 0, "node {i}: {state:?}");
    }
}

fn listing_of(report: &RunReport) -> &Listing {
    report
        .listing
        .as_ref()
        .unwrap_or_else(|| panic!("no listing in the report: {report:#?}"))
}

fn unlisted_of(report: &RunReport) -> &Unlisted {
    report
        .unlisted
        .as_ref()
        .unwrap_or_else(|| panic!("no unlisted section in the report: {report:#?}"))
}

fn ids_of(list: &[GroupId]) -> Vec<&str> {
    list.iter().map(GroupId::as_str).collect()
}

/// The nodes of `cluster` at `indices`, by name (as reports name them).
fn names(cluster: &SimCluster, indices: &[usize]) -> Vec<String> {
    let urls = cluster.urls();
    indices.iter().map(|&i| urls[i].clone()).collect()
}

fn fail_deletes() -> FaultsPatch {
    FaultsPatch {
        fail_rate: Some(1.0),
        ..on(&[NodeOp::Delete])
    }
}

fn fail_lists() -> FaultsPatch {
    FaultsPatch {
        fail_rate: Some(1.0),
        ..on(&[NodeOp::List])
    }
}

// ---------------------------------------------------------------------------
// 1. Verify with ids
// ---------------------------------------------------------------------------

#[tokio::test]
async fn verify_with_ids_names_each_group_and_the_nodes_of_a_partial_one() {
    let cluster = cluster(3).await;
    seed(&cluster, "all", &[0, 1, 2]).await;
    seed(&cluster, "some", &[0, 2]).await;
    let before = groups_by_node(&cluster).await;

    let report = run_on(&cluster, "verify", &["all", "none", "some"], &[]).await;

    assert_eq!(report.exit_code, ExitStatus::Inconsistent, "{report:#?}");
    assert_eq!(report.totals.groups, 3);
    assert_eq!(report.totals.consistent_present, 1);
    assert_eq!(report.totals.consistent_absent, 1);
    assert_eq!(report.totals.inconsistent, 1);
    assert_eq!(report.totals.committed, 0);
    // Only the inconsistent group has an entry.
    assert_eq!(report.groups.len(), 1, "{report:#?}");
    let some = group(&report, "some");
    assert_eq!(some.outcome, Outcome::Inconsistent);
    assert_eq!(some.operation, Task::Verify);
    let urls = cluster.urls();
    let reason = some.reason.as_deref().unwrap_or("");
    assert!(
        reason.contains(&format!("present on {} {}", urls[0], urls[2])),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("absent on {}", urls[1])),
        "{reason}"
    );
    let seen: Vec<NodeState> = some.nodes.iter().map(|n| n.final_state).collect();
    assert_eq!(
        seen,
        [NodeState::Present, NodeState::Absent, NodeState::Present]
    );
    assert!(some.nodes.iter().all(|n| !n.written && !n.compensated));
    // Verify with ids reads; it neither lists nor writes.
    assert!(report.listing.is_none());
    assert_no_write(&cluster).await;
    assert_eq!(groups_by_node(&cluster).await, before);
    for state in states(&cluster).await {
        assert_eq!(count(&state.requests, "get"), 3, "{state:?}");
        assert_eq!(count(&state.requests, "list"), 0, "{state:?}");
    }
}

#[tokio::test]
async fn verify_with_an_unreadable_node_is_unknown_not_consistent() {
    let cluster = cluster(2).await;
    seed(&cluster, "g", &[0, 1]).await;
    let mut nodes = cluster.urls();
    let dead = dead_node();
    nodes.push(dead.clone());
    let report = run_bounded(&config(&nodes, "verify", &["g"], &[("MAX_RETRIES", "1")])).await;
    assert_eq!(report.exit_code, ExitStatus::RolledBack, "{report:#?}");
    assert_eq!(report.totals.unknown, 1);
    assert_eq!(report.totals.consistent_present, 0);
    let g = group(&report, "g");
    assert_eq!(g.outcome, Outcome::Unknown);
    assert!(g.reason.as_deref().unwrap_or("").contains(&dead), "{g:#?}");
    assert_eq!(g.nodes[2].final_state, NodeState::Unknown);
    assert_no_write(&cluster).await;
}

// ---------------------------------------------------------------------------
// 2. Verify by discovery
// ---------------------------------------------------------------------------

#[tokio::test]
async fn verify_without_ids_lists_every_node_and_names_the_drift() {
    let cluster = cluster(3).await;
    seed(&cluster, "a", &[0, 1, 2]).await;
    seed(&cluster, "b", &[0]).await;
    seed(&cluster, "c", &[1, 2]).await;
    let before = groups_by_node(&cluster).await;

    let report = run_bounded(&discovery_config(&cluster.urls(), "verify", &[])).await;

    assert_eq!(report.exit_code, ExitStatus::Inconsistent, "{report:#?}");
    let listing = listing_of(&report);
    assert_eq!(listing.nodes_listed, 3);
    assert_eq!(listing.groups_found, 3);
    assert_eq!(listing.invalid_ids, 0);
    assert!(listing.failures.is_empty(), "{listing:?}");
    assert_eq!(report.totals.groups, 3);
    assert_eq!(report.totals.consistent_present, 1);
    assert_eq!(report.totals.inconsistent, 2);
    let urls = cluster.urls();
    let b = group(&report, "b");
    assert_eq!(b.outcome, Outcome::Inconsistent);
    let reason = b.reason.as_deref().unwrap_or("");
    assert!(
        reason.contains(&format!("present on {};", urls[0])),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("absent on {} {}", urls[1], urls[2])),
        "{reason}"
    );
    let c = group(&report, "c");
    assert_eq!(c.outcome, Outcome::Inconsistent);
    let reason = c.reason.as_deref().unwrap_or("");
    assert!(
        reason.contains(&format!("present on {} {}", urls[1], urls[2])),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("absent on {}", urls[0])),
        "{reason}"
    );
    assert!(report.groups.iter().all(|g| g.group_id.as_str() != "a"));

    assert_no_write(&cluster).await;
    assert_eq!(groups_by_node(&cluster).await, before);
    for state in states(&cluster).await {
        assert_eq!(count(&state.requests, "list"), 1, "{state:?}");
    }
}

#[tokio::test]
async fn verify_without_ids_of_a_clean_cluster_exits_0() {
    let cluster = cluster(3).await;
    // Nothing on any node: nothing found, nothing to verify.
    let report = run_bounded(&discovery_config(&cluster.urls(), "verify", &[])).await;
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal, "{report:#?}");
    assert_eq!(report.totals.groups, 0);
    assert_eq!(listing_of(&report).nodes_listed, 3);
    assert_eq!(listing_of(&report).groups_found, 0);

    for id in ["x", "y"] {
        seed(&cluster, id, &[0, 1, 2]).await;
    }
    let report = run_bounded(&discovery_config(&cluster.urls(), "verify", &[])).await;
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal, "{report:#?}");
    assert_eq!(report.totals.groups, 2);
    assert_eq!(report.totals.consistent_present, 2);
    assert_eq!(report.totals.inconsistent, 0);
    assert_eq!(report.totals.unknown, 0);
    assert!(report.groups.is_empty(), "{report:#?}");
    let listing = listing_of(&report);
    assert_eq!(listing.nodes_listed, 3);
    assert_eq!(listing.groups_found, 2);
    assert!(listing.failures.is_empty());
    assert_no_write(&cluster).await;
}

// ---------------------------------------------------------------------------
// 3. Verify by discovery with a node that does not list
// ---------------------------------------------------------------------------

#[tokio::test]
async fn verify_without_ids_names_a_node_that_does_not_serve_the_list() {
    let cluster = cluster(2).await;
    let raw = RawNode::holding(ListReply::Status("404 Not Found"), &[]).await;
    let mut nodes = cluster.urls();
    nodes.push(raw.url.clone());

    let report = run_bounded(&discovery_config(&nodes, "verify", &[])).await;

    // Nothing found is not "all at goal" when a node's list is missing.
    assert_eq!(report.exit_code, ExitStatus::RolledBack, "{report:#?}");
    let listing = listing_of(&report);
    assert_eq!(listing.nodes_listed, 2);
    assert_eq!(listing.failures.len(), 1, "{listing:?}");
    assert_eq!(listing.failures[0].node, raw.url);
    let reason = &listing.failures[0].reason;
    assert!(reason.contains("does not serve GET /v1/groups"), "{reason}");
    assert!(reason.contains("404"), "{reason}");
    assert!(
        raw.lines().iter().all(|r| r.starts_with("GET ")),
        "{:?}",
        raw.lines()
    );
    assert_no_write(&cluster).await;
}

#[tokio::test]
async fn verify_without_ids_with_a_failing_list_exits_1_even_when_all_found_is_consistent() {
    let cluster = cluster(3).await;
    seed(&cluster, "g", &[0, 1, 2]).await;
    fault(&cluster, 2, fail_lists());

    let report = run_bounded(&discovery_config(&cluster.urls(), "verify", &[])).await;

    assert_eq!(report.exit_code, ExitStatus::RolledBack, "{report:#?}");
    assert_eq!(report.totals.consistent_present, 1);
    let listing = listing_of(&report);
    assert_eq!(listing.nodes_listed, 2);
    assert_eq!(listing.groups_found, 1);
    assert_eq!(listing.failures.len(), 1, "{listing:?}");
    assert_eq!(listing.failures[0].node, cluster.urls()[2]);
    assert!(
        listing.failures[0].reason.contains("500"),
        "{}",
        listing.failures[0].reason
    );
    assert_no_write(&cluster).await;
}

// ---------------------------------------------------------------------------
// 4. Dry runs
// ---------------------------------------------------------------------------

#[tokio::test]
async fn dry_run_with_nothing_to_change_exits_0() {
    let cluster = cluster(3).await;
    seed(&cluster, "g1", &[0, 1, 2]).await;
    seed(&cluster, "g2", &[0, 1, 2]).await;
    let dry = [("DRY_RUN", "true")];

    let report = run_on(&cluster, "create", &["g1", "g2"], &dry).await;
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal, "{report:#?}");
    assert_eq!(report.totals.groups, 2);
    assert_eq!(report.totals.unchanged, 2);
    assert_eq!(report.totals.would_change, 0);
    assert_eq!(report.totals.committed, 0);
    assert!(report.groups.is_empty(), "{report:#?}");
    assert!(report.dry_run);
    assert_eq!(report.format_version, Some(1));

    // A delete of groups on no node changes nothing either.
    let report = run_on(&cluster, "delete", &["gone-1", "gone-2", "gone-3"], &dry).await;
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal, "{report:#?}");
    assert_eq!(report.totals.unchanged, 3);
    assert!(report.dry_run);

    assert_no_write(&cluster).await;
}

#[tokio::test]
async fn dry_run_of_a_create_names_the_nodes_missing_each_group_and_writes_nothing() {
    let cluster = cluster(3).await;
    seed(&cluster, "partial", &[0]).await;
    seed(&cluster, "everywhere", &[0, 1, 2]).await;
    let before = groups_by_node(&cluster).await;
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("plan.json");
    let extra = [
        ("DRY_RUN", "TRUE"),
        ("REPORT_PATH", report_path.to_str().unwrap()),
    ];

    let report = run_on(
        &cluster,
        "create",
        &["partial", "nowhere", "everywhere"],
        &extra,
    )
    .await;

    assert_eq!(report.exit_code, ExitStatus::WouldChange, "{report:#?}");
    assert!(report.dry_run);
    assert_eq!(report.format_version, Some(1));
    assert_eq!(report.totals.groups, 3);
    assert_eq!(report.totals.would_change, 2);
    assert_eq!(report.totals.unchanged, 1);
    assert_eq!(report.totals.committed, 0);
    let partial = group(&report, "partial");
    assert_eq!(partial.outcome, Outcome::WouldChange);
    assert_eq!(partial.operation, Task::Plan(Change::Create));
    assert_eq!(partial.would_write, names(&cluster, &[1, 2]));
    let nowhere = group(&report, "nowhere");
    assert_eq!(nowhere.would_write, names(&cluster, &[0, 1, 2]));
    assert!(report
        .groups
        .iter()
        .all(|g| g.group_id.as_str() != "everywhere"));

    assert_no_write(&cluster).await;
    assert_eq!(groups_by_node(&cluster).await, before);

    // The report file is the plan.
    let file: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(file["format_version"], 1);
    assert_eq!(file["dry_run"], true);
    assert_eq!(file["exit_code"], 4);
    assert_eq!(file["totals"]["would_change"], 2);
    let entries = file["groups"].as_array().expect("groups");
    let entry = entries
        .iter()
        .find(|g| g["group_id"] == "partial")
        .unwrap_or_else(|| panic!("{file:#}"));
    assert_eq!(entry["outcome"], "would_change");
    assert_eq!(entry["operation"], "create");
    assert_eq!(
        entry["would_write"],
        serde_json::json!(names(&cluster, &[1, 2]))
    );
}

#[tokio::test]
async fn dry_run_of_a_delete_names_the_nodes_holding_the_group() {
    let cluster = cluster(3).await;
    seed(&cluster, "g", &[0, 2]).await;
    let report = run_on(&cluster, "delete", &["g"], &[("DRY_RUN", "1")]).await;
    assert_eq!(report.exit_code, ExitStatus::WouldChange, "{report:#?}");
    assert!(report.dry_run);
    let g = group(&report, "g");
    assert_eq!(g.outcome, Outcome::WouldChange);
    assert_eq!(g.operation, Task::Plan(Change::Delete));
    assert_eq!(g.would_write, names(&cluster, &[0, 2]));
    assert_no_write(&cluster).await;
    assert_eq!(holders(&cluster, "g").await, [true, false, true]);
}

#[tokio::test]
async fn dry_run_with_an_unreadable_node_exits_1_not_4() {
    let cluster = cluster(2).await;
    let mut nodes = cluster.urls();
    nodes.push(dead_node());
    let extra = [("DRY_RUN", "true"), ("MAX_RETRIES", "1")];
    let report = run_bounded(&config(&nodes, "create", &["g"], &extra)).await;
    assert_eq!(report.exit_code, ExitStatus::RolledBack, "{report:#?}");
    assert_eq!(report.totals.unknown, 1);
    let g = group(&report, "g");
    assert_eq!(g.outcome, Outcome::Unknown);
    assert!(g.would_write.is_empty(), "{g:#?}");
    assert_no_write(&cluster).await;
}

#[tokio::test]
async fn dry_run_of_a_pruning_reconcile_plans_both_phases_and_writes_nothing() {
    let cluster = cluster(3).await;
    seed(&cluster, "a", &[0, 2]).await; // listed, missing on node 1
    seed(&cluster, "x", &[0, 1, 2]).await; // not listed, everywhere
    seed(&cluster, "y", &[2]).await; // not listed, on node 2 only
    let before = groups_by_node(&cluster).await;

    let extra = [("DRY_RUN", "true"), ("PRUNE", "true")];
    let report = run_on(&cluster, "reconcile", &["a"], &extra).await;

    assert_eq!(report.exit_code, ExitStatus::WouldChange, "{report:#?}");
    assert!(report.dry_run);
    assert_eq!(report.format_version, Some(1));
    assert_eq!(report.totals.groups, 3);
    assert_eq!(report.totals.would_change, 3);
    let a = group(&report, "a");
    assert_eq!(a.operation, Task::Plan(Change::Create));
    assert_eq!(a.would_write, names(&cluster, &[1]));
    let x = group(&report, "x");
    assert_eq!(x.operation, Task::Plan(Change::Delete));
    assert_eq!(x.would_write, names(&cluster, &[0, 1, 2]));
    let y = group(&report, "y");
    assert_eq!(y.operation, Task::Plan(Change::Delete));
    assert_eq!(y.would_write, names(&cluster, &[2]));
    let unlisted = unlisted_of(&report);
    assert_eq!(unlisted.groups, 2);
    assert_eq!(unlisted.inconsistent, 1);
    assert_eq!(ids_of(&unlisted.inconsistent_first), ["y"]);
    assert!(unlisted.prune_refused.is_none(), "{unlisted:?}");

    assert_no_write(&cluster).await;
    assert_eq!(groups_by_node(&cluster).await, before);
}

#[tokio::test]
async fn read_only_runs_never_open_the_journal() {
    let cluster = cluster(2).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let journal_path = journal.to_str().unwrap();
    let dry = [("DRY_RUN", "true"), ("JOURNAL_PATH", journal_path)];
    let report = run_on(&cluster, "create", &["g"], &dry).await;
    assert_eq!(report.exit_code, ExitStatus::WouldChange, "{report:#?}");
    let verify = [("JOURNAL_PATH", journal_path)];
    let report = run_on(&cluster, "verify", &["g"], &verify).await;
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal, "{report:#?}");
    // Neither the journal nor its lock file.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "a read-only run left {left:?}");
    // The same run without DRY_RUN does open it.
    let report = run_on(&cluster, "create", &["g"], &verify).await;
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal, "{report:#?}");
    assert!(journal.exists());
}

// ---------------------------------------------------------------------------
// 5–8. Reconcile
// ---------------------------------------------------------------------------

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
    fault(&cluster, 1, fail_deletes());

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
    fault(&cluster, 2, fail_lists());

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
// 9. Configuration
// ---------------------------------------------------------------------------

/// Parses `pairs` on top of a node list.
fn parse_vars(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut vars = vec![("NODES".to_string(), "127.0.0.1:1".to_string())];
    vars.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_vars(vars)
}

fn variable_of_error(pairs: &[(&str, &str)]) -> &'static str {
    parse_vars(pairs)
        .map(|_| ())
        .expect_err(&format!("{pairs:?} was accepted"))
        .variable
}

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
fn dry_run_accepts_true_false_1_0_in_any_case_and_nothing_else() {
    for (value, expected) in [
        ("TRUE", true),
        ("true", true),
        ("True", true),
        ("1", true),
        ("false", false),
        ("FALSE", false),
        ("0", false),
    ] {
        let pairs = [
            ("OPERATION", "create"),
            ("GROUP_IDS", "g"),
            ("DRY_RUN", value),
        ];
        let config = parse_vars(&pairs).unwrap_or_else(|e| panic!("{value}: {e}"));
        assert_eq!(config.dry_run, expected, "{value}");
    }
    let unset = parse_vars(&[("OPERATION", "create"), ("GROUP_IDS", "g")]).unwrap();
    assert!(!unset.dry_run);
    for value in ["maybe", "yes", "2", "", "  "] {
        let pairs = [
            ("OPERATION", "create"),
            ("GROUP_IDS", "g"),
            ("DRY_RUN", value),
        ];
        assert_eq!(variable_of_error(&pairs), "DRY_RUN", "{value:?}");
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exits_4_for_a_dry_run_with_changes() {
    let cluster = cluster(2).await;
    let nodes = cluster.urls().join(",");
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("plan.json");
    let vars = [
        ("NODES", nodes.as_str()),
        ("OPERATION", "create"),
        ("GROUP_IDS", "g"),
        ("DRY_RUN", "true"),
        ("REPORT_PATH", report_path.to_str().unwrap()),
    ];
    let output = command(&dir, &vars).output().expect("run api-consumer");
    assert_eq!(
        output.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let file: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(file["format_version"], 1);
    assert_eq!(file["dry_run"], true);
    assert_eq!(
        file["groups"][0]["would_write"],
        serde_json::json!(cluster.urls())
    );
    assert_no_write(&cluster).await;
    assert_eq!(holders(&cluster, "g").await, [false, false]);
}

// ---------------------------------------------------------------------------
// 10. List shapes, accepted and hostile
// ---------------------------------------------------------------------------

#[tokio::test]
async fn every_accepted_list_shape_gives_the_ids() {
    let shapes = [
        r#"["a", "b/c"]"#,
        r#"[{"groupId": "a", "x": 1}, {"tags": ["t"], "groupId": "b/c"}]"#,
        r#"{"groups": ["a", "b/c"], "total": 2}"#,
        r#"{"next": null, "groups": [{"groupId": "a"}, {"groupId": "b/c", "x": {"y": 1}}]}"#,
    ];
    for body in shapes {
        let raw = RawNode::holding(ListReply::Body(body.to_string()), &["a", "b/c"]).await;
        let config = discovery_config(std::slice::from_ref(&raw.url), "verify", &[]);
        let report = run_bounded(&config).await;
        assert_eq!(
            report.exit_code,
            ExitStatus::AllAtGoal,
            "{body}: {report:#?}"
        );
        let listing = listing_of(&report);
        assert_eq!(listing.nodes_listed, 1, "{body}");
        assert_eq!(listing.groups_found, 2, "{body}");
        assert!(listing.failures.is_empty(), "{body}: {listing:?}");
        assert_eq!(report.totals.groups, 2, "{body}");
        assert_eq!(report.totals.consistent_present, 2, "{body}");
        // Each listed id was read back through its own URL.
        let requests = raw.lines();
        for read in ["GET /v1/group/a/", "GET /v1/group/b%2Fc/"] {
            assert!(
                requests.iter().any(|r| r == read),
                "{body}: no {read}: {requests:?}"
            );
        }
        assert_eq!(
            requests
                .iter()
                .filter(|r| r.starts_with("GET /v1/groups"))
                .count(),
            1,
            "{body}: {requests:?}"
        );
    }
}

#[tokio::test]
async fn listed_ids_that_are_not_group_ids_are_counted_and_left_alone() {
    // `..` cannot be addressed, `x\u0001y` holds a control character; `a`
    // is listed twice.
    let body = r#"["a", "a", "..", "x\u0001y"]"#;
    let raw = RawNode::holding(ListReply::Body(body.to_string()), &["a"]).await;
    let report = run_bounded(&discovery_config(
        std::slice::from_ref(&raw.url),
        "verify",
        &[],
    ))
    .await;
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal, "{report:#?}");
    let listing = listing_of(&report);
    assert_eq!(listing.groups_found, 1);
    assert_eq!(listing.invalid_ids, 2);
    assert_eq!(report.totals.groups, 1);
    let reads: Vec<String> = raw
        .lines()
        .into_iter()
        .filter(|r| r.starts_with("GET /v1/group/"))
        .collect();
    assert_eq!(reads, ["GET /v1/group/a/"]);
}

#[tokio::test]
async fn hostile_lists_are_named_failures_not_hangs() {
    let cases: Vec<(&str, ListReply, &str)> = vec![
        (
            "an HTML page",
            ListReply::Body("<html><body>502 Bad Gateway</body></html>".to_string()),
            "not JSON",
        ),
        (
            "malformed JSON",
            ListReply::Body(r#"["a", "b""#.to_string()),
            "ends early",
        ),
        (
            "an object without groups",
            ListReply::Body(r#"{"items": ["a"]}"#.to_string()),
            "missing field `groups`",
        ),
        (
            "an array of numbers",
            ListReply::Body("[1, 2]".to_string()),
            "invalid type",
        ),
        (
            "an empty body",
            ListReply::Body(String::new()),
            "ends early",
        ),
        (
            "405",
            ListReply::Status("405 Method Not Allowed"),
            "does not serve GET /v1/groups",
        ),
        (
            "501",
            ListReply::Status("501 Not Implemented"),
            "does not serve GET /v1/groups",
        ),
        ("503", ListReply::Status("503 Service Unavailable"), "503"),
    ];
    for (case, reply, says) in cases {
        let raw = RawNode::holding(reply, &["a"]).await;
        let started = Instant::now();
        let report = run_bounded(&discovery_config(
            std::slice::from_ref(&raw.url),
            "verify",
            &[],
        ))
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{case}: took {:?}",
            started.elapsed()
        );
        assert_eq!(
            report.exit_code,
            ExitStatus::RolledBack,
            "{case}: {report:#?}"
        );
        let listing = listing_of(&report);
        assert_eq!(listing.nodes_listed, 0, "{case}");
        assert_eq!(listing.groups_found, 0, "{case}");
        assert_eq!(listing.failures.len(), 1, "{case}: {listing:?}");
        assert_eq!(listing.failures[0].node, raw.url, "{case}");
        let reason = &listing.failures[0].reason;
        assert!(reason.contains(says), "{case}: {reason}");
        // Nothing partial is verified: no id was read.
        assert_eq!(report.totals.groups, 0, "{case}");
        assert!(
            raw.lines().iter().all(|r| r.starts_with("GET /v1/groups")),
            "{case}: {:?}",
            raw.lines()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_larger_than_the_limit_is_refused_not_buffered_or_waited_on() {
    let raw = RawNode::holding(ListReply::Endless, &[]).await;
    // One attempt, with time enough to read the whole limit on a loaded
    // machine: the reason must be the size, not a timeout.
    let extra = [("MAX_RETRIES", "0"), ("REQUEST_TIMEOUT_MS", "30000")];
    let config = discovery_config(std::slice::from_ref(&raw.url), "verify", &extra);
    let started = Instant::now();
    let report = run_bounded(&config).await;
    let elapsed = started.elapsed();
    assert_eq!(report.exit_code, ExitStatus::RolledBack, "{report:#?}");
    let listing = listing_of(&report);
    assert_eq!(listing.failures.len(), 1, "{listing:?}");
    let reason = &listing.failures[0].reason;
    assert!(
        reason.contains(&format!("larger than {LIST_MAX_BYTES}")),
        "{reason}"
    );
    assert_eq!(report.totals.groups, 0);
    // The client read up to its limit, then hung up: what left the server
    // beyond the limit is what the socket buffers held, far below its cap.
    let limit = LIST_MAX_BYTES as u64;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = raw.sent();
    assert!(
        sent > limit / 2 && sent < limit + 32 * 1024 * 1024,
        "the server sent {sent} bytes"
    );
    assert!(elapsed < HANG_BOUND, "took {elapsed:?}");
}
