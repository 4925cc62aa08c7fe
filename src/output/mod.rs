//! What the job leaves behind for operators:
//!
//! - [`telemetry`]: logging setup, JSON lines (or pretty) on stdout;
//! - [`summary`]: the node summary lines and the run summary, the log's end;
//! - [`progress`]: progress lines, or a bar at a terminal;
//! - [`report`]: the run report, its file and the termination message;
//! - [`journal`]: the crash journal (`JOURNAL_PATH`);
//! - [`metrics`]: the run's metrics, pushed to a Prometheus Pushgateway.
//!
//! Outputs use the domain types and the node API's statistics; they never
//! call into the engine.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub mod journal;
pub mod metrics;
pub mod progress;
pub mod report;
pub mod summary;
pub mod telemetry;

/// A count that only some operations have, for a log field: absent when
/// zero.
fn nonzero(count: u64) -> Option<u64> {
    (count > 0).then_some(count)
}

/// The guard of `mutex`, also once a thread panicked holding it: what these
/// locks guard (counts, the seal, the bar, the journal file) is whole
/// between statements.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
