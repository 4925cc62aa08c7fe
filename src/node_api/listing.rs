//! `GET /v1/groups`: the groups one node holds, for verify without ids and
//! for reconcile. Not every node serves it, and those that do answer in
//! different shapes; all of these are accepted (docs/NODE_API.md, "List"):
//!
//! - a JSON array of ids: `["a", "b"]`;
//! - a JSON array of records: `[{"groupId": "a", ...}, ...]` (other fields
//!   ignored);
//! - an object holding either under `groups`: `{"groups": [...], ...}`.
//!
//! The body is parsed straight into the ids, without a JSON tree of it, and
//! read only up to [`LIST_MAX_BYTES`]: a larger list is an error naming the
//! limit, never a partial list (a partial list would hide groups from a
//! prune's guard and from verify).

use std::fmt;

use http::StatusCode;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// Most bytes of one node's list that are read: some 2.4 million ids of 20
/// characters as records, or 2.8 million as plain strings.
pub const LIST_MAX_BYTES: usize = 64 * 1024 * 1024;

/// The answer to a list, after retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListAnswer {
    /// The ids the node holds, as it listed them (not yet validated).
    Listed(Vec<String>),
    /// The node does not serve `GET /v1/groups` (`404`, `405`, `501`).
    Unsupported { status: u16 },
    /// The list could not be had or read.
    Failed { status: Option<u16>, detail: String },
}

/// The answer class of a list that got a response.
pub fn classify_list(status: StatusCode, body: &[u8], truncated: bool) -> ListAnswer {
    match status {
        StatusCode::OK if truncated => ListAnswer::Failed {
            status: Some(200),
            detail: format!("the list is larger than {LIST_MAX_BYTES} bytes"),
        },
        StatusCode::OK => match parse_list(body) {
            Ok(ids) => ListAnswer::Listed(ids),
            Err(detail) => ListAnswer::Failed {
                status: Some(200),
                detail,
            },
        },
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED => {
            ListAnswer::Unsupported {
                status: status.as_u16(),
            }
        }
        _ => ListAnswer::Failed {
            status: Some(status.as_u16()),
            detail: format!("node answered {status} to a list"),
        },
    }
}

/// The ids of a list body in any accepted shape; the error says what the
/// body is instead, without quoting it.
pub fn parse_list(body: &[u8]) -> Result<Vec<String>, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let list = deserializer
        .deserialize_any(ListVisitor { nested: false })
        .and_then(|list| deserializer.end().map(|()| list))
        .map_err(|e| format!("the list is not readable: {}", e.classify_text()))?;
    Ok(list)
}

/// A serde_json error in words, without the excerpt of the input some of
/// its messages carry.
trait ClassifyText {
    fn classify_text(&self) -> String;
}

impl ClassifyText for serde_json::Error {
    fn classify_text(&self) -> String {
        let what = match self.classify() {
            serde_json::error::Category::Io => "the body could not be read",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Eof => "the JSON ends early",
            serde_json::error::Category::Data => {
                return crate::domain::truncate(&self.to_string(), 200)
            }
        };
        format!("{what} (line {}, column {})", self.line(), self.column())
    }
}

/// The whole body: an array, or (at the top only) an object with `groups`.
struct ListVisitor {
    nested: bool,
}

impl<'de> Visitor<'de> for ListVisitor {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nested {
            f.write_str("an array of group ids or of records with a groupId")
        } else {
            f.write_str(
                "an array of group ids or of records with a groupId, or an object \
                 holding one under \"groups\"",
            )
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        // The hint comes from the input: trust it only so far.
        let mut ids = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Item(id)) = seq.next_element()? {
            ids.push(id);
        }
        Ok(ids)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
        if self.nested {
            return Err(de::Error::invalid_type(de::Unexpected::Map, &self));
        }
        let mut groups = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "groups" {
                if groups.is_some() {
                    return Err(de::Error::duplicate_field("groups"));
                }
                groups = Some(map.next_value::<GroupsArray>()?.0);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        groups.ok_or_else(|| de::Error::missing_field("groups"))
    }
}

/// The array under `groups`.
struct GroupsArray(Vec<String>);

impl<'de> Deserialize<'de> for GroupsArray {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(ListVisitor { nested: true })
            .map(GroupsArray)
    }
}

/// One element: an id, or a record whose `groupId` is the id.
struct Item(String);

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ItemVisitor).map(Item)
    }
}

struct ItemVisitor;

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a group id or a record with a string groupId")
    }

    fn visit_str<E: de::Error>(self, id: &str) -> Result<String, E> {
        Ok(id.to_owned())
    }

    fn visit_string<E: de::Error>(self, id: String) -> Result<String, E> {
        Ok(id)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<String, A::Error> {
        let mut id = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "groupId" {
                if id.is_some() {
                    return Err(de::Error::duplicate_field("groupId"));
                }
                id = Some(map.next_value::<String>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        id.ok_or_else(|| de::Error::missing_field("groupId"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use super::*;

    fn ids(body: &str) -> Result<Vec<String>, String> {
        parse_list(body.as_bytes())
    }

    #[test]
    fn every_accepted_shape_gives_the_ids() {
        let expected = Ok(vec!["a".to_owned(), "b/c".to_owned()]);
        assert_eq!(ids(r#"["a", "b/c"]"#), expected);
        assert_eq!(
            ids(r#"[{"groupId": "a"}, {"name": "x", "groupId": "b/c"}]"#),
            expected
        );
        assert_eq!(ids(r#"{"groups": ["a", "b/c"], "total": 2}"#), expected);
        assert_eq!(
            ids(r#"{"next": null, "groups": [{"groupId": "a"}, {"groupId": "b/c"}]}"#),
            expected
        );
        assert_eq!(ids(r#"[]"#), Ok(vec![]));
        assert_eq!(ids(" [\"a\", {\"groupId\": \"b/c\"}] \n"), expected);
    }

    #[test]
    fn other_shapes_are_errors_that_say_what_is_wrong() {
        for (body, says) in [
            ("<html>502 Bad Gateway</html>", "not JSON"),
            (r#"["a", "b""#, "ends early"),
            (r#"{"items": ["a"]}"#, "missing field `groups`"),
            (r#"{"groups": {"groups": ["a"]}}"#, "invalid type: map"),
            (r#"[1, 2]"#, "invalid type: integer"),
            (r#"[{"id": "a"}]"#, "missing field `groupId`"),
            (r#"[{"groupId": 7}]"#, "invalid type: integer"),
            (
                r#"[{"groupId": "a", "groupId": "b"}]"#,
                "duplicate field `groupId`",
            ),
            (r#""a""#, "invalid type: string"),
            (r#"["a"] ["b"]"#, "not JSON"),
            ("", "ends early"),
        ] {
            let error = ids(body).expect_err(body);
            assert!(error.contains(says), "{body:?}: {error}");
            assert!(error.len() < 300, "{error}");
        }
    }

    #[test]
    fn statuses_and_size_decide_before_the_body() {
        assert_eq!(
            classify_list(StatusCode::OK, br#"["a"]"#, false),
            ListAnswer::Listed(vec!["a".to_owned()])
        );
        for status in [404, 405, 501] {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            assert_eq!(
                classify_list(status, b"", false),
                ListAnswer::Unsupported {
                    status: status.as_u16()
                }
            );
        }
        assert!(matches!(
            classify_list(StatusCode::OK, br#"["a""#, true),
            ListAnswer::Failed { detail, .. } if detail.contains("larger than")
        ));
        assert!(matches!(
            classify_list(StatusCode::SERVICE_UNAVAILABLE, b"", false),
            ListAnswer::Failed {
                status: Some(503),
                ..
            }
        ));
    }
}
