//! Integration tests, compiled into one binary: every test talks real HTTP to
//! `node-sim` nodes or to raw nodes (raw_node.rs) on loopback, and the
//! process tests run the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod answers;
mod behind_nginx;
mod common;
mod crash;
mod dry_run;
mod hostile_config;
mod hostile_nodes;
mod ids_and_secrets;
mod late_writes;
mod metrics;
mod node_health;
mod prior_state;
mod process;
mod randomized;
mod raw_node;
mod reconcile;
mod scale;
mod shards;
mod tls;
mod two_phase;
mod verify;
