//! S6: memory of the runs that list the nodes (`GET /v1/groups`): a
//! reconcile (which lists every node before its first write) and a verify
//! without ids (which lists, then reads every group found), against nodes
//! that hold many groups, next to the same runs against nodes that hold a
//! hundredth of them.

use std::io::Write as _;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::sim::NodeSim;
use crate::{round, Bench};

/// Peak RSS the listing runs must stay within with 100,000 groups per node.
const LIMIT_BYTES: u64 = 64_000_000;
const NODES: usize = 3;

/// A node-sim data file in which every node holds `held` groups. Written
/// as a stream: the job's peak RSS (`ru_maxrss`) counts the memory of the
/// process it was forked from before `exec`, so the harness stays small.
fn data_file(bench: &Bench, held: usize) -> Result<std::path::PathBuf> {
    let path = bench.scratch.path().join(format!("s6-{held}.json"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    write!(out, "{{\"nodes\": {{")?;
    for node in 0..NODES {
        let comma = if node == 0 { "" } else { "," };
        write!(out, "{comma}\"{node}\": [")?;
        for i in 0..held {
            let comma = if i == 0 { "" } else { "," };
            write!(out, "{comma}\"bench-s6-{held}-{i:05}\"")?;
        }
        write!(out, "]")?;
    }
    writeln!(out, "}}}}")?;
    out.flush()?;
    Ok(path)
}

fn mb(kib: u64) -> f64 {
    round(kib as f64 * 1024.0 / 1e6, 1)
}

pub fn s6_listing_memory(bench: &Bench) -> Result<Value> {
    let (small, large) = if bench.quick {
        (100, 10_000)
    } else {
        (1_000, 100_000)
    };
    let mut runs = Vec::new();
    let mut peaks = Vec::new();
    for held in [small, large] {
        eprintln!("bench: S6: {NODES} nodes x {held} groups each");
        let path = data_file(bench, held)?;
        let path = path.to_string_lossy().into_owned();
        let sim = NodeSim::start(&bench.node_sim, NODES, &["--data-file", &path])?;
        let listed = ["s6-desired".to_string()];
        let reconcile = bench.job(&sim.urls, "reconcile", &listed, &[]).run()?;
        let unlisted = reconcile.report["unlisted"]["groups"].as_u64();
        if reconcile.exit_code() != 0 || unlisted != Some(held as u64) {
            bail!(
                "reconcile over {held} groups: exit {}, unlisted {unlisted:?}",
                reconcile.exit_code()
            );
        }
        let verify = bench.job(&sim.urls, "verify", &[], &[]).run()?;
        let consistent = verify.summary["consistent_present"].as_u64();
        // The reconcile's own group is on every node too.
        if verify.exit_code() != 0 || consistent != Some(held as u64 + 1) {
            bail!(
                "verify over {held} groups: exit {}, consistent {consistent:?}",
                verify.exit_code()
            );
        }
        peaks.push((reconcile.process.max_rss_kib, verify.process.max_rss_kib));
        runs.push(json!({
            "groups_per_node": held,
            "reconcile": {
                "peak_rss_mb": mb(reconcile.process.max_rss_kib),
                "duration_ms": reconcile.duration_ms(),
                "requests": reconcile.requests(),
            },
            "verify_without_ids": {
                "peak_rss_mb": mb(verify.process.max_rss_kib),
                "duration_ms": verify.duration_ms(),
                "requests": verify.requests(),
            },
        }));
    }
    let (small_peaks, large_peaks) = (peaks[0], peaks[1]);
    let worst = large_peaks.0.max(large_peaks.1);
    Ok(json!({
        "scenario": "S6",
        "name": "listing memory",
        "inputs": {
            "nodes": NODES,
            "groups_per_node": [small, large],
            "runs": "reconcile of 1 listed id (lists every node), verify without ids (lists, then reads every group)",
            "job_env": "defaults (CONCURRENCY=16, NODE_CONCURRENCY=8)",
        },
        "measured": {
            "runs": runs,
            "reconcile_ratio_to_small": round(large_peaks.0 as f64 / small_peaks.0.max(1) as f64, 2),
            "verify_ratio_to_small": round(large_peaks.1 as f64 / small_peaks.1.max(1) as f64, 2),
            "peak_rss_mb": mb(worst),
            "source": "wait4 ru_maxrss of the job process",
        },
        "target": "peak RSS <= 64 MB (64,000,000 bytes) with 100,000 groups on each node",
        "pass": bench.quick || worst * 1024 <= LIMIT_BYTES,
    }))
}
