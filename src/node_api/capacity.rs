//! A node's concurrency limit, found from its answers: additive increase,
//! multiplicative decrease (AIMD), as TCP's congestion window and Netflix's
//! concurrency-limits `AIMDLimit` do (docs/FLOW_CONTROL.md).
//!
//! The limit starts at its ceiling, `NODE_CONCURRENCY`, so a node that never
//! sheds load is driven as before. A drop (a `503`, a `429` or a timeout)
//! multiplies it by [`BACKOFF`], at most once per round trip: only an
//! attempt sent after the last decrease can decrease it again, so the
//! burst of drops that one overload produces counts once. A success adds
//! `1 / (`[`GROWTH_ROUNDS`]` × limit)`, about one more request in flight
//! every [`GROWTH_ROUNDS`] round trips, as long as the limit is in use (at
//! least half of it in flight) and the answer came no slower than
//! [`LATENCY_TOLERANCE`] times the quickest seen since the last decrease (a
//! node that queues instead of shedding stops the growth before it sheds;
//! the baseline is taken again at the lower load after each decrease, so a
//! node slower under load still grows back). The limit never goes
//! below 1 nor above the ceiling.
//!
//! Why these constants: against a node that sheds above a fixed capacity
//! `C`, the limit climbs from `BACKOFF × (C + 1)` to `C + 1` in about
//! `GROWTH_ROUNDS × C` answers, then one attempt is shed: with 0.8 and 20,
//! about one answer in `20 × C` is a `503` (1.25 % at `C = 4`) and the limit
//! stays at `C` (the whole capacity) between drops.
//!
//! No crate is used: the adaptive-limit crates for tower own the permits
//! and the request path (a tower `Service`), while here the limit must
//! resize the node's slots in `super::gate` that every attempt of the one
//! request path already takes, and count only drops that are the node's.

use std::time::Duration;

use tokio::time::Instant;

/// What a drop multiplies the limit by.
pub const BACKOFF: f64 = 0.8;
/// Round trips per added request in flight.
pub const GROWTH_ROUNDS: f64 = 20.0;
/// The slowest answer, as a multiple of the quickest seen, that still lets
/// the limit grow.
pub const LATENCY_TOLERANCE: f64 = 2.0;

/// What one answer says of the node's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Answered within the request timeout, not shedding.
    Answered { latency: Duration },
    /// Shed or throttled (`503`, `429`) or timed out.
    Dropped,
    /// Says nothing of capacity (a refused connection, an unsent attempt).
    None,
}

/// One node's adaptive limit.
#[derive(Debug)]
pub struct Aimd {
    limit: f64,
    ceiling: f64,
    decreased_at: Instant,
    decreases: u64,
}

impl Aimd {
    pub fn new(ceiling: usize) -> Self {
        let ceiling = ceiling.max(1) as f64;
        Self {
            limit: ceiling,
            ceiling,
            decreased_at: Instant::now(),
            decreases: 0,
        }
    }

    /// The limit in whole requests.
    pub fn limit(&self) -> usize {
        self.limit.floor().max(1.0) as usize
    }

    /// How many times the limit was decreased.
    pub fn decreases(&self) -> u64 {
        self.decreases
    }

    /// Whether the limit is at its ceiling, where an answer cannot raise it.
    pub fn at_ceiling(&self) -> bool {
        self.limit >= self.ceiling
    }

    /// Takes the answer to an attempt sent at `sent`, with `in_flight`
    /// attempts (this one included) in flight and `quickest` the quickest
    /// answer the node has given; returns the new limit.
    pub fn update(
        &mut self,
        signal: Signal,
        sent: Instant,
        in_flight: usize,
        quickest: Duration,
    ) -> usize {
        match signal {
            Signal::Dropped if sent >= self.decreased_at => {
                self.limit = (self.limit * BACKOFF).max(1.0);
                self.decreased_at = Instant::now();
                self.decreases += 1;
            }
            Signal::Answered { latency } => {
                let holds = latency.as_secs_f64() <= quickest.as_secs_f64() * LATENCY_TOLERANCE;
                let in_use = in_flight as f64 * 2.0 >= self.limit;
                if holds && in_use && self.limit < self.ceiling {
                    self.limit =
                        (self.limit + 1.0 / (GROWTH_ROUNDS * self.limit)).min(self.ceiling);
                }
            }
            Signal::Dropped | Signal::None => {}
        }
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: Duration = Duration::from_millis(20);

    fn answered() -> Signal {
        Signal::Answered { latency: RTT }
    }

    #[tokio::test(start_paused = true)]
    async fn starts_at_the_ceiling_and_a_burst_of_drops_counts_once() {
        let mut aimd = Aimd::new(8);
        assert_eq!(aimd.limit(), 8);
        let sent = Instant::now();
        tokio::time::advance(RTT).await;
        assert_eq!(aimd.update(Signal::Dropped, sent, 8, RTT), 6);
        for _ in 0..3 {
            assert_eq!(aimd.update(Signal::Dropped, sent, 8, RTT), 6, "same round");
        }
        let later = Instant::now();
        assert_eq!(aimd.update(Signal::Dropped, later, 6, RTT), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn grows_back_slowly_only_while_in_use_and_latency_holds() {
        let mut aimd = Aimd::new(8);
        aimd.update(Signal::Dropped, Instant::now(), 8, RTT);
        assert_eq!(aimd.limit(), 6);
        let now = Instant::now();
        for _ in 0..1000 {
            aimd.update(answered(), now, 1, RTT);
        }
        assert_eq!(aimd.limit(), 6, "unused: no growth");
        let slow = Signal::Answered { latency: RTT * 3 };
        for _ in 0..1000 {
            aimd.update(slow, now, 6, RTT);
        }
        assert_eq!(aimd.limit(), 6, "slower answers: no growth");
        let mut answers = 0;
        while aimd.limit() < 7 {
            aimd.update(answered(), now, 6, RTT);
            answers += 1;
        }
        // From 6.4 (8 × 0.8): 0.6 × 20 × 6.4 answers.
        assert!((70..=90).contains(&answers), "{answers}");
        for _ in 0..10_000 {
            aimd.update(answered(), now, 8, RTT);
        }
        assert_eq!(aimd.limit(), 8, "never above the ceiling");
    }

    /// A node that sheds every attempt above 4 in flight, always kept busy:
    /// the share of attempts shed and the limit between drops.
    #[tokio::test(start_paused = true)]
    async fn against_a_fixed_capacity_few_attempts_are_shed() {
        let capacity = 4;
        let mut aimd = Aimd::new(8);
        let (mut shed, mut sent_total, mut at_capacity) = (0u32, 0u32, 0u32);
        for _round in 0..2_000 {
            let sent = Instant::now();
            let limit = aimd.limit();
            tokio::time::advance(RTT).await;
            for i in 0..limit {
                sent_total += 1;
                if i < capacity {
                    aimd.update(answered(), sent, limit, RTT);
                } else {
                    shed += 1;
                    aimd.update(Signal::Dropped, sent, limit, RTT);
                }
            }
            at_capacity += u32::from(limit >= capacity);
        }
        let share = f64::from(shed) / f64::from(sent_total);
        assert!(share < 0.02, "{shed} of {sent_total} shed");
        assert!(
            at_capacity >= 1_900,
            "{at_capacity} of 2000 rounds at capacity"
        );
    }
}
