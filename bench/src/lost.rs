//! S9: lost answers. The same batch against nodes that answer every write
//! (no faults), then against nodes that lose 1 % of the writes' answers:
//! they apply the write and answer `500` (`--ambiguous-rate 0.01
//! --fail-ops create`), so the job cannot tell whether its write landed and
//! keeps a window (`WRITE_SETTLE_MS`) in which it may still land. Once with
//! the default window of 10 s, once with none: the difference is what the
//! window costs. A group whose read-back finds the state its write would
//! leave goes on at once; the run itself waits out the last window and reads
//! those nodes once more before it ends, so the window is paid once per run,
//! not once per lost answer.

use anyhow::Result;
use serde_json::{json, Value};

use crate::sim::NodeSim;
use crate::{all_committed, env, expect_groups, ids, round, Bench};

const NODES: usize = 3;
const LATENCY_MS: &str = "20";
const LOST: &str = "0.01";
/// The job's default `WRITE_SETTLE_MS`.
const WINDOW_MS: u64 = 10_000;

/// One batch of creates against fresh nodes started with `flags`; returns
/// the run's milliseconds, its requests and the writes answered `500`.
fn batch(bench: &Bench, ids: &[String], flags: &[&str], window: &str) -> Result<Value> {
    let mut all = vec!["--latency-ms", LATENCY_MS, "--seed", "9"];
    all.extend_from_slice(flags);
    let sim = NodeSim::start(&bench.node_sim, NODES, &all)?;
    let mut settings = env(&[
        ("PRIOR_STATE", "list"),
        ("CONCURRENCY", "64"),
        ("NODE_CONCURRENCY", "8"),
    ]);
    if !window.is_empty() {
        settings.push(("WRITE_SETTLE_MS", window.to_string()));
    }
    let run = bench.job(&sim.urls, "create", ids, &settings).run()?;
    all_committed(&run, ids.len())?;
    expect_groups(&sim, ids.len())?;
    let lost: u64 = sim.states()?.iter().map(|s| s.status_500).sum();
    let ms = run.duration_ms().max(1);
    Ok(json!({
        "duration_ms": ms,
        "groups_per_s": round(ids.len() as f64 * 1000.0 / ms as f64, 1),
        "requests": run.requests(),
        "answers_lost": lost,
    }))
}

pub fn s9_lost_answers(bench: &Bench) -> Result<Value> {
    let groups = if bench.quick { 150 } else { 1_500 };
    let ids = ids("s9", groups);
    let lossy = ["--ambiguous-rate", LOST, "--fail-ops", "create"];
    eprintln!("bench: S9: {NODES} nodes at {LATENCY_MS} ms, {groups} groups, no lost answers");
    let clean = batch(bench, &ids, &[], "")?;
    eprintln!("bench: S9: {LOST} of the creates' answers lost, default WRITE_SETTLE_MS");
    let windowed = batch(bench, &ids, &lossy, "")?;
    eprintln!("bench: S9: the same with WRITE_SETTLE_MS=0");
    let unwindowed = batch(bench, &ids, &lossy, "0")?;
    let ms = |v: &Value| v["duration_ms"].as_u64().unwrap_or(u64::MAX);
    let cost = ms(&windowed).saturating_sub(ms(&unwindowed));
    Ok(json!({
        "scenario": "S9",
        "name": "lost answers",
        "inputs": {
            "nodes": NODES,
            "node_sim": format!("--latency-ms {LATENCY_MS}; then --ambiguous-rate {LOST} --fail-ops create"),
            "groups": groups,
            "operation": "create",
            "job_env": "PRIOR_STATE=list, CONCURRENCY=64, NODE_CONCURRENCY=8; WRITE_SETTLE_MS default (10000), then 0",
        },
        "measured": {
            "no_lost_answers": clean,
            "lost_answers_window": windowed,
            "lost_answers_no_window": unwindowed,
            "window_cost_ms": cost,
        },
        "target": "every group committed; the window costs at most WRITE_SETTLE_MS + 1 s over the run without one",
        "pass": cost <= WINDOW_MS + 1_000,
    }))
}
