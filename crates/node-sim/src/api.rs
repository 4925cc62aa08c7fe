//! The bodies of the simulator's inspection and fault endpoints
//! (`/_sim/state`, `/_sim/faults`), typed once so that the tests and the
//! simulator cannot drift apart.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::two_phase::{Intention, Protocol};

/// A node-API call, as counted by the simulator and named in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeOp {
    Create,
    Delete,
    Get,
    List,
}

impl NodeOp {
    pub const ALL: [NodeOp; 4] = [NodeOp::Create, NodeOp::Delete, NodeOp::Get, NodeOp::List];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeOp::Create => "create",
            NodeOp::Delete => "delete",
            NodeOp::Get => "get",
            NodeOp::List => "list",
        }
    }

    /// Whether the call changes the node: creates and deletes, two-phase
    /// steps included. Writes take `write_latency_ms` and run to their end
    /// even when their client has gone.
    pub fn is_write(self) -> bool {
        matches!(self, NodeOp::Create | NodeOp::Delete)
    }

    /// Parses the names used by `--fail-ops` and `fail_ops`.
    pub fn parse(name: &str) -> Option<NodeOp> {
        NodeOp::ALL.into_iter().find(|op| op.as_str() == name)
    }
}

impl fmt::Display for NodeOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Body of `GET /_sim/state`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimState {
    /// Ids held by the node, sorted, exactly as received (decoded).
    pub groups: Vec<String>,
    /// Node-API requests received, by call name (`create`, `delete`, `get`, `list`).
    pub requests: BTreeMap<String, u64>,
    /// Node-API responses sent, by status code (`"201"`, `"429"`, ...).
    pub responses: BTreeMap<String, u64>,
    /// TCP connections accepted (inspection calls included): with
    /// keep-alive, far fewer than requests.
    #[serde(default)]
    pub connections: u64,
    /// Intentions not committed (two-phase protocol), in id order: what a
    /// run must not leave behind.
    #[serde(default)]
    pub intentions: Vec<Intention>,
    /// Writes (creates and deletes, two-phase steps included) whose answer
    /// was ready after their client had gone (its connection seen closed),
    /// so it was never sent. Each was carried out as if the client had
    /// stayed: applied, unless its answer was a fault that applies nothing.
    /// They are not in `responses`.
    #[serde(default)]
    pub undelivered_writes: u64,
}

/// Fault injection settings of one simulated node. Every rate is a
/// probability in `[0, 1]` drawn independently per node-API request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    /// Answer `500` without applying the call.
    pub fail_rate: f64,
    /// Apply the call, then answer `500`.
    pub ambiguous_rate: f64,
    /// Answer `503` without applying the call.
    pub unavailable_rate: f64,
    /// Answer `429` with `Retry-After: retry_after_secs`, not applied.
    pub throttle_rate: f64,
    /// Seconds sent in `Retry-After` by the throttle fault.
    pub retry_after_secs: u64,
    /// Send no answer for `hang_ms`, not applied.
    pub timeout_rate: f64,
    /// How long a timed-out request hangs before the node gives up on it.
    pub hang_ms: u64,
    /// Delay added to every node-API request.
    pub latency_ms: u64,
    /// Delay added to writes only (creates and deletes, two-phase steps
    /// included), on top of `latency_ms` and the jitter, before the call is
    /// applied: reads stay fast while writes outlast a client's timeout.
    #[serde(default)]
    pub write_latency_ms: u64,
    /// Extra uniformly random delay in `[0, jitter_ms]`.
    pub jitter_ms: u64,
    /// Server-side limit in requests per second (0 = none); above it the
    /// node answers `429` with `Retry-After`.
    pub rate_limit: u32,
    /// Calls the rates apply to.
    pub fail_ops: Vec<NodeOp>,
    /// Capacity: with this many node-API calls in progress (0 = no bound),
    /// the node sheds any further call with an immediate `503`, not applied.
    /// A write whose client has gone is still in progress until it lands.
    #[serde(default)]
    pub max_in_flight: u32,
    /// The protocol of creates and deletes (see [`super::two_phase`]).
    #[serde(default)]
    pub protocol: Protocol,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            fail_rate: 0.0,
            ambiguous_rate: 0.0,
            unavailable_rate: 0.0,
            throttle_rate: 0.0,
            retry_after_secs: 1,
            timeout_rate: 0.0,
            hang_ms: 30_000,
            latency_ms: 0,
            write_latency_ms: 0,
            jitter_ms: 0,
            rate_limit: 0,
            fail_ops: vec![NodeOp::Create, NodeOp::Delete, NodeOp::Get],
            max_in_flight: 0,
            protocol: Protocol::Standard,
        }
    }
}

/// Body of `PUT /_sim/faults`: only the fields given change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ambiguous_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hang_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_ops: Option<Vec<NodeOp>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}
