//! S8: slow nodes kept busy. Nodes that answer in 20 ms, with
//! `NODE_CONCURRENCY=8`, can serve at most 400 requests/s each; the job
//! should keep every node at that bound through the batch. The same batch
//! runs with the prior state read per group (`PRIOR_STATE=read`, two
//! requests per group and node) and from node lists (`list`, one). A sweep
//! over node latencies of 1, 5, 20 and 50 ms draws groups/s for both.

use anyhow::Result;
use serde_json::{json, Value};

use crate::plot::{self, LatencyPoint};
use crate::sim::NodeSim;
use crate::{all_committed, env, ids, round, Bench};

const NODES: usize = 3;
const LATENCY_MS: u64 = 20;
const NODE_CONCURRENCY: u64 = 8;
/// Requests per second one node can serve: its slots over its latency.
const NODE_BOUND: f64 = NODE_CONCURRENCY as f64 * 1000.0 / LATENCY_MS as f64;

/// One batch of creates against `sim`; returns the run's seconds and each
/// node's requests.
fn batch(bench: &Bench, sim: &NodeSim, ids: &[String], source: &str) -> Result<(f64, Vec<u64>)> {
    sim.reset()?;
    let settings = env(&[
        ("PRIOR_STATE", source),
        ("CONCURRENCY", "64"),
        ("NODE_CONCURRENCY", "8"),
    ]);
    let run = bench.job(&sim.urls, "create", ids, &settings).run()?;
    all_committed(&run, ids.len())?;
    Ok((
        run.duration_ms().max(1) as f64 / 1000.0,
        run.node_requests(),
    ))
}

/// Groups/s against node latency, reads against lists, drawn to the
/// latency plot.
fn sweep(bench: &Bench, groups: usize) -> Result<Value> {
    let latencies: &[u64] = if bench.quick {
        &[1, 20]
    } else {
        &[1, 5, 20, 50]
    };
    let ids = ids("s8-sweep", groups);
    let mut points = Vec::new();
    for &latency in latencies {
        eprintln!("bench: S8: sweep at {latency} ms");
        let latency_flag = latency.to_string();
        let sim = NodeSim::start(&bench.node_sim, NODES, &["--latency-ms", &latency_flag])?;
        let (read_s, _) = batch(bench, &sim, &ids, "read")?;
        let (list_s, _) = batch(bench, &sim, &ids, "list")?;
        points.push(LatencyPoint {
            latency_ms: latency,
            read_groups_per_s: groups as f64 / read_s,
            list_groups_per_s: groups as f64 / list_s,
        });
    }
    if let Some(dir) = bench.latency_svg.parent() {
        std::fs::create_dir_all(dir)?;
    }
    plot::latency(&bench.latency_svg, &points, groups)?;
    Ok(json!({
        "plot": bench.latency_svg.display().to_string(),
        "points": points.iter().map(|p| json!({
            "latency_ms": p.latency_ms,
            "read_groups_per_s": round(p.read_groups_per_s, 1),
            "list_groups_per_s": round(p.list_groups_per_s, 1),
            "list_over_read": round(p.list_groups_per_s / p.read_groups_per_s.max(f64::MIN_POSITIVE), 2),
        })).collect::<Vec<_>>(),
    }))
}

pub fn s8_slow_nodes(bench: &Bench) -> Result<Value> {
    let groups = if bench.quick { 120 } else { 600 };
    let latency = LATENCY_MS.to_string();
    let sim = NodeSim::start(&bench.node_sim, NODES, &["--latency-ms", &latency])?;
    let ids = ids("s8", groups);
    let mut measured = serde_json::Map::new();
    let mut rates = Vec::new();
    let mut list_utilisation = 0f64;
    for source in ["read", "list"] {
        eprintln!(
            "bench: S8: PRIOR_STATE={source}, {NODES} nodes at {LATENCY_MS} ms, {groups} groups"
        );
        let (seconds, node_requests) = batch(bench, &sim, &ids, source)?;
        let groups_per_s = groups as f64 / seconds;
        // Each node's requests over the run, against what it can serve.
        let utilisation = node_requests
            .iter()
            .map(|&requests| requests as f64 / seconds / NODE_BOUND)
            .fold(f64::INFINITY, f64::min);
        if source == "list" {
            list_utilisation = utilisation;
        }
        rates.push(groups_per_s);
        measured.insert(
            source.to_string(),
            json!({
                "duration_ms": (seconds * 1000.0).round(),
                "groups_per_s": round(groups_per_s, 1),
                "node_requests": node_requests,
                "least_node_utilisation": round(utilisation, 3),
            }),
        );
    }
    let speedup = rates[1] / rates[0].max(f64::MIN_POSITIVE);
    measured.insert("list_over_read".to_string(), json!(round(speedup, 2)));
    drop(sim);
    measured.insert("latency_sweep".to_string(), sweep(bench, groups)?);
    Ok(json!({
        "scenario": "S8",
        "name": "slow nodes",
        "inputs": {
            "nodes": NODES,
            "node_sim": format!("--latency-ms {LATENCY_MS}"),
            "groups": groups,
            "operation": "create",
            "job_env": "CONCURRENCY=64, NODE_CONCURRENCY=8, PRIOR_STATE=read, then list",
            "node_bound_requests_per_s": NODE_BOUND,
        },
        "measured": measured,
        "target": "groups/s with list >= 1.8 x with read; every node served >= 0.9 of its 400 requests/s with list",
        "pass": speedup >= 1.8 && list_utilisation >= 0.9,
    }))
}
