//! What an answer means: the classification of every write and read the
//! client makes, as pure functions of the status, headers and body. The
//! client never guesses: any write answer other than the expected success
//! is [`WriteAnswer::Unresolved`], which the transaction resolves by reading
//! the node back (docs/NODE_API.md lists every case).

use http::{HeaderMap, StatusCode};
use serde_json::Value;
use url::Url;

use super::errors::describe_status;
use crate::domain::{GroupId, NodeState};

/// The answer to a create or delete, after retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteAnswer {
    /// The node answered the expected success (`201` create, `200` delete).
    Applied,
    /// Anything else: the write may or may not have landed (a `400` on
    /// create, a `404` on delete, retries exhausted, a refusal after an
    /// earlier attempt that may have landed). Resolved by reading back.
    Unresolved { status: Option<u16>, detail: String },
}

impl WriteAnswer {
    pub(super) fn unresolved(status: Option<u16>, detail: String) -> Self {
        WriteAnswer::Unresolved { status, detail }
    }
}

/// The answer to one call of the two-phase protocol (docs/TWO_PHASE.md),
/// after retries. What the node holds afterwards is for the transaction to
/// work out: a `200` may be a first call or a commit, and any answer after an
/// attempt that got none may follow a call the node did apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepAnswer {
    /// `200`: an intention recorded, or committed.
    Accepted,
    /// `409`: the group exists (a create), or another session holds it.
    Conflict { detail: String },
    /// `404`: a delete of a group the node does not hold.
    Absent,
    /// Anything else, retries exhausted included.
    Failed { status: Option<u16>, detail: String },
}

impl StepAnswer {
    pub(super) fn failed(status: Option<u16>, detail: String) -> Self {
        StepAnswer::Failed { status, detail }
    }
}

impl std::fmt::Display for StepAnswer {
    /// The answer in words, for logs and reports.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepAnswer::Accepted => f.write_str("accepted (200)"),
            StepAnswer::Conflict { detail } => write!(f, "conflict (409): {detail}"),
            StepAnswer::Absent => f.write_str("absent (404)"),
            StepAnswer::Failed { detail, .. } => f.write_str(detail),
        }
    }
}

/// The answer class of a two-phase call that got a response.
pub(super) fn classify_step(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    url: &Url,
) -> StepAnswer {
    match status {
        StatusCode::OK => StepAnswer::Accepted,
        StatusCode::NOT_FOUND => StepAnswer::Absent,
        StatusCode::CONFLICT => StepAnswer::Conflict {
            detail: detail_of(body),
        },
        // A standard node creates at once and ignores the session.
        StatusCode::CREATED => StepAnswer::failed(
            Some(201),
            "answered 201 Created: the node seems to speak the standard protocol \
             (NODE_PROTOCOL=standard), and may now hold the group"
                .to_string(),
        ),
        _ => StepAnswer::failed(Some(status.as_u16()), describe_status(status, headers, url)),
    }
}

/// The `detail` of a two-phase error body, or its start as text.
fn detail_of(body: &[u8]) -> String {
    let detail = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_owned));
    let text = detail.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    crate::domain::truncate(text.trim(), 200)
}

/// The answer to a read of one group on one node, after retries.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadAnswer {
    /// The node holds the group; the record it returned (or the plain
    /// `{"groupId": ..}` record when its body was not a JSON object).
    Present(Value),
    Absent,
    /// The node's state could not be learnt.
    Failed {
        status: Option<u16>,
        detail: String,
    },
}

impl ReadAnswer {
    pub(super) fn failed(status: Option<u16>, detail: String) -> Self {
        ReadAnswer::Failed { status, detail }
    }

    /// The state the read found.
    pub fn state(&self) -> NodeState {
        match self {
            ReadAnswer::Present(_) => NodeState::Present,
            ReadAnswer::Absent => NodeState::Absent,
            ReadAnswer::Failed { .. } => NodeState::Unknown,
        }
    }

    /// Why the read found nothing, for a node's detail.
    pub fn failure(&self) -> Option<String> {
        match self {
            ReadAnswer::Failed { detail, .. } => Some(format!("read failed: {detail}")),
            _ => None,
        }
    }
}

/// The answer class of a write that got a response: only `expected` settles
/// it; anything else leaves it to a read-back.
pub fn classify_write(
    status: StatusCode,
    headers: &HeaderMap,
    expected: StatusCode,
    url: &Url,
) -> WriteAnswer {
    if status == expected {
        WriteAnswer::Applied
    } else {
        WriteAnswer::unresolved(Some(status.as_u16()), describe_status(status, headers, url))
    }
}

/// The answer class of a read that got a response. Liberal in what it
/// accepts: a `200` for the group's own URL says the group exists whatever
/// the body, unless the body names another group.
pub fn classify_read(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    group: &GroupId,
    url: &Url,
) -> ReadAnswer {
    match status {
        StatusCode::OK => {
            // Anything but a JSON object with a `groupId` stands for the
            // plain record.
            let record = serde_json::from_slice::<Value>(body).unwrap_or_default();
            match record.get("groupId") {
                None => ReadAnswer::Present(plain_record(group)),
                Some(id) if id == group.as_str() => ReadAnswer::Present(record),
                Some(_) => ReadAnswer::failed(
                    Some(200),
                    "node returned a record for a different group id".to_string(),
                ),
            }
        }
        StatusCode::NOT_FOUND | StatusCode::GONE => ReadAnswer::Absent,
        _ => {
            let detail = format!("{} to a read", describe_status(status, headers, url));
            ReadAnswer::failed(Some(status.as_u16()), detail)
        }
    }
}

/// The record a create sends: `node_contract::GroupBody` as JSON, `{"groupId": id}`.
pub fn plain_record(group: &GroupId) -> Value {
    serde_json::json!({ "groupId": group.as_str() })
}
