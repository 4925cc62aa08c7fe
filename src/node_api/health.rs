//! A node's health for the run, a circuit breaker with three states
//! (docs/FLOW_CONTROL.md):
//!
//! - **up**: requests go to the node;
//! - **down**: the node failed `NODE_DOWN_AFTER_FAILURES` attempts in a row,
//!   or at least [`RATIO_FAILED`] of the last [`RATIO_WINDOW`] with at least
//!   [`RATIO_MIN_ATTEMPTS`] of them. Requests wait for it (no new group
//!   starts, see the run's dispatcher) until a probe brings it back or
//!   `NODE_DOWN_WAIT_SECS` runs out; from then on a request to it fails at
//!   once, unsent, and the run starts no more groups;
//! - **probing**: one read is on its way to a down node; it answers, the node
//!   is up again, or it fails, the node is down again and the next probe
//!   waits twice as long (with jitter, from [`PROBE_FIRST`] to
//!   [`PROBE_MAX`]).
//!
//! Transport errors, timeouts and `5xx` answers are failures; any other
//! answer (`4xx` included) is a success. A `503` within [`SHED_GRACE`] of
//! a success is load shed by an overloaded node, not a failure: its capacity
//! handles it (`super::capacity`). Every state change is one log line with
//! the node, `from`, `to` and `reason`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The target of the state-change lines, which `LOG_LEVEL` directives name
/// (`api_consumer::health=debug`): part of the log interface.
pub const HEALTH_LOG_TARGET: &str = "api_consumer::health";

/// How far back the failure ratio looks.
pub const RATIO_WINDOW: Duration = Duration::from_secs(10);
/// The fewest attempts in [`RATIO_WINDOW`] for the ratio to take a node
/// down.
pub const RATIO_MIN_ATTEMPTS: usize = 20;
/// The share of failed attempts in [`RATIO_WINDOW`] that takes a node down.
pub const RATIO_FAILED: f64 = 0.5;
/// A `503` this soon after a success is shed load, not a failure.
pub const SHED_GRACE: Duration = Duration::from_secs(10);
/// The wait before the first probe of a down node.
pub const PROBE_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between two probes.
pub const PROBE_MAX: Duration = Duration::from_secs(5);
/// How many of a node's last errors its down line and report keep.
const LAST_ERRORS: usize = 3;

/// The state of a node for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Up,
    Down,
    Probing,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Down => "down",
            NodeState::Probing => "probing",
        }
    }
}

/// When nodes go down and how long a run waits for them.
#[derive(Debug, Clone, Copy)]
pub struct HealthSettings {
    /// Failed attempts in a row that take a node down
    /// (`NODE_DOWN_AFTER_FAILURES`); 0 = nodes never go down.
    pub down_after: u32,
    /// How long a run waits for a down node (`NODE_DOWN_WAIT_SECS`).
    pub down_wait: Duration,
}

/// What one attempt says of its node's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The node answered (anything but a `5xx`).
    Success,
    /// A failure: a transport error, a timeout or a `5xx`, in words.
    Failure(String),
    /// A `503` (in words): shed load when the node answered a success
    /// lately, a failure otherwise.
    Unavailable(String),
    /// Says nothing of the node (the attempt was never sent).
    Neutral,
}

/// What the run report says of a node's health.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HealthSnapshot {
    /// How many times the node went down.
    pub times_down: u32,
    /// Time spent down (or probing), in milliseconds.
    pub down_ms: u64,
    /// Whether the node was still down when the run ended.
    pub down_at_end: bool,
    /// Whether the run stopped waiting for it (`NODE_DOWN_WAIT_SECS`).
    pub given_up: bool,
    /// Why it last went down: its last errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down_reason: Option<String>,
}

/// Attempts per second over the last [`RATIO_WINDOW`]: one bucket per
/// second, so that counting an attempt costs no allocation.
const BUCKETS: usize = RATIO_WINDOW.as_secs() as usize;

/// What the state changes are decided from, under one short lock.
#[derive(Debug)]
struct Status {
    state: NodeState,
    consecutive: u32,
    /// Per second of the run: (which second, attempts, failed attempts).
    buckets: [(u64, u32, u32); BUCKETS],
    last_success: Option<Instant>,
    last_errors: VecDeque<String>,
    down_since: Option<Instant>,
    /// Why the node last went down.
    down_reason: Option<String>,
    given_up: bool,
    times_down: u32,
    down_total: Duration,
}

impl Status {
    fn new() -> Self {
        Self {
            state: NodeState::Up,
            consecutive: 0,
            buckets: [(u64::MAX, 0, 0); BUCKETS],
            last_success: None,
            last_errors: VecDeque::new(),
            down_since: None,
            down_reason: None,
            given_up: false,
            times_down: 0,
            down_total: Duration::ZERO,
        }
    }

    fn errors_text(&self) -> String {
        let errors: Vec<&str> = self.last_errors.iter().map(String::as_str).collect();
        errors.join("; ")
    }

    /// Counts an attempt in second `second`.
    fn count(&mut self, second: u64, failed: bool) {
        let bucket = &mut self.buckets[(second % BUCKETS as u64) as usize];
        if bucket.0 != second {
            *bucket = (second, 0, 0);
        }
        bucket.1 += 1;
        bucket.2 += u32::from(failed);
    }

    /// Attempts and failed attempts in the window that ends in `second`.
    fn window(&self, second: u64) -> (u32, u32) {
        self.buckets
            .iter()
            .filter(|(at, _, _)| *at <= second && second - *at < BUCKETS as u64)
            .fold((0, 0), |(all, failed), (_, a, f)| (all + a, failed + f))
    }

    fn clear_window(&mut self) {
        self.buckets = [(u64::MAX, 0, 0); BUCKETS];
    }

    /// When the node went down, while it is down.
    fn down_now(&self) -> Option<Instant> {
        self.down_since.filter(|_| self.state != NodeState::Up)
    }

    /// When the run stops waiting for the node, if it is down.
    fn deadline(&self, wait: Duration) -> Option<Instant> {
        self.down_now().map(|since| since + wait)
    }
}

/// Why a request was not sent to its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// The run's stop token fired.
    Stopped,
    /// The node is down and the run no longer waits for it (in words).
    Down(String),
}

const UP: u8 = 0;
const DOWN: u8 = 1;
const PROBING: u8 = 2;

/// A node's health, shared by its requests and its probe. The state is
/// also kept in atomics, so that a request to a node that is up reads it
/// without a lock; every change happens under the status lock and is then
/// announced on `notify` (this node's waiters) and `changes` (the run's).
pub struct NodeHealth {
    node: String,
    settings: HealthSettings,
    /// When the run started, for the ratio's one-second buckets.
    epoch: Instant,
    status: Mutex<Status>,
    state: AtomicU8,
    given_up: AtomicBool,
    notify: watch::Sender<u64>,
    /// Bumped on every state change of every node of the run.
    changes: Arc<watch::Sender<u64>>,
    /// Whether the node's probe task runs: at most one does.
    probe_task: AtomicBool,
}

impl NodeHealth {
    pub fn new(node: &str, settings: HealthSettings, changes: Arc<watch::Sender<u64>>) -> Self {
        Self {
            node: node.to_owned(),
            settings,
            epoch: Instant::now(),
            status: Mutex::new(Status::new()),
            state: AtomicU8::new(UP),
            given_up: AtomicBool::new(false),
            notify: watch::Sender::new(0),
            changes,
            probe_task: AtomicBool::new(false),
        }
    }

    /// Claims the node's one probe task; `false` when it already runs.
    pub fn claim_probe(&self) -> bool {
        !self.probe_task.swap(true, Ordering::AcqRel)
    }

    /// The probe task has ended.
    pub fn release_probe(&self) {
        self.probe_task.store(false, Ordering::Release);
    }

    /// How many times the node went down.
    pub fn times_down(&self) -> u32 {
        self.lock().times_down
    }

    pub fn state(&self) -> NodeState {
        match self.state.load(Ordering::Acquire) {
            UP => NodeState::Up,
            DOWN => NodeState::Down,
            _ => NodeState::Probing,
        }
    }

    /// Whether the run no longer waits for the node.
    pub fn given_up(&self) -> bool {
        self.given_up.load(Ordering::Acquire)
    }

    /// Whether requests to the node wait (or fail) instead of being sent.
    pub fn is_down(&self) -> bool {
        self.state.load(Ordering::Acquire) != UP
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        // A panic under this lock leaves counts, never a broken invariant.
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes a state change made under the status lock.
    fn publish(&self, s: &Status) {
        let state = match s.state {
            NodeState::Up => UP,
            NodeState::Down => DOWN,
            NodeState::Probing => PROBING,
        };
        self.state.store(state, Ordering::Release);
        self.given_up.store(s.given_up, Ordering::Release);
    }

    fn announce(&self) {
        self.notify.send_modify(|n| *n += 1);
        self.changes.send_modify(|n| *n += 1);
    }

    /// Counts one attempt, answered at `now`; `true` when it took the node down (the caller
    /// then starts [probing](NodeHealth::probe_answered)).
    pub fn record(&self, verdict: Verdict, now: Instant) -> bool {
        if self.settings.down_after == 0 || verdict == Verdict::Neutral {
            return false;
        }
        let second = now.duration_since(self.epoch).as_secs();
        let mut s = self.lock();
        let error = match verdict {
            Verdict::Success => {
                s.last_success = Some(now);
                s.consecutive = 0;
                s.count(second, false);
                return false;
            }
            Verdict::Unavailable(text) => {
                let shed = s
                    .last_success
                    .is_some_and(|at| now.duration_since(at) < SHED_GRACE);
                if shed {
                    // Shed load: neither a failure nor a success.
                    return false;
                }
                text
            }
            Verdict::Failure(text) => text,
            Verdict::Neutral => return false,
        };
        s.count(second, true);
        s.consecutive += 1;
        if s.last_errors.len() == LAST_ERRORS {
            s.last_errors.pop_front();
        }
        s.last_errors.push_back(error);
        if s.state != NodeState::Up {
            return false;
        }
        let (attempts, failures) = s.window(second);
        let by_ratio = attempts as usize >= RATIO_MIN_ATTEMPTS
            && f64::from(failures) >= RATIO_FAILED * f64::from(attempts);
        let in_a_row = s.consecutive >= self.settings.down_after;
        if !in_a_row && !by_ratio {
            return false;
        }
        let rule = if in_a_row {
            format!("{} failed attempts in a row", s.consecutive)
        } else {
            format!("{failures} of the last {attempts} attempts failed")
        };
        let reason = format!("{rule}: {}", s.errors_text());
        s.state = NodeState::Down;
        s.down_since = Some(now);
        s.times_down += 1;
        s.given_up = self.settings.down_wait.is_zero();
        let wait = self.settings.down_wait.as_secs();
        if s.given_up {
            tracing::error!(target: HEALTH_LOG_TARGET, node = %self.node, from = "up",
                to = "down", reason = %reason, node_down_wait_secs = wait,
                "node is down; NODE_DOWN_WAIT_SECS is 0, so no new group starts and requests to it fail");
        } else {
            tracing::warn!(target: HEALTH_LOG_TARGET, node = %self.node, from = "up",
                to = "down", reason = %reason, node_down_wait_secs = wait,
                "node is down; no new group starts until it is back");
        }
        s.down_reason = Some(reason);
        let went_down = !s.given_up;
        self.publish(&s);
        drop(s);
        self.announce();
        went_down
    }

    /// When the run stops waiting for the node, if it is down.
    pub fn deadline(&self) -> Option<Instant> {
        self.lock().deadline(self.settings.down_wait)
    }

    /// The run stops waiting for the down node: requests to it fail from now
    /// on and no new group starts.
    pub fn give_up(&self) {
        let mut s = self.lock();
        if s.state == NodeState::Up || s.given_up {
            return;
        }
        s.given_up = true;
        let down_ms = s.down_since.map_or(0, |at| at.elapsed().as_millis() as u64);
        tracing::error!(target: HEALTH_LOG_TARGET, node = %self.node,
            from = s.state.as_str(), to = "down", down_ms,
            reason = %s.down_reason.as_deref().unwrap_or_default(),
            node_down_wait_secs = self.settings.down_wait.as_secs(),
            "node still down after NODE_DOWN_WAIT_SECS; no new group starts and requests to it fail");
        s.state = NodeState::Down;
        self.publish(&s);
        drop(s);
        self.announce();
    }

    /// A probe is on its way; `false` when the run no longer waits.
    pub fn probe_sent(&self, after: Duration) -> bool {
        let mut s = self.lock();
        if s.state != NodeState::Down || s.given_up {
            return false;
        }
        s.state = NodeState::Probing;
        tracing::info!(target: HEALTH_LOG_TARGET, node = %self.node, from = "down",
            to = "probing", reason = %format!("{} ms since the last attempt", after.as_millis()),
            "probing the down node with a read");
        self.publish(&s);
        true
    }

    /// What the probe got: `Ok` (its answer in words) brings the node up,
    /// `Err` (the failure) keeps it down until the next probe in `next`.
    pub fn probe_answered(&self, answer: Result<String, String>, next: Duration) {
        let now = Instant::now();
        let mut s = self.lock();
        if s.state != NodeState::Probing {
            return;
        }
        match &answer {
            Ok(answer) => {
                let down_for = s.down_since.map_or(Duration::ZERO, |at| now - at);
                s.down_total += down_for;
                s.state = NodeState::Up;
                s.down_since = None;
                s.consecutive = 0;
                s.clear_window();
                s.last_success = Some(now);
                tracing::info!(target: HEALTH_LOG_TARGET, node = %self.node, from = "probing",
                    to = "up", reason = %format!("the probe was answered {answer}"),
                    down_ms = down_for.as_millis() as u64, "node is up again");
            }
            Err(error) => {
                s.state = NodeState::Down;
                tracing::info!(target: HEALTH_LOG_TARGET, node = %self.node, from = "probing",
                    to = "down", reason = %format!("the probe failed: {error}"),
                    next_probe_ms = next.as_millis() as u64, "node still down");
            }
        }
        self.publish(&s);
        drop(s);
        if answer.is_ok() {
            self.announce();
        }
    }

    /// Waits until the node may be sent a request: at once while it is up;
    /// while it is down, until it is back up or the run stops waiting for it
    /// (`NODE_DOWN_WAIT_SECS` after it went down).
    pub async fn usable(&self, stop: &CancellationToken) -> Result<(), Unusable> {
        if !self.is_down() {
            return Ok(());
        }
        // Subscribed before the state is read again, so that no change
        // between the two goes unseen.
        let mut changed = self.notify.subscribe();
        loop {
            let deadline = {
                let s = self.lock();
                if s.state == NodeState::Up {
                    return Ok(());
                }
                if s.given_up {
                    return Err(Unusable::Down(self.down_text(&s)));
                }
                s.deadline(self.settings.down_wait)
            };
            let deadline = deadline.unwrap_or_else(Instant::now);
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Err(Unusable::Stopped),
                result = changed.changed() => {
                    if result.is_err() {
                        return Err(Unusable::Stopped);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => self.give_up(),
            }
        }
    }

    fn down_text(&self, s: &Status) -> String {
        format!(
            "not sent: the node is down ({}) and NODE_DOWN_WAIT_SECS ({} s) has run out",
            s.down_reason.as_deref().unwrap_or_default(),
            self.settings.down_wait.as_secs()
        )
    }

    /// The node's health for the run report.
    pub fn snapshot(&self) -> HealthSnapshot {
        let s = self.lock();
        let now = Instant::now();
        let current = s.down_now().map_or(Duration::ZERO, |at| now - at);
        HealthSnapshot {
            times_down: s.times_down,
            down_ms: (s.down_total + current).as_millis() as u64,
            down_at_end: s.state != NodeState::Up,
            given_up: s.given_up,
            down_reason: s.down_reason.clone(),
        }
    }
}

/// The wait before probe number `n` (from 0): [`PROBE_FIRST`] doubled per
/// probe up to [`PROBE_MAX`], drawn between half and all of it (jitter, so
/// that many jobs do not probe a recovering node in step).
pub fn probe_delay(n: u32, draw: f64) -> Duration {
    let full = PROBE_FIRST.saturating_mul(1u32 << n.min(16)).min(PROBE_MAX);
    full.mul_f64(0.5 + 0.5 * draw.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(down_after: u32, wait_secs: u64) -> NodeHealth {
        let settings = HealthSettings {
            down_after,
            down_wait: Duration::from_secs(wait_secs),
        };
        NodeHealth::new("n", settings, Arc::new(watch::Sender::new(0)))
    }

    fn fail() -> Verdict {
        Verdict::Failure("connection refused".into())
    }

    #[tokio::test]
    async fn consecutive_failures_take_a_node_down_and_a_success_resets_them() {
        let h = health(5, 60);
        for _ in 0..4 {
            assert!(!h.record(fail(), Instant::now()));
        }
        h.record(Verdict::Success, Instant::now());
        for _ in 0..4 {
            assert!(!h.record(fail(), Instant::now()));
        }
        assert_eq!(h.state(), NodeState::Up);
        assert!(h.record(fail(), Instant::now()));
        assert_eq!(h.state(), NodeState::Down);
        assert!(!h.given_up());
        let reason = h.snapshot().down_reason.unwrap();
        assert!(reason.starts_with("5 failed attempts in a row: connection refused"));
    }

    #[tokio::test]
    async fn a_failure_ratio_takes_a_node_down() {
        let h = health(5, 60);
        // Alternating: never 5 in a row, half of them failed.
        for i in 0..19 {
            let verdict = if i % 2 == 0 { fail() } else { Verdict::Success };
            assert!(!h.record(verdict, Instant::now()), "attempt {i}");
        }
        assert!(h.record(fail(), Instant::now()));
        let reason = h.snapshot().down_reason.unwrap();
        assert!(reason.starts_with("11 of the last 20"), "{reason}");
    }

    #[tokio::test]
    async fn a_503_after_a_success_is_shed_load() {
        let h = health(5, 60);
        let busy = || Verdict::Unavailable("503 Service Unavailable".into());
        for _ in 0..5 {
            h.record(busy(), Instant::now());
        }
        assert!(h.is_down(), "503s without a success take a node down");
        let h = health(5, 60);
        h.record(Verdict::Success, Instant::now());
        for _ in 0..100 {
            assert!(!h.record(busy(), Instant::now()));
        }
        assert_eq!(h.state(), NodeState::Up);
    }

    #[tokio::test]
    async fn zero_failures_never_take_a_node_down_and_zero_wait_gives_up_at_once() {
        let h = health(0, 60);
        for _ in 0..100 {
            assert!(!h.record(fail(), Instant::now()));
        }
        assert_eq!(h.state(), NodeState::Up);
        let h = health(1, 0);
        assert!(
            !h.record(fail(), Instant::now()),
            "no probe when the run does not wait"
        );
        assert!(h.given_up());
        let stop = CancellationToken::new();
        let Err(Unusable::Down(text)) = h.usable(&stop).await else {
            panic!("a given-up node is not usable");
        };
        assert!(text.contains("connection refused"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_brings_a_node_back_and_the_wait_expires() {
        let h = Arc::new(health(1, 30));
        h.record(fail(), Instant::now());
        let waiter = tokio::spawn({
            let h = h.clone();
            async move { h.usable(&CancellationToken::new()).await }
        });
        assert!(h.probe_sent(PROBE_FIRST));
        h.probe_answered(Err("timed out".into()), PROBE_FIRST * 2);
        assert_eq!(h.state(), NodeState::Down);
        assert!(h.probe_sent(PROBE_FIRST * 2));
        h.probe_answered(Ok("404".into()), PROBE_FIRST);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert_eq!(h.state(), NodeState::Up);
        h.record(fail(), Instant::now());
        let started = Instant::now();
        let result = h.usable(&CancellationToken::new()).await;
        assert!(matches!(result, Err(Unusable::Down(_))), "{result:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        let snapshot = h.snapshot();
        assert_eq!((snapshot.times_down, snapshot.given_up), (2, true));
        assert!(!h.probe_sent(PROBE_FIRST), "no probe once given up");
    }

    #[test]
    fn probe_delays_double_with_jitter_up_to_the_maximum() {
        assert_eq!(probe_delay(0, 1.0), PROBE_FIRST);
        assert_eq!(probe_delay(0, 0.0), PROBE_FIRST / 2);
        assert_eq!(probe_delay(2, 1.0), PROBE_FIRST * 4);
        assert_eq!(probe_delay(40, 1.0), PROBE_MAX);
    }
}
