//! One simulated node's memory: its groups, counters, faults, rate limiter
//! and random stream, behind one mutex per node (see [`super::node`]).

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard, PoisonError};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::api::Faults;
use super::api::NodeOp;
use super::two_phase::Held;

/// Everything a node-API request reads or changes on one node.
pub(crate) struct NodeMemory {
    pub(crate) groups: BTreeSet<String>,
    /// Intentions of the two-phase protocol, by group; gone on a restart.
    pub(crate) intentions: BTreeMap<String, Held>,
    pub(crate) requests: BTreeMap<String, u64>,
    pub(crate) responses: BTreeMap<String, u64>,
    pub(crate) connections: u64,
    /// Writes answered after their client had gone.
    pub(crate) undelivered_writes: u64,
    pub(crate) faults: Faults,
    pub(crate) limiter: Option<DefaultDirectRateLimiter>,
    pub(crate) rng: SmallRng,
}

impl NodeMemory {
    pub(crate) fn new(faults: Faults, seed: u64, groups: BTreeSet<String>) -> Self {
        Self {
            groups,
            intentions: BTreeMap::new(),
            requests: zero_requests(),
            responses: BTreeMap::new(),
            connections: 0,
            undelivered_writes: 0,
            limiter: limiter(faults.rate_limit),
            faults,
            rng: SmallRng::seed_from_u64(seed),
        }
    }
}

/// Every call name is present from the start, so readers can tell "never
/// called" (0) from a name they misspelled.
fn zero_requests() -> BTreeMap<String, u64> {
    NodeOp::ALL
        .into_iter()
        .map(|op| (op.as_str().to_owned(), 0))
        .collect()
}

pub(crate) fn limiter(rate_limit: u32) -> Option<DefaultDirectRateLimiter> {
    // per_second sets the burst to the rate: a client may spend a whole
    // second's allowance at once, as with most API gateways.
    NonZeroU32::new(rate_limit).map(|rate| RateLimiter::direct(Quota::per_second(rate)))
}

/// A poisoned lock only means a panic elsewhere; the state itself is always
/// consistent between statements, so keep serving.
pub(crate) fn lock(state: &Mutex<NodeMemory>) -> MutexGuard<'_, NodeMemory> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}
