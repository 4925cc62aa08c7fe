//! `SHARD_COUNT`: one id list split over the pods of an Indexed Job, each a
//! process of its own, with no coordination but the hash of the id.

use std::collections::{BTreeMap, BTreeSet};

use api_consumer::domain::Shard;
use serde_json::Value;

use crate::common::*;

/// 400 distinct ids, then 10 of them again (an id listed twice is one more
/// transaction, in the same shard as its first entry).
fn listed_ids() -> Vec<String> {
    let mut ids: Vec<String> = (0..400)
        .map(|i| format!("tenant-{}/g-{i:03}", i % 9))
        .collect();
    ids.extend((0..10).map(|i| format!("tenant-{}/g-{:03}", (i * 37) % 9, i * 37)));
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_split_one_list_and_create_each_group_once_on_each_node() {
    let cluster = cluster(3).await;
    let nodes = cluster.urls().join(",");
    let dir = tempfile::tempdir().unwrap();
    let ids = listed_ids();
    let file = dir.path().join("ids.txt");
    std::fs::write(&file, ids.join("\n") + "\n").unwrap();
    let file = file.to_str().unwrap().to_owned();

    // All four at once, as an Indexed Job with parallelism 4 runs them.
    let children: Vec<_> = (0..4)
        .map(|index| {
            let report = dir.path().join(format!("report-{index}.json"));
            let index = index.to_string();
            let vars = [
                ("NODES", nodes.as_str()),
                ("OPERATION", "create"),
                ("GROUP_IDS_FILE", file.as_str()),
                ("SHARD_COUNT", "4"),
                ("JOB_COMPLETION_INDEX", index.as_str()),
                ("REPORT_PATH", report.to_str().unwrap()),
            ];
            command(&dir, &vars)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|child| child.wait_with_output().unwrap())
        .collect();

    let mut committed_by: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut entries = Vec::new();
    for (index, output) in outputs.iter().enumerate() {
        let index = index as u32;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "shard {index}: {stdout}");
        let lines = json_lines(&output.stdout);
        let summary = lines.last().unwrap();
        assert_eq!(summary["message"], "run summary");
        assert_eq!(summary["shard"], index);
        assert_eq!(summary["shard_count"], 4);
        assert_eq!(summary["list_entries"], 410);
        for line in lines.iter().filter(|l| l["message"] == "group committed") {
            let id = line["group_id"].as_str().unwrap().to_owned();
            assert_eq!(Shard::of(&id, 4), index, "{id} committed by shard {index}");
            committed_by.entry(id).or_default().push(index);
        }
        let report: Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(format!("report-{index}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(report["shard"]["index"], index);
        assert_eq!(report["shard"]["count"], 4);
        assert_eq!(report["shard"]["list_entries"], 410);
        let own = report["shard"]["entries"].as_u64().unwrap();
        let expected = ids.iter().filter(|id| Shard::of(id, 4) == index).count() as u64;
        assert_eq!(own, expected, "shard {index}");
        assert_eq!(report["totals"]["groups"], own);
        entries.push(own);
    }
    // Every listed entry handled by exactly one shard; every distinct id
    // committed by one process only (a repeated entry commits again, with
    // nothing left to write, in the same process).
    assert_eq!(entries.iter().sum::<u64>(), 410);
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(committed_by.len(), distinct.len());
    for (id, by) in &committed_by {
        let listed = ids.iter().filter(|i| *i == id).count();
        assert_eq!(by.len(), listed, "{id}: {by:?}");
        assert!(by.iter().all(|&shard| shard == by[0]), "{id}: {by:?}");
    }
    // Balanced: the largest share at most 1.3 times the mean (100).
    let mut sizes = [0u64; 4];
    for id in &distinct {
        sizes[Shard::of(id, 4) as usize] += 1;
    }
    assert!(sizes.iter().all(|&n| n <= 130), "{sizes:?}");

    // Every node holds every group, each created by one request.
    for state in states(&cluster).await {
        let held: BTreeSet<&String> = state.groups.iter().collect();
        assert_eq!(held, distinct);
        assert_eq!(
            count(&state.requests, "create"),
            400,
            "{:?}",
            state.requests
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_shard_settings_exit_2_before_any_request() {
    let cluster = cluster(2).await;
    let nodes = cluster.urls().join(",");
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("SHARD_COUNT", "4")], "SHARD_COUNT"),
        (&[("SHARD_COUNT", "0"), ("SHARD_INDEX", "0")], "SHARD_COUNT"),
        (&[("SHARD_COUNT", "4"), ("SHARD_INDEX", "4")], "SHARD_INDEX"),
        (
            &[("SHARD_COUNT", "4"), ("JOB_COMPLETION_INDEX", "x")],
            "JOB_COMPLETION_INDEX",
        ),
        // An Indexed Job without SHARD_COUNT.
        (&[("JOB_COMPLETION_INDEX", "3")], "JOB_COMPLETION_INDEX"),
    ];
    for (settings, variable) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut vars = vec![
            ("NODES", nodes.as_str()),
            ("OPERATION", "create"),
            ("GROUP_IDS", "a,b,c"),
        ];
        vars.extend_from_slice(settings);
        let output = command(&dir, &vars).output().unwrap();
        assert_config_error(&output, variable);
    }
    for state in states(&cluster).await {
        assert!(
            state.requests.values().all(|&n| n == 0),
            "{:?}",
            state.requests
        );
    }
}

#[tokio::test]
async fn a_shard_prunes_only_its_own_groups_and_counts_them_for_prune_max() {
    let cluster = cluster(3).await;
    // Groups on every node, none of them listed: what a prune finds.
    let extra: Vec<String> = (0..40).map(|i| format!("old-{i}")).collect();
    for id in &extra {
        seed(&cluster, id, &[0, 1, 2]).await;
    }
    let own: Vec<&String> = extra.iter().filter(|id| Shard::of(id, 2) == 0).collect();
    let others = extra.len() - own.len();
    assert!(!own.is_empty() && others > 0);
    // The guard counts this shard's groups only: the whole cluster has more
    // than PRUNE_MAX unlisted groups, this shard exactly PRUNE_MAX.
    let prune_max = own.len().to_string();
    let report = run_on(
        &cluster,
        "reconcile",
        &["keep-1", "keep-2", "keep-3"],
        &[
            ("PRUNE", "true"),
            ("PRUNE_MAX", &prune_max),
            ("SHARD_COUNT", "2"),
            ("SHARD_INDEX", "0"),
        ],
    )
    .await;
    assert_eq!(u8::from(report.exit_code), 0, "{report:#?}");
    let unlisted = report.unlisted.as_ref().unwrap();
    assert_eq!(unlisted.groups, own.len() as u64);
    for state in states(&cluster).await {
        for id in &extra {
            let held = state.groups.contains(id);
            assert_eq!(held, Shard::of(id, 2) == 1, "{id}");
        }
        // The listed ids of shard 0 were made present, shard 1's were not
        // touched.
        for id in ["keep-1", "keep-2", "keep-3"] {
            assert_eq!(
                state.groups.iter().any(|g| g == id),
                Shard::of(id, 2) == 0,
                "{id}"
            );
        }
    }
    // One group over the guard in this shard: nothing of it is pruned.
    let report = run_on(
        &cluster,
        "reconcile",
        &["keep-1"],
        &[
            ("PRUNE", "true"),
            ("PRUNE_MAX", "0"),
            ("SHARD_COUNT", "2"),
            ("SHARD_INDEX", "1"),
        ],
    )
    .await;
    assert_eq!(u8::from(report.exit_code), 1);
    assert!(report.unlisted.unwrap().prune_refused.is_some());
    for state in states(&cluster).await {
        assert_eq!(
            state
                .groups
                .iter()
                .filter(|g| g.starts_with("old-"))
                .count(),
            others
        );
    }
}

#[tokio::test]
async fn verify_without_ids_checks_the_shards_own_groups() {
    let cluster = cluster(2).await;
    let held: Vec<String> = (0..30).map(|i| format!("v-{i}")).collect();
    for id in &held {
        seed(&cluster, id, &[0, 1]).await;
    }
    let mut checked = 0;
    for index in ["0", "1", "2"] {
        let vars = [
            ("NODES", cluster.urls().join(",")),
            ("OPERATION", "verify".to_owned()),
            ("SHARD_COUNT", "3".to_owned()),
            ("SHARD_INDEX", index.to_owned()),
        ];
        let config = api_consumer::config::Config::from_vars(
            vars.into_iter().map(|(k, v)| (k.to_owned(), v)),
        )
        .unwrap();
        let report = run(&config).await;
        let index: u32 = index.parse().unwrap();
        let own = held.iter().filter(|id| Shard::of(id, 3) == index).count() as u64;
        assert_eq!(report.totals.groups, own);
        assert_eq!(report.totals.consistent_present, own);
        assert_eq!(report.listing.as_ref().unwrap().groups_found, own);
        checked += own;
    }
    assert_eq!(checked, 30);
}
