//! The raw node: a node for the tests that need one `node-sim` cannot be.
//! It speaks just enough HTTP/1.1 on a loopback `TcpListener` to read one
//! request (head and `Content-Length` body) per connection, and its answers
//! are bytes a script chooses, so nothing a well-behaved server library would
//! refuse to send is out of reach: wrong statuses and headers, odd bodies,
//! resets, drips, floods, broken framing, silence.
//!
//! Behind the script it keeps its groups as records, so "the node applied
//! the write, then misbehaved" is a real state the job must read back.
//! [`contract`] is the node API as the contract says it over those records
//! (a read answers the record, a create stores the body it got, a delete
//! removes the record); a script answers what it chooses and leaves the rest
//! to it. Every request is kept, headers and body included.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The records a raw node holds, by id.
pub(crate) type Records = BTreeMap<String, Value>;

/// A request as the raw node understood it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    /// `GET …/v1/groups`.
    List,
    /// `GET …/v1/group/<id>/`, the id percent-decoded.
    Read(String),
    /// `POST …/v1/group/` and the body's `groupId`.
    Create(String),
    /// `DELETE …/v1/group/` and the body's `groupId`.
    Delete(String),
    /// Anything else.
    Other,
}

/// One request as a raw node received it.
#[derive(Clone)]
pub(crate) struct Request {
    pub(crate) call: Call,
    pub(crate) method: String,
    pub(crate) path: String,
    /// Every header, its name in lower case, in the order received.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        if !self.body.is_empty() {
            write!(f, " {}", String::from_utf8_lossy(&self.body))?;
        }
        Ok(())
    }
}

impl Request {
    /// `METHOD path`.
    pub(crate) fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The value of header `name` (any case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn is_write(&self) -> bool {
        matches!(self.call, Call::Create(_) | Call::Delete(_))
    }

    pub(crate) fn is_read(&self) -> bool {
        matches!(self.call, Call::Read(_))
    }
}

/// Which call a request makes. Paths are matched by their end, so that a
/// node serving the API under a prefix (`/api/v1/group/`) is understood too.
fn call_of(method: &str, path: &str, body: &[u8]) -> Call {
    let body_id = || {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("groupId")?.as_str().map(str::to_string))
    };
    let item = path
        .rsplit_once("/v1/group/")
        .and_then(|(_, rest)| rest.strip_suffix('/'))
        .filter(|segment| !segment.is_empty() && !segment.contains('/'));
    let collection = path.ends_with("/v1/group/");
    let list = path.ends_with("/v1/groups") || path.ends_with("/v1/groups/");
    match (method, item, collection, body_id()) {
        ("GET", _, _, _) if list => Call::List,
        ("GET", Some(segment), _, _) => Call::Read(
            percent_encoding::percent_decode_str(segment)
                .decode_utf8_lossy()
                .into_owned(),
        ),
        ("POST", _, true, Some(id)) => Call::Create(id),
        ("DELETE", _, true, Some(id)) => Call::Delete(id),
        _ => Call::Other,
    }
}

/// What the raw node does with one connection once it has read the request.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// Writes these bytes, then closes the connection.
    Bytes(Vec<u8>),
    /// Writes these bytes, pauses, then resets the connection (RST).
    Reset(Vec<u8>),
    /// Writes `head`, then `body` one byte every `every`.
    Drip {
        head: Vec<u8>,
        body: Vec<u8>,
        every: Duration,
    },
    /// Writes `head`, then `chunk` over and over, `total` bytes at most,
    /// until the client hangs up.
    Flood {
        head: Vec<u8>,
        chunk: Vec<u8>,
        total: u64,
    },
    /// Never answers; keeps the connection until the client gives up.
    Silent,
}

/// A complete answer: status line, `headers`, `Content-Length`,
/// `Connection: close`, then the body.
pub(crate) fn answer(status: &str, headers: &[(&str, &str)], body: impl AsRef<[u8]>) -> Reply {
    let body = body.as_ref();
    let mut bytes = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        bytes.push_str(&format!("{name}: {value}\r\n"));
    }
    bytes.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    Reply::Bytes([bytes.as_bytes(), body].concat())
}

/// [`answer`] with a JSON body.
pub(crate) fn json_answer(status: &str, body: &Value) -> Reply {
    answer(
        status,
        &[("Content-Type", "application/json")],
        body.to_string(),
    )
}

/// Exactly these bytes, framing included.
pub(crate) fn raw(bytes: impl AsRef<[u8]>) -> Reply {
    Reply::Bytes(bytes.as_ref().to_vec())
}

/// The head of a `200` whose body is announced as `length` bytes.
pub(crate) fn head_200(length: u64) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// A chunked body of `x` that never ends, after `status`.
pub(crate) fn endless_chunked(status: &str) -> Reply {
    Reply::Flood {
        head: format!("HTTP/1.1 {status}\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes(),
        chunk: [b"400\r\n".as_slice(), &[b'x'; 0x400], b"\r\n"].concat(),
        total: u64::MAX,
    }
}

/// Where an endless list gives up if the client never hangs up: far past
/// the job's limit.
const FLOOD_CAP: u64 = 512 * 1024 * 1024;

/// A `200`, chunked: `[` then 64 KiB chunks of `"aaa…",` items, a JSON
/// array that never closes.
pub(crate) fn endless_list() -> Reply {
    // `"` + 61 × `a` + `",` = 64 bytes; 1024 of them = 64 KiB.
    let data = format!("\"{}\",", "a".repeat(61)).repeat(1024);
    let mut chunk = format!("{:x}\r\n", data.len()).into_bytes();
    chunk.extend_from_slice(data.as_bytes());
    chunk.extend_from_slice(b"\r\n");
    Reply::Flood {
        head: b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n1\r\n[\r\n"
            .to_vec(),
        chunk,
        total: FLOOD_CAP,
    }
}

/// The record a raw node holds for a bare id.
pub(crate) fn record(id: &str) -> Value {
    json!({ "groupId": id })
}

/// The node API as the contract says, over `records`: a list of every
/// record, a read of one, a create that stores the body it got, a delete
/// that removes it (and answers the bare record).
pub(crate) fn contract(request: &Request, records: &mut Records) -> Reply {
    let not_found = || answer("404 Not Found", &[], "");
    match &request.call {
        Call::List => json_answer("200 OK", &Value::from_iter(records.values().cloned())),
        Call::Read(id) => match records.get(id) {
            Some(record) => json_answer("200 OK", record),
            None => not_found(),
        },
        Call::Create(id) if records.contains_key(id) => {
            json_answer("400 Bad Request", &json!({"error": "group already exists"}))
        }
        Call::Create(id) => {
            let record = request.json();
            records.insert(id.clone(), record.clone());
            json_answer("201 Created", &record)
        }
        Call::Delete(id) => match records.remove(id) {
            Some(_) => json_answer("200 OK", &record(id)),
            None => not_found(),
        },
        Call::Other => not_found(),
    }
}

/// Applies a write to `records` as [`contract`] does, without answering it.
pub(crate) fn apply(request: &Request, records: &mut Records) {
    let _ = contract(request, records);
}

/// What the raw node answers to `GET /v1/groups` when the rest is the
/// [`contract`].
#[derive(Debug, Clone)]
pub(crate) enum ListReply {
    /// `200 OK` with this body, whatever the node holds.
    Body(String),
    /// This status line (e.g. `404 Not Found`) with an empty body.
    Status(&'static str),
    /// [`endless_list`].
    Endless,
}

impl ListReply {
    fn reply(&self) -> Reply {
        match self {
            ListReply::Body(body) => {
                answer("200 OK", &[("Content-Type", "application/json")], body)
            }
            ListReply::Status(status) => answer(status, &[], ""),
            ListReply::Endless => endless_list(),
        }
    }
}

type Script = dyn Fn(&Request, &mut Records) -> Reply + Send + Sync;

struct Shared {
    script: Box<Script>,
    records: Mutex<Records>,
    requests: Mutex<Vec<Request>>,
    connections: AtomicUsize,
    /// Bytes of floods written to sockets.
    flooded: AtomicU64,
}

/// A raw node on a loopback port; it lives as long as the test's runtime.
pub(crate) struct RawNode {
    pub(crate) url: String,
    shared: Arc<Shared>,
}

impl RawNode {
    /// A node holding nothing that answers every request as `script` says.
    pub(crate) async fn start(
        script: impl Fn(&Request, &mut Records) -> Reply + Send + Sync + 'static,
    ) -> RawNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            script: Box::new(script),
            records: Mutex::default(),
            requests: Mutex::default(),
            connections: AtomicUsize::new(0),
            flooded: AtomicU64::new(0),
        });
        let serving = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                serving.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, serving.clone()));
            }
        });
        RawNode { url, shared }
    }

    /// A node that answers `list` to `GET /v1/groups`, whatever it holds,
    /// the rest as the [`contract`] says, and holds `records` (each with a
    /// string `groupId`).
    pub(crate) async fn listing(list: ListReply, records: &[Value]) -> RawNode {
        let list = list.reply();
        let node = RawNode::start(move |request, records| match request.call {
            Call::List => list.clone(),
            _ => contract(request, records),
        })
        .await;
        for record in records {
            let id = record["groupId"].as_str().expect("a record with a groupId");
            node.records().insert(id.to_string(), record.clone());
        }
        node
    }

    /// [`RawNode::listing`], holding each of `ids` as the bare record
    /// `{"groupId": id}`.
    pub(crate) async fn holding(list: ListReply, ids: &[&str]) -> RawNode {
        let records: Vec<Value> = ids.iter().map(|id| record(id)).collect();
        RawNode::listing(list, &records).await
    }

    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        self.shared.records.lock().unwrap()
    }

    /// Puts the bare record of `id` on the node, as if it had been there
    /// before the test.
    pub(crate) fn hold(&self, id: &str) {
        self.records().insert(id.to_string(), record(id));
    }

    pub(crate) fn holds(&self, id: &str) -> bool {
        self.records().contains_key(id)
    }

    /// The ids the node holds, in order.
    pub(crate) fn ids(&self) -> Vec<String> {
        self.records().keys().cloned().collect()
    }

    /// The record the node holds for `id`.
    pub(crate) fn record(&self, id: &str) -> Option<Value> {
        self.records().get(id).cloned()
    }

    /// Every request, in the order received.
    pub(crate) fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Every request as `METHOD path`, in the order received.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.requests().iter().map(Request::line).collect()
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
            .map(Request::json)
            .collect()
    }

    /// How many creates and deletes the node received.
    pub(crate) fn writes(&self) -> usize {
        self.requests().iter().filter(|r| r.is_write()).count()
    }

    /// How many connections the node accepted.
    pub(crate) fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Bytes of floods (bodies of [`Reply::Flood`]) written so far.
    pub(crate) fn flooded(&self) -> u64 {
        self.shared.flooded.load(Ordering::SeqCst)
    }
}

/// Reads one request: the head up to the blank line and a `Content-Length`
/// body. `None` when the client hung up first or sent something else.
async fn read_request(stream: &mut TcpStream) -> Option<Request> {
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
    let mut lines = head.lines();
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let path = request_line.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    if length > MAX_BODY {
        return None;
    }
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[head_end..head_end + length].to_vec();
    Some(Request {
        call: call_of(&method, &path, &body),
        method,
        path,
        headers,
        body,
    })
}

async fn serve(mut stream: TcpStream, node: Arc<Shared>) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    // The answer is decided under the locks, and sent after they are released.
    let reply = {
        node.requests.lock().unwrap().push(request.clone());
        let mut records = node.records.lock().unwrap();
        (node.script)(&request, &mut records)
    };
    match reply {
        Reply::Bytes(bytes) => {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
        Reply::Reset(bytes) => {
            let _ = stream.write_all(&bytes).await;
            // A reset discards what the kernel has not delivered yet: the
            // pause is part of the behaviour ("part of a body, then a
            // reset"), so that the client sees the reset mid-body.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = stream.set_zero_linger();
        }
        Reply::Drip { head, body, every } => {
            if stream.write_all(&head).await.is_err() {
                return;
            }
            for byte in body {
                tokio::time::sleep(every).await;
                if stream.write_all(&[byte]).await.is_err() {
                    return;
                }
            }
        }
        Reply::Flood { head, chunk, total } => {
            if stream.write_all(&head).await.is_err() {
                return;
            }
            let mut sent = 0u64;
            while sent < total {
                let n = chunk.len().min((total - sent) as usize);
                if stream.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
                sent += n as u64;
                node.flooded.fetch_add(n as u64, Ordering::SeqCst);
            }
        }
        Reply::Silent => {
            let mut sink = [0u8; 1024];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        }
    }
}
