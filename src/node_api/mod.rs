//! The node API: the contract every node serves (docs/NODE_API.md), and the
//! job's HTTP client for it.
//!
//! - `node_contract` (a crate of its own): paths and bodies, shared with the simulator;
//! - [`client`]: [`NodeClient`], one call per method, over every node;
//! - [`retry`]: retries with exponential backoff, full jitter and
//!   `Retry-After`, as a middleware around reqwest-retry's policy;
//! - [`gate`]: the per-node limits each attempt passes (429 pause, rate,
//!   concurrency) and the capped body read;
//! - [`answers`]: what each answer means ([`WriteAnswer`], [`ReadAnswer`]);
//! - [`listing`]: `GET /v1/groups` in every shape nodes answer it;
//! - [`errors`]: transport errors and unexpected answers in words;
//! - [`stats`]: per-node request counts and latency.
//!
//! Arrows point down the list's reverse: `client` uses the others, `gate`
//! uses `retry` and `stats`, `retry` and `answers` use `errors`.

pub mod answers;
pub mod client;
pub mod errors;
pub mod gate;
pub mod listing;
pub mod retry;
pub mod stats;

pub use answers::{
    classify_read, classify_write, plain_record, ReadAnswer, StepAnswer, WriteAnswer,
};
pub use client::{ClientError, ClientSettings, NodeClient};
pub use errors::install_tls_provider;
pub use listing::{ListAnswer, LIST_MAX_BYTES};
pub use retry::{parse_retry_after, Attempts, RetrySettings, MAX_RETRY_AFTER};
pub use stats::{Latency, NodeStatsSnapshot, RequestTotals};
