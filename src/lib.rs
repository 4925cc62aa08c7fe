//! `api-consumer`: creates or deletes "groups" on every node of a cluster,
//! all-or-nothing, through each node's unstable HTTP API.
//!
//! # Module map
//!
//! The folders are the layers; arrows point down this list, never up
//! (`python3 ci/check-layout.py` checks that no two files import each
//! other, directly or around a loop).
//!
//! - `bin/`: thin binaries. `api-consumer` reads the configuration, sets up
//!   logging and signals, calls [`job::run_job`] and maps the report to an
//!   exit code.
//! - [`job`]: the whole job as one call; the only reader of [`config`],
//!   whose values it turns into the settings of the layers below.
//! - [`config`]: environment variables (and `.env`) parsed once into a
//!   typed [`config::Config`]: the variable table, value parsing, the
//!   environment merge and `--help`.
//! - [`engine`]: what the job does to the nodes: the all-or-nothing
//!   [`engine::Transaction`] for one group (its per-node decisions in
//!   `engine/transaction/rules.rs`), the run over many groups
//!   ([`engine::run_groups`]), its stop/abort/kill [`engine::Control`] and
//!   the id list.
//! - [`output`]: what operators read: logging ([`output::telemetry`]), the
//!   summary lines, progress, the run report and termination message
//!   ([`output::report`]) and the crash journal ([`output::journal`]).
//! - [`node_api`]: the node API contract and the HTTP client: retries with
//!   `Retry-After`, the per-node gate (429 pause, rate, concurrency), answer
//!   classification, error text and request statistics.
//! - [`domain`]: the leaf every layer shares: group id, operation, node
//!   address, secret, node state, outcomes and group reports, totals, stop
//!   reason, exit status, and the rules for showing values and replacing
//!   files.
//!
//! `node-sim`, the reference node with fault injection, is a crate of its own
//! (`crates/node-sim`); it shares only the node API contract
//! (`crates/node-contract`) with the job.
//!
//! The design documents of record are in `docs/`: `NODE_API.md` (every call
//! and answer, and what the client accepts) and `TRANSACTIONS.md` (the
//! transaction semantics and the invariants I1–I4).
//!
//! # The life of a group
//!
//! [`engine::run_groups`] starts a [`engine::Transaction`] per id. It reads
//! the group on every node (prior state), writes where a node differs from
//! the goal, resolves every unclear answer by reading the node back, and
//! either commits or undoes exactly what it changed. Every request passes
//! through the retry middleware and the node's gate before it reaches the
//! network. The outcome goes to the log, the progress counts, the run
//! report and, with a journal, the journal.

pub mod config;
pub mod domain;
pub mod engine;
pub mod job;
pub mod node_api;
pub mod output;
