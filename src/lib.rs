//! `api-consumer`: creates or deletes "groups" on every node of a cluster,
//! all-or-nothing, through each node's unstable HTTP API.
//!
//! # Module map
//!
//! The folders are the layers; arrows point down this list, never up
//! (`python3 ci/check-layout.py` checks that no two files import each
//! other, directly or around a loop, and that no file's non-test part
//! passes 800 lines).
//!
//! - `bin/api-consumer.rs`: the binary. It answers `--help` and
//!   `--version`, reads the configuration, sets up logging and signals,
//!   calls [`job::run_job`], logs the summary and exits with the report's
//!   code.
//! - [`job`]: the whole run as one call: it turns the [`config::Config`]
//!   into the settings of the client and the run, resolves the crash
//!   journal, runs the groups and assembles the run report.
//! - [`config`]: environment variables (and `.env`) parsed once into a
//!   typed [`config::Config`]: the variable table, the parsers, the
//!   environment merge and `--help`.
//! - [`engine`]: what the job does to the nodes: the all-or-nothing
//!   [`engine::Transaction`] for one group (start with
//!   `engine/transaction/mod.rs`; its per-node decisions are in
//!   `engine/transaction/rules.rs`), the run over many groups
//!   ([`engine::run_groups`]), its stop/abort/kill [`engine::Control`], the
//!   read-only verify and plan, reconcile's phases and the id list.
//! - [`output`]: what operators read: logging ([`output::telemetry`]), the
//!   summary lines, progress, the run report and termination message
//!   ([`output::report`]), the crash journal ([`output::journal`]) and the
//!   pushed metrics ([`output::metrics`]).
//! - [`node_api`]: the HTTP client for the node API: one request path
//!   through a node's gate, the attempt and the retry decision; answer
//!   classification, error text and request statistics.
//! - [`domain`]: the leaf every layer shares: group id, operation, change
//!   and task, node address, secret, node state, outcomes and group
//!   reports, totals, stop reason, exit status, and the rules for showing
//!   values and replacing files.
//!
//! Beside this crate, in the same Cargo workspace: `crates/node-contract`
//! (the node API's paths and bodies, shared with the simulator) and
//! `crates/node-sim` (the reference node with fault injection, for the
//! demo, the tests, the benchmarks and the chart's demo cluster; the job's
//! own dependency tree does not hold it). Elsewhere in the repository:
//! `tests/it/` (every integration test, one binary, real HTTP against
//! node-sim on loopback), `examples/demo.rs` (the demo) and
//! `examples/http_stack.rs` (the HTTP stack alone, for the benchmarks),
//! `bench/` (the benchmark harness), `fuzz/` (the fuzz targets),
//! `manifests/` (the Helm chart), `Dockerfile`, and `ci/` with `.ci/run`
//! (every check CI runs).
//!
//! The design documents of record are in `docs/`: `NODE_API.md` (every call
//! and answer, and what the client accepts), `TRANSACTIONS.md` (the
//! transaction semantics, the invariants I1–I4 and the exit codes) and
//! `TWO_PHASE.md` (nodes with a two-phase protocol).
//!
//! # The life of a group
//!
//! [`engine::run_groups`] starts a [`engine::Transaction`] per entry of the
//! id list. It learns the group's state on every node (read, or from the
//! nodes' lists), writes where a node differs from the goal, resolves every
//! unclear answer by reading the node back, and either commits or undoes
//! exactly what it changed, through the nodes' protocol (standard or
//! two-phase). Every request takes [`node_api::NodeClient`]'s one path:
//! a slot of its node's gate, the attempt, and the retry decision. The
//! outcome goes to the log, the progress counts, the run report and, with
//! a journal, the journal.

pub mod config;
pub mod domain;
pub mod engine;
pub mod job;
pub mod node_api;
pub mod output;
