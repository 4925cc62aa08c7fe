//! S7: requests per group and node, with the prior state read per group
//! (`PRIOR_STATE=read`) and taken from node lists (`PRIOR_STATE=list`), in
//! the same run: 3 nodes, 3,000 groups, create then delete, nodes empty
//! first.

use anyhow::Result;
use serde_json::{json, Value};

use crate::sim::NodeSim;
use crate::{all_committed, env, expect_groups, ids, round, Bench};

const NODES: usize = 3;
const TARGET: f64 = 1.1;

/// Requests per group and node of one run: what every node was sent, over
/// the groups.
fn per_group(requests: &[u64], groups: usize) -> f64 {
    let most = requests.iter().copied().max().unwrap_or(0);
    most as f64 / groups.max(1) as f64
}

pub fn s7_requests_per_group(bench: &Bench) -> Result<Value> {
    let groups = if bench.quick { 300 } else { 3_000 };
    let sim = NodeSim::start(&bench.node_sim, NODES, &[])?;
    let ids = ids("s7", groups);
    let mut measured = serde_json::Map::new();
    let mut list_worst = 0f64;
    for source in ["read", "list"] {
        eprintln!("bench: S7: PRIOR_STATE={source}, {NODES} nodes x {groups} groups");
        sim.reset()?;
        let settings = env(&[("PRIOR_STATE", source)]);
        let create = bench.job(&sim.urls, "create", &ids, &settings).run()?;
        all_committed(&create, groups)?;
        expect_groups(&sim, groups)?;
        let delete = bench.job(&sim.urls, "delete", &ids, &settings).run()?;
        all_committed(&delete, groups)?;
        expect_groups(&sim, 0)?;
        let (c, d) = (
            per_group(&create.node_requests(), groups),
            per_group(&delete.node_requests(), groups),
        );
        if source == "list" {
            list_worst = c.max(d);
        }
        measured.insert(
            source.to_string(),
            json!({
                "create": {"requests_per_group_per_node": round(c, 3), "duration_ms": create.duration_ms()},
                "delete": {"requests_per_group_per_node": round(d, 3), "duration_ms": delete.duration_ms()},
            }),
        );
    }
    Ok(json!({
        "scenario": "S7",
        "name": "requests per group",
        "inputs": {
            "nodes": NODES,
            "groups": groups,
            "operations": "create, then delete, nodes empty first",
            "job_env": "PRIOR_STATE=read, then list; defaults otherwise",
        },
        "measured": measured,
        "target": "requests per group per node <= 1.1 with PRIOR_STATE=list, for create and for delete",
        "pass": list_worst <= TARGET,
    }))
}
