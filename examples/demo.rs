//! The demo: the job against an embedded cluster of three simulated nodes,
//! one of them flaky, in three scenarios:
//!
//! 1. **default**: node 3 throttles and fails now and then; every group
//!    commits after retries with backoff (and `Retry-After`);
//! 2. **error on add**: node 3 refuses every create; the groups that landed
//!    on nodes 1 and 2 are rolled back, and a group that existed before the
//!    run survives;
//! 3. **error on remove**: node 3 fails every delete; the records deleted
//!    from nodes 1 and 2 are restored;
//! 4. **two-phase nodes**: the nodes switch to the two-phase session
//!    protocol (`NODE_PROTOCOL=two-phase`): a group is prepared on every node,
//!    then committed; a group another session holds on node 3 is left alone,
//!    the run's own intentions are released, and none is left behind.
//!
//! Run it with `cargo run --example demo`. Logs are the job's own (pretty by
//! default here; `LOG_FORMAT=json` shows what `kubectl logs` would).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use api_consumer::config::Config;
use api_consumer::engine::Control;
use api_consumer::job::run_job;
use api_consumer::output::telemetry;
use node_sim::NodeOp;
use node_sim::{FaultsPatch, Protocol};
use node_sim::{SimCluster, SimOptions};

struct Scenario {
    title: &'static str,
    operation: &'static str,
    groups: &'static str,
    flaky: FaultsPatch,
    two_phase: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let format = std::env::var("LOG_FORMAT").unwrap_or_else(|_| "pretty".to_string());
    let options = SimOptions {
        seed: 7,
        ..SimOptions::default()
    };
    let cluster = SimCluster::start(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, 3, options).await?;
    let nodes = cluster.urls().join(",");
    let first = cluster
        .nodes()
        .first()
        .ok_or_else(|| anyhow::anyhow!("no node started"))?;
    // A group that exists on node 1 before the run: a rollback must keep it.
    first.insert_group("team-ops").await?;

    let scenarios = [
        Scenario {
            title: "1/4 default: a flaky node, retried until every group commits",
            operation: "create",
            groups: "team-alpha,team-beta,team-gamma",
            flaky: FaultsPatch {
                throttle_rate: Some(0.3),
                retry_after_secs: Some(1),
                unavailable_rate: Some(0.3),
                ..FaultsPatch::default()
            },
            two_phase: false,
        },
        Scenario {
            title: "2/4 error on add: node 3 refuses creates; the run rolls back",
            operation: "create",
            groups: "team-delta,team-ops",
            flaky: FaultsPatch {
                throttle_rate: Some(0.0),
                unavailable_rate: Some(0.0),
                fail_rate: Some(1.0),
                fail_ops: Some(vec![NodeOp::Create]),
                ..FaultsPatch::default()
            },
            two_phase: false,
        },
        Scenario {
            title: "3/4 error on remove: node 3 fails deletes; deleted records are restored",
            operation: "delete",
            groups: "team-alpha,team-beta",
            flaky: FaultsPatch {
                fail_rate: Some(1.0),
                fail_ops: Some(vec![NodeOp::Delete]),
                ..FaultsPatch::default()
            },
            two_phase: false,
        },
        Scenario {
            title: "4/4 two-phase nodes: prepare everywhere, then commit; another session's group is left alone",
            operation: "create",
            groups: "team-epsilon,team-zeta",
            flaky: FaultsPatch {
                fail_rate: Some(0.0),
                ..FaultsPatch::default()
            },
            two_phase: true,
        },
    ];

    let mut logging = false;
    for scenario in scenarios {
        let flaky = cluster
            .nodes()
            .get(2)
            .ok_or_else(|| anyhow::anyhow!("node 3 missing"))?;
        flaky.set_faults(scenario.flaky.clone())?;
        println!("\n=== {} ===", scenario.title);
        if scenario.two_phase {
            for node in cluster.nodes() {
                node.set_faults(FaultsPatch {
                    protocol: Some(Protocol::TwoPhase),
                    ..FaultsPatch::default()
                })?;
            }
            // Another session's intention on node 3, never committed: it
            // blocks team-zeta there until the node restarts.
            api_consumer::node_api::install_tls_provider();
            let held = reqwest::Client::new()
                .post(format!("{}/v1/group", flaky.url()))
                .json(&serde_json::json!({"groupId": "team-zeta", "sessionId": "another-team"}))
                .send()
                .await?;
            println!(
                "another session prepared team-zeta on node 3: {}",
                held.status()
            );
        }
        let protocol = if scenario.two_phase {
            "two-phase"
        } else {
            "standard"
        };
        let vars = [
            ("NODES", nodes.as_str()),
            ("OPERATION", scenario.operation),
            ("GROUP_IDS", scenario.groups),
            ("MAX_RETRIES", "6"),
            ("RETRY_BASE_DELAY_MS", "100"),
            ("RETRY_MAX_DELAY_MS", "2000"),
            ("LOG_FORMAT", format.as_str()),
            ("NODE_PROTOCOL", protocol),
        ];
        let config = Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))?;
        if !logging {
            telemetry::init(config.log_format, &config.log_level)?;
            logging = true;
        }
        let report = run_job(&config, Arc::new(Control::default())).await?;
        let t = &report.totals;
        println!(
            "run summary: {} committed, {} rolled back, {} inconsistent; exit code {}",
            t.committed,
            t.rolled_back,
            t.inconsistent,
            u8::from(report.exit_code)
        );
        for (i, node) in cluster.nodes().iter().enumerate() {
            let state = node.state();
            println!("  node {} holds {:?}", i + 1, state.groups);
            for intention in state.intentions {
                println!(
                    "    and an intention of session {} to {:?} {}",
                    intention.session_id, intention.operation, intention.group_id
                );
            }
        }
    }
    cluster.shutdown().await;
    Ok(())
}
