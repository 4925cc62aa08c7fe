//! `PRIOR_STATE`: a batch's prior states taken from node lists
//! (`GET /v1/groups`) instead of one read per group and node
//! (src/engine/prior.rs, docs/TRANSACTIONS.md "Prior state from lists").
//! What each mode costs per node, that what the lists say is honoured (I2),
//! every accepted list shape, the exact record a delete's rollback restores,
//! the per-node fallback of `auto` and the refusal of `list`, repeated ids,
//! and the journal. Every run talks real HTTP to `node-sim` nodes on
//! loopback, or to a raw node (raw_node.rs) that keeps its groups as records.

use std::path::Path;
use std::time::{Duration, Instant};

use api_consumer::domain::{ExitStatus, Outcome, StopReason};
use api_consumer::engine::prior::AUTO_MIN_ENTRIES;
use api_consumer::node_api::LIST_MAX_BYTES;
use api_consumer::output::journal::Journal;
use api_consumer::output::report::RunReport;
use node_sim::NodeOp;
use node_sim::{FaultsPatch, SimCluster};
use serde_json::{json, Value};

use crate::common::*;
use crate::raw_node::{ListReply, RawNode};

/// The values of `PRIOR_STATE`.
const LIST: &str = "list";
const READ: &str = "read";
const AUTO: &str = "auto";

// ---------------------------------------------------------------------------
// Shared setup
// ---------------------------------------------------------------------------

/// `count` distinct ids: `g000`, `g001`, ...
fn ids(count: u64) -> Vec<String> {
    (0..count).map(|i| format!("g{i:03}")).collect()
}

/// Runs `operation` of `ids` over `nodes` with `PRIOR_STATE=prior_state`
/// and the `extra` settings, failing past [`HANG_BOUND`].
async fn batch_with(
    nodes: &[String],
    operation: &str,
    ids: &[&str],
    prior_state: &str,
    extra: &[(&str, &str)],
) -> RunReport {
    let mut vars = vec![("PRIOR_STATE", prior_state)];
    vars.extend_from_slice(extra);
    run_bounded(&config(nodes, operation, ids, &vars)).await
}

/// [`batch_with`] and no other setting.
async fn batch(nodes: &[String], operation: &str, ids: &[&str], prior_state: &str) -> RunReport {
    batch_with(nodes, operation, ids, prior_state, &[]).await
}

/// [`batch`], asserting that every group of `ids` committed.
async fn committed_batch(
    nodes: &[String],
    operation: &str,
    ids: &[&str],
    prior_state: &str,
) -> RunReport {
    let report = batch(nodes, operation, ids, prior_state).await;
    let groups = ids.len() as u64;
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal, "{report:#?}");
    assert_eq!(report.totals.groups, groups, "{:?}", report.totals);
    assert_eq!(report.totals.committed, groups, "{:?}", report.totals);
    assert!(report.stop_reason.is_none(), "{report:#?}");
    report
}

/// The nodes of `cluster` with `raw` inserted at position `at`.
fn with_raw(cluster: &SimCluster, raw: &RawNode, at: usize) -> Vec<String> {
    let mut nodes = cluster.urls();
    nodes.insert(at, raw.url.clone());
    nodes
}

/// Two `node-sim` nodes with a raw node between them that answers `list`
/// and holds nothing; the nodes of the run, in order.
async fn raw_between_two(list: ListReply) -> (SimCluster, RawNode, Vec<String>) {
    let cluster = cluster(2).await;
    let raw = RawNode::listing(list, &[]).await;
    let nodes = with_raw(&cluster, &raw, 1);
    (cluster, raw, nodes)
}

/// The node-API calls one `node-sim` node received:
/// `(list, get, create, delete)`.
type Calls = (u64, u64, u64, u64);

/// The calls every node of `cluster` received so far, in node order.
async fn calls(cluster: &SimCluster) -> Vec<Calls> {
    states(cluster)
        .await
        .iter()
        .map(|state| {
            let of = |call| count(&state.requests, call);
            (of("list"), of("get"), of("create"), of("delete"))
        })
        .collect()
}

/// The calls received since `before` was taken, node by node.
fn since(now: &[Calls], before: &[Calls]) -> Vec<Calls> {
    now.iter()
        .zip(before)
        .map(|(n, b)| (n.0 - b.0, n.1 - b.1, n.2 - b.2, n.3 - b.3))
        .collect()
}

/// The requests the report counts for each node, in node order.
fn requests_per_node(report: &RunReport) -> Vec<u64> {
    report.nodes.iter().map(|n| n.requests).collect()
}

/// The report's `nodes[].prior_state`, in node order.
fn prior_states(report: &RunReport) -> Vec<Option<&str>> {
    report
        .nodes
        .iter()
        .map(|n| n.prior_state.as_deref())
        .collect()
}

/// Every node of `cluster` holds exactly `ids`.
async fn assert_every_node_holds(cluster: &SimCluster, ids: &[&str]) {
    for (i, state) in states(cluster).await.iter().enumerate() {
        assert_eq!(state.groups, ids, "node {i}: {state:?}");
    }
}

/// No node of `cluster` was read or written, and none holds a group.
async fn assert_untouched(cluster: &SimCluster) {
    for (i, &(_, get, create, delete)) in calls(cluster).await.iter().enumerate() {
        assert_eq!((get, create, delete), (0, 0, 0), "node {i}");
    }
    assert_every_node_holds(cluster, &[]).await;
}

/// An `auto` create of [`AUTO_MIN_ENTRIES`] groups over [`raw_between_two`]
/// that committed: the raw node was listed once and then read and written
/// once per group, the `node-sim` nodes listed once and written once per
/// group.
async fn assert_raw_read_and_the_others_listed(
    report: &RunReport,
    cluster: &SimCluster,
    raw: &RawNode,
) {
    assert_eq!(
        prior_states(report),
        [Some("list"), Some("read"), Some("list")]
    );
    let entries = AUTO_MIN_ENTRIES as usize;
    assert_eq!(raw.count("GET /v1/groups"), 1, "{:?}", raw.lines());
    assert_eq!(raw.count("GET /v1/group/"), entries, "{:?}", raw.lines());
    assert_eq!(raw.count("POST /v1/group/"), entries, "{:?}", raw.lines());
    assert_eq!(calls(cluster).await, [(1, 0, AUTO_MIN_ENTRIES, 0); 2]);
}

/// A `PRIOR_STATE=list` run refused before its first group: every entry
/// not started, nothing attempted.
fn assert_refused_for_lists(report: &RunReport, entries: u64, first: &str) {
    assert_eq!(report.exit_code, ExitStatus::RolledBack, "{report:#?}");
    assert_eq!(report.stop_reason, Some(StopReason::ListsUnavailable));
    assert_eq!(report.totals.groups, entries, "{:?}", report.totals);
    assert_eq!(report.totals.not_started, entries, "{:?}", report.totals);
    assert_eq!(report.totals.committed, 0, "{:?}", report.totals);
    assert_eq!(report.totals.rolled_back, 0, "{:?}", report.totals);
    let not_attempted = report
        .not_attempted
        .as_ref()
        .unwrap_or_else(|| panic!("no not_attempted: {report:#?}"));
    assert_eq!(not_attempted.count, entries);
    assert_eq!(
        not_attempted.first_group_id.as_ref().map(|id| id.as_str()),
        Some(first)
    );
    // No node reports a source: the run took none.
    assert!(
        report.nodes.iter().all(|n| n.prior_state.is_none()),
        "{:?}",
        report.nodes
    );
}

// ---------------------------------------------------------------------------
// 1–3. What each mode costs per node
// ---------------------------------------------------------------------------

#[tokio::test]
async fn list_mode_costs_one_list_and_one_write_per_group_and_node() {
    let cluster = cluster(3).await;
    let ids = ids(100);

    let report = committed_batch(&cluster.urls(), "create", &refs(&ids), LIST).await;

    let created = calls(&cluster).await;
    assert_eq!(created, [(1, 0, 100, 0); 3]);
    // 1.01 requests per group and node: the list and the creates.
    assert_eq!(requests_per_node(&report), [101; 3], "{:?}", report.nodes);
    assert_eq!(report.requests.requests, 303);
    assert_eq!(prior_states(&report), [Some("list"); 3]);
    assert_every_node_holds(&cluster, &refs(&ids)).await;

    // node-sim lists records, so a delete needs no read to restore one.
    let report = committed_batch(&cluster.urls(), "delete", &refs(&ids), LIST).await;

    assert_eq!(since(&calls(&cluster).await, &created), [(1, 0, 0, 100); 3]);
    assert_eq!(requests_per_node(&report), [101; 3], "{:?}", report.nodes);
    assert_eq!(prior_states(&report), [Some("list"); 3]);
    assert_every_node_holds(&cluster, &[]).await;
}

#[tokio::test]
async fn read_mode_costs_a_read_and_a_write_per_group_and_node_and_never_lists() {
    let cluster = cluster(3).await;
    let ids = ids(100);

    let report = committed_batch(&cluster.urls(), "create", &refs(&ids), READ).await;

    assert_eq!(calls(&cluster).await, [(0, 100, 100, 0); 3]);
    assert_eq!(requests_per_node(&report), [200; 3], "{:?}", report.nodes);
    assert_eq!(prior_states(&report), [None; 3]);
    assert_every_node_holds(&cluster, &refs(&ids)).await;
}

#[tokio::test]
async fn auto_reads_below_64_entries_and_lists_from_64() {
    assert_eq!(AUTO_MIN_ENTRIES, 64, "the documented threshold");
    for (entries, lists) in [
        (10, false),
        (AUTO_MIN_ENTRIES - 1, false),
        (AUTO_MIN_ENTRIES, true),
        (80, true),
    ] {
        let cluster = cluster(3).await;
        let ids = ids(entries);

        let report = committed_batch(&cluster.urls(), "create", &refs(&ids), AUTO).await;

        let expected = if lists {
            (1, 0, entries, 0)
        } else {
            (0, entries, entries, 0)
        };
        assert_eq!(calls(&cluster).await, [expected; 3], "{entries} entries");
        let source = lists.then_some("list");
        assert_eq!(prior_states(&report), [source; 3], "{entries} entries");
    }
}

#[tokio::test]
async fn list_mode_lists_whatever_the_size_of_the_batch() {
    let cluster = cluster(3).await;

    let report = committed_batch(&cluster.urls(), "create", &["only"], LIST).await;

    assert_eq!(calls(&cluster).await, [(1, 0, 1, 0); 3]);
    assert_eq!(prior_states(&report), [Some("list"); 3]);
}

// ---------------------------------------------------------------------------
// 4. What the lists say is honoured (I2)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_create_from_lists_writes_only_to_the_nodes_that_lack_the_group() {
    let cluster = cluster(3).await;
    seed(&cluster, "w", &[0, 1, 2]).await;
    seed(&cluster, "x", &[0, 1]).await;
    seed(&cluster, "y", &[0]).await;

    committed_batch(&cluster.urls(), "create", &["w", "x", "y", "z"], LIST).await;

    // Node 0 lacks z; node 1 lacks y and z; node 2 lacks x, y and z.
    assert_eq!(
        calls(&cluster).await,
        [(1, 0, 1, 0), (1, 0, 2, 0), (1, 0, 3, 0)]
    );
    assert_every_node_holds(&cluster, &["w", "x", "y", "z"]).await;
}

#[tokio::test]
async fn a_delete_from_lists_writes_only_to_the_nodes_that_hold_the_group() {
    let cluster = cluster(3).await;
    seed(&cluster, "p", &[0, 1, 2]).await;
    seed(&cluster, "q", &[1, 2]).await;
    seed(&cluster, "r", &[2]).await;
    seed(&cluster, "keep", &[0, 1, 2]).await;

    committed_batch(&cluster.urls(), "delete", &["p", "q", "r", "s"], LIST).await;

    // Node 0 holds p; node 1 holds p and q; node 2 holds p, q and r.
    assert_eq!(
        calls(&cluster).await,
        [(1, 0, 0, 1), (1, 0, 0, 2), (1, 0, 0, 3)]
    );
    // A group outside the batch is left alone.
    assert_every_node_holds(&cluster, &["keep"]).await;
}

// ---------------------------------------------------------------------------
// 5. Every accepted list shape
// ---------------------------------------------------------------------------

/// Every accepted shape, each listing `a` (held as `{"groupId": "a",
/// "owner": "x"}`) and `other` (outside the batch); and whether the shape
/// gives records.
const SHAPES: &[(&str, bool)] = &[
    (r#"["a", "other"]"#, false),
    (
        r#"[{"groupId": "a", "owner": "x"}, {"groupId": "other"}]"#,
        true,
    ),
    (r#"{"groups": ["a", "other"], "total": 2}"#, false),
    (
        r#"{"next": null, "groups": [{"groupId": "a", "owner": "x"}, {"groupId": "other"}]}"#,
        true,
    ),
];

/// A raw node listing `shape`, holding what every shape lists.
async fn shape_node(shape: &str) -> RawNode {
    let records = [
        json!({"groupId": "a", "owner": "x"}),
        json!({"groupId": "other"}),
    ];
    RawNode::listing(ListReply::Body(shape.to_string()), &records).await
}

#[tokio::test]
async fn a_create_takes_the_prior_state_from_every_list_shape_without_reads() {
    for &(shape, _) in SHAPES {
        let cluster = cluster(2).await;
        let raw = shape_node(shape).await;
        let nodes = with_raw(&cluster, &raw, 2);

        // `a` is listed by the raw node; `b` is not.
        let report = committed_batch(&nodes, "create", &["a", "b"], LIST).await;

        assert_eq!(prior_states(&report), [Some("list"); 3], "{shape}");
        // One list, no read, and a create of the unlisted id only.
        assert_eq!(
            raw.lines(),
            ["GET /v1/groups", "POST /v1/group/"],
            "{shape}"
        );
        assert_eq!(raw.bodies("POST"), [json!({"groupId": "b"})], "{shape}");
        assert_eq!(
            raw.record("a"),
            Some(json!({"groupId": "a", "owner": "x"})),
            "{shape}"
        );
        assert_eq!(calls(&cluster).await, [(1, 0, 2, 0); 2], "{shape}");
        assert_eq!(holders(&cluster, "a").await, [true, true], "{shape}");
        assert_eq!(holders(&cluster, "b").await, [true, true], "{shape}");
    }
}

#[tokio::test]
async fn a_delete_reads_a_holder_only_when_its_list_gave_the_id_without_the_record() {
    for &(shape, records) in SHAPES {
        let cluster = cluster(2).await;
        seed(&cluster, "a", &[0, 1]).await;
        let raw = shape_node(shape).await;
        let nodes = with_raw(&cluster, &raw, 2);

        // `a` is on every node; `b` on none, so it needs no request at all.
        let report = committed_batch(&nodes, "delete", &["a", "b"], LIST).await;

        assert_eq!(prior_states(&report), [Some("list"); 3], "{shape}");
        let expected: &[&str] = if records {
            &["GET /v1/groups", "DELETE /v1/group/"]
        } else {
            &["GET /v1/groups", "GET /v1/group/a/", "DELETE /v1/group/"]
        };
        assert_eq!(raw.lines(), expected, "{shape}");
        assert_eq!(raw.bodies("DELETE"), [json!({"groupId": "a"})], "{shape}");
        assert_eq!(raw.record("a"), None, "{shape}");
        assert!(raw.record("other").is_some(), "{shape}");
        assert_eq!(calls(&cluster).await, [(1, 0, 0, 1); 2], "{shape}");
        assert_eq!(holders(&cluster, "a").await, [false, false], "{shape}");
    }
}

// ---------------------------------------------------------------------------
// 6. A delete's rollback restores the exact record
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_rolled_back_delete_restores_the_exact_record_from_a_read_or_a_listed_record() {
    let record = json!({"groupId": "g", "owner": "x"});
    let cases = [
        // Ids only: the record must come from a read before the delete.
        (
            r#"["g"]"#,
            vec![
                "GET /v1/groups",
                "GET /v1/group/g/",
                "DELETE /v1/group/",
                "POST /v1/group/",
                "GET /v1/group/g/",
            ],
        ),
        // Records: the listed record is the one restored; the only read is
        // the one after the undo.
        (
            r#"[{"groupId": "g", "owner": "x"}]"#,
            vec![
                "GET /v1/groups",
                "DELETE /v1/group/",
                "POST /v1/group/",
                "GET /v1/group/g/",
            ],
        ),
    ];
    for (list, expected) in cases {
        let cluster = cluster(2).await;
        seed(&cluster, "g", &[0, 1]).await;
        // The last node refuses deletes, slowly enough that the other
        // deletes have landed when the group starts rolling back.
        fault(
            &cluster,
            1,
            FaultsPatch {
                latency_ms: Some(200),
                ..failing(&[NodeOp::Delete])
            },
        );
        let raw = RawNode::listing(
            ListReply::Body(list.to_string()),
            std::slice::from_ref(&record),
        )
        .await;
        let nodes = with_raw(&cluster, &raw, 0);

        let report = batch(&nodes, "delete", &["g"], LIST).await;

        assert_eq!(
            report.exit_code,
            ExitStatus::RolledBack,
            "{list}: {report:#?}"
        );
        let g = group(&report, "g");
        assert_eq!(g.outcome, Outcome::RolledBack, "{list}: {g:#?}");
        assert!(
            g.nodes[0].written && g.nodes[0].compensated,
            "{list}: {g:#?}"
        );
        assert_eq!(raw.lines(), expected, "{list}");
        assert_eq!(raw.bodies("DELETE"), [json!({"groupId": "g"})], "{list}");
        // The rollback re-created exactly the record the node held.
        assert_eq!(raw.bodies("POST"), std::slice::from_ref(&record), "{list}");
        assert_eq!(raw.record("g"), Some(record.clone()), "{list}");
        assert_eq!(holders(&cluster, "g").await, [true, true], "{list}");
    }
}

// ---------------------------------------------------------------------------
// 7. A node that does not list
// ---------------------------------------------------------------------------

#[tokio::test]
async fn auto_reads_a_node_that_does_not_list_and_lists_the_others() {
    let (cluster, raw, nodes) = raw_between_two(ListReply::Status("404 Not Found")).await;
    let ids = ids(AUTO_MIN_ENTRIES);

    let report = committed_batch(&nodes, "create", &refs(&ids), AUTO).await;

    assert_raw_read_and_the_others_listed(&report, &cluster, &raw).await;
    for id in &ids {
        assert!(raw.record(id).is_some(), "{id} not on the raw node");
    }
}

#[tokio::test]
async fn list_mode_starts_no_group_when_a_node_does_not_list() {
    let (cluster, raw, nodes) = raw_between_two(ListReply::Status("404 Not Found")).await;
    let ids = ids(AUTO_MIN_ENTRIES);

    let report = batch(&nodes, "create", &refs(&ids), LIST).await;

    assert_refused_for_lists(&report, AUTO_MIN_ENTRIES, &ids[0]);
    // The raw node was asked for its list and nothing else.
    assert_eq!(raw.lines(), ["GET /v1/groups"]);
    assert_untouched(&cluster).await;
}

// ---------------------------------------------------------------------------
// 8. An id listed again in the batch
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_repeated_id_reads_every_node_for_its_later_entry() {
    let cluster = cluster(3).await;

    // The first entry creates `a` from the lists; the lists are stale for
    // the second, which must read.
    committed_batch(&cluster.urls(), "create", &["a", "a"], LIST).await;

    let created = calls(&cluster).await;
    assert_eq!(created, [(1, 1, 1, 0); 3]);
    assert_eq!(holders(&cluster, "a").await, [true, true, true]);

    // The same for a delete: the first entry deletes from the listed
    // records, the second reads and finds nothing to do.
    committed_batch(&cluster.urls(), "delete", &["a", "a"], LIST).await;

    assert_eq!(since(&calls(&cluster).await, &created), [(1, 1, 0, 1); 3]);
    assert_eq!(holders(&cluster, "a").await, [false, false, false]);
}

// ---------------------------------------------------------------------------
// 9. A list that fails, and one too large
// ---------------------------------------------------------------------------

#[tokio::test]
async fn auto_reads_a_node_whose_list_fails() {
    let cluster = cluster(3).await;
    fault(&cluster, 1, failing(&[NodeOp::List]));
    let ids = ids(AUTO_MIN_ENTRIES);

    let report = committed_batch(&cluster.urls(), "create", &refs(&ids), AUTO).await;

    assert_eq!(
        prior_states(&report),
        [Some("list"), Some("read"), Some("list")]
    );
    let nodes = calls(&cluster).await;
    // The failing list was retried, then given up.
    let (list, get, create, _) = nodes[1];
    assert!(list >= 1, "{:?}", nodes[1]);
    assert_eq!(
        (get, create),
        (AUTO_MIN_ENTRIES, AUTO_MIN_ENTRIES),
        "{:?}",
        nodes[1]
    );
    for i in [0, 2] {
        assert_eq!(nodes[i], (1, 0, AUTO_MIN_ENTRIES, 0), "node {i}");
    }
    assert_every_node_holds(&cluster, &refs(&ids)).await;
}

#[tokio::test]
async fn list_mode_starts_no_group_when_a_list_fails() {
    let cluster = cluster(3).await;
    fault(&cluster, 1, failing(&[NodeOp::List]));

    let report = batch(&cluster.urls(), "create", &["a", "b", "c"], LIST).await;

    assert_refused_for_lists(&report, 3, "a");
    assert_untouched(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_reads_a_node_whose_list_is_larger_than_the_limit() {
    let (cluster, raw, nodes) = raw_between_two(ListReply::Endless).await;
    let ids = ids(AUTO_MIN_ENTRIES);

    let started = Instant::now();
    let report = committed_batch(&nodes, "create", &refs(&ids), AUTO).await;
    let elapsed = started.elapsed();

    // The list was really read up to the limit before it was given up.
    assert!(
        raw.flooded() >= LIST_MAX_BYTES as u64 / 2,
        "the server sent only {} bytes",
        raw.flooded()
    );
    assert_raw_read_and_the_others_listed(&report, &cluster, &raw).await;
    assert!(elapsed < Duration::from_secs(45), "took {elapsed:?}");
}

// ---------------------------------------------------------------------------
// 10. The journal
// ---------------------------------------------------------------------------

/// Every entry of the journal at `path`: each line is `<crc32> <JSON>`.
fn journal_entries(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("journal {}: {e}", path.display()))
        .lines()
        .map(|line| {
            let (_, entry) = line.split_once(' ').expect("a checksum, then JSON");
            serde_json::from_str(entry).unwrap_or_else(|e| panic!("{e}: {line}"))
        })
        .collect()
}

/// The journal's intent for `id`, and the outcome recorded after it.
fn intent_and_outcome<'a>(entries: &'a [Value], id: &str) -> (&'a Value, &'a Value) {
    let of = |kind: &str| {
        let found: Vec<&Value> = entries
            .iter()
            .filter(|e| e["entry"] == kind && e["group_id"] == id)
            .collect();
        assert_eq!(found.len(), 1, "one {kind} of {id}: {entries:#?}");
        found[0]
    };
    (of("intent"), of("outcome"))
}

#[tokio::test]
async fn a_create_from_lists_that_rolls_back_leaves_a_finished_journal() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let cluster = cluster(3).await;
    seed(&cluster, "g", &[0]).await;
    fault(&cluster, 2, failing(&[NodeOp::Create]));

    let extra = [("JOURNAL_PATH", journal.to_str().unwrap())];
    let report = batch_with(&cluster.urls(), "create", &["g"], LIST, &extra).await;

    assert_eq!(report.exit_code, ExitStatus::RolledBack, "{report:#?}");
    assert_eq!(group(&report, "g").outcome, Outcome::RolledBack);
    assert_eq!(prior_states(&report), [Some("list"); 3]);
    // Every node is at its prior state; the node that held the group was
    // neither read nor written.
    assert_eq!(holders(&cluster, "g").await, [true, false, false]);
    assert_eq!(calls(&cluster).await[0], (1, 0, 0, 0));
    // The intent holds the prior states the lists gave, and is finished.
    let entries = journal_entries(&journal);
    let (intent, outcome) = intent_and_outcome(&entries, "g");
    assert_eq!(intent["operation"], "create");
    let priors: Vec<&Value> = intent["nodes"]
        .as_array()
        .expect("the intent's nodes")
        .iter()
        .map(|n| &n["prior"])
        .collect();
    assert_eq!(priors, ["present", "absent", "absent"], "{intent:#}");
    assert_eq!(outcome["outcome"], "rolled_back");
    let (_journal, unfinished) = Journal::open(&journal).unwrap();
    assert!(unfinished.is_empty(), "{unfinished:#?}");
}

#[tokio::test]
async fn a_delete_from_lists_journals_the_listed_records_and_restores_them() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let cluster = cluster(3).await;
    seed(&cluster, "g", &[0, 1, 2]).await;
    fault(
        &cluster,
        2,
        FaultsPatch {
            latency_ms: Some(200),
            ..failing(&[NodeOp::Delete])
        },
    );

    let extra = [("JOURNAL_PATH", journal.to_str().unwrap())];
    let report = batch_with(&cluster.urls(), "delete", &["g"], LIST, &extra).await;

    assert_eq!(report.exit_code, ExitStatus::RolledBack, "{report:#?}");
    assert_eq!(group(&report, "g").outcome, Outcome::RolledBack);
    assert_eq!(holders(&cluster, "g").await, [true, true, true]);
    // No node was read before the delete: each record came from its list.
    // The one read per node is after the undo (nodes 0 and 1) or after the
    // refused delete (node 2).
    for (i, &(list, get, ..)) in calls(&cluster).await.iter().enumerate() {
        assert_eq!((list, get), (1, 1), "node {i}");
    }
    let entries = journal_entries(&journal);
    let (intent, outcome) = intent_and_outcome(&entries, "g");
    assert_eq!(intent["operation"], "delete");
    for node in intent["nodes"].as_array().expect("the intent's nodes") {
        assert_eq!(node["prior"], "present", "{intent:#}");
        assert_eq!(node["record"], json!({"groupId": "g"}), "{intent:#}");
    }
    assert_eq!(outcome["outcome"], "rolled_back");
    let (_journal, unfinished) = Journal::open(&journal).unwrap();
    assert!(unfinished.is_empty(), "{unfinished:#?}");
}
