//! Seeded randomized transactions: random prior states, random fault mixes,
//! random operations (create, delete, and reconcile with prune: half the
//! round's groups listed, the others pruned); after every batch every node
//! is read through `/_sim/state` and I1–I3 and the exit code are checked for
//! every group. Even rounds take the prior state from node lists
//! (`PRIOR_STATE=list`), odd rounds read it per group.
//!
//! `RANDOMIZED_SEED` picks the seed (default fixed, so a failure reproduces);
//! `RANDOMIZED_ROUNDS` scales the number of batches.
//!
//! The late-writes suites give nodes write latency around the job's
//! `REQUEST_TIMEOUT_MS`, so that writes land after the job stopped waiting
//! for them, with a `WRITE_SETTLE_MS` window that covers every one; the
//! nodes are observed once every write has landed. `LATE_WRITES_SEED` and
//! `LATE_WRITES_ROUNDS` pick their seed and scale them.

use std::collections::{BTreeMap, BTreeSet};

use std::time::Duration;

use api_consumer::domain::Change;
use api_consumer::domain::ExitStatus;
use api_consumer::domain::{NodeState, Outcome, StopReason};
use api_consumer::output::report::RunReport;
use node_sim::NodeOp;
use node_sim::{Faults, FaultsPatch, Protocol, SimState};
use node_sim::{SimCluster, SimNode, SimOptions};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::common::*;

const NODES: usize = 5;
const GROUPS_PER_ROUND: usize = 25;

fn rate(rng: &mut SmallRng) -> f64 {
    const RATES: [f64; 6] = [0.0, 0.0, 0.05, 0.15, 0.3, 1.0];
    RATES[rng.random_range(0..RATES.len())]
}

/// A random fault mix: most nodes mildly flaky, now and then one that fails
/// a whole kind of call.
fn random_faults(rng: &mut SmallRng) -> FaultsPatch {
    let all = [NodeOp::Create, NodeOp::Delete, NodeOp::Get];
    let mut ops: Vec<NodeOp> = all.into_iter().filter(|_| rng.random_bool(0.7)).collect();
    if ops.is_empty() {
        ops.push(all[rng.random_range(0..all.len())]);
    }
    let mut patch = FaultsPatch {
        fail_rate: Some(rate(rng)),
        ambiguous_rate: Some(rate(rng)),
        unavailable_rate: Some(rate(rng)),
        throttle_rate: Some(if rng.random_bool(0.2) { 0.1 } else { 0.0 }),
        retry_after_secs: Some(0),
        timeout_rate: Some(if rng.random_bool(0.2) { 0.1 } else { 0.0 }),
        hang_ms: Some(500),
        latency_ms: Some(0),
        write_latency_ms: Some(0),
        jitter_ms: Some(rng.random_range(0..3)),
        rate_limit: Some(0),
        fail_ops: Some(ops),
        max_in_flight: Some(0),
        protocol: None,
    };
    // Keep most rounds converging: a 1.0 rate on every call leaves nothing
    // but prior-state failures to test.
    if rng.random_bool(0.5) {
        patch.fail_rate = Some(patch.fail_rate.unwrap_or(0.0).min(0.3));
        patch.ambiguous_rate = Some(patch.ambiguous_rate.unwrap_or(0.0).min(0.3));
        patch.unavailable_rate = Some(patch.unavailable_rate.unwrap_or(0.0).min(0.3));
    }
    patch
}

fn held(states: &[SimState]) -> Vec<BTreeSet<String>> {
    states
        .iter()
        .map(|s| s.groups.iter().cloned().collect())
        .collect()
}

fn state_of(present: bool) -> NodeState {
    if present {
        NodeState::Present
    } else {
        NodeState::Absent
    }
}

/// What a round runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create,
    Delete,
    /// Reconcile with prune: the listed half of the groups created, the
    /// other half deleted (pruned).
    Reconcile,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Delete => "delete",
            Kind::Reconcile => "reconcile",
        }
    }
}

/// One round's groups: each one's prior state on every node and the
/// operation it should go through.
struct Round {
    kind: Kind,
    priors: BTreeMap<String, Vec<bool>>,
    operations: BTreeMap<String, Change>,
}

impl Round {
    /// The ids the job is given: every group, or for a reconcile the
    /// desired (created) half.
    fn listed(&self) -> Vec<&str> {
        self.operations
            .iter()
            .filter(|(_, &op)| self.kind != Kind::Reconcile || op == Change::Create)
            .map(|(id, _)| id.as_str())
            .collect()
    }
}

/// Checks I1–I3 for every group of one round against what the nodes hold.
fn check_round(
    round: u64,
    report: &RunReport,
    plan: &Round,
    after: &[BTreeSet<String>],
    urls: &[String],
) -> BTreeMap<Outcome, u64> {
    let prune_refused = report
        .unlisted
        .as_ref()
        .is_some_and(|u| u.prune_refused.is_some());
    let mut outcomes = BTreeMap::new();
    if report.stop_reason == Some(StopReason::ListsUnavailable) {
        // PRIOR_STATE=list and a node could not list (a node restarting):
        // no group started, and no node changed.
        for (id, prior) in &plan.priors {
            let actual: Vec<bool> = after.iter().map(|held| held.contains(id)).collect();
            assert_eq!(&actual, prior, "round {round} group {id}: no group started");
        }
        assert_eq!(
            report.totals.not_started, report.totals.groups,
            "round {round}"
        );
        outcomes.insert(Outcome::NotStarted, plan.priors.len() as u64);
        return outcomes;
    }
    let detailed: BTreeMap<&str, _> = report
        .groups
        .iter()
        .map(|g| (g.group_id.as_str(), g))
        .collect();
    let not_attempted = report.not_attempted.as_ref().map_or(0, |n| n.count);
    let (mut absent, mut left_as_they_were) = (0u64, 0u64);
    for (id, prior) in &plan.priors {
        let operation = plan.operations[id];
        let goal = operation == Change::Create;
        let actual: Vec<bool> = after.iter().map(|held| held.contains(id)).collect();
        let ctx =
            format!("round {round} group {id} {operation}: prior {prior:?} actual {actual:?}");
        let pruned = plan.kind == Kind::Reconcile && operation == Change::Delete;
        if pruned && (prune_refused || prior.iter().all(|&p| !p)) {
            // Nothing pruned (or nothing to prune): the group is as it was.
            assert_eq!(
                &actual, prior,
                "prune refused, yet the group changed: {ctx}"
            );
            assert!(!detailed.contains_key(id.as_str()), "{ctx}");
            // Counted apart: left as it was, no transaction ran.
            *outcomes.entry(Outcome::Unchanged).or_insert(0) += 1;
            continue;
        }
        // I2: what existed before a create, or was absent before a delete,
        // is never undone.
        for (node, (&before, &now)) in prior.iter().zip(&actual).enumerate() {
            if before == goal {
                assert_eq!(now, goal, "I2 violated on node {node}: {ctx}");
            }
        }
        let outcome = detailed
            .get(id.as_str())
            .map_or(Outcome::Committed, |g| g.outcome);
        if outcome == Outcome::Committed && not_attempted > 0 {
            // Not in the report: committed, or not attempted (a node stayed
            // down); either way all or nothing, and no more left at their
            // prior state than were not attempted.
            absent += 1;
            if !actual.iter().all(|&p| p == goal) {
                assert_eq!(&actual, prior, "I1 not attempted: {ctx}");
                left_as_they_were += 1;
            }
            continue;
        }
        *outcomes.entry(outcome).or_insert(0) += 1;
        match outcome {
            Outcome::Committed => {
                assert!(actual.iter().all(|&p| p == goal), "I1 committed: {ctx}");
            }
            Outcome::RolledBack | Outcome::NotStarted => {
                assert_eq!(&actual, prior, "I1 rolled back: {ctx}");
            }
            Outcome::ConsistentPresent
            | Outcome::ConsistentAbsent
            | Outcome::Unknown
            | Outcome::Unchanged
            | Outcome::WouldChange => panic!("not an outcome of a transaction: {ctx}"),
            Outcome::Inconsistent => {
                let g = detailed[id.as_str()];
                let named: BTreeSet<&str> = g.diverged_nodes().map(|n| n.node.as_str()).collect();
                for (node, detail) in g.nodes.iter().enumerate() {
                    if detail.final_state != NodeState::Unknown {
                        assert_eq!(
                            detail.final_state,
                            state_of(actual[node]),
                            "I3 reported state of node {node}: {ctx}\n{g:#?}"
                        );
                    }
                    if actual[node] != prior[node] {
                        assert!(
                            named.contains(urls[node].as_str()),
                            "I3 node {node} diverged but is not named: {ctx}\n{g:#?}"
                        );
                    }
                }
                assert!(
                    !actual.iter().all(|&p| p == goal)
                        || g.nodes.iter().any(|n| n.final_state == NodeState::Unknown),
                    "inconsistent but every node is at the goal: {ctx}\n{g:#?}"
                );
            }
        }
    }
    if not_attempted > 0 {
        assert!(
            left_as_they_were <= not_attempted && not_attempted <= absent,
            "round {round}: {left_as_they_were} groups unchanged and {absent} not reported, {not_attempted} not attempted"
        );
        *outcomes.entry(Outcome::NotStarted).or_insert(0) += not_attempted;
        *outcomes.entry(Outcome::Committed).or_insert(0) += absent - not_attempted;
    }
    outcomes
}

fn expected_exit(report: &RunReport) -> ExitStatus {
    let t = &report.totals;
    let prune_refused = report
        .unlisted
        .as_ref()
        .is_some_and(|u| u.prune_refused.is_some());
    if t.inconsistent > 0 {
        ExitStatus::Inconsistent
    } else if t.rolled_back + t.not_started > 0 || prune_refused {
        ExitStatus::RolledBack
    } else {
        ExitStatus::AllAtGoal
    }
}

/// How hostile a series of rounds is.
struct Chaos {
    seed: u64,
    rounds: u64,
    /// Latency, server-side rate limits and throttling with `Retry-After`
    /// on top of the failure rates.
    every_knob: bool,
    /// One node is killed and restarted (keeping its data file) during each
    /// round.
    restarts: bool,
    /// The nodes speak the two-phase session protocol (docs/TWO_PHASE.md),
    /// and no intention of the job's may be left unreported.
    two_phase: bool,
    /// Writes that land after the job stopped waiting for them: see
    /// [`late_writes`].
    late_writes: bool,
    /// Node health on (docs/FLOW_CONTROL.md), and one node killed in each
    /// round: back with its data within the run's `NODE_DOWN_WAIT_SECS`,
    /// or not before the run ends. Needs `restarts`.
    outages: bool,
}

/// Latency, rate limit and throttling for [`Chaos::every_knob`]: small
/// enough that a request always answers within the job's timeout.
fn more_knobs(rng: &mut SmallRng, patch: FaultsPatch) -> FaultsPatch {
    FaultsPatch {
        latency_ms: Some(rng.random_range(0..8)),
        jitter_ms: Some(rng.random_range(0..5)),
        rate_limit: Some(if rng.random_bool(0.1) { 400 } else { 0 }),
        throttle_rate: Some(if rng.random_bool(0.3) { 0.1 } else { 0.0 }),
        retry_after_secs: Some(u64::from(rng.random_bool(0.05))),
        ..patch
    }
}

/// The job's `REQUEST_TIMEOUT_MS` in the rounds of [`Chaos::late_writes`]:
/// short, so that writes outlasting it keep the rounds fast.
const LATE_REQUEST_TIMEOUT_MS: u64 = 50;

/// How far `WRITE_SETTLE_MS` is set beyond the longest a write of the round
/// can take to land, and how long the observer waits beyond the longest a
/// write can run: room for a loaded machine.
const SETTLE_MARGIN_MS: u64 = 150;

/// Late writes for [`Chaos::late_writes`], on top of `patch`: a write latency
/// of none, half, one and a half or two and a half times the job's request
/// timeout, so that some nodes answer writes in time and others apply them
/// after the job gave up (every attempt of theirs times out, retries
/// included); an injected hang short enough to end soon after the job gave
/// up on it.
fn late_writes(rng: &mut SmallRng, patch: FaultsPatch) -> FaultsPatch {
    const HALVES: [u64; 4] = [0, 1, 3, 5];
    let halves = HALVES[rng.random_range(0..HALVES.len())];
    let mild = |rate: Option<f64>| Some(rate.unwrap_or(0.0).min(0.3));
    FaultsPatch {
        fail_rate: mild(patch.fail_rate),
        ambiguous_rate: mild(patch.ambiguous_rate),
        unavailable_rate: mild(patch.unavailable_rate),
        write_latency_ms: Some(halves * LATE_REQUEST_TIMEOUT_MS / 2),
        hang_ms: Some(LATE_REQUEST_TIMEOUT_MS * 3 / 2),
        ..patch
    }
}

/// A node that refuses every create and delete (`500`, nothing applied), so
/// that the groups it must change roll back while late writes land on the
/// others.
fn refusing() -> FaultsPatch {
    FaultsPatch {
        fail_rate: Some(1.0),
        ambiguous_rate: Some(0.0),
        fail_ops: Some(vec![NodeOp::Create, NodeOp::Delete]),
        ..FaultsPatch::default()
    }
}

/// The longest a write on a node with `faults` can take between its arrival
/// and the moment it is applied.
fn longest_landing_ms(faults: &Faults) -> u64 {
    faults.latency_ms + faults.jitter_ms + faults.write_latency_ms
}

/// The longest a write on a node with `faults` can run before its answer is
/// ready (delivered or not): its landing, then an injected hang.
fn longest_write_ms(faults: &Faults) -> u64 {
    let hangs = faults.timeout_rate > 0.0 && faults.fail_ops.iter().any(|op| op.is_write());
    longest_landing_ms(faults) + if hangs { faults.hang_ms } else { 0 }
}

/// Whether every request the nodes received has ended, answered or not: a
/// node counts each answer it sends, and each write whose answer found no
/// client. A read whose client had gone is counted in neither (nor, now and
/// then, a write whose client went just as its answer was handed over), so
/// this may stay false after every request has ended: its callers also wait
/// out the longest a request can run.
fn idle(nodes: &[SimNode]) -> bool {
    nodes.iter().all(|node| {
        let state = node.state();
        let received: u64 = state.requests.values().sum();
        let ended: u64 = state.responses.values().sum();
        received == ended + state.undelivered_writes
    })
}

/// Every node's writes whose answer found no client.
fn undelivered(nodes: &[SimNode]) -> u64 {
    nodes.iter().map(|n| n.state().undelivered_writes).sum()
}

/// Kills node `index` after a while and brings it back on the same port
/// after `down` (`None`: left down; the round restarts it after the run).
async fn kill_and_restart(
    cluster: &SimCluster,
    index: usize,
    after: Duration,
    down: Option<Duration>,
) {
    tokio::time::sleep(after).await;
    let node = &cluster.nodes()[index];
    node.kill().await;
    if let Some(down) = down {
        tokio::time::sleep(down).await;
        node.restart().await.expect("restart");
    }
}

/// Every hazard off: each series names the ones it turns on.
const CALM: Chaos = Chaos {
    seed: 0,
    rounds: 0,
    every_knob: false,
    restarts: false,
    two_phase: false,
    late_writes: false,
    outages: false,
};

impl Chaos {
    /// Runs every round and checks every group; returns the outcome totals.
    async fn run(&self) -> BTreeMap<Outcome, u64> {
        // An outage kills a node that restarts from its data file.
        assert!(!self.outages || self.restarts, "outages need restarts");
        let mut rng = SmallRng::seed_from_u64(self.seed);
        let data = tempfile::tempdir().expect("temp dir");
        let options = SimOptions {
            seed: self.seed,
            data_file: self.restarts.then(|| data.path().join("nodes.json")),
            faults: Faults {
                protocol: if self.two_phase {
                    Protocol::TwoPhase
                } else {
                    Protocol::Standard
                },
                ..Faults::default()
            },
        };
        let cluster = cluster_with(NODES, options).await;
        let urls = cluster.urls();
        let mut totals: BTreeMap<Outcome, u64> = BTreeMap::new();
        let mut prune_transactions = 0u64;
        let mut intentions_left = 0u64;
        let mut late_landings = 0u64;
        let mut outages_given_up = 0u64;
        let mut nodes_down = 0u64;
        for round in 0..self.rounds {
            let plan = seed_round(&cluster, &mut rng, round).await;
            for node in cluster.nodes() {
                let mut faults = random_faults(&mut rng);
                if self.every_knob {
                    faults = more_knobs(&mut rng, faults);
                }
                if self.late_writes {
                    faults = late_writes(&mut rng, faults);
                }
                node.set_faults(faults).expect("faults");
            }
            if self.late_writes {
                let refuser = rng.random_range(0..NODES);
                cluster.nodes()[refuser]
                    .set_faults(refusing())
                    .expect("faults");
            }
            let round_faults: Vec<Faults> = cluster.nodes().iter().map(SimNode::faults).collect();
            let landing = round_faults.iter().map(longest_landing_ms).max();
            let running = round_faults.iter().map(longest_write_ms).max();
            // Covers every write of the round: the condition under which the
            // job promises its invariants.
            let write_settle_ms = (landing.unwrap_or(0) + SETTLE_MARGIN_MS).to_string();
            let late_timeout_ms = LATE_REQUEST_TIMEOUT_MS.to_string();
            let undelivered_before = undelivered(cluster.nodes());
            let ids = plan.listed();
            let prune = if plan.kind == Kind::Reconcile {
                "true"
            } else {
                "false"
            };
            let extra = [
                ("MAX_RETRIES", "3"),
                ("RETRY_BASE_DELAY_MS", "1"),
                ("RETRY_MAX_DELAY_MS", "5"),
                ("REQUEST_TIMEOUT_MS", "250"),
                ("CONCURRENCY", "8"),
                ("NODE_CONCURRENCY", "4"),
                ("PRUNE", prune),
                ("PRUNE_MAX", "1000"),
                // Both ways of learning the prior state, round by round.
                ("PRIOR_STATE", if round % 2 == 0 { "list" } else { "read" }),
                (
                    "NODE_PROTOCOL",
                    if self.two_phase {
                        "two-phase"
                    } else {
                        "standard"
                    },
                ),
            ];
            let mut extra = extra.to_vec();
            if self.late_writes {
                // These override the settings above.
                extra.extend([
                    ("REQUEST_TIMEOUT_MS", late_timeout_ms.as_str()),
                    ("WRITE_SETTLE_MS", write_settle_ms.as_str()),
                    // Every group at once: the rounds wait out windows, not
                    // requests.
                    ("CONCURRENCY", "25"),
                    ("MAX_RETRIES", "1"),
                    ("NODE_CONCURRENCY", "25"),
                ]);
            }
            // Two-phase rounds keep a journal, one per round (the nodes are
            // reset between rounds): what a round could not release is
            // released by the next run that opens it (below).
            let journal = data.path().join(format!("journal-{round}"));
            let journal = journal.to_str().expect("a UTF-8 temp path");
            if self.two_phase {
                extra.push(("JOURNAL_PATH", journal));
            }
            // An outage the run rides out, or one it gives up on: the node
            // stays down past a wait of 0 or 1 s.
            let outage = self.outages.then(|| {
                let back = rng.random_bool(0.6);
                let waits: &[&'static str] = if back { &["1", "3"] } else { &["0", "1"] };
                let wait = waits[rng.random_range(0..waits.len())];
                let down = Duration::from_millis(rng.random_range(10..600));
                (back.then_some(down), wait)
            });
            if let Some((_, wait)) = outage {
                extra.extend([
                    ("NODE_DOWN_AFTER_FAILURES", "5"),
                    ("NODE_DOWN_WAIT_SECS", wait),
                ]);
            }
            let config = config(&urls, plan.kind.as_str(), &ids, &extra);
            let report = if self.restarts {
                let victim = rng.random_range(0..NODES);
                // A reconcile's node goes down after the lists (a few ms on
                // loopback), so that its prune is exercised under the
                // restarts; a prune refused for a missing list has tests of
                // its own (reconcile.rs).
                let after = if plan.kind == Kind::Reconcile {
                    Duration::from_millis(rng.random_range(30..70))
                } else {
                    Duration::from_millis(rng.random_range(0..40))
                };
                let down = match outage {
                    Some((down, _)) => down,
                    None => Some(Duration::from_millis(rng.random_range(10..120))),
                };
                let restart = kill_and_restart(&cluster, victim, after, down);
                let report = tokio::join!(run(&config), restart).0;
                if !cluster.nodes()[victim].is_running().await {
                    cluster.nodes()[victim].restart().await.expect("restart");
                }
                if down.is_none() {
                    outages_given_up += 1;
                }
                report
            } else {
                run(&config).await
            };
            // Every write the nodes received, the late ones included, has
            // landed and ended before they are observed: the job sent none
            // after it returned.
            if self.late_writes {
                let limit = running.unwrap_or(0) + SETTLE_MARGIN_MS;
                wait_for(Duration::from_millis(limit), || idle(cluster.nodes())).await;
            }
            // Read every node as an outside observer, with faults off.
            for node in cluster.nodes() {
                node.set_faults(no_faults()).expect("faults off");
            }
            let observed = states(&cluster).await;
            // A restarted node counts from 0 again.
            late_landings += undelivered(cluster.nodes()).saturating_sub(undelivered_before);
            let after = held(&observed);
            let outcomes = check_round(round, &report, &plan, &after, &urls);
            let left = check_intentions(round, &report, &observed);
            if left > 0 {
                // With the faults off, the next run with the journal releases
                // every intention the round left: none of the job's remains.
                let next = crate::common::config(
                    &urls,
                    "create",
                    &["after-the-round"],
                    &[("NODE_PROTOCOL", "two-phase"), ("JOURNAL_PATH", journal)],
                );
                run(&next).await;
                for (node, state) in states(&cluster).await.iter().enumerate() {
                    assert!(
                        state.intentions.is_empty(),
                        "round {round}: node {node} still holds {:?} after the journal's run",
                        state.intentions
                    );
                }
            }
            intentions_left += left;
            nodes_down += report
                .nodes
                .iter()
                .filter_map(|n| n.health.as_ref())
                .map(|h| u64::from(h.times_down))
                .sum::<u64>();
            assert_eq!(report.exit_code, expected_exit(&report), "round {round}");
            let pruned = report
                .unlisted
                .as_ref()
                .filter(|u| u.prune_refused.is_none())
                .map_or(0, |u| u.groups);
            assert_eq!(
                report.totals.groups,
                ids.len() as u64 + pruned,
                "round {round}"
            );
            prune_transactions += pruned;
            for (outcome, n) in outcomes {
                *totals.entry(outcome).or_insert(0) += n;
            }
        }
        eprintln!("of which prune transactions (reconcile with PRUNE=true): {prune_transactions}");
        if self.two_phase {
            eprintln!("intentions of the job's left on a node, each reported, then released by the journal's next run: {intentions_left}");
        }
        if self.late_writes {
            eprintln!("writes carried out after the job stopped waiting for their answer (undelivered_writes): {late_landings}");
            assert!(
                late_landings > 0,
                "no write landed late: the rounds prove little"
            );
        }
        if self.outages {
            eprintln!("nodes gone down: {nodes_down}; outages not over before the run ended: {outages_given_up}");
            assert!(nodes_down > 0, "no node went down: the rounds prove little");
        }
        if self.rounds >= 12 {
            assert!(prune_transactions > 0, "no reconcile round pruned anything");
        }
        totals
    }
}

/// Every intention a node still holds after a round belongs to a group
/// reported inconsistent, on that node, with the session that may hold it:
/// a transaction that says committed or rolled back leaves none behind.
/// Returns how many there were.
fn check_intentions(round: u64, report: &RunReport, states: &[SimState]) -> u64 {
    let mut left = 0;
    for (node, state) in states.iter().enumerate() {
        for intention in &state.intentions {
            let group = report
                .groups
                .iter()
                .find(|g| g.group_id.as_str() == intention.group_id);
            let reported = group.is_some_and(|g| {
                g.outcome == Outcome::Inconsistent
                    && g.nodes.get(node).is_some_and(|n| {
                        n.detail
                            .as_deref()
                            .is_some_and(|d| d.contains(&intention.session_id))
                    })
            });
            assert!(
                reported,
                "round {round}: node {node} holds an intention nobody reported: {intention:?}\n{group:#?}"
            );
            left += 1;
        }
    }
    left
}

fn no_faults() -> FaultsPatch {
    FaultsPatch {
        fail_rate: Some(0.0),
        ambiguous_rate: Some(0.0),
        unavailable_rate: Some(0.0),
        throttle_rate: Some(0.0),
        timeout_rate: Some(0.0),
        latency_ms: Some(0),
        write_latency_ms: Some(0),
        jitter_ms: Some(0),
        rate_limit: Some(0),
        ..FaultsPatch::default()
    }
}

/// Resets the nodes and gives every group of the round a random prior
/// state; a third of the groups start consistent.
async fn seed_round(cluster: &SimCluster, rng: &mut SmallRng, round: u64) -> Round {
    for node in cluster.nodes() {
        node.reset().await.expect("reset");
    }
    let kind = match rng.random_range(0..3) {
        0 => Kind::Create,
        1 => Kind::Delete,
        _ => Kind::Reconcile,
    };
    let mut priors = BTreeMap::new();
    let mut operations = BTreeMap::new();
    for g in 0..GROUPS_PER_ROUND {
        let id = format!("r{round}-g{g}");
        let prior: Vec<bool> = match rng.random_range(0..6) {
            0 => vec![true; NODES],
            1 => vec![false; NODES],
            _ => (0..NODES).map(|_| rng.random_bool(0.5)).collect(),
        };
        for (node, &present) in cluster.nodes().iter().zip(&prior) {
            if present {
                node.insert_group(&id).await.expect("seed group");
            }
        }
        let operation = match kind {
            Kind::Create => Change::Create,
            Kind::Delete => Change::Delete,
            // The even groups are the desired set, the odd ones pruned.
            Kind::Reconcile if g % 2 == 0 => Change::Create,
            Kind::Reconcile => Change::Delete,
        };
        operations.insert(id.clone(), operation);
        priors.insert(id, prior);
    }
    Round {
        kind,
        priors,
        operations,
    }
}

fn assert_every_path(name: &str, totals: &BTreeMap<Outcome, u64>) {
    let transactions: u64 = totals.values().sum();
    eprintln!("{name}: {transactions} transactions over {NODES} nodes: {totals:?}");
    for outcome in [Outcome::Committed, Outcome::RolledBack] {
        assert!(
            totals.get(&outcome).copied().unwrap_or(0) > 0,
            "no {outcome:?} in {totals:?}: the mix proves little"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_transactions_keep_every_invariant() {
    let chaos = Chaos {
        seed: env_number("RANDOMIZED_SEED", 20_261_123),
        rounds: env_number("RANDOMIZED_ROUNDS", 48),
        ..CALM
    };
    let totals = chaos.run().await;
    assert_eq!(
        totals.values().sum::<u64>(),
        chaos.rounds * GROUPS_PER_ROUND as u64
    );
    assert_every_path("randomized", &totals);
}

/// Every knob of the simulator and a node killed and restarted in every
/// round. `CHAOS_ROUNDS` scales it (`.ci/run` runs 400 rounds: 10,000
/// transactions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_with_every_knob_and_node_restarts_keeps_every_invariant() {
    let chaos = Chaos {
        seed: env_number("CHAOS_SEED", 77),
        rounds: env_number("CHAOS_ROUNDS", 12),
        every_knob: true,
        restarts: true,
        ..CALM
    };
    let totals = chaos.run().await;
    assert_every_path("chaos", &totals);
}

/// The randomized rounds against nodes that speak the two-phase protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_two_phase_transactions_keep_every_invariant() {
    let chaos = Chaos {
        seed: env_number("RANDOMIZED_SEED", 20_261_201),
        rounds: env_number("RANDOMIZED_ROUNDS", 48),
        two_phase: true,
        ..CALM
    };
    let totals = chaos.run().await;
    assert_every_path("randomized two-phase", &totals);
}

/// Every knob and node restarts (which drop every intention a node holds)
/// against two-phase nodes. `CHAOS_ROUNDS` scales it as the standard one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_two_phase_with_every_knob_and_node_restarts_keeps_every_invariant() {
    let chaos = Chaos {
        seed: env_number("CHAOS_SEED", 78),
        rounds: env_number("CHAOS_ROUNDS", 12),
        every_knob: true,
        restarts: true,
        two_phase: true,
        ..CALM
    };
    let totals = chaos.run().await;
    assert_every_path("chaos two-phase", &totals);
}

/// Node health on, and one node killed in every round (on top of every
/// knob): back with its data within the wait, or not before the run ends
/// with a wait of 0 or 1 s. `OUTAGE_ROUNDS` scales it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_outages_keep_every_invariant() {
    let chaos = Chaos {
        seed: env_number("OUTAGE_SEED", 20_261_203),
        rounds: env_number("OUTAGE_ROUNDS", 24),
        every_knob: true,
        restarts: true,
        outages: true,
        ..CALM
    };
    let totals = chaos.run().await;
    assert_every_path("node outages", &totals);
}

/// The node outages against two-phase nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_outages_two_phase_keep_every_invariant() {
    let chaos = Chaos {
        seed: env_number("OUTAGE_SEED", 20_261_204),
        rounds: env_number("OUTAGE_ROUNDS", 24),
        every_knob: true,
        restarts: true,
        two_phase: true,
        outages: true,
        ..CALM
    };
    let totals = chaos.run().await;
    assert_every_path("node outages two-phase", &totals);
}

/// The randomized rounds with late writes: some nodes apply writes after the
/// job's request timeout (see [`late_writes`]), one refuses writes so that
/// groups roll back while late writes land, and `WRITE_SETTLE_MS` covers
/// every write. `LATE_WRITES_ROUNDS` scales it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_writes_randomized_transactions_keep_every_invariant() {
    let chaos = Chaos {
        seed: env_number("LATE_WRITES_SEED", 20_261_202),
        rounds: env_number("LATE_WRITES_ROUNDS", 80),
        late_writes: true,
        ..CALM
    };
    let totals = chaos.run().await;
    assert_eq!(
        totals.values().sum::<u64>(),
        chaos.rounds * GROUPS_PER_ROUND as u64
    );
    assert_every_path("late writes", &totals);
}

/// The late-writes rounds against nodes that speak the two-phase protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_writes_randomized_two_phase_transactions_keep_every_invariant() {
    let chaos = Chaos {
        seed: env_number("LATE_WRITES_SEED", 20_261_203),
        rounds: env_number("LATE_WRITES_ROUNDS", 80),
        two_phase: true,
        late_writes: true,
        ..CALM
    };
    let totals = chaos.run().await;
    assert_every_path("late writes two-phase", &totals);
}
