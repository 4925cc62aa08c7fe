//! Dry runs (`DRY_RUN`): the plan of a create, a delete and a pruning
//! reconcile, with the nodes each would write, and nothing written; how the
//! setting is parsed, and the binary's exit code 4. Every run talks real
//! HTTP to `node-sim` nodes on loopback.

use api_consumer::domain::{Change, ExitStatus, Outcome, Task};
use node_sim::SimCluster;
use serde_json::Value;

use crate::common::*;

/// The nodes of `cluster` at `indices`, by name (as reports name them).
fn names(cluster: &SimCluster, indices: &[usize]) -> Vec<String> {
    let urls = cluster.urls();
    indices.iter().map(|&i| urls[i].clone()).collect()
}

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
// Configuration
// ---------------------------------------------------------------------------

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
