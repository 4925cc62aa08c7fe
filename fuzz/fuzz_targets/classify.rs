//! `client::classify_read` and `client::classify_write` on any answer a
//! node could give: any status from 100 to 999, any headers (`Location`
//! above all: redirects to the same or another origin, relative, broken)
//! and any body. Never panics; a read's `200` means present unless the body
//! is a JSON object naming another `groupId`; `404`/`410` mean absent;
//! a write is applied exactly when the status is the expected one; every
//! detail is one line of at most 2 KiB.
#![no_main]

use api_consumer::domain::{GroupId, NodeAddress};
use node_contract::group_item_path;
use api_consumer::node_api::{classify_read, classify_write, ReadAnswer, WriteAnswer};
use api_consumer_fuzz::{assert_one_line, text, MAX_MESSAGE_BYTES};
use arbitrary::Arbitrary;
use http::header::{HeaderName, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use url::Url;

#[derive(Arbitrary, Debug)]
struct Input {
    status: u16,
    /// Status a write expects (201 create, 200 delete, or anything).
    expected: Expected,
    /// One `NODES` entry; a default node when it does not parse.
    node: String,
    group: String,
    headers: Vec<Header>,
    body: Body,
}

#[derive(Arbitrary, Debug)]
enum Expected {
    Created,
    Ok,
    Other(u16),
}

#[derive(Arbitrary, Debug)]
enum Header {
    Location(Location),
    RetryAfter(Vec<u8>),
    ContentType(Vec<u8>),
    Other { name: String, value: Vec<u8> },
}

#[derive(Arbitrary, Debug)]
enum Location {
    /// A path on the node itself.
    SamePath(String),
    /// An absolute URL on another scheme, host or port; the host is
    /// `host` written `1 + repeat % 1024` times (hostile nodes send long
    /// headers, and random bytes rarely make a long valid host).
    Elsewhere {
        scheme: String,
        host: String,
        repeat: u16,
        port: Option<u16>,
        path: String,
    },
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Body {
    Raw(Vec<u8>),
    Record {
        id: RecordId,
        extra: Vec<(String, String)>,
        /// Written before `groupId`, so a duplicated key can shadow it.
        first: Option<String>,
    },
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum RecordId {
    Same,
    Other(String),
    Number(i64),
    Null,
    Bool(bool),
    Missing,
}

fuzz_target!(|input: Input| {
    let Ok(status) = StatusCode::from_u16(100 + input.status % 900) else {
        panic!("every code from 100 to 999 is a StatusCode");
    };
    let expected = match input.expected {
        Expected::Created => StatusCode::CREATED,
        Expected::Ok => StatusCode::OK,
        Expected::Other(code) => StatusCode::from_u16(100 + code % 900).unwrap_or(StatusCode::OK),
    };
    let group = GroupId::new(input.group).unwrap_or_else(|_| default_group());
    let base = NodeAddress::parse(&input.node)
        .map(|node| node.base)
        .unwrap_or_else(|_| Url::parse("http://127.0.0.1:8080/").expect("constant URL"));
    let Ok(url) = base.join(&group_item_path(group.as_str())) else {
        return;
    };
    let headers = headers(&input.headers, &url);
    let body = body(&input.body, &group);

    match classify_read(status, &headers, &body, &group, &url) {
        ReadAnswer::Present(record) => {
            assert_eq!(status, StatusCode::OK, "present on {status}");
            assert!(
                !names_other_group(&body, &group),
                "present although the body names another group: {:?}",
                text(&body)
            );
            assert_eq!(
                record.get("groupId"),
                Some(&Value::String(group.as_str().to_owned())),
                "present with a record for another group: {record}"
            );
        }
        ReadAnswer::Absent => {
            assert!(
                matches!(status, StatusCode::NOT_FOUND | StatusCode::GONE),
                "absent on {status}"
            );
        }
        ReadAnswer::Failed {
            status: code,
            detail,
        } => {
            assert_eq!(code, Some(status.as_u16()));
            assert!(
                !matches!(status, StatusCode::NOT_FOUND | StatusCode::GONE),
                "failed on {status}: {detail}"
            );
            assert!(
                status != StatusCode::OK || names_other_group(&body, &group),
                "200 read failed: {detail} (body {:?})",
                text(&body)
            );
            check_detail("read detail", &detail);
        }
    }

    match classify_write(status, &headers, expected, &url) {
        WriteAnswer::Applied => assert_eq!(status, expected),
        WriteAnswer::Unresolved {
            status: code,
            detail,
        } => {
            assert_ne!(status, expected, "expected status unresolved: {detail}");
            assert_eq!(code, Some(status.as_u16()));
            check_detail("write detail", &detail);
        }
    }
});

/// A detail is one log line, and a short one.
fn check_detail(what: &str, detail: &str) {
    assert_one_line(what, detail);
    assert!(
        detail.len() <= MAX_MESSAGE_BYTES,
        "{what} is {} bytes long: {}...",
        detail.len(),
        detail.chars().take(200).collect::<String>()
    );
}

fn default_group() -> GroupId {
    GroupId::new("g1").expect("constant id")
}

/// Whether a body is a JSON object whose `groupId` is anything but this
/// group's id (another string, a number, null, ...).
fn names_other_group(body: &[u8], group: &GroupId) -> bool {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(record)) => record
            .get("groupId")
            .is_some_and(|id| id.as_str() != Some(group.as_str())),
        _ => false,
    }
}

fn headers(wanted: &[Header], url: &Url) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for header in wanted {
        let (name, value) = match header {
            Header::Location(location) => (LOCATION, location_value(location, url)),
            Header::RetryAfter(value) => (RETRY_AFTER, value.clone()),
            Header::ContentType(value) => (CONTENT_TYPE, value.clone()),
            Header::Other { name, value } => match HeaderName::from_bytes(name.as_bytes()) {
                Ok(name) => (name, value.clone()),
                Err(_) => continue,
            },
        };
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            headers.append(name, value);
        }
    }
    headers
}

fn location_value(location: &Location, url: &Url) -> Vec<u8> {
    match location {
        Location::SamePath(path) => {
            let mut target = url.clone();
            target.set_path(path);
            target.as_str().as_bytes().to_vec()
        }
        Location::Elsewhere {
            scheme,
            host,
            repeat,
            port,
            path,
        } => {
            let host = host.repeat(1 + usize::from(*repeat % 1024));
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            format!("{scheme}://{host}{port}/{path}").into_bytes()
        }
        Location::Raw(bytes) => bytes.clone(),
    }
}

fn body(body: &Body, group: &GroupId) -> Vec<u8> {
    match body {
        Body::Raw(bytes) => bytes.clone(),
        Body::Text(text) => text.as_bytes().to_vec(),
        Body::Record { id, extra, first } => {
            // Written by hand, not through a map, so that a duplicated
            // `groupId` key reaches the parser as a node would send it.
            let mut fields: Vec<(&str, Value)> = Vec::new();
            if let Some(first) = first {
                fields.push(("groupId", Value::String(first.clone())));
            }
            for (key, value) in extra {
                fields.push((key, Value::String(value.clone())));
            }
            let id = match id {
                RecordId::Same => Some(Value::String(group.as_str().to_owned())),
                RecordId::Other(other) => Some(Value::String(other.clone())),
                RecordId::Number(n) => Some(Value::from(*n)),
                RecordId::Null => Some(Value::Null),
                RecordId::Bool(b) => Some(Value::Bool(*b)),
                RecordId::Missing => None,
            };
            if let Some(id) = id {
                fields.push(("groupId", id));
            }
            let members: Vec<String> = fields
                .iter()
                .map(|(key, value)| format!("{}:{value}", Value::from(*key)))
                .collect();
            format!("{{{}}}", members.join(",")).into_bytes()
        }
    }
}
