//! The types every layer shares, and nothing else: what a run works on
//! (operation, group id, node address, secret, shard), what it finds (node state)
//! and how it ends (outcome, group report, totals, stop reason, exit
//! status), plus the two rules every output follows (values shown cut short,
//! files replaced atomically). This module uses no other module of the
//! crate.

mod file;
mod group;
mod node;
mod outcome;
mod secret;
mod shard;
mod state;
mod text;

pub use file::{replace_atomically, sibling};
pub use group::{Change, GroupId, Operation, Position, Task};
pub use node::{NodeAddress, NodeProtocol};
pub use outcome::{
    ExitStatus, GroupReport, NodeDetail, Outcome, OutcomeCounts, StopReason, Unsettled,
};
pub use secret::Secret;
pub use shard::Shard;
pub use state::NodeState;
pub use text::{quote, truncate};
