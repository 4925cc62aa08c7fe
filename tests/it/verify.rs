//! Verify: with ids (a read of every group on every node), and by discovery
//! through `GET /v1/groups`, with the list endpoint in every accepted shape
//! and in hostile ones. Every run talks real HTTP to `node-sim` nodes on
//! loopback, or to a raw node (raw_node.rs) that answers the list as the
//! test chooses.

use std::time::{Duration, Instant};

use api_consumer::domain::{ExitStatus, NodeState, Outcome, Task};
use api_consumer::node_api::LIST_MAX_BYTES;
use node_sim::NodeOp;

use crate::common::*;
use crate::raw_node::{ListReply, RawNode};

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

    let report = run_bounded(&config(&cluster.urls(), "verify", &[], &[])).await;

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
    let report = run_bounded(&config(&cluster.urls(), "verify", &[], &[])).await;
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal, "{report:#?}");
    assert_eq!(report.totals.groups, 0);
    assert_eq!(listing_of(&report).nodes_listed, 3);
    assert_eq!(listing_of(&report).groups_found, 0);

    for id in ["x", "y"] {
        seed(&cluster, id, &[0, 1, 2]).await;
    }
    let report = run_bounded(&config(&cluster.urls(), "verify", &[], &[])).await;
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

    let report = run_bounded(&config(&nodes, "verify", &[], &[])).await;

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
    fault(&cluster, 2, failing(&[NodeOp::List]));

    let report = run_bounded(&config(&cluster.urls(), "verify", &[], &[])).await;

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
// 4. List shapes, accepted and hostile
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
        let config = config(std::slice::from_ref(&raw.url), "verify", &[], &[]);
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
    let report = run_bounded(&config(std::slice::from_ref(&raw.url), "verify", &[], &[])).await;
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
        let report = run_bounded(&config(std::slice::from_ref(&raw.url), "verify", &[], &[])).await;
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
    let config = config(std::slice::from_ref(&raw.url), "verify", &[], &extra);
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
    let sent = raw.flooded();
    assert!(
        sent > limit / 2 && sent < limit + 32 * 1024 * 1024,
        "the server sent {sent} bytes"
    );
    assert!(elapsed < HANG_BOUND, "took {elapsed:?}");
}
