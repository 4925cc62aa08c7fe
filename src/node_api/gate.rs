//! The limits every attempt against one node waits for, in this order: the
//! node's health (a down node is waited for, see [`super::health`]), a
//! pause after the node's `429` (so that other groups do not hammer a
//! throttling node), the `NODE_RATE_LIMIT` pacing and a slot of the node's
//! adaptive concurrency limit ([`super::capacity`], at most
//! `NODE_CONCURRENCY`). What each attempt got goes back to the health and
//! the limit through its [`Slot`].

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::capacity::{Aimd, Signal};
use super::health::{NodeHealth, Unusable, Verdict};

/// The limits of one node.
pub struct NodeGate {
    permits: Arc<Semaphore>,
    rate: Option<DefaultDirectRateLimiter>,
    paused_until: Mutex<Option<Instant>>,
    capacity: Mutex<Aimd>,
    /// The limit the semaphore's permits stand for.
    issued: AtomicUsize,
    /// Permits to forget as they come back, after a decrease that found
    /// them in use.
    debt: AtomicUsize,
    in_flight: AtomicUsize,
    /// The quickest answer seen since the limit last decreased, in
    /// microseconds (`u64::MAX`: none yet).
    quickest_us: AtomicU64,
    /// Whether the limit is at `NODE_CONCURRENCY`: an answer then can only
    /// lower it, and a success is not taken under the capacity lock.
    at_ceiling: AtomicBool,
    health: Arc<NodeHealth>,
}

/// One attempt's place at its node, held until its answer is in.
pub struct Slot<'a> {
    gate: &'a NodeGate,
    permit: Option<OwnedSemaphorePermit>,
    sent: Instant,
}

impl Slot<'_> {
    /// When the attempt took its slot: its latency counts from here.
    pub(super) fn sent(&self) -> Instant {
        self.sent
    }

    /// Hands the attempt's answer (at `at`) to the node's health and limit,
    /// and frees the slot; `true` when the answer took the node down.
    pub(super) fn answered(self, verdict: Verdict, signal: Signal, at: Instant) -> bool {
        let gate = self.gate;
        let in_flight = gate.in_flight.load(Ordering::Relaxed);
        if let Signal::Answered { latency } = signal {
            let micros = latency.as_micros().min(u128::from(u64::MAX)) as u64;
            gate.quickest_us.fetch_min(micros, Ordering::Relaxed);
        }
        let success = matches!(signal, Signal::Answered { .. });
        let skip = signal == Signal::None || (success && gate.at_ceiling.load(Ordering::Relaxed));
        if !skip {
            if let Ok(mut capacity) = gate.capacity.lock() {
                let quickest = Duration::from_micros(gate.quickest_us.load(Ordering::Relaxed));
                let decreases = capacity.decreases();
                let limit = capacity.update(signal, self.sent, in_flight, quickest);
                if capacity.decreases() != decreases {
                    // The baseline is taken again at the lower load.
                    gate.quickest_us.store(u64::MAX, Ordering::Relaxed);
                }
                gate.at_ceiling
                    .store(capacity.at_ceiling(), Ordering::Relaxed);
                gate.resize(limit);
            }
        }
        drop(self);
        gate.health.record(verdict, at)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.gate.in_flight.fetch_sub(1, Ordering::Relaxed);
        let owed = self
            .gate
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1));
        if let (Ok(_), Some(permit)) = (owed, self.permit.take()) {
            permit.forget();
        }
    }
}

impl NodeGate {
    pub(super) fn new(
        concurrency: usize,
        rate: Option<NonZeroU32>,
        health: Arc<NodeHealth>,
    ) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            // No burst: requests leave 1/R s apart, so a node that enforces
            // the same limit (even with no burst of its own) never refuses.
            rate: rate
                .map(|r| RateLimiter::direct(Quota::per_second(r).allow_burst(NonZeroU32::MIN))),
            paused_until: Mutex::new(None),
            capacity: Mutex::new(Aimd::new(concurrency)),
            issued: AtomicUsize::new(concurrency),
            debt: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            quickest_us: AtomicU64::new(u64::MAX),
            at_ceiling: AtomicBool::new(true),
            health,
        }
    }

    pub(super) fn health(&self) -> &Arc<NodeHealth> {
        &self.health
    }

    /// The node's concurrency limit now.
    pub fn limit(&self) -> usize {
        self.issued.load(Ordering::Relaxed)
    }

    /// Sets the limit to `limit` permits (called under the capacity lock).
    fn resize(&self, limit: usize) {
        let current = self.issued.swap(limit, Ordering::AcqRel);
        if limit > current {
            let mut add = limit - current;
            if let Ok(owed) = self
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                    Some(d.saturating_sub(add))
                })
            {
                add -= owed.min(add);
            }
            self.permits.add_permits(add);
        } else if limit < current {
            let remove = current - limit;
            let forgotten = self.permits.forget_permits(remove);
            self.debt.fetch_add(remove - forgotten, Ordering::AcqRel);
        }
    }

    /// Holds every request to the node back for `delay` (its `Retry-After`).
    pub(super) fn pause_for(&self, delay: Duration) {
        let until = Instant::now() + delay;
        if let Ok(mut paused) = self.paused_until.lock() {
            if paused.is_none_or(|current| current < until) {
                *paused = Some(until);
            }
        }
    }

    /// Waits until the node may receive one more attempt; the slot is held
    /// until it is [answered](Slot::answered) or dropped. An error when
    /// `stop` fires first, or when the node is down and the run no longer
    /// waits for it.
    pub(super) async fn admit(&self, stop: &CancellationToken) -> Result<Slot<'_>, Unusable> {
        loop {
            self.health.usable(stop).await?;
            let permit = tokio::select! {
                biased;
                _ = stop.cancelled() => return Err(Unusable::Stopped),
                permit = async {
                    self.wait_unpaused().await;
                    if let Some(rate) = &self.rate {
                        rate.until_ready().await;
                    }
                    self.permits.clone().acquire_owned().await.ok()
                } => permit,
            };
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            let slot = Slot {
                gate: self,
                permit,
                sent: Instant::now(),
            };
            // The node may have gone down while this attempt waited for its
            // slot: it waits for the node again instead.
            if !self.health.is_down() {
                return Ok(slot);
            }
        }
    }

    async fn wait_unpaused(&self) {
        loop {
            let until = self.paused_until.lock().ok().and_then(|paused| *paused);
            match until {
                Some(until) if until > Instant::now() => {
                    tokio::time::sleep_until(until).await;
                }
                _ => return,
            }
        }
    }
}
