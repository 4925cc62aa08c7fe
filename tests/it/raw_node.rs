//! A raw node for the tests that need a node `node-sim` cannot be: just
//! enough HTTP/1.1 on a loopback `TcpListener` to read one request (head and
//! `Content-Length` body) per connection. It answers `GET /v1/groups` as the
//! test chooses ([`ListReply`]), whatever it holds, and keeps its groups as
//! records: a read answers the record, a create stores the body it got, a
//! delete removes the record. Every request is kept, body included.
//!
//! [`read_request`] is also how the hostile nodes (hostile_nodes.rs) read
//! their requests.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the raw node answers to `GET /v1/groups`.
#[derive(Debug, Clone)]
pub(crate) enum ListReply {
    /// `200 OK` with this body, whatever the node holds.
    Body(String),
    /// This status line (e.g. `404 Not Found`) with an empty body.
    Status(&'static str),
    /// `200 OK`, chunked: `[` then 64 KiB chunks of `"aaa…",` items, until
    /// the client hangs up (or [`FLOOD_CAP`] bytes, far past the job's limit).
    Endless,
}

/// Where an endless list gives up if the client never hangs up.
const FLOOD_CAP: u64 = 512 * 1024 * 1024;

/// One request as a raw node received it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) body: Vec<u8>,
}

impl Received {
    /// `METHOD path`.
    fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

struct RawShared {
    list: ListReply,
    /// The records held, by id.
    groups: Mutex<BTreeMap<String, Value>>,
    requests: Mutex<Vec<Received>>,
    /// Body bytes of an endless list written to the socket.
    sent: AtomicU64,
}

/// A raw node on a loopback port; it lives as long as the test's runtime.
pub(crate) struct RawNode {
    pub(crate) url: String,
    shared: Arc<RawShared>,
}

impl RawNode {
    /// A node answering `list` to `GET /v1/groups` and holding `records`
    /// (each with a string `groupId`).
    pub(crate) async fn start(list: ListReply, records: &[Value]) -> RawNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let groups = records
            .iter()
            .map(|record| {
                let id = record["groupId"].as_str().expect("a record with a groupId");
                (id.to_string(), record.clone())
            })
            .collect();
        let shared = Arc::new(RawShared {
            list,
            groups: Mutex::new(groups),
            requests: Mutex::default(),
            sent: AtomicU64::new(0),
        });
        let serving = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, serving.clone()));
            }
        });
        RawNode { url, shared }
    }

    /// A node answering `list` to `GET /v1/groups` and holding `ids`, each
    /// as the bare record `{"groupId": id}`.
    pub(crate) async fn holding(list: ListReply, ids: &[&str]) -> RawNode {
        let records: Vec<Value> = ids.iter().map(|id| json!({ "groupId": id })).collect();
        RawNode::start(list, &records).await
    }

    fn requests(&self) -> Vec<Received> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Every request as `METHOD path`, in the order received.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.requests().iter().map(Received::line).collect()
    }

    /// How many requests start with `prefix` (`"GET /v1/group/"`, ...).
    pub(crate) fn count(&self, prefix: &str) -> usize {
        self.lines()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }

    /// The bodies of every request with `method`, as JSON.
    pub(crate) fn bodies(&self, method: &str) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| r.method == method)
            .map(Received::json)
            .collect()
    }

    /// The record the node holds for `id`.
    pub(crate) fn record(&self, id: &str) -> Option<Value> {
        self.shared.groups.lock().unwrap().get(id).cloned()
    }

    /// Body bytes of an endless list written so far.
    pub(crate) fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::SeqCst)
    }
}

/// Reads one request: the head up to the blank line and a `Content-Length`
/// body. `None` when the client hung up first or sent something else.
pub(crate) async fn read_request(stream: &mut TcpStream) -> Option<Received> {
    const MAX_HEAD: usize = 64 * 1024;
    const MAX_BODY: usize = 1024 * 1024;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() > MAX_HEAD {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut request_line = head.lines().next()?.split(' ');
    let method = request_line.next()?.to_string();
    let path = request_line.next()?.to_string();
    let length: usize = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    if length > MAX_BODY {
        return None;
    }
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[head_end..head_end + length].to_vec();
    Some(Received { method, path, body })
}

/// A complete answer with `Connection: close`, then the connection closed.
async fn respond(stream: &mut TcpStream, status: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let _ = stream.shutdown().await;
}

/// An endless chunked JSON array of 64-byte string items.
async fn flood(stream: &mut TcpStream, node: &RawShared) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n1\r\n[\r\n";
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    // `"` + 61 × `a` + `",` = 64 bytes; 1024 of them = 64 KiB.
    let item = format!("\"{}\",", "a".repeat(61));
    let data = item.repeat(1024);
    let mut chunk = format!("{:x}\r\n", data.len()).into_bytes();
    chunk.extend_from_slice(data.as_bytes());
    chunk.extend_from_slice(b"\r\n");
    while node.sent.load(Ordering::SeqCst) < FLOOD_CAP {
        if stream.write_all(&chunk).await.is_err() {
            return;
        }
        node.sent.fetch_add(data.len() as u64, Ordering::SeqCst);
    }
}

/// The id a create or delete body names.
fn body_id(body: &Value) -> Option<String> {
    body.get("groupId")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The id a read's path names (`/v1/group/<id>/`), percent-decoded.
fn path_id(path: &str) -> Option<String> {
    let segment = path
        .strip_prefix("/v1/group/")
        .and_then(|rest| rest.strip_suffix('/'))
        .filter(|segment| !segment.is_empty() && !segment.contains('/'))?;
    Some(
        percent_encoding::percent_decode_str(segment)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

async fn serve(mut stream: TcpStream, node: Arc<RawShared>) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    node.requests.lock().unwrap().push(request.clone());
    let Received { method, path, body } = request;
    if method == "GET" && (path == "/v1/groups" || path == "/v1/groups/") {
        match &node.list {
            ListReply::Body(body) => respond(&mut stream, "200 OK", body.as_bytes()).await,
            ListReply::Status(status) => respond(&mut stream, status, b"").await,
            ListReply::Endless => flood(&mut stream, &node).await,
        }
        return;
    }
    let not_found = || ("404 Not Found", b"{}".to_vec());
    let bad_request = || ("400 Bad Request", b"{}".to_vec());
    // The answer is decided under the lock, and sent after it is released.
    let (status, answer): (&str, Vec<u8>) = match (method.as_str(), path.as_str()) {
        ("POST", "/v1/group/") => {
            let record: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match body_id(&record) {
                Some(id) => match node.groups.lock().unwrap().entry(id) {
                    Entry::Occupied(_) => (
                        "400 Bad Request",
                        br#"{"error":"group already exists"}"#.to_vec(),
                    ),
                    Entry::Vacant(slot) => {
                        slot.insert(record.clone());
                        ("201 Created", record.to_string().into_bytes())
                    }
                },
                None => bad_request(),
            }
        }
        ("DELETE", "/v1/group/") => {
            let record: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match body_id(&record) {
                Some(id) => match node.groups.lock().unwrap().remove(&id) {
                    Some(_) => ("200 OK", json!({ "groupId": id }).to_string().into_bytes()),
                    None => not_found(),
                },
                None => bad_request(),
            }
        }
        ("GET", _) => match path_id(&path) {
            Some(id) => match node.groups.lock().unwrap().get(&id) {
                Some(record) => ("200 OK", record.to_string().into_bytes()),
                None => not_found(),
            },
            None => not_found(),
        },
        _ => not_found(),
    };
    respond(&mut stream, status, &answer).await;
}
