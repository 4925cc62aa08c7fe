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
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::domain::truncate;

/// Most bytes of one node's list that are read: some 2.4 million ids of 20
/// characters as records, or 2.8 million as plain strings.
pub const LIST_MAX_BYTES: usize = 64 * 1024 * 1024;

/// The answer to a list, after retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListAnswer {
    /// The node answered its list; the body is parsed by its reader
    /// ([`ListBody::ids`], [`ListBody::for_each`]), which says if it cannot be.
    Listed(ListBody),
    /// The node does not serve `GET /v1/groups` (`404`, `405`, `501`).
    Unsupported { status: u16 },
    /// The list could not be had or read.
    Failed { status: Option<u16>, detail: String },
}

impl ListAnswer {
    pub(super) fn failed(status: Option<u16>, detail: String) -> Self {
        ListAnswer::Failed { status, detail }
    }

    /// The list's body, or why there is none, in words.
    pub fn into_body(self) -> Result<ListBody, String> {
        match self {
            ListAnswer::Listed(body) => Ok(body),
            ListAnswer::Unsupported { status } => Err(format!(
                "the node does not serve GET /v1/groups (it answered {status})"
            )),
            ListAnswer::Failed { detail, .. } => Err(detail),
        }
    }
}

/// The answer class of a list that got a response.
pub fn classify_list(status: StatusCode, body: Vec<u8>, truncated: bool) -> ListAnswer {
    match status {
        StatusCode::OK if truncated => ListAnswer::failed(
            Some(200),
            format!("the list is larger than {LIST_MAX_BYTES} bytes"),
        ),
        StatusCode::OK => ListAnswer::Listed(ListBody(body)),
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED => {
            ListAnswer::Unsupported {
                status: status.as_u16(),
            }
        }
        _ => ListAnswer::failed(
            Some(status.as_u16()),
            format!("node answered {status} to a list"),
        ),
    }
}

/// The body of a node's list, as received.
#[derive(Clone, PartialEq, Eq)]
pub struct ListBody(Vec<u8>);

impl std::fmt::Debug for ListBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ListBody({} bytes)", self.0.len())
    }
}

impl ListBody {
    /// The ids listed, in any accepted shape.
    pub fn ids(&self) -> Result<Vec<String>, String> {
        let mut ids = Vec::new();
        self.for_each(false, |id, _| ids.push(id))?;
        Ok(ids)
    }

    /// Calls `each` with every listed id and, when `records` is asked for
    /// and the node listed records, the record as listed. Nothing of the
    /// body is kept but what `each` keeps.
    pub fn for_each(
        &self,
        records: bool,
        mut each: impl FnMut(String, Option<Value>),
    ) -> Result<(), String> {
        parse_list(&self.0, records, &mut each)
    }
}

/// Parses a list body in any accepted shape into `each`; the error says
/// what the body is instead, without quoting it.
pub fn parse_list(
    body: &[u8],
    records: bool,
    each: &mut dyn FnMut(String, Option<Value>),
) -> Result<(), String> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let visitor = ListVisitor {
        nested: false,
        records,
        each,
    };
    deserializer
        .deserialize_any(visitor)
        .and_then(|()| deserializer.end())
        .map_err(|e| format!("the list is not readable: {}", json_error_text(&e)))
}

/// A serde_json error in words, without the excerpt of the input some of
/// its messages carry.
fn json_error_text(error: &serde_json::Error) -> String {
    let what = match error.classify() {
        serde_json::error::Category::Io => "the body could not be read",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Eof => "the JSON ends early",
        serde_json::error::Category::Data => return truncate(&error.to_string(), 200),
    };
    format!("{what} (line {}, column {})", error.line(), error.column())
}

/// Keys by which nodes say a list continues on another page. A page is
/// never used as the whole list: a group on a later page would pass for
/// absent.
const PAGE_KEYS: [&str; 6] = [
    "next",
    "nextPage",
    "next_page",
    "nextPageToken",
    "next_page_token",
    "continue",
];

/// The whole body: an array, or (at the top only) an object with `groups`.
struct ListVisitor<'a> {
    nested: bool,
    /// Keep each record (as a JSON value) for `each`.
    records: bool,
    each: &'a mut dyn FnMut(String, Option<Value>),
}

impl<'de> Visitor<'de> for ListVisitor<'_> {
    type Value = ();

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

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let records = self.records;
        while let Some((id, record)) = seq.next_element_seed(ItemSeed { records })? {
            (self.each)(id, record);
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.nested {
            return Err(de::Error::invalid_type(de::Unexpected::Map, &self));
        }
        let mut seen = false;
        let (records, each) = (self.records, self.each);
        while let Some(key) = map.next_key::<String>()? {
            if PAGE_KEYS.contains(&key.as_str()) {
                let next = map.next_value::<Value>()?;
                if !matches!(&next, Value::Null | Value::Bool(false)) && next.as_str() != Some("") {
                    return Err(de::Error::custom(format!(
                        "the list is one page of several ({key} is set); pages are not \
                         followed, so it would be incomplete"
                    )));
                }
            } else if key == "groups" {
                if seen {
                    return Err(de::Error::duplicate_field("groups"));
                }
                seen = true;
                map.next_value_seed(GroupsSeed {
                    records,
                    each: &mut *each,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if seen {
            Ok(())
        } else {
            Err(de::Error::missing_field("groups"))
        }
    }
}

/// The array under `groups`.
struct GroupsSeed<'a> {
    records: bool,
    each: &'a mut dyn FnMut(String, Option<Value>),
}

impl<'de> DeserializeSeed<'de> for GroupsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(ListVisitor {
            nested: true,
            records: self.records,
            each: self.each,
        })
    }
}

/// One element: an id, or a record whose `groupId` is the id (kept whole
/// when `records` is asked for).
struct ItemSeed {
    records: bool,
}

impl<'de> DeserializeSeed<'de> for ItemSeed {
    type Value = (String, Option<Value>);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed {
    type Value = (String, Option<Value>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a group id or a record with a string groupId")
    }

    fn visit_str<E: de::Error>(self, id: &str) -> Result<Self::Value, E> {
        Ok((id.to_owned(), None))
    }

    fn visit_string<E: de::Error>(self, id: String) -> Result<Self::Value, E> {
        Ok((id, None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut id = None;
        let mut record = self.records.then(Map::new);
        while let Some(key) = map.next_key::<String>()? {
            if key == "groupId" {
                if id.is_some() {
                    return Err(de::Error::duplicate_field("groupId"));
                }
                let value = map.next_value::<String>()?;
                if let Some(record) = &mut record {
                    record.insert(key, Value::String(value.clone()));
                }
                id = Some(value);
            } else if let Some(record) = &mut record {
                let value = map.next_value::<Value>()?;
                record.insert(key, value);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        let id = id.ok_or_else(|| de::Error::missing_field("groupId"))?;
        Ok((id, record.map(Value::Object)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use super::*;

    fn ids(body: &str) -> Result<Vec<String>, String> {
        ListBody(body.as_bytes().to_vec()).ids()
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
        // A last page says so with an empty or null continuation.
        assert_eq!(
            ids(r#"{"groups": ["a", "b/c"], "next": null, "continue": ""}"#),
            expected
        );
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
            (
                r#"{"groups": ["a"], "next": "/v1/groups?page=2"}"#,
                "one page of several",
            ),
            (
                r#"{"nextPageToken": "x", "groups": ["a"]}"#,
                "pages are not followed",
            ),
        ] {
            let error = ids(body).expect_err(body);
            assert!(error.contains(says), "{body:?}: {error}");
            assert!(error.len() < 300, "{error}");
        }
    }

    #[test]
    fn records_are_kept_whole_only_when_asked_for() {
        let body =
            ListBody(br#"{"groups": ["a", {"groupId": "b", "owner": {"team": 7}}]}"#.to_vec());
        let mut seen = Vec::new();
        body.for_each(true, |id, record| seen.push((id, record)))
            .expect("readable");
        assert_eq!(
            seen,
            [
                ("a".to_owned(), None),
                (
                    "b".to_owned(),
                    Some(serde_json::json!({"groupId": "b", "owner": {"team": 7}}))
                ),
            ]
        );
        let mut records = 0;
        body.for_each(false, |_, record| records += usize::from(record.is_some()))
            .expect("readable");
        assert_eq!(records, 0);
    }

    #[test]
    fn statuses_and_size_decide_before_the_body() {
        assert_eq!(
            classify_list(StatusCode::OK, br#"["a"]"#.to_vec(), false),
            ListAnswer::Listed(ListBody(br#"["a"]"#.to_vec()))
        );
        for status in [404, 405, 501] {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            assert_eq!(
                classify_list(status, Vec::new(), false),
                ListAnswer::Unsupported {
                    status: status.as_u16()
                }
            );
        }
        assert!(matches!(
            classify_list(StatusCode::OK, br#"["a""#.to_vec(), true),
            ListAnswer::Failed { detail, .. } if detail.contains("larger than")
        ));
        assert!(matches!(
            classify_list(StatusCode::SERVICE_UNAVAILABLE, Vec::new(), false),
            ListAnswer::Failed {
                status: Some(503),
                ..
            }
        ));
    }
}
