//! Writes that land late (docs/TRANSACTIONS.md, "Writes that land late").
//!
//! A node may still be working on a write whose answer the job lost (a
//! timeout or a broken connection after it was sent, or a `5xx`), and apply
//! it after any read the job takes. So each (group, node) cell of a
//! transaction keeps a window: the end of the last such attempt plus
//! `WRITE_SETTLE_MS`. Every write and read of a transaction goes through
//! here: a write opens the window when its answer was lost; a compensating
//! write waits until the window has ended, and so does a read, unless it
//! finds the state every lost write of the window would leave (the early
//! read); a read taken after the window closes it. A cell still open when
//! its group ends is read once more at the end of the run
//! ([`crate::engine::run`]).

use std::sync::Mutex;

use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Transaction, LOG_TARGET};
use crate::domain::{Change, NodeState, Unsettled};
use crate::node_api::{Attempts, Node, ReadAnswer, StepAnswer, WriteAnswer};

/// What a read that waited for a window and was cut off says.
const NOT_READ: &str =
    "not read: the run stopped while a write whose answer was lost could still land";

/// One node's window: until when a write of this run whose answer was lost
/// may still land there, and the state it would leave (`None` when lost
/// writes of both directions, or of unknown ones, may land).
#[derive(Debug, Clone, Copy)]
struct Window {
    until: Instant,
    toward: Option<NodeState>,
}

/// Per node of one transaction: its window, if no read has been taken since
/// it ended.
pub(super) struct Windows(Mutex<Vec<Option<Window>>>);

impl Windows {
    pub(super) fn new(nodes: usize) -> Self {
        Windows(Mutex::new(vec![None; nodes]))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Vec<Option<Window>>) -> T) -> T {
        // A window is a plain value, whole between statements.
        let mut slots = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut slots)
    }

    /// Keeps the window of node `index` open until `until` at least, for a
    /// lost write that would leave the node `toward` (`None`: unknown).
    pub(super) fn open(&self, index: usize, until: Instant, toward: Option<NodeState>) {
        self.with(|slots| {
            if let Some(slot) = slots.get_mut(index) {
                *slot = Some(match *slot {
                    None => Window { until, toward },
                    Some(open) => Window {
                        until: open.until.max(until),
                        toward: toward.filter(|&t| open.toward == Some(t)),
                    },
                });
            }
        });
    }

    fn get(&self, index: usize) -> Option<Window> {
        self.with(|slots| slots.get(index).copied().flatten())
    }

    /// Closes the window of node `index` if it had ended when a read started
    /// at `read_at`.
    fn close(&self, index: usize, read_at: Instant) {
        self.with(|slots| {
            if let Some(slot) = slots.get_mut(index) {
                if slot.is_some_and(|open| open.until <= read_at) {
                    *slot = None;
                }
            }
        });
    }

    /// The cells still open: a write of theirs may land after the group's
    /// last read. Each is read again after its window, also where the late
    /// write would leave the node as it was seen: the run does not end while
    /// a write of its own can still land, so that the next run's reads
    /// cannot be overtaken by it.
    pub(super) fn unsettled(&self) -> Vec<Unsettled> {
        self.with(|slots| {
            let open = slots.iter().enumerate();
            open.filter_map(|(node, window)| {
                window.map(|w| Unsettled {
                    node,
                    until: w.until,
                })
            })
            .collect()
        })
    }
}

impl Transaction<'_> {
    pub(super) fn index_of(&self, node: &Node) -> Option<usize> {
        self.nodes().iter().position(|n| std::ptr::eq(n, node))
    }

    /// Opens `node`'s window if `attempts` lost an answer; `toward` is the
    /// state the write would leave, when it has one direction.
    fn lost(&self, node: &Node, attempts: &Attempts, toward: Option<NodeState>) {
        if let (Some(index), Some(until)) = (self.index_of(node), attempts.settles_at) {
            self.windows.open(index, until, toward);
        }
    }

    /// Whether `node`'s cell is open: a write of this run whose answer was
    /// lost may still land there.
    pub(super) fn unsettled_at(&self, index: usize) -> bool {
        self.windows.get(index).is_some()
    }

    /// The standard protocol's write of `change` to `node`.
    pub(super) async fn write(
        &self,
        node: &Node,
        change: Change,
        record: Option<&Value>,
        cancel: &CancellationToken,
    ) -> (WriteAnswer, Attempts) {
        let written = self.client.write(node, change, self.group, record, cancel);
        let (answer, attempts) = written.await;
        self.lost(node, &attempts, Some(change.goal()));
        (answer, attempts)
    }

    /// The two-phase protocol's call for `change` in `session`.
    pub(super) async fn session_call(
        &self,
        node: &Node,
        change: Change,
        session: &str,
        cancel: &CancellationToken,
    ) -> (StepAnswer, Attempts) {
        let client = self.client;
        let called = client.session_step(node, change, self.group, session, cancel);
        let (answer, attempts) = called.await;
        // A session's calls prepare, commit or release: no one direction.
        self.lost(node, &attempts, None);
        (answer, attempts)
    }

    /// Reads the group on `node`, and trusts the answer only if no write of
    /// this run whose answer was lost can change it: while the node's window
    /// is open, a read that finds the state its late write would leave is
    /// kept, any other is taken again once the window has ended. A failed
    /// read when `cancel` fired first.
    pub(super) async fn read(&self, node: &Node, cancel: &CancellationToken) -> ReadAnswer {
        let index = self.index_of(node);
        let window = index.and_then(|i| self.windows.get(i));
        if let Some(Window {
            until,
            toward: Some(toward),
        }) = window
        {
            if Instant::now() < until {
                let answer = self.client.read(node, self.group, cancel).await;
                if answer.state() == toward {
                    return answer;
                }
            }
        }
        if !self.wait_out(node, cancel).await {
            let detail = NOT_READ.to_string();
            return ReadAnswer::Failed {
                status: None,
                detail,
            };
        }
        let started = Instant::now();
        let answer = self.client.read(node, self.group, cancel).await;
        if let Some(index) = index {
            self.windows.close(index, started);
        }
        answer
    }

    /// Waits until no write of this run whose answer was lost can still
    /// land on `node`; `false` when `cancel` fired first. A compensating
    /// write waits here, so that a late write cannot land after it.
    pub(super) async fn wait_out(&self, node: &Node, cancel: &CancellationToken) -> bool {
        let window = self.index_of(node).and_then(|i| self.windows.get(i));
        let Some(Window { until, .. }) = window else {
            return true;
        };
        let wait = until.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return true;
        }
        let wait_ms = wait.as_millis() as u64;
        tracing::info!(target: LOG_TARGET, node = node.name(), wait_ms, "an answer was lost; waiting until the write can no longer land before reading the node");
        tokio::select! {
            biased;
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep_until(until) => true,
        }
    }
}
