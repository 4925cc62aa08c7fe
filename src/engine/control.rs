//! Run-wide cancellation in three escalating steps (I4 in
//! docs/TRANSACTIONS.md): stop starting groups, abort what is still
//! applying, kill what is still running.

use std::sync::OnceLock;

use tokio_util::sync::CancellationToken;

use crate::domain::StopReason;

/// Run-wide cancellation, in three escalating steps.
#[derive(Debug)]
pub struct Control {
    /// No new group starts.
    pub stop: CancellationToken,
    /// Groups not yet committed cancel their forward work and roll back.
    pub abort: CancellationToken,
    /// Everything still running is cut off.
    pub kill: CancellationToken,
    reason: OnceLock<StopReason>,
}

impl Default for Control {
    fn default() -> Self {
        let kill = CancellationToken::new();
        let abort = kill.child_token();
        let stop = abort.child_token();
        Self {
            stop,
            abort,
            kill,
            reason: OnceLock::new(),
        }
    }
}

impl Control {
    /// Records why the run stops (the first reason wins) and stops it.
    pub fn stop(&self, reason: StopReason) {
        let _ = self.reason.set(reason);
        self.stop.cancel();
    }

    pub fn reason(&self) -> Option<StopReason> {
        self.reason.get().copied()
    }

    pub(crate) fn stop_detail(&self) -> String {
        match self.reason() {
            Some(reason) => format!(
                "run stopped before the group committed: {}",
                reason.as_str()
            ),
            None => "run stopped before the group committed".to_string(),
        }
    }
}
