//! `api-consumer`: creates or deletes "groups" on every node of a cluster,
//! all-or-nothing, through each node's unstable HTTP API.
//!
//! # Module map
//!
//! - [`config`]: environment variables parsed once into a typed [`config::Config`].
//! - [`api`]: the node API contract, shared by the client and the simulator.
//! - [`client`]: [`client::NodeClient`], the node API over HTTP with per-node
//!   limits; [`retry`]: retries with backoff, full jitter and `Retry-After`.
//! - [`transaction`]: the all-or-nothing rules for one group (I1–I4).
//! - [`run`]: many groups under the run's limits, deadline and signals.
//! - [`job`]: the whole job as one call, as the binary runs it.
//! - [`journal`]: the optional crash journal (`JOURNAL_PATH`).
//! - [`telemetry`]: JSON-lines (or pretty) logging.
//! - [`sim`]: `node-sim`, the reference node with fault injection.
//!
//! # The life of a group
//!
//! [`run::run_groups`] starts a [`transaction::Transaction`] per id. It reads
//! the group on every node (prior state), writes where a node differs from
//! the goal, resolves every unclear answer by reading the node back, and
//! either commits or undoes exactly what it changed. Every request passes
//! through the retry middleware and the node's gate (429 pause, rate limit,
//! concurrency) before it reaches the network.

pub mod api;
pub mod client;
pub mod config;
pub mod ids;
pub mod job;
pub mod journal;
pub mod progress;
pub mod report;
pub mod retry;
pub mod run;
pub mod sim;
pub mod telemetry;
pub mod transaction;
