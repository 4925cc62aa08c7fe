//! What a run works on: the operation, what it does to each group, the
//! group ids, and where each id was listed.

use std::fmt;

use serde::Serialize;

use super::state::NodeState;

/// What the run does (`OPERATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Every listed group present on every node.
    Create,
    /// Every listed group absent from every node.
    Delete,
    /// Read-only: is every group on every node or on none?
    Verify,
    /// The listed groups are the desired set: each made present everywhere,
    /// and with `PRUNE`, every other group deleted everywhere.
    Reconcile,
}

/// Shown by its serde name, as `OPERATION` takes it (`create`).
impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.serialize(f)
    }
}

/// What the run does to one group; named in its log lines and report entry
/// as `operation` (`create`, `delete` or `verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// An all-or-nothing transaction.
    Apply(Change),
    /// Read-only: on every node, or on none?
    Verify,
    /// Dry run: read-only, what would a transaction write?
    Plan(Change),
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Apply(change) | Task::Plan(change) => change.as_str(),
            Task::Verify => "verify",
        }
    }
}

impl Serialize for Task {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// What a transaction does to one group: the change it makes everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Goal: the group is present on every node.
    Create,
    /// Goal: the group is absent from every node.
    Delete,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Create => "create",
            Change::Delete => "delete",
        }
    }

    /// The state every node must reach.
    pub fn goal(self) -> NodeState {
        match self {
            Change::Create => NodeState::Present,
            Change::Delete => NodeState::Absent,
        }
    }

    /// The state a node this operation changes starts from, and that undoing
    /// the change returns it to.
    pub fn changed_from(self) -> NodeState {
        self.opposite().goal()
    }

    /// The operation that undoes this one.
    pub fn opposite(self) -> Change {
        match self {
            Change::Create => Change::Delete,
            Change::Delete => Change::Create,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated group id: non-empty, at most 256 bytes, no control characters,
/// not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct GroupId(String);

impl GroupId {
    pub const MAX_BYTES: usize = 256;

    /// Validates `id` as given (no trimming): non-empty, at most
    /// [`GroupId::MAX_BYTES`] bytes of UTF-8, no control characters, and not
    /// exactly `.` or `..`.
    /// The error describes the problem without repeating the id.
    pub fn new(id: impl Into<String>) -> Result<GroupId, String> {
        let id = id.into();
        if id.is_empty() {
            return Err("group id is empty".to_owned());
        }
        if id.len() > Self::MAX_BYTES {
            return Err(format!(
                "group id is {} bytes long; at most {} bytes are allowed",
                id.len(),
                Self::MAX_BYTES
            ));
        }
        if let Some((at, c)) = id.char_indices().find(|(_, c)| c.is_control()) {
            return Err(format!(
                "group id contains the control character U+{:04X} at byte {at}",
                u32::from(c)
            ));
        }
        // URL parsers resolve a path segment of `.` or `..` (even encoded as
        // `%2E`) against its parent, so `GET /v1/group/<id>/` cannot address
        // these two ids: reading them back would read something else.
        if id == "." || id == ".." {
            return Err(format!(
                "group id {id:?} cannot be addressed in a URL path (GET /v1/group/<id>/)"
            ));
        }
        Ok(GroupId(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps an id read back from the job's own journal, for reporting it
    /// when it no longer validates; nothing is sent for such an id.
    pub(crate) fn unchecked(id: &str) -> GroupId {
        GroupId(id.to_string())
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One node's base URL, normalised (scheme, host, port, path ending in `/`).
/// Where an id was listed, for reports and errors; serialized as its text
/// (`GROUP_IDS_FILE line 12`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The n-th entry of `GROUP_IDS` (from 1).
    GroupIds(u64),
    /// Line n of `GROUP_IDS_FILE` (from 1).
    GroupIdsFile(u64),
    /// The n-th group found on the nodes but not listed (from 1), in id
    /// order: what verify checks without ids, and what a reconcile prunes.
    Discovered(u64),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::GroupIds(n) => write!(f, "GROUP_IDS entry {n}"),
            Position::GroupIdsFile(n) => write!(f, "GROUP_IDS_FILE line {n}"),
            Position::Discovered(n) => write!(f, "group {n} found on the nodes"),
        }
    }
}

impl Serialize for Position {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_id_rules() {
        assert!(GroupId::new("a").is_ok());
        assert!(GroupId::new("x".repeat(256)).is_ok());
        assert!(GroupId::new("é".repeat(128)).is_ok());
        assert!(GroupId::new("é".repeat(129)).is_err());
        assert!(GroupId::new("with space/and%2F?#").is_ok());
        assert!(GroupId::new("").is_err());
        assert!(GroupId::new("a\tb").is_err());
        assert!(GroupId::new("a\u{85}b").is_err());
        assert!(GroupId::new("a\u{7f}").is_err());
        // Validation does not trim: that is the parser's job.
        assert_eq!(
            GroupId::new(" a ").map(|g| g.as_str().to_owned()),
            Ok(" a ".to_owned())
        );
    }
}
