#![allow(clippy::unwrap_used)]

use serde_json::Value;

use super::*;
use crate::domain::{
    Change, ExitStatus, GroupId, NodeDetail, NodeState, Operation, Outcome, OutcomeCounts, Task,
};
use crate::node_api::RequestTotals;

fn group(id: &str, outcome: Outcome, nodes: usize) -> GroupReport {
    GroupReport {
        group_id: GroupId::new(id).unwrap(),
        operation: Task::Apply(Change::Create),
        outcome,
        reason: Some("why".into()),
        duration_ms: 1,
        nodes: (0..nodes)
            .map(|i| NodeDetail {
                node: format!("http://n{i}"),
                prior: NodeState::Absent,
                final_state: NodeState::Absent,
                written: false,
                compensated: false,
                detail: None,
            })
            .collect(),
        would_write: Vec::new(),
        unsettled: Vec::new(),
    }
}

fn report(groups: Vec<GroupReport>, omitted: u64) -> RunReport {
    RunReport {
        format_version: None,
        operation: Operation::Create,
        dry_run: false,
        shard: None,
        started_at: "2026-11-23T00:00:00.000Z".into(),
        duration_ms: 5,
        exit_code: ExitStatus::Inconsistent,
        stop_reason: None,
        totals: OutcomeCounts::default(),
        requests: RequestTotals::default(),
        nodes: Vec::new(),
        groups,
        groups_omitted: omitted,
        groups_spool: None,
        not_attempted: None,
        recovered: Vec::new(),
        listing: None,
        unlisted: None,
    }
}

fn ids(groups: &[GroupReport]) -> Vec<&str> {
    groups.iter().map(|g| g.group_id.as_str()).collect()
}

#[test]
fn the_sample_stays_within_its_limit_and_prefers_inconsistent_groups() {
    let mut failed = FailedGroups::in_memory();
    failed.limit = 9;
    for i in 0..5 {
        failed.push(group(&format!("r{i}"), Outcome::RolledBack, 3));
    }
    failed.push(group("bad", Outcome::Inconsistent, 3));
    let (kept, omitted, spool) = failed.into_parts();
    assert_eq!(ids(&kept), ["r0", "r1", "bad"]);
    assert_eq!((omitted, spool), (3, None));
}

#[test]
fn the_report_file_lists_every_group_from_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    let mut failed = FailedGroups::spooled_for(&path);
    failed.limit = 4;
    for i in 0..50 {
        failed.push(group(&format!("g{i}"), Outcome::RolledBack, 2));
    }
    let (kept, omitted, spool) = failed.into_parts();
    assert_eq!((kept.len(), omitted), (2, 48));
    let spool = spool.unwrap();
    write_report(&path, &report(kept, omitted), Some(&spool)).unwrap();
    assert!(!spool.exists(), "the spool is removed");
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let listed = written["groups"].as_array().unwrap();
    assert_eq!(listed.len(), 50);
    assert_eq!(listed[49]["group_id"], "g49");
    assert_eq!(listed[0]["nodes"][1]["node"], "http://n1");
    assert_eq!(written["groups_omitted"], 48);
    assert_eq!(written["exit_code"], 3);
}

#[test]
fn the_report_file_is_pretty_with_one_line_per_group() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    write_report(&path, &report(vec![], 0), None).unwrap();
    let empty = std::fs::read_to_string(&path).unwrap();
    assert!(empty.starts_with("{\n  \"duration_ms\": 5,\n"), "{empty}");
    assert!(empty.ends_with(",\n  \"groups\": []\n}\n"), "{empty}");

    let mut failed = FailedGroups::spooled_for(&path);
    failed.push(group("a", Outcome::RolledBack, 1));
    failed.push(group("b", Outcome::Inconsistent, 1));
    let (kept, omitted, spool) = failed.into_parts();
    write_report(&path, &report(kept, omitted), spool.as_deref()).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let node = r#""nodes":[{"node":"http://n0","prior":"absent","state":"absent","written":false,"compensated":false}]"#;
    let expected_groups = format!(
        "  \"groups\": [\n    \
         {{\"group_id\":\"a\",\"operation\":\"create\",\"outcome\":\"rolled_back\",\"reason\":\"why\",\"duration_ms\":1,{node}}},\n    \
         {{\"group_id\":\"b\",\"operation\":\"create\",\"outcome\":\"inconsistent\",\"reason\":\"why\",\"duration_ms\":1,{node}}}\n  \
         ]\n}}\n"
    );
    assert!(text.ends_with(&expected_groups), "{text}");
    assert!(text.contains("\n  \"exit_code\": 3,\n"), "{text}");
}

#[test]
fn without_a_spool_the_report_lists_the_kept_groups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    for groups in [
        vec![],
        vec![
            group("a", Outcome::RolledBack, 1),
            group("b", Outcome::Inconsistent, 1),
        ],
    ] {
        write_report(&path, &report(groups.clone(), 0), None).unwrap();
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let listed: Vec<&str> = written["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["group_id"].as_str().unwrap())
            .collect();
        assert_eq!(listed, ids(&groups));
        assert!(written.get("groups_omitted").is_none());
    }
}

#[test]
fn the_termination_message_fits_whatever_the_groups() {
    let long = "x".repeat(256);
    let mut groups = Vec::new();
    for i in 0..300 {
        let mut g = group(&format!("{i}-{}", &long[..200]), Outcome::RolledBack, 2);
        g.reason = Some("r".repeat(10_000));
        groups.push(g);
    }
    let mut wide = group("wide", Outcome::Inconsistent, 1_000);
    for (i, node) in wide.nodes.iter_mut().enumerate() {
        node.final_state = NodeState::Present;
        node.node = format!("http://{i}{}", "n".repeat(1_000));
    }
    groups.push(wide);
    groups.push(group("bad", Outcome::Inconsistent, 0));
    let message = termination_message(&report(groups, 7));
    assert!(
        message.len() <= TERMINATION_MESSAGE_MAX_BYTES,
        "{}",
        message.len()
    );
    let message: Value = serde_json::from_str(&message).unwrap();
    let listed = message["failed"].as_array().unwrap();
    // The inconsistent groups come first; one too wide to fit is
    // counted, not listed.
    assert_eq!(listed[0]["group_id"], "bad");
    assert_eq!(listed[1]["outcome"], "rolled_back");
    assert!(listed[1]["reason"].as_str().unwrap().chars().count() <= 121);
    assert_eq!(
        message["failed_omitted"].as_u64().unwrap(),
        302 - listed.len() as u64 + 7
    );
    let mut narrow = group("narrow", Outcome::Inconsistent, 10);
    for node in &mut narrow.nodes {
        node.final_state = NodeState::Unknown;
    }
    let message = termination_message(&report(vec![narrow], 0));
    let message: Value = serde_json::from_str(&message).unwrap();
    let entry = &message["failed"][0];
    assert_eq!(entry["nodes"].as_object().unwrap().len(), 4);
    assert_eq!(entry["nodes"]["http://n0"], "unknown");
    assert_eq!(entry["nodes_omitted"], 6);
    assert!(message.get("failed_omitted").is_none());
}
