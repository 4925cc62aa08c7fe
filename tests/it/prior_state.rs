//! `PRIOR_STATE`: a batch's prior states taken from node lists
//! (`GET /v1/groups`) instead of one read per group and node
//! (src/engine/prior.rs, docs/TRANSACTIONS.md "Prior state from lists").
//! What each mode costs per node, that what the lists say is honoured (I2),
//! every accepted list shape, the exact record a delete's rollback restores,
//! the per-node fallback of `auto` and the refusal of `list`, repeated ids,
//! and the journal. Every run talks real HTTP to `node-sim` nodes on
//! loopback, or to a raw node written here that keeps its groups as records.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_consumer::config::Config;
use api_consumer::domain::{ExitStatus, Outcome, StopReason};
use api_consumer::engine::prior::AUTO_MIN_ENTRIES;
use api_consumer::node_api::{NodeOp, LIST_MAX_BYTES};
use api_consumer::output::journal::Journal;
use api_consumer::output::report::RunReport;
use api_consumer::sim::{FaultsPatch, SimCluster, SimState};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::*;

/// Far beyond what any run here needs: reaching it means the job hung.
const HANG_BOUND: Duration = Duration::from_secs(60);

const LIST: (&str, &str) = ("PRIOR_STATE", "list");
const READ: (&str, &str) = ("PRIOR_STATE", "read");
const AUTO: (&str, &str) = ("PRIOR_STATE", "auto");

// ---------------------------------------------------------------------------
// Shared setup
// ---------------------------------------------------------------------------

/// `count` distinct ids: `g000`, `g001`, ...
fn ids(count: u64) -> Vec<String> {
    (0..count).map(|i| format!("g{i:03}")).collect()
}

fn refs(ids: &[String]) -> Vec<&str> {
    ids.iter().map(String::as_str).collect()
}

/// Runs `operation` of `ids` over `nodes`, failing past [`HANG_BOUND`].
async fn run_over(
    nodes: &[String],
    operation: &str,
    ids: &[&str],
    extra: &[(&str, &str)],
) -> RunReport {
    run_bounded(&config(nodes, operation, ids, extra)).await
}

async fn run_bounded(config: &Config) -> RunReport {
    tokio::time::timeout(HANG_BOUND, run(config))
        .await
        .unwrap_or_else(|_| panic!("the job ran past {HANG_BOUND:?}"))
}

/// The nodes of `cluster` with `raw` inserted at position `at`.
fn with_raw(cluster: &SimCluster, raw: &RawNode, at: usize) -> Vec<String> {
    let mut nodes = cluster.urls();
    nodes.insert(at, raw.url.clone());
    nodes
}

/// Puts `id` on the nodes of `cluster` at `indices`, bypassing counters.
async fn seed(cluster: &SimCluster, id: &str, indices: &[usize]) {
    for &i in indices {
        assert!(
            cluster.nodes()[i].insert_group(id).await.unwrap(),
            "{id} already on node {i}"
        );
    }
}

/// The node-API calls one `node-sim` node received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Calls {
    list: u64,
    get: u64,
    create: u64,
    delete: u64,
}

impl Calls {
    fn of(state: &SimState) -> Calls {
        Calls {
            list: count(&state.requests, "list"),
            get: count(&state.requests, "get"),
            create: count(&state.requests, "create"),
            delete: count(&state.requests, "delete"),
        }
    }

    /// The calls received since `before` was taken.
    fn since(self, before: Calls) -> Calls {
        Calls {
            list: self.list - before.list,
            get: self.get - before.get,
            create: self.create - before.create,
            delete: self.delete - before.delete,
        }
    }
}

/// The calls every node of `cluster` received so far, in node order.
async fn calls(cluster: &SimCluster) -> Vec<Calls> {
    states(cluster).await.iter().map(Calls::of).collect()
}

/// The report's `nodes[].prior_state`, in node order.
fn prior_states(report: &RunReport) -> Vec<Option<&str>> {
    report
        .nodes
        .iter()
        .map(|n| n.prior_state.as_deref())
        .collect()
}

fn failing(op: NodeOp) -> FaultsPatch {
    FaultsPatch {
        fail_rate: Some(1.0),
        ..on(&[op])
    }
}

fn assert_all_committed(report: &RunReport, groups: u64) {
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal, "{report:#?}");
    assert_eq!(report.totals.groups, groups, "{:?}", report.totals);
    assert_eq!(report.totals.committed, groups, "{:?}", report.totals);
    assert!(report.stop_reason.is_none(), "{report:#?}");
}

/// A `PRIOR_STATE=list` run refused before its first group: every entry
/// not started, nothing attempted.
fn assert_refused_for_lists(report: &RunReport, entries: u64, first: &str) {
    assert_eq!(report.exit_code, ExitStatus::RolledBack, "{report:#?}");
    assert_eq!(report.stop_reason, Some(StopReason::ListsUnavailable));
    assert_eq!(report.totals.groups, entries, "{:?}", report.totals);
    assert_eq!(report.totals.not_started, entries, "{:?}", report.totals);
    assert_eq!(report.totals.committed, 0, "{:?}", report.totals);
    assert_eq!(report.totals.rolled_back, 0, "{:?}", report.totals);
    let not_attempted = report
        .not_attempted
        .as_ref()
        .unwrap_or_else(|| panic!("no not_attempted: {report:#?}"));
    assert_eq!(not_attempted.count, entries);
    assert_eq!(
        not_attempted.first_group_id.as_ref().map(|id| id.as_str()),
        Some(first)
    );
    // No node reports a source: the run took none.
    assert!(
        report.nodes.iter().all(|n| n.prior_state.is_none()),
        "{:?}",
        report.nodes
    );
}

// ---------------------------------------------------------------------------
// A raw node: just enough HTTP/1.1 to read one request (head and
// `Content-Length` body) per connection, as in operations.rs and
// hostile_nodes.rs. It answers `GET /v1/groups` as the test chooses, and
// keeps its groups as records: a read answers the record, a create stores the
// body it got, a delete removes the record. Every request is kept, body
// included.
// ---------------------------------------------------------------------------

/// What the raw node answers to `GET /v1/groups`.
#[derive(Debug, Clone)]
enum ListReply {
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

/// One request as the raw node received it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    body: Vec<u8>,
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
struct RawNode {
    url: String,
    shared: Arc<RawShared>,
}

impl RawNode {
    /// A node answering `list` to `GET /v1/groups` and holding `records`
    /// (each with a string `groupId`).
    async fn start(list: ListReply, records: &[Value]) -> RawNode {
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
                tokio::spawn(serve_raw(stream, serving.clone()));
            }
        });
        RawNode { url, shared }
    }

    fn requests(&self) -> Vec<Received> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Every request as `METHOD path`, in the order received.
    fn lines(&self) -> Vec<String> {
        self.requests().iter().map(Received::line).collect()
    }

    /// How many requests start with `prefix` (`"GET /v1/group/"`, ...).
    fn count(&self, prefix: &str) -> usize {
        self.lines()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }

    /// The bodies of every request with `method`, as JSON.
    fn bodies(&self, method: &str) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| r.method == method)
            .map(Received::json)
            .collect()
    }

    /// The record the node holds for `id`.
    fn record(&self, id: &str) -> Option<Value> {
        self.shared.groups.lock().unwrap().get(id).cloned()
    }

    fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::SeqCst)
    }
}

/// Reads one request: the head up to the blank line and a `Content-Length`
/// body. `None` when the client hung up first or sent something else.
async fn read_request(stream: &mut TcpStream) -> Option<Received> {
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

async fn serve_raw(mut stream: TcpStream, node: Arc<RawShared>) {
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
    // The answer is decided under the lock, and sent after it is released.
    let (status, answer): (&str, Vec<u8>) = match (method.as_str(), path.as_str()) {
        ("POST", "/v1/group/") => {
            let record: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match body_id(&record) {
                Some(id) => {
                    let mut groups = node.groups.lock().unwrap();
                    match groups.entry(id) {
                        std::collections::btree_map::Entry::Occupied(_) => (
                            "400 Bad Request",
                            br#"{"error":"group already exists"}"#.to_vec(),
                        ),
                        std::collections::btree_map::Entry::Vacant(slot) => {
                            slot.insert(record.clone());
                            ("201 Created", record.to_string().into_bytes())
                        }
                    }
                }
                None => ("400 Bad Request", b"{}".to_vec()),
            }
        }
        ("DELETE", "/v1/group/") => {
            let record: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match body_id(&record) {
                Some(id) => match node.groups.lock().unwrap().remove(&id) {
                    Some(_) => ("200 OK", json!({ "groupId": id }).to_string().into_bytes()),
                    None => ("404 Not Found", b"{}".to_vec()),
                },
                None => ("400 Bad Request", b"{}".to_vec()),
            }
        }
        ("GET", _) => {
            let segment = path
                .strip_prefix("/v1/group/")
                .and_then(|rest| rest.strip_suffix('/'))
                .filter(|segment| !segment.is_empty() && !segment.contains('/'));
            match segment {
                Some(segment) => {
                    let id = percent_encoding::percent_decode_str(segment)
                        .decode_utf8_lossy()
                        .into_owned();
                    match node.groups.lock().unwrap().get(&id) {
                        Some(record) => ("200 OK", record.to_string().into_bytes()),
                        None => ("404 Not Found", b"{}".to_vec()),
                    }
                }
                None => ("404 Not Found", b"{}".to_vec()),
            }
        }
        _ => ("404 Not Found", b"{}".to_vec()),
    };
    respond(&mut stream, status, &answer).await;
}

// ---------------------------------------------------------------------------
// 1–3. What each mode costs per node
// ---------------------------------------------------------------------------

#[tokio::test]
async fn list_mode_costs_one_list_and_one_write_per_group_and_node() {
    let cluster = cluster(3).await;
    let ids = ids(100);

    let report = run_over(&cluster.urls(), "create", &refs(&ids), &[LIST]).await;

    assert_all_committed(&report, 100);
    let created = calls(&cluster).await;
    for (i, node) in created.iter().enumerate() {
        assert_eq!(
            *node,
            Calls {
                list: 1,
                create: 100,
                ..Calls::default()
            },
            "node {i}"
        );
        // 1.01 requests per group and node: the list and the creates.
        assert_eq!(report.nodes[i].requests, 101, "{:?}", report.nodes[i]);
    }
    assert_eq!(report.requests.requests, 303);
    assert_eq!(prior_states(&report), [Some("list"); 3]);
    for state in states(&cluster).await {
        assert_eq!(state.groups, ids);
    }

    // node-sim lists records, so a delete needs no read to restore one.
    let report = run_over(&cluster.urls(), "delete", &refs(&ids), &[LIST]).await;

    assert_all_committed(&report, 100);
    for (i, (now, before)) in calls(&cluster).await.iter().zip(&created).enumerate() {
        assert_eq!(
            now.since(*before),
            Calls {
                list: 1,
                delete: 100,
                ..Calls::default()
            },
            "node {i}"
        );
        assert_eq!(report.nodes[i].requests, 101, "{:?}", report.nodes[i]);
    }
    assert_eq!(prior_states(&report), [Some("list"); 3]);
    for state in states(&cluster).await {
        assert!(state.groups.is_empty(), "{state:?}");
    }
}

#[tokio::test]
async fn read_mode_costs_a_read_and_a_write_per_group_and_node_and_never_lists() {
    let cluster = cluster(3).await;
    let ids = ids(100);

    let report = run_over(&cluster.urls(), "create", &refs(&ids), &[READ]).await;

    assert_all_committed(&report, 100);
    for (i, node) in calls(&cluster).await.iter().enumerate() {
        assert_eq!(
            *node,
            Calls {
                get: 100,
                create: 100,
                ..Calls::default()
            },
            "node {i}"
        );
        assert_eq!(report.nodes[i].requests, 200, "{:?}", report.nodes[i]);
    }
    assert_eq!(prior_states(&report), [None; 3]);
    for state in states(&cluster).await {
        assert_eq!(state.groups, ids);
    }
}

#[tokio::test]
async fn auto_reads_below_64_entries_and_lists_from_64() {
    assert_eq!(AUTO_MIN_ENTRIES, 64, "the documented threshold");
    for (entries, lists) in [
        (10, false),
        (AUTO_MIN_ENTRIES - 1, false),
        (AUTO_MIN_ENTRIES, true),
        (80, true),
    ] {
        let cluster = cluster(3).await;
        let ids = ids(entries);

        let report = run_over(&cluster.urls(), "create", &refs(&ids), &[AUTO]).await;

        assert_all_committed(&report, entries);
        let expected = if lists {
            Calls {
                list: 1,
                create: entries,
                ..Calls::default()
            }
        } else {
            Calls {
                get: entries,
                create: entries,
                ..Calls::default()
            }
        };
        for (i, node) in calls(&cluster).await.iter().enumerate() {
            assert_eq!(*node, expected, "{entries} entries, node {i}");
        }
        let source = lists.then_some("list");
        assert_eq!(prior_states(&report), [source; 3], "{entries} entries");
    }
}

#[tokio::test]
async fn list_mode_lists_whatever_the_size_of_the_batch() {
    let cluster = cluster(3).await;

    let report = run_over(&cluster.urls(), "create", &["only"], &[LIST]).await;

    assert_all_committed(&report, 1);
    for (i, node) in calls(&cluster).await.iter().enumerate() {
        assert_eq!(
            *node,
            Calls {
                list: 1,
                create: 1,
                ..Calls::default()
            },
            "node {i}"
        );
    }
    assert_eq!(prior_states(&report), [Some("list"); 3]);
}

// ---------------------------------------------------------------------------
// 4. What the lists say is honoured (I2)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_create_from_lists_writes_only_to_the_nodes_that_lack_the_group() {
    let cluster = cluster(3).await;
    seed(&cluster, "w", &[0, 1, 2]).await;
    seed(&cluster, "x", &[0, 1]).await;
    seed(&cluster, "y", &[0]).await;

    let report = run_over(&cluster.urls(), "create", &["w", "x", "y", "z"], &[LIST]).await;

    assert_all_committed(&report, 4);
    // Node 0 lacks z; node 1 lacks y and z; node 2 lacks x, y and z.
    for (i, (node, creates)) in calls(&cluster).await.iter().zip([1, 2, 3]).enumerate() {
        assert_eq!(
            *node,
            Calls {
                list: 1,
                create: creates,
                ..Calls::default()
            },
            "node {i}"
        );
    }
    for state in states(&cluster).await {
        assert_eq!(state.groups, ["w", "x", "y", "z"]);
    }
}

#[tokio::test]
async fn a_delete_from_lists_writes_only_to_the_nodes_that_hold_the_group() {
    let cluster = cluster(3).await;
    seed(&cluster, "p", &[0, 1, 2]).await;
    seed(&cluster, "q", &[1, 2]).await;
    seed(&cluster, "r", &[2]).await;
    seed(&cluster, "keep", &[0, 1, 2]).await;

    let report = run_over(&cluster.urls(), "delete", &["p", "q", "r", "s"], &[LIST]).await;

    assert_all_committed(&report, 4);
    // Node 0 holds p; node 1 holds p and q; node 2 holds p, q and r.
    for (i, (node, deletes)) in calls(&cluster).await.iter().zip([1, 2, 3]).enumerate() {
        assert_eq!(
            *node,
            Calls {
                list: 1,
                delete: deletes,
                ..Calls::default()
            },
            "node {i}"
        );
    }
    // A group outside the batch is left alone.
    for state in states(&cluster).await {
        assert_eq!(state.groups, ["keep"]);
    }
}

// ---------------------------------------------------------------------------
// 5. Every accepted list shape
// ---------------------------------------------------------------------------

/// Every accepted shape, each listing `a` (held as `{"groupId": "a",
/// "owner": "x"}`) and `other` (outside the batch); and whether the shape
/// gives records.
const SHAPES: &[(&str, bool)] = &[
    (r#"["a", "other"]"#, false),
    (
        r#"[{"groupId": "a", "owner": "x"}, {"groupId": "other"}]"#,
        true,
    ),
    (r#"{"groups": ["a", "other"], "total": 2}"#, false),
    (
        r#"{"next": null, "groups": [{"groupId": "a", "owner": "x"}, {"groupId": "other"}]}"#,
        true,
    ),
];

/// A raw node listing `shape`, holding what every shape lists.
async fn shape_node(shape: &str) -> RawNode {
    let records = [
        json!({"groupId": "a", "owner": "x"}),
        json!({"groupId": "other"}),
    ];
    RawNode::start(ListReply::Body(shape.to_string()), &records).await
}

#[tokio::test]
async fn a_create_takes_the_prior_state_from_every_list_shape_without_reads() {
    for &(shape, _) in SHAPES {
        let cluster = cluster(2).await;
        let raw = shape_node(shape).await;
        let nodes = with_raw(&cluster, &raw, 2);

        // `a` is listed by the raw node; `b` is not.
        let report = run_over(&nodes, "create", &["a", "b"], &[LIST]).await;

        assert_all_committed(&report, 2);
        assert_eq!(prior_states(&report), [Some("list"); 3], "{shape}");
        // One list, no read, and a create of the unlisted id only.
        assert_eq!(
            raw.lines(),
            ["GET /v1/groups", "POST /v1/group/"],
            "{shape}"
        );
        assert_eq!(raw.bodies("POST"), [json!({"groupId": "b"})], "{shape}");
        assert_eq!(
            raw.record("a"),
            Some(json!({"groupId": "a", "owner": "x"})),
            "{shape}"
        );
        for (i, node) in calls(&cluster).await.iter().enumerate() {
            assert_eq!(
                *node,
                Calls {
                    list: 1,
                    create: 2,
                    ..Calls::default()
                },
                "{shape}: node {i}"
            );
        }
        assert_eq!(holders(&cluster, "a").await, [true, true], "{shape}");
        assert_eq!(holders(&cluster, "b").await, [true, true], "{shape}");
    }
}

#[tokio::test]
async fn a_delete_reads_a_holder_only_when_its_list_gave_the_id_without_the_record() {
    for &(shape, records) in SHAPES {
        let cluster = cluster(2).await;
        seed(&cluster, "a", &[0, 1]).await;
        let raw = shape_node(shape).await;
        let nodes = with_raw(&cluster, &raw, 2);

        // `a` is on every node; `b` on none, so it needs no request at all.
        let report = run_over(&nodes, "delete", &["a", "b"], &[LIST]).await;

        assert_all_committed(&report, 2);
        assert_eq!(prior_states(&report), [Some("list"); 3], "{shape}");
        let expected: &[&str] = if records {
            &["GET /v1/groups", "DELETE /v1/group/"]
        } else {
            &["GET /v1/groups", "GET /v1/group/a/", "DELETE /v1/group/"]
        };
        assert_eq!(raw.lines(), expected, "{shape}");
        assert_eq!(raw.bodies("DELETE"), [json!({"groupId": "a"})], "{shape}");
        assert_eq!(raw.record("a"), None, "{shape}");
        assert!(raw.record("other").is_some(), "{shape}");
        for (i, node) in calls(&cluster).await.iter().enumerate() {
            assert_eq!(
                *node,
                Calls {
                    list: 1,
                    delete: 1,
                    ..Calls::default()
                },
                "{shape}: node {i}"
            );
        }
        assert_eq!(holders(&cluster, "a").await, [false, false], "{shape}");
    }
}

// ---------------------------------------------------------------------------
// 6. A delete's rollback restores the exact record
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_rolled_back_delete_restores_the_exact_record_from_a_read_or_a_listed_record() {
    let record = json!({"groupId": "g", "owner": "x"});
    let cases = [
        // Ids only: the record must come from a read before the delete.
        (
            r#"["g"]"#,
            vec![
                "GET /v1/groups",
                "GET /v1/group/g/",
                "DELETE /v1/group/",
                "POST /v1/group/",
                "GET /v1/group/g/",
            ],
        ),
        // Records: the listed record is the one restored; the only read is
        // the one after the undo.
        (
            r#"[{"groupId": "g", "owner": "x"}]"#,
            vec![
                "GET /v1/groups",
                "DELETE /v1/group/",
                "POST /v1/group/",
                "GET /v1/group/g/",
            ],
        ),
    ];
    for (list, expected) in cases {
        let cluster = cluster(2).await;
        seed(&cluster, "g", &[0, 1]).await;
        // The last node refuses deletes, slowly enough that the other
        // deletes have landed when the group starts rolling back.
        fault(
            &cluster,
            1,
            FaultsPatch {
                latency_ms: Some(200),
                ..failing(NodeOp::Delete)
            },
        );
        let raw = RawNode::start(
            ListReply::Body(list.to_string()),
            std::slice::from_ref(&record),
        )
        .await;
        let nodes = with_raw(&cluster, &raw, 0);

        let report = run_over(&nodes, "delete", &["g"], &[LIST]).await;

        assert_eq!(
            report.exit_code,
            ExitStatus::RolledBack,
            "{list}: {report:#?}"
        );
        let g = group(&report, "g");
        assert_eq!(g.outcome, Outcome::RolledBack, "{list}: {g:#?}");
        assert!(
            g.nodes[0].written && g.nodes[0].compensated,
            "{list}: {g:#?}"
        );
        assert_eq!(raw.lines(), expected, "{list}");
        assert_eq!(raw.bodies("DELETE"), [json!({"groupId": "g"})], "{list}");
        // The rollback re-created exactly the record the node held.
        assert_eq!(raw.bodies("POST"), std::slice::from_ref(&record), "{list}");
        assert_eq!(raw.record("g"), Some(record.clone()), "{list}");
        assert_eq!(holders(&cluster, "g").await, [true, true], "{list}");
    }
}

// ---------------------------------------------------------------------------
// 7. A node that does not list
// ---------------------------------------------------------------------------

#[tokio::test]
async fn auto_reads_a_node_that_does_not_list_and_lists_the_others() {
    let cluster = cluster(2).await;
    let raw = RawNode::start(ListReply::Status("404 Not Found"), &[]).await;
    let nodes = with_raw(&cluster, &raw, 1);
    let ids = ids(AUTO_MIN_ENTRIES);

    let report = run_over(&nodes, "create", &refs(&ids), &[AUTO]).await;

    assert_all_committed(&report, AUTO_MIN_ENTRIES);
    assert_eq!(
        prior_states(&report),
        [Some("list"), Some("read"), Some("list")]
    );
    let entries = AUTO_MIN_ENTRIES as usize;
    assert_eq!(raw.count("GET /v1/groups"), 1, "{:?}", raw.lines());
    assert_eq!(raw.count("GET /v1/group/"), entries, "{:?}", raw.lines());
    assert_eq!(raw.count("POST /v1/group/"), entries, "{:?}", raw.lines());
    for (i, node) in calls(&cluster).await.iter().enumerate() {
        assert_eq!(
            *node,
            Calls {
                list: 1,
                create: AUTO_MIN_ENTRIES,
                ..Calls::default()
            },
            "node {i}"
        );
    }
    for id in &ids {
        assert!(raw.record(id).is_some(), "{id} not on the raw node");
    }
}

#[tokio::test]
async fn list_mode_starts_no_group_when_a_node_does_not_list() {
    let cluster = cluster(2).await;
    let raw = RawNode::start(ListReply::Status("404 Not Found"), &[]).await;
    let nodes = with_raw(&cluster, &raw, 1);
    let ids = ids(AUTO_MIN_ENTRIES);

    let report = run_over(&nodes, "create", &refs(&ids), &[LIST]).await;

    assert_refused_for_lists(&report, AUTO_MIN_ENTRIES, &ids[0]);
    // The raw node was asked for its list and nothing else.
    assert_eq!(raw.lines(), ["GET /v1/groups"]);
    for (i, node) in calls(&cluster).await.iter().enumerate() {
        assert_eq!(
            (node.get, node.create, node.delete),
            (0, 0, 0),
            "node {i}: {node:?}"
        );
    }
    for state in states(&cluster).await {
        assert!(state.groups.is_empty(), "{state:?}");
    }
}

// ---------------------------------------------------------------------------
// 8. An id listed again in the batch
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_repeated_id_reads_every_node_for_its_later_entry() {
    let cluster = cluster(3).await;

    // The first entry creates `a` from the lists; the lists are stale for
    // the second, which must read.
    let report = run_over(&cluster.urls(), "create", &["a", "a"], &[LIST]).await;

    assert_all_committed(&report, 2);
    let created = calls(&cluster).await;
    for (i, node) in created.iter().enumerate() {
        assert_eq!(
            *node,
            Calls {
                list: 1,
                get: 1,
                create: 1,
                ..Calls::default()
            },
            "node {i}"
        );
    }
    assert_eq!(holders(&cluster, "a").await, [true, true, true]);

    // The same for a delete: the first entry deletes from the listed
    // records, the second reads and finds nothing to do.
    let report = run_over(&cluster.urls(), "delete", &["a", "a"], &[LIST]).await;

    assert_all_committed(&report, 2);
    for (i, (now, before)) in calls(&cluster).await.iter().zip(&created).enumerate() {
        assert_eq!(
            now.since(*before),
            Calls {
                list: 1,
                get: 1,
                delete: 1,
                ..Calls::default()
            },
            "node {i}"
        );
    }
    assert_eq!(holders(&cluster, "a").await, [false, false, false]);
}

// ---------------------------------------------------------------------------
// 9. A list that fails, and one too large
// ---------------------------------------------------------------------------

#[tokio::test]
async fn auto_reads_a_node_whose_list_fails() {
    let cluster = cluster(3).await;
    fault(&cluster, 1, failing(NodeOp::List));
    let ids = ids(AUTO_MIN_ENTRIES);

    let report = run_over(&cluster.urls(), "create", &refs(&ids), &[AUTO]).await;

    assert_all_committed(&report, AUTO_MIN_ENTRIES);
    assert_eq!(
        prior_states(&report),
        [Some("list"), Some("read"), Some("list")]
    );
    let nodes = calls(&cluster).await;
    // The failing list was retried, then given up.
    assert!(nodes[1].list >= 1, "{:?}", nodes[1]);
    assert_eq!(
        (nodes[1].get, nodes[1].create),
        (AUTO_MIN_ENTRIES, AUTO_MIN_ENTRIES),
        "{:?}",
        nodes[1]
    );
    for i in [0, 2] {
        assert_eq!(
            nodes[i],
            Calls {
                list: 1,
                create: AUTO_MIN_ENTRIES,
                ..Calls::default()
            },
            "node {i}"
        );
    }
    for state in states(&cluster).await {
        assert_eq!(state.groups, ids);
    }
}

#[tokio::test]
async fn list_mode_starts_no_group_when_a_list_fails() {
    let cluster = cluster(3).await;
    fault(&cluster, 1, failing(NodeOp::List));

    let report = run_over(&cluster.urls(), "create", &["a", "b", "c"], &[LIST]).await;

    assert_refused_for_lists(&report, 3, "a");
    for (i, node) in calls(&cluster).await.iter().enumerate() {
        assert_eq!(
            (node.get, node.create, node.delete),
            (0, 0, 0),
            "node {i}: {node:?}"
        );
    }
    for state in states(&cluster).await {
        assert!(state.groups.is_empty(), "{state:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_reads_a_node_whose_list_is_larger_than_the_limit() {
    let cluster = cluster(2).await;
    let raw = RawNode::start(ListReply::Endless, &[]).await;
    let nodes = with_raw(&cluster, &raw, 1);
    let ids = ids(AUTO_MIN_ENTRIES);

    let started = Instant::now();
    let report = run_over(&nodes, "create", &refs(&ids), &[AUTO]).await;
    let elapsed = started.elapsed();

    assert_all_committed(&report, AUTO_MIN_ENTRIES);
    assert_eq!(
        prior_states(&report),
        [Some("list"), Some("read"), Some("list")]
    );
    // The list was really read up to the limit before it was given up.
    assert!(
        raw.sent() >= LIST_MAX_BYTES as u64 / 2,
        "the server sent only {} bytes",
        raw.sent()
    );
    let entries = AUTO_MIN_ENTRIES as usize;
    assert_eq!(raw.count("GET /v1/groups"), 1, "{:?}", raw.lines());
    assert_eq!(raw.count("GET /v1/group/"), entries);
    assert_eq!(raw.count("POST /v1/group/"), entries);
    for (i, node) in calls(&cluster).await.iter().enumerate() {
        assert_eq!(
            *node,
            Calls {
                list: 1,
                create: AUTO_MIN_ENTRIES,
                ..Calls::default()
            },
            "node {i}"
        );
    }
    assert!(elapsed < Duration::from_secs(45), "took {elapsed:?}");
}

// ---------------------------------------------------------------------------
// 10. The journal
// ---------------------------------------------------------------------------

/// Every entry of the journal at `path`: each line is `<crc32> <JSON>`.
fn journal_entries(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("journal {}: {e}", path.display()))
        .lines()
        .map(|line| {
            let (_, entry) = line.split_once(' ').expect("a checksum, then JSON");
            serde_json::from_str(entry).unwrap_or_else(|e| panic!("{e}: {line}"))
        })
        .collect()
}

/// The journal's intent for `id`, and the outcome recorded after it.
fn intent_and_outcome<'a>(entries: &'a [Value], id: &str) -> (&'a Value, &'a Value) {
    let of = |kind: &str| {
        let found: Vec<&Value> = entries
            .iter()
            .filter(|e| e["entry"] == kind && e["group_id"] == id)
            .collect();
        assert_eq!(found.len(), 1, "one {kind} of {id}: {entries:#?}");
        found[0]
    };
    (of("intent"), of("outcome"))
}

#[tokio::test]
async fn a_create_from_lists_that_rolls_back_leaves_a_finished_journal() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let cluster = cluster(3).await;
    seed(&cluster, "g", &[0]).await;
    fault(&cluster, 2, failing(NodeOp::Create));

    let extra = [LIST, ("JOURNAL_PATH", journal.to_str().unwrap())];
    let report = run_over(&cluster.urls(), "create", &["g"], &extra).await;

    assert_eq!(report.exit_code, ExitStatus::RolledBack, "{report:#?}");
    assert_eq!(group(&report, "g").outcome, Outcome::RolledBack);
    assert_eq!(prior_states(&report), [Some("list"); 3]);
    // Every node is at its prior state; the node that held the group was
    // neither read nor written.
    assert_eq!(holders(&cluster, "g").await, [true, false, false]);
    assert_eq!(
        calls(&cluster).await[0],
        Calls {
            list: 1,
            ..Calls::default()
        }
    );
    // The intent holds the prior states the lists gave, and is finished.
    let entries = journal_entries(&journal);
    let (intent, outcome) = intent_and_outcome(&entries, "g");
    assert_eq!(intent["operation"], "create");
    let priors: Vec<&Value> = intent["nodes"]
        .as_array()
        .expect("the intent's nodes")
        .iter()
        .map(|n| &n["prior"])
        .collect();
    assert_eq!(priors, ["present", "absent", "absent"], "{intent:#}");
    assert_eq!(outcome["outcome"], "rolled_back");
    let (_journal, unfinished) = Journal::open(&journal).unwrap();
    assert!(unfinished.is_empty(), "{unfinished:#?}");
}

#[tokio::test]
async fn a_delete_from_lists_journals_the_listed_records_and_restores_them() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let cluster = cluster(3).await;
    seed(&cluster, "g", &[0, 1, 2]).await;
    fault(
        &cluster,
        2,
        FaultsPatch {
            latency_ms: Some(200),
            ..failing(NodeOp::Delete)
        },
    );

    let extra = [LIST, ("JOURNAL_PATH", journal.to_str().unwrap())];
    let report = run_over(&cluster.urls(), "delete", &["g"], &extra).await;

    assert_eq!(report.exit_code, ExitStatus::RolledBack, "{report:#?}");
    assert_eq!(group(&report, "g").outcome, Outcome::RolledBack);
    assert_eq!(holders(&cluster, "g").await, [true, true, true]);
    // No node was read before the delete: each record came from its list.
    // The one read per node is after the undo (nodes 0 and 1) or after the
    // refused delete (node 2).
    for (i, node) in calls(&cluster).await.iter().enumerate() {
        assert_eq!((node.list, node.get), (1, 1), "node {i}: {node:?}");
    }
    let entries = journal_entries(&journal);
    let (intent, outcome) = intent_and_outcome(&entries, "g");
    assert_eq!(intent["operation"], "delete");
    for node in intent["nodes"].as_array().expect("the intent's nodes") {
        assert_eq!(node["prior"], "present", "{intent:#}");
        assert_eq!(node["record"], json!({"groupId": "g"}), "{intent:#}");
    }
    assert_eq!(outcome["outcome"], "rolled_back");
    let (_journal, unfinished) = Journal::open(&journal).unwrap();
    assert!(unfinished.is_empty(), "{unfinished:#?}");
}
