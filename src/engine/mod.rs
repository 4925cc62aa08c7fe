//! The engine: what the job does to the nodes.
//!
//! - [`transaction`]: one group, all-or-nothing, on every node (I1–I4 of
//!   docs/TRANSACTIONS.md), through the nodes' protocol (standard or
//!   two-phase); its per-node decisions are pure functions in
//!   `transaction/rules.rs`;
//! - [`run`]: many groups under the run's limits, deadline and signals;
//! - [`inspect`]: the read-only looks at one group: verify, and the dry
//!   run's plan;
//! - [`phases`]: how each `OPERATION` becomes the run's phases (a reconcile
//!   lists the nodes and decides its prune first), with [`discovery`]
//!   listing the nodes;
//! - [`prior`]: the batch's prior state from node lists (`PRIOR_STATE`);
//! - [`fan_out`]: one step on several nodes at once, under the run's kill;
//! - `recheck`: the run's last read of nodes where a write whose answer
//!   was lost may have landed after its group ended;
//! - [`control`]: the run's stop, abort and kill;
//! - [`id_list`]: the ids of `GROUP_IDS` and `GROUP_IDS_FILE`, checked and
//!   held in memory.
//!
//! The engine uses the node API and the outputs (journal, progress, report
//! types); it never reads the configuration: the job hands it settings.

pub mod control;
pub mod discovery;
pub mod fan_out;
pub mod id_list;
pub mod inspect;
pub mod phases;
pub mod prior;
mod recheck;
pub mod run;
pub mod transaction;

pub use control::Control;
pub use id_list::GroupIds;
pub use recheck::{settle_now, Rechecked};
pub use run::{run_groups, supervise, Phase, RunResult, RunSettings};
pub use transaction::Transaction;
