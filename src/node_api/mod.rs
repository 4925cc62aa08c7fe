//! The node API: the job's HTTP client for the contract every node serves
//! (`node_contract`, docs/NODE_API.md).
//!
//! - [`client`]: [`NodeClient`], one call per method over typed [`Node`]
//!   handles, and the one path every request takes (gate, attempt, retry);
//! - [`gate`]: a node's limits (health, 429 pause, rate, concurrency);
//! - [`health`]: whether a node is up, down or being probed (a circuit
//!   breaker), and how long the run waits for it;
//! - [`capacity`]: a node's adaptive concurrency limit (AIMD);
//! - [`attempt`]: the middleware that reads each answer's capped body and
//!   counts the attempt;
//! - [`retry`]: when to retry and how long to wait (backoff, full jitter,
//!   `Retry-After`);
//! - [`answers`]: what each answer means ([`WriteAnswer`], [`ReadAnswer`],
//!   [`StepAnswer`]);
//! - [`listing`]: `GET /v1/groups` in every shape nodes answer it;
//! - [`errors`]: transport errors and unexpected answers in words;
//! - [`stats`]: per-node request counts and latency.
//!
//! `client` uses the others; `retry`, `answers` and `listing` use `errors`.

pub mod answers;
pub mod attempt;
pub mod capacity;
pub mod client;
pub mod errors;
pub mod gate;
pub mod health;
pub mod listing;
pub mod retry;
pub mod stats;

pub use answers::{
    classify_read, classify_write, plain_record, ReadAnswer, StepAnswer, WriteAnswer,
};
pub use client::{ClientError, ClientSettings, Node, NodeClient, NodesDown, PROBE_GROUP};
pub use errors::install_tls_provider;
pub use health::{HealthSettings, HealthSnapshot, NodeState};
pub use listing::{ListAnswer, LIST_MAX_BYTES};
pub use retry::{parse_retry_after, Attempts, RetrySettings, MAX_RETRY_AFTER};
pub use stats::{Latency, NodeStatsSnapshot, RequestTotals};
