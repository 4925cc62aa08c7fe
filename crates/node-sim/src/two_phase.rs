//! The two-phase session protocol some clusters' nodes speak instead of a
//! plain create and delete (`node-sim --protocol two-phase`, or
//! `"protocol": "two-phase"` through `PUT /_sim/faults`):
//!
//! | call | first call of a session | the same call again |
//! |---|---|---|
//! | `POST /v1/group` `{"groupId", "sessionId"}` | `200`, an intention to create; reads do not see it | `200`, committed: the group exists |
//! | `DELETE /v1/group/<id>` `{"sessionId"}` | `200`, an intention to delete; reads still see the group | `200`, committed: the group is gone |
//!
//! A create of a group that exists, or of one another session holds an
//! intention for, is `409`; so is a delete of a group another session holds.
//! A delete of an absent group is `404`. There is no abort: an intention
//! that is never committed blocks its group for every other session until
//! the node restarts. A call resent after its first attempt was recorded is
//! the second call, and commits. Error bodies are `{"detail": ...}`, and a
//! body with an unknown field is `422`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Which protocol a node speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// Create and delete in one call each (docs/NODE_API.md).
    #[default]
    Standard,
    /// An intention, then its commit, per session.
    TwoPhase,
}

impl Protocol {
    /// `standard` or `two-phase`.
    pub fn parse(text: &str) -> Option<Protocol> {
        match text {
            "standard" => Some(Protocol::Standard),
            "two-phase" => Some(Protocol::TwoPhase),
            _ => None,
        }
    }
}

/// What an intention would do once committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentionOp {
    Create,
    Delete,
}

/// An intention a node holds, as `GET /_sim/state` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intention {
    pub group_id: String,
    pub session_id: String,
    pub operation: IntentionOp,
}

/// The session and operation holding one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) session_id: String,
    pub(crate) operation: IntentionOp,
}

/// What one call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The first call of the session: an intention is recorded.
    Recorded,
    /// The same call again: the intention is carried out.
    Committed,
    /// `409`, and why.
    Conflict(&'static str),
    /// `404`: a delete of a group that is not there.
    Absent,
}

/// Applies one call of `session_id` to `group_id` on a node holding
/// `groups` and `intentions`.
pub(crate) fn step(
    groups: &mut BTreeSet<String>,
    intentions: &mut BTreeMap<String, Held>,
    operation: IntentionOp,
    group_id: &str,
    session_id: &str,
) -> Step {
    match intentions.get(group_id) {
        Some(held) if held.session_id != session_id => {
            return Step::Conflict("another session holds an intention for this group")
        }
        Some(held) if held.operation != operation => {
            return Step::Conflict("this session holds the other intention for this group")
        }
        Some(_) => {
            intentions.remove(group_id);
            match operation {
                IntentionOp::Create => groups.insert(group_id.to_owned()),
                IntentionOp::Delete => groups.remove(group_id),
            };
            return Step::Committed;
        }
        None => {}
    }
    let exists = groups.contains(group_id);
    match (operation, exists) {
        (IntentionOp::Create, true) => Step::Conflict("group already exists"),
        (IntentionOp::Delete, false) => Step::Absent,
        _ => {
            intentions.insert(
                group_id.to_owned(),
                Held {
                    session_id: session_id.to_owned(),
                    operation,
                },
            );
            Step::Recorded
        }
    }
}

/// Parses a body; the error is the `detail` of a `422`.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid body: {e}"))
}

/// The intentions of a node, for `GET /_sim/state`, in id order.
pub(crate) fn listed(intentions: &BTreeMap<String, Held>) -> Vec<Intention> {
    intentions
        .iter()
        .map(|(group_id, held)| Intention {
            group_id: group_id.clone(),
            session_id: held.session_id.clone(),
            operation: held.operation,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use node_contract::{SessionCreateBody, SessionDeleteBody};
    use IntentionOp::{Create, Delete};

    #[test]
    fn an_intention_then_its_commit_per_session() {
        let (mut groups, mut held) = (BTreeSet::new(), BTreeMap::new());
        assert_eq!(
            step(&mut groups, &mut held, Create, "g", "s1"),
            Step::Recorded
        );
        assert!(!groups.contains("g"), "an intention is invisible");
        assert!(matches!(
            step(&mut groups, &mut held, Create, "g", "s2"),
            Step::Conflict(_)
        ));
        assert!(matches!(
            step(&mut groups, &mut held, Delete, "g", "s1"),
            Step::Conflict(_)
        ));
        assert_eq!(
            step(&mut groups, &mut held, Create, "g", "s1"),
            Step::Committed
        );
        assert!(groups.contains("g") && held.is_empty());
        assert!(matches!(
            step(&mut groups, &mut held, Create, "g", "s1"),
            Step::Conflict("group already exists")
        ));
        assert_eq!(
            step(&mut groups, &mut held, Delete, "g", "s3"),
            Step::Recorded
        );
        assert!(groups.contains("g"), "a delete intention leaves the group");
        assert_eq!(
            step(&mut groups, &mut held, Delete, "g", "s3"),
            Step::Committed
        );
        assert!(!groups.contains("g"));
        assert_eq!(
            step(&mut groups, &mut held, Delete, "g", "s3"),
            Step::Absent
        );
        assert!(held.is_empty());
    }

    #[test]
    fn bodies_with_unknown_or_missing_fields_are_refused() {
        assert!(parse::<SessionCreateBody>(br#"{"groupId":"g","sessionId":"s"}"#).is_ok());
        assert!(parse::<SessionCreateBody>(br#"{"groupId":"g"}"#).is_err());
        assert!(parse::<SessionCreateBody>(br#"{"groupId":"g","sessionId":"s","x":1}"#).is_err());
        assert!(parse::<SessionDeleteBody>(br#"{"sessionId":"s"}"#).is_ok());
        assert!(parse::<SessionDeleteBody>(br#"{"sessionId":"s","groupId":"g"}"#).is_err());
    }
}
