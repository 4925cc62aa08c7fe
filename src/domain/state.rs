//! What one node holds of one group, as far as the job knows.

use serde::{Deserialize, Serialize};

/// A node's state for one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Present,
    Absent,
    /// The node could not be read (or a request was cut short).
    Unknown,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Present => "present",
            NodeState::Absent => "absent",
            NodeState::Unknown => "unknown",
        }
    }
}
