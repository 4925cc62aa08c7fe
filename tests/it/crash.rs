//! The job killed with SIGKILL at random points of a batch, then run again.
//!
//! - Without a journal, a rerun of the same input rolls forward: every group
//!   ends at its goal on every node, and no group that existed before a
//!   create is lost, whenever the kill came.
//! - With a journal, a rerun with *another* input first returns every group
//!   the killed run left unfinished to all-or-nothing (its goal everywhere,
//!   or every node back at its prior state, deleted records restored); a
//!   rerun of the same input then brings every group to its goal.
//!
//! `CRASH_POINTS` sets the number of kills per mode (default 50, so 100 in
//! all); `CRASH_SEED` the seed.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use node_sim::FaultsPatch;
use node_sim::SimCluster;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::common::*;

const NODES: usize = 4;
const GROUPS: usize = 24;

/// One batch: its operation, ids and the prior state of every group.
struct Batch {
    operation: &'static str,
    priors: BTreeMap<String, Vec<bool>>,
}

impl Batch {
    async fn seed(cluster: &SimCluster, rng: &mut SmallRng, round: u64) -> Batch {
        for node in cluster.nodes() {
            node.reset().await.unwrap();
        }
        let operation = if rng.random_bool(0.5) {
            "create"
        } else {
            "delete"
        };
        let mut priors = BTreeMap::new();
        for g in 0..GROUPS {
            let id = format!("k{round}-{g}");
            let prior: Vec<bool> = match rng.random_range(0..4) {
                0 => vec![operation == "delete"; NODES],
                _ => (0..NODES).map(|_| rng.random_bool(0.5)).collect(),
            };
            for (node, &present) in cluster.nodes().iter().zip(&prior) {
                if present {
                    node.insert_group(&id).await.unwrap();
                }
            }
            priors.insert(id, prior);
        }
        Batch { operation, priors }
    }

    fn goal(&self) -> bool {
        self.operation == "create"
    }

    fn ids(&self) -> String {
        self.priors.keys().cloned().collect::<Vec<_>>().join(",")
    }

    /// Checks, with the nodes as they are now, that what existed before a
    /// create (or was absent before a delete) is untouched.
    async fn assert_nothing_lost(&self, cluster: &SimCluster, context: &str) {
        let after = states(cluster).await;
        for (id, prior) in &self.priors {
            for (node, &before) in prior.iter().enumerate() {
                if before == self.goal() {
                    let now = after[node].groups.contains(id);
                    assert_eq!(now, before, "{context}: {id} changed on node {node}");
                }
            }
        }
    }

    /// How many groups are now neither at their goal everywhere nor at their
    /// prior state everywhere.
    async fn partial(&self, cluster: &SimCluster) -> usize {
        let positions = self.positions(cluster).await;
        positions
            .iter()
            .filter(|(_, goal, prior)| !goal && !prior)
            .count()
    }

    /// `(at goal everywhere, every node at its prior state)` per group.
    async fn positions(&self, cluster: &SimCluster) -> Vec<(String, bool, bool)> {
        let after = states(cluster).await;
        self.priors
            .iter()
            .map(|(id, prior)| {
                let now: Vec<bool> = after.iter().map(|s| s.groups.contains(id)).collect();
                let at_goal = now.iter().all(|&p| p == self.goal());
                (id.clone(), at_goal, &now == prior)
            })
            .collect()
    }
}

fn job(cluster: &SimCluster, dir: &tempfile::TempDir, operation: &str, ids: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_api-consumer"));
    cmd.env_clear()
        .current_dir(dir.path())
        .env("NODES", cluster.urls().join(","))
        .env("OPERATION", operation)
        .env("GROUP_IDS", ids)
        .env("CONCURRENCY", "8")
        // One request at a time per node: the writes of a group leave for
        // different nodes at different times, so a kill often falls between.
        .env("NODE_CONCURRENCY", "1")
        .env("RETRY_BASE_DELAY_MS", "5")
        .env("RETRY_MAX_DELAY_MS", "20")
        // The nodes apply a write within 9 ms, also after the job has gone:
        // a killed run's writes have all landed 200 ms after it started.
        .env("WRITE_SETTLE_MS", "200")
        .stdout(Stdio::null());
    cmd
}

/// Starts the job and kills it with SIGKILL after `after`. Node 1 answers
/// 503 now and then while the job runs, so some groups are retrying.
async fn kill_after(cluster: &SimCluster, mut cmd: Command, after: Duration) {
    let flaky = |rate| FaultsPatch {
        unavailable_rate: Some(rate),
        ..FaultsPatch::default()
    };
    cluster.nodes()[0].set_faults(flaky(0.2)).unwrap();
    let mut child = cmd.spawn().expect("spawn the job");
    tokio::time::sleep(after).await;
    let _ = child.kill();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    cluster.nodes()[0].set_faults(flaky(0.0)).unwrap();
}

async fn run_to_end(mut cmd: Command) -> i32 {
    tokio::task::spawn_blocking(move || cmd.status().expect("run the job"))
        .await
        .unwrap()
        .code()
        .unwrap_or(-1)
}

async fn slow_cluster(seed: u64) -> SimCluster {
    let cluster = cluster_with(
        NODES,
        node_sim::SimOptions {
            seed,
            ..Default::default()
        },
    )
    .await;
    for node in cluster.nodes() {
        node.set_faults(FaultsPatch {
            latency_ms: Some(1),
            jitter_ms: Some(8),
            ..FaultsPatch::default()
        })
        .unwrap();
    }
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_runs_roll_forward_on_rerun_without_a_journal() {
    let seed = env_number("CRASH_SEED", 7);
    let points = env_number("CRASH_POINTS", 50);
    let mut rng = SmallRng::seed_from_u64(seed);
    let cluster = slow_cluster(seed).await;
    let dir = tempfile::tempdir().unwrap();
    let mut partial = 0;
    for round in 0..points {
        let batch = Batch::seed(&cluster, &mut rng, round).await;
        let at = Duration::from_millis(rng.random_range(10..150));
        kill_after(
            &cluster,
            job(&cluster, &dir, batch.operation, &batch.ids()),
            at,
        )
        .await;
        let context = format!("round {round} ({}) killed at {at:?}", batch.operation);
        batch.assert_nothing_lost(&cluster, &context).await;
        partial += batch.partial(&cluster).await;
        let code = run_to_end(job(&cluster, &dir, batch.operation, &batch.ids())).await;
        assert_eq!(code, 0, "{context}: the rerun exits 0");
        for (id, at_goal, _) in batch.positions(&cluster).await {
            assert!(
                at_goal,
                "{context}: {id} is not at its goal after the rerun"
            );
        }
        batch.assert_nothing_lost(&cluster, &context).await;
    }
    eprintln!("crash without journal: {points} kill points, {partial} groups caught half-applied");
    assert!(partial > 0, "no kill landed in the middle of a group");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_resolves_a_killed_run_even_when_the_input_changed() {
    let seed = env_number("CRASH_SEED", 7) + 1;
    let points = env_number("CRASH_POINTS", 50);
    let mut rng = SmallRng::seed_from_u64(seed);
    let cluster = slow_cluster(seed).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let mut partial = 0;
    for round in 0..points {
        let batch = Batch::seed(&cluster, &mut rng, round).await;
        let at = Duration::from_millis(rng.random_range(10..150));
        let mut killed = job(&cluster, &dir, batch.operation, &batch.ids());
        killed.env("JOURNAL_PATH", &journal);
        kill_after(&cluster, killed, at).await;
        let context = format!("round {round} ({}) killed at {at:?}", batch.operation);
        batch.assert_nothing_lost(&cluster, &context).await;
        partial += batch.partial(&cluster).await;
        // The next run works on another group; the journal must still bring
        // every group of the killed run to all-or-nothing.
        let mut next = job(&cluster, &dir, "create", &format!("other-{round}"));
        next.env("JOURNAL_PATH", &journal);
        assert_eq!(run_to_end(next).await, 0, "{context}: the next run exits 0");
        for (id, at_goal, at_prior) in batch.positions(&cluster).await {
            assert!(
                at_goal || at_prior,
                "{context}: {id} is neither at its goal nor at its prior state"
            );
        }
        batch.assert_nothing_lost(&cluster, &context).await;
        // And the same input again, with the journal: every group at its goal.
        let mut rerun = job(&cluster, &dir, batch.operation, &batch.ids());
        rerun.env("JOURNAL_PATH", &journal);
        assert_eq!(run_to_end(rerun).await, 0, "{context}: the rerun exits 0");
        for (id, at_goal, _) in batch.positions(&cluster).await {
            assert!(
                at_goal,
                "{context}: {id} is not at its goal after the rerun"
            );
        }
        batch.assert_nothing_lost(&cluster, &context).await;
    }
    eprintln!("crash with journal: {points} kill points, {partial} groups caught half-applied, all resolved");
    assert!(partial > 0, "no kill landed in the middle of a group");
}

/// The journal against two-phase nodes (docs/TWO_PHASE.md, "The journal"):
/// a killed run may leave intentions of its session on the nodes, which no
/// read can see and nothing but a restart would clear. The next run releases
/// every one of them: each group of the killed run ends at all-or-nothing,
/// and no node holds an intention any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_releases_what_a_killed_two_phase_run_left() {
    let seed = env_number("CRASH_SEED", 7) + 2;
    let points = env_number("CRASH_POINTS", 50).div_ceil(2);
    let mut rng = SmallRng::seed_from_u64(seed);
    // Start-up faults, which every round's reset restores.
    let cluster = cluster_with(
        NODES,
        node_sim::SimOptions {
            seed,
            faults: node_sim::Faults {
                protocol: node_sim::Protocol::TwoPhase,
                latency_ms: 1,
                jitter_ms: 8,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let two_phase = |mut cmd: Command| {
        cmd.env("JOURNAL_PATH", &journal)
            .env("NODE_PROTOCOL", "two-phase");
        cmd
    };
    let (mut caught, mut released) = (0, 0);
    for round in 0..points {
        let batch = Batch::seed(&cluster, &mut rng, round).await;
        let at = Duration::from_millis(rng.random_range(10..150));
        kill_after(
            &cluster,
            two_phase(job(&cluster, &dir, batch.operation, &batch.ids())),
            at,
        )
        .await;
        let context = format!("round {round} ({}) killed at {at:?}", batch.operation);
        batch.assert_nothing_lost(&cluster, &context).await;
        caught += batch.partial(&cluster).await;
        released += states(&cluster)
            .await
            .iter()
            .map(|s| s.intentions.len())
            .sum::<usize>();
        let mut next = two_phase(job(&cluster, &dir, "create", &format!("other-{round}")));
        next.stdout(Stdio::piped());
        let output = tokio::task::spawn_blocking(move || next.output().expect("run the job"))
            .await
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{context}: the next run exits 0:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        for (id, at_goal, at_prior) in batch.positions(&cluster).await {
            assert!(
                at_goal || at_prior,
                "{context}: {id} is neither at its goal nor at its prior state"
            );
        }
        for (node, state) in states(&cluster).await.iter().enumerate() {
            assert!(
                state.intentions.is_empty(),
                "{context}: node {node} still holds {:?}",
                state.intentions
            );
        }
        batch.assert_nothing_lost(&cluster, &context).await;
        let rerun = two_phase(job(&cluster, &dir, batch.operation, &batch.ids()));
        assert_eq!(run_to_end(rerun).await, 0, "{context}: the rerun exits 0");
        for (id, at_goal, _) in batch.positions(&cluster).await {
            assert!(
                at_goal,
                "{context}: {id} is not at its goal after the rerun"
            );
        }
    }
    eprintln!(
        "two-phase crash with journal: {points} kill points, {caught} groups caught half-visible, {released} intentions left by killed runs, all released"
    );
    assert!(released > 0, "no kill left an intention behind");
}
