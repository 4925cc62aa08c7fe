//! The node API contract, shared by `api-consumer` (the client) and
//! `node-sim` (the reference node): paths, bodies and how a group id becomes
//! one path segment. docs/NODE_API.md is the full contract.
//!
//! Every node serves three calls:
//!
//! | call   | request                                        | success        |
//! |--------|------------------------------------------------|----------------|
//! | create | `POST /v1/group/` with `{"groupId": "<id>"}`   | `201 Created`  |
//! | delete | `DELETE /v1/group/` with `{"groupId": "<id>"}` | `200 OK`       |
//! | get    | `GET /v1/group/<percent-encoded id>/`          | `200` + record |
//!
//! Some nodes add `GET /v1/groups` (a list); the simulator serves it, plus
//! `GET /healthz` and its own inspection endpoints.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

/// Path of the collection that `POST` (create) and `DELETE` (delete) address.
pub const GROUP_COLLECTION_PATH: &str = "v1/group/";
/// Path of the optional list endpoint.
pub const GROUP_LIST_PATH: &str = "v1/groups";

/// Characters that stay literal in a path segment: RFC 3986 unreserved ones.
/// Everything else, `/`, `?`, `#`, `%` and non-ASCII bytes included, is
/// percent-encoded so an id is always exactly one path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Relative path of one group's record: `v1/group/<percent-encoded id>/`.
pub fn group_item_path(group_id: &str) -> String {
    format!("{GROUP_COLLECTION_PATH}{}/", group_segment(group_id))
}

/// A group id as one percent-encoded path segment.
pub fn group_segment(group_id: &str) -> impl std::fmt::Display + '_ {
    utf8_percent_encode(group_id, SEGMENT)
}

/// The body of create and delete requests, and of a successful get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupBody {
    #[serde(rename = "groupId")]
    pub group_id: String,
}

impl GroupBody {
    pub fn new(group_id: impl Into<String>) -> Self {
        Self {
            group_id: group_id.into(),
        }
    }
}

/// Path of the two-phase protocol's create (docs/TWO_PHASE.md).
pub const SESSION_CREATE_PATH: &str = "v1/group";

/// Relative path of the two-phase protocol's delete of one group:
/// `v1/group/<percent-encoded id>`.
pub fn session_item_path(group_id: &str) -> String {
    format!("{SESSION_CREATE_PATH}/{}", group_segment(group_id))
}

/// The body of a two-phase create: the group and the session it belongs to.
/// Such nodes refuse unknown fields (`422`), and so does node-sim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionCreateBody {
    #[serde(rename = "groupId")]
    pub group_id: String,
    #[serde(rename = "sessionId")]
    pub session_id: String,
}

/// The body of a two-phase delete (the group is in the path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionDeleteBody {
    #[serde(rename = "sessionId")]
    pub session_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_encoded_segment() {
        assert_eq!(group_item_path("plain-id_1.x~"), "v1/group/plain-id_1.x~/");
        assert_eq!(
            group_item_path("a/b?c#d%e f"),
            "v1/group/a%2Fb%3Fc%23d%25e%20f/"
        );
        assert_eq!(group_item_path("é"), "v1/group/%C3%A9/");
    }
}
