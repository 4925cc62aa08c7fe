//! The limits every attempt against one node waits for, in this order: a
//! pause after the node's `429` (so that other groups do not hammer a
//! throttling node), the `NODE_RATE_LIMIT` pacing and a `NODE_CONCURRENCY`
//! slot.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// The limits of one node.
pub struct NodeGate {
    permits: Arc<Semaphore>,
    rate: Option<DefaultDirectRateLimiter>,
    paused_until: Mutex<Option<Instant>>,
}

impl NodeGate {
    pub(super) fn new(concurrency: usize, rate: Option<NonZeroU32>) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            // No burst: requests leave 1/R s apart, so a node that enforces
            // the same limit (even with no burst of its own) never refuses.
            rate: rate
                .map(|r| RateLimiter::direct(Quota::per_second(r).allow_burst(NonZeroU32::MIN))),
            paused_until: Mutex::new(None),
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
    /// until the permit is dropped. `None` when `stop` fires first.
    pub(super) async fn admit(&self, stop: &CancellationToken) -> Option<OwnedSemaphorePermit> {
        tokio::select! {
            biased;
            _ = stop.cancelled() => None,
            permit = async {
                self.wait_unpaused().await;
                if let Some(rate) = &self.rate {
                    rate.until_ready().await;
                }
                self.permits.clone().acquire_owned().await.ok()
            } => permit,
        }
    }

    async fn wait_unpaused(&self) {
        loop {
            let until = self.paused_until.lock().ok().and_then(|paused| *paused);
            match until {
                Some(until) if until > Instant::now() => {
                    tokio::time::sleep_until(until.into()).await;
                }
                _ => return,
            }
        }
    }
}
