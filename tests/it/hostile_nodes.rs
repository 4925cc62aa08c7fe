//! Hostile nodes: servers written here that break the node API, in HTTP
//! semantics (wrong statuses, odd bodies, redirects, `Retry-After`) and in
//! bytes (resets, drips, broken framing, silence). Each case runs the job over
//! two `node-sim` nodes plus the hostile one and checks that the job ends
//! within a bound, with the outcome docs/TRANSACTIONS.md calls for, that every
//! node holds what that outcome says (I1/I2), and that the report's reason
//! names the node and what went wrong.
//!
//! The hostile node is a raw node (raw_node.rs) with a script: its answers
//! are bytes chosen by the test, and behind them it keeps its groups, so
//! "the node applied the write, then misbehaved" is a real state the job
//! must read back.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_consumer::domain::ExitStatus;
use api_consumer::domain::Outcome;
use api_consumer::output::report::RunReport;
use node_sim::NodeOp;
use node_sim::SimCluster;

use crate::common::*;
use crate::raw_node::{
    answer, apply, contract, endless_chunked, head_200, raw, record, Call, RawNode, Reply,
};

const ID: &str = "g";

/// What a reason must say about a redirect the job refused to follow, so
/// that an operator does not take the node's `3xx` for the whole story.
const REDIRECT_NOT_FOLLOWED: &str = "not followed";

/// Short timeouts on top of [`FAST`], so that misbehaviour paid for in
/// timeouts stays cheap: the bounds on how long a case takes, and the drips
/// slower than the timeout, count on these values. The retries keep a
/// `node-sim` slowed by a loaded machine from deciding a case.
const SHORT_TIMEOUTS: &[(&str, &str)] = &[
    ("REQUEST_TIMEOUT_MS", "500"),
    ("CONNECT_TIMEOUT_MS", "500"),
    ("MAX_RETRIES", "2"),
];

/// A node that answers reads with `reply` and the rest as the contract says.
async fn answering_reads(reply: Reply) -> RawNode {
    RawNode::start(move |request, held| match request.call {
        Call::Read(_) => reply.clone(),
        _ => contract(request, held),
    })
    .await
}

/// Runs `check` on every case at once, each in its own task so that a
/// failing case neither stops nor hides the others; then fails naming every
/// case that failed (their own messages are printed above).
async fn each_case<T, F, Fut>(cases: Vec<(String, T)>, check: F)
where
    F: Fn(String, T) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tasks: Vec<_> = cases
        .into_iter()
        .map(|(name, case)| (name.clone(), tokio::spawn(check(name, case))))
        .collect();
    let mut failed = Vec::new();
    for (name, task) in tasks {
        if task.await.is_err() {
            failed.push(name);
        }
    }
    assert!(failed.is_empty(), "failed cases: {failed:#?}");
}

/// Runs `operation` on [`ID`] over the simulated nodes then `hostile`, with
/// [`SHORT_TIMEOUTS`] overridden by `extra`; fails past [`HANG_BOUND`].
async fn run_with(
    cluster: &SimCluster,
    hostile: &str,
    operation: &str,
    extra: &[(&str, &str)],
) -> (RunReport, Duration) {
    let mut nodes = cluster.urls();
    nodes.push(hostile.to_string());
    let mut vars = SHORT_TIMEOUTS.to_vec();
    vars.extend_from_slice(extra);
    let config = config(&nodes, operation, &[ID], &vars);
    let started = Instant::now();
    let report = run_bounded(&config).await;
    (report, started.elapsed())
}

/// The group committed: the report says so and every simulated node holds
/// it (create) or none does (delete).
async fn assert_committed(case: &str, report: &RunReport, cluster: &SimCluster, operation: &str) {
    assert_eq!(
        report.exit_code,
        ExitStatus::AllAtGoal,
        "{case}: {report:#?}"
    );
    assert_eq!(report.totals.committed, 1, "{case}: {report:#?}");
    let goal = operation == "create";
    for (i, held) in holders(cluster, ID).await.into_iter().enumerate() {
        assert_eq!(held, goal, "{case}: simulated node {i} after a commit");
    }
}

/// The group rolled back with a reason naming `node` and saying `says`, and
/// every simulated node is back at its prior state: without the group after
/// a create, with it after a delete.
async fn assert_rolled_back(
    case: &str,
    report: &RunReport,
    cluster: &SimCluster,
    operation: &str,
    node: &str,
    says: &str,
) {
    assert_eq!(
        report.exit_code,
        ExitStatus::RolledBack,
        "{case}: {report:#?}"
    );
    let g = group(report, ID);
    assert_eq!(g.outcome, Outcome::RolledBack, "{case}: {g:#?}");
    let prior = operation == "delete";
    for (i, held) in holders(cluster, ID).await.into_iter().enumerate() {
        assert_eq!(held, prior, "{case}: simulated node {i} after a rollback");
    }
    // Last, so that a vague message never hides a wrong state.
    let reason = g.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains(node) && reason.contains(says),
        "{case}: the reason should name {node} and say {says:?}: {reason:?}"
    );
}

/// A node whose state cannot be read stops the group before any write
/// (rule 1): rolled back, no node written, the reason names the node.
async fn assert_nothing_written(
    case: &str,
    report: &RunReport,
    cluster: &SimCluster,
    node: &str,
    says: &str,
) {
    let g = group(report, ID);
    assert!(g.nodes.iter().all(|n| !n.written), "{case}: {g:#?}");
    for state in states(cluster).await {
        assert_eq!(count(&state.requests, "create"), 0, "{case}: {state:?}");
        assert_eq!(count(&state.requests, "delete"), 0, "{case}: {state:?}");
    }
    let prior_unreadable = format!("prior state of {node} could not be read");
    assert_rolled_back(case, report, cluster, "create", &prior_unreadable, says).await;
}

/// Answers to a read that leave the node's state unknown: wrong records,
/// statuses that are not an answer, broken framing, silence. (The redirect
/// loop points at the group's own URL.)
#[tokio::test]
async fn a_node_that_cannot_be_read_stops_the_group_before_any_write() {
    let own_item = format!("/v1/group/{ID}/");
    let html = "<html><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>";
    let huge_header = "x".repeat(1024 * 1024);
    let many_headers: String = (0..500).map(|i| format!("X-Header-{i}: {i}\r\n")).collect();
    let cases: Vec<(&str, Reply, &str)> = vec![
        (
            "a record with another groupId",
            answer("200 OK", &[], record("someone-else").to_string()),
            "different group id",
        ),
        (
            "a groupId that is not a string",
            answer("200 OK", &[], r#"{"groupId": 7}"#),
            "different group id",
        ),
        (
            "a close without an answer",
            raw(""),
            "closed before message completed",
        ),
        (
            "a 3xx without Location",
            answer("302 Found", &[], ""),
            "302",
        ),
        (
            "a redirect loop",
            answer("301 Moved Permanently", &[("Location", &own_item)], ""),
            "301",
        ),
        (
            "an HTML error page",
            answer("502 Bad Gateway", &[("Content-Type", "text/html")], html),
            "502",
        ),
        (
            "401 Unauthorized",
            answer("401 Unauthorized", &[("WWW-Authenticate", "Bearer")], ""),
            "401",
        ),
        (
            "418 I'm a teapot",
            answer("418 I'm a teapot", &[], "short and stout"),
            "418",
        ),
        (
            "an unknown status 999",
            answer("999 Whatever", &[], ""),
            "999",
        ),
        (
            "a garbage status line",
            raw("HELLO WORLD\r\n\r\n"),
            "invalid HTTP version",
        ),
        (
            "an interim 103 and then a close",
            raw("HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"),
            "closed before message completed",
        ),
        (
            "a header of 1 MiB",
            answer(
                "200 OK",
                &[("X-Huge", &huge_header)],
                record(ID).to_string(),
            ),
            "too large",
        ),
        (
            "500 headers",
            raw(format!(
                "HTTP/1.1 200 OK\r\n{many_headers}Content-Length: 0\r\n\r\n"
            )),
            "too large",
        ),
        (
            "a negative Content-Length",
            raw("HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n"),
            "content-length",
        ),
        (
            "a reset in the middle of the body",
            Reply::Reset([head_200(100), b"{\"groupId\"".to_vec()].concat()),
            "body read failed: Connection reset",
        ),
        (
            "a close after the headers",
            Reply::Bytes(head_200(100)),
            "body read failed: end of file",
        ),
        (
            "a broken chunked encoding",
            raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n"),
            "body read failed: Invalid chunk size",
        ),
        (
            "a body dripping slower than the timeout",
            Reply::Drip {
                head: head_200(1000),
                body: vec![b' '; 1000],
                every: Duration::from_millis(100),
            },
            "timeout",
        ),
        (
            "a connection accepted and never answered",
            Reply::Silent,
            "timeout",
        ),
    ];
    let cases = cases
        .into_iter()
        .map(|(name, reply, says)| (name.to_string(), (reply, says)))
        .collect();
    each_case(cases, |case, (reply, says)| async move {
        let cluster = cluster(2).await;
        let hostile = answering_reads(reply).await;
        let (report, _) = run_with(&cluster, &hostile.url, "create", &[]).await;
        assert_nothing_written(&case, &report, &cluster, &hostile.url, says).await;
        assert_eq!(hostile.writes(), 0, "{case}: {:?}", hostile.requests());
    })
    .await;
}

/// A port whose connections the kernel completes but no one ever accepts.
#[tokio::test]
async fn a_node_that_never_accepts_is_cut_off_by_the_timeout() {
    let cluster = cluster(2).await;
    let (listener, node) = never_accepting();
    let (report, elapsed) = run_with(&cluster, &node, "create", &[]).await;
    assert_nothing_written("never accepting", &report, &cluster, &node, "timeout").await;
    // Three attempts of 500 ms each, plus a little.
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    drop(listener);
}

/// What a write case must end with.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The node applied the write and answered the expected success (however
    /// odd the rest of the answer): committed, no read-back needed.
    Settled,
    /// The node applied the write but answered something else: a read-back
    /// finds the change, committed.
    FoundByReadBack,
    /// The node did not apply the write: a read-back finds that, and the
    /// group rolls back with a reason naming the node and saying this.
    RolledBack(&'static str),
}

struct WriteCase {
    name: &'static str,
    operation: &'static str,
    expect: Expect,
    reply: Reply,
}

fn create(name: &'static str, expect: Expect, reply: Reply) -> WriteCase {
    WriteCase {
        name,
        operation: "create",
        expect,
        reply,
    }
}

fn delete(name: &'static str, expect: Expect, reply: Reply) -> WriteCase {
    WriteCase {
        operation: "delete",
        ..create(name, expect, reply)
    }
}

/// Writes answered oddly, at the HTTP or the byte level: anything but the
/// expected success is resolved by reading the node back, so the group
/// commits exactly when the node applied the write.
#[tokio::test]
async fn odd_write_answers_are_resolved_by_reading_the_node_back() {
    use Expect::*;
    let invalid_utf8 = [
        b"HTTP/1.1 201 Cr\xe9\xff\xfe\r\nX-Note: \xff\xfe\r\nContent-Length: 3\r\n".as_slice(),
        b"Connection: close\r\n\r\n\xff\xfe\xfd",
    ]
    .concat();
    let html = "<!DOCTYPE html><html><body>Bad gateway</body></html>";
    let cases = vec![
        create(
            "200 instead of 201",
            FoundByReadBack,
            answer("200 OK", &[], record(ID).to_string()),
        ),
        create(
            "200 without creating",
            RolledBack("200 OK"),
            answer("200 OK", &[], ""),
        ),
        create(
            "204 No Content",
            FoundByReadBack,
            answer("204 No Content", &[], ""),
        ),
        create(
            "202 Accepted",
            FoundByReadBack,
            answer("202 Accepted", &[], ""),
        ),
        create(
            "201, non-JSON body",
            Settled,
            answer("201 Created", &[], "created!"),
        ),
        create(
            "201, body up to the close",
            Settled,
            raw("HTTP/1.1 201 Created\r\nConnection: close\r\n\r\n"),
        ),
        create("201, invalid UTF-8 everywhere", Settled, raw(&invalid_utf8)),
        create(
            "100 Continue before the 201",
            Settled,
            raw("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
        ),
        create(
            "201 with an endless body",
            Settled,
            endless_chunked("201 Created"),
        ),
        create(
            "an unknown 5xx",
            FoundByReadBack,
            answer("599 Network Timeout", &[], ""),
        ),
        create(
            "a 303 without Location",
            FoundByReadBack,
            answer("303 See Other", &[], ""),
        ),
        create(
            "418 I'm a teapot",
            RolledBack("418"),
            answer("418 I'm a teapot", &[], ""),
        ),
        // The client follows a 301 to a POST with a GET (as browsers do),
        // which the node answers 404: the read-back still decides.
        create(
            "301 to itself",
            RolledBack("404"),
            answer("301 Moved Permanently", &[("Location", "/v1/group/")], ""),
        ),
        create(
            "an HTML 502 page",
            RolledBack("502 Bad Gateway"),
            answer("502 Bad Gateway", &[("Content-Type", "text/html")], html),
        ),
        create(
            "a reset in the middle of the body",
            FoundByReadBack,
            Reply::Reset([head_200(100), b"{\"gro".to_vec()].concat()),
        ),
        create(
            "a close after the headers",
            FoundByReadBack,
            raw("HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n"),
        ),
        create(
            "a broken chunked encoding",
            FoundByReadBack,
            raw("HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n"),
        ),
        create(
            "a body dripping slower than the timeout",
            FoundByReadBack,
            Reply::Drip {
                head: b"HTTP/1.1 201 Created\r\nContent-Length: 1000\r\n\r\n".to_vec(),
                body: vec![b' '; 1000],
                every: Duration::from_millis(100),
            },
        ),
        create("a close after applying", FoundByReadBack, raw("")),
        create("silence after applying", FoundByReadBack, Reply::Silent),
        create(
            "silence without applying",
            RolledBack("timeout"),
            Reply::Silent,
        ),
        create(
            "a garbage status line",
            FoundByReadBack,
            raw("HTTP/1.1 20X Created\r\n\r\n"),
        ),
        delete(
            "201 on delete",
            FoundByReadBack,
            answer("201 Created", &[], ""),
        ),
        delete(
            "201 on delete without deleting",
            RolledBack("201 Created"),
            answer("201 Created", &[], ""),
        ),
        delete(
            "204 on delete",
            FoundByReadBack,
            answer("204 No Content", &[], ""),
        ),
        delete(
            "a reset in the middle of a delete's answer",
            FoundByReadBack,
            Reply::Reset([head_200(100), b"{".to_vec()].concat()),
        ),
    ];
    let cases = cases.into_iter().map(|c| (c.name.to_string(), c)).collect();
    each_case(cases, |name, case| async move {
        let WriteCase {
            operation,
            expect,
            reply,
            ..
        } = case;
        let cluster = cluster(2).await;
        let applies = !matches!(expect, RolledBack(_));
        let hostile = RawNode::start(move |request, held| {
            if !request.is_write() {
                return contract(request, held);
            }
            if applies {
                apply(request, held);
            }
            reply.clone()
        })
        .await;
        if operation == "delete" {
            for node in cluster.nodes() {
                node.insert_group(ID).await.unwrap();
            }
            hostile.hold(ID);
        }
        let (report, _) = run_with(&cluster, &hostile.url, operation, &[]).await;
        match expect {
            Settled | FoundByReadBack => {
                assert_committed(&name, &report, &cluster, operation).await;
            }
            RolledBack(says) => {
                assert_rolled_back(&name, &report, &cluster, operation, &hostile.url, says).await;
            }
        }
        let holds_goal = applies == (operation == "create");
        assert_eq!(
            hostile.holds(ID),
            holds_goal,
            "{name}: {:?}",
            hostile.requests()
        );
        // The prior read, then one read-back unless the answer settled it.
        let reads = hostile.requests().iter().filter(|r| r.is_read()).count();
        let expected_reads = if matches!(expect, Settled) { 1 } else { 2 };
        assert_eq!(reads, expected_reads, "{name}: {:?}", hostile.requests());
    })
    .await;
}

/// A `200` to a read says the group exists, whatever its body: a group
/// already on the hostile node gets no write, the others get it.
#[tokio::test]
async fn odd_bodies_of_a_present_group_read_as_present() {
    let nested = "[".repeat(60_000);
    let fifty_mb = 50 * 1024 * 1024;
    let cases: Vec<(&str, Reply)> = vec![
        ("an empty body", answer("200 OK", &[], "")),
        ("a non-JSON body", answer("200 OK", &[], "yes, it exists")),
        (
            "an HTML page",
            answer("200 OK", &[("Content-Type", "text/html")], "<html>g</html>"),
        ),
        (
            "invalid UTF-8",
            answer("200 OK", &[], b"\xff\xfe{\"groupId\":\"g\xff\"}"),
        ),
        ("a JSON array", answer("200 OK", &[], "[\"g\"]")),
        ("JSON null", answer("200 OK", &[], "null")),
        (
            "an object without groupId",
            answer("200 OK", &[], r#"{"id":"g"}"#),
        ),
        ("60,000 nested arrays", answer("200 OK", &[], &nested)),
        (
            "a 50 MB body",
            Reply::Flood {
                head: head_200(fifty_mb),
                chunk: [b"{\"groupId\":\"g\",\"pad\":\"".as_slice(), &[b'x'; 8192]].concat(),
                total: fifty_mb,
            },
        ),
        ("an endless chunked body", endless_chunked("200 OK")),
    ];
    let cases = cases
        .into_iter()
        .map(|(name, reply)| (name.to_string(), reply))
        .collect();
    each_case(cases, |case, reply| async move {
        let cluster = cluster(2).await;
        let hostile = RawNode::start(move |request, held| match &request.call {
            Call::Read(id) if held.contains_key(id) => reply.clone(),
            _ => contract(request, held),
        })
        .await;
        hostile.hold(ID);
        let (report, elapsed) = run_with(&cluster, &hostile.url, "create", &[]).await;
        assert_committed(&case, &report, &cluster, "create").await;
        assert_eq!(hostile.writes(), 0, "{case}: {:?}", hostile.requests());
        assert!(hostile.holds(ID));
        // The client stops reading at its 64 KiB cap: only what the socket
        // buffers hold on top of it left the server, not the whole body.
        let sent = hostile.flooded();
        assert!(
            sent < 24 * 1024 * 1024,
            "{case}: the client read {sent} bytes"
        );
        assert!(
            elapsed < Duration::from_secs(10),
            "{case}: took {elapsed:?}"
        );
    })
    .await;
}

/// A node whose reads lag behind its writes: the first read after a create
/// still says 404. A 201 settles the node, so the job never misreads its own
/// create; a later run that sees the stale 404 gets a 400 for its create and
/// takes the group as there.
#[tokio::test]
async fn a_read_that_says_404_right_after_a_201_does_not_undo_the_create() {
    let lagging = || {
        let stale = Arc::new(AtomicBool::new(false));
        RawNode::start(move |request, held| match request.call {
            Call::Read(_) if stale.swap(false, Ordering::SeqCst) => {
                answer("404 Not Found", &[], "")
            }
            Call::Create(_) => {
                let reply = contract(request, held);
                stale.store(true, Ordering::SeqCst);
                reply
            }
            _ => contract(request, held),
        })
    };
    let committing = cluster(2).await;
    let hostile = lagging().await;
    for run in ["first run", "run after the stale read"] {
        let (report, _) = run_with(&committing, &hostile.url, "create", &[]).await;
        assert_committed(run, &report, &committing, "create").await;
        assert!(hostile.holds(ID), "{run}");
    }
    let deletes = hostile
        .requests()
        .into_iter()
        .filter(|r| matches!(r.call, Call::Delete(_)))
        .count();
    assert_eq!(deletes, 0, "{:?}", hostile.requests());

    // When another node refuses, the lagging node's create is still undone.
    let refusing = cluster(2).await;
    fault(&refusing, 1, failing(&[NodeOp::Create]));
    let hostile = lagging().await;
    let (report, _) = run_with(&refusing, &hostile.url, "create", &[]).await;
    let refuser = &refusing.urls()[1];
    assert_rolled_back("rollback", &report, &refusing, "create", refuser, "500").await;
    assert!(!hostile.holds(ID), "{:?}", hostile.requests());
}

/// Cases named by their `Retry-After` value.
fn named_by_value(values: &[&[u8]]) -> Vec<(String, Vec<u8>)> {
    values
        .iter()
        .map(|v| (String::from_utf8_lossy(v).into_owned(), v.to_vec()))
        .collect()
}

/// A node that throttles its first create with `Retry-After: value`, then
/// behaves.
async fn throttling_once(value: &[u8]) -> RawNode {
    let throttle = [
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: ".as_slice(),
        value,
        b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ]
    .concat();
    let creates = AtomicUsize::new(0);
    RawNode::start(move |request, held| match request.call {
        Call::Create(_) if creates.fetch_add(1, Ordering::SeqCst) == 0 => raw(&throttle),
        _ => contract(request, held),
    })
    .await
}

/// A `Retry-After` that is not a delay (garbage, negative, fractional,
/// overflowing, not text) is ignored: the backoff alone paces the retry.
#[tokio::test]
async fn unusable_retry_after_falls_back_to_the_backoff() {
    let values: [&[u8]; 8] = [
        b"soon",
        b"-1",
        b"1.5",
        b"",
        b"99999999999999999999999",
        b"\xff\xfe",
        b"Wed, 32 Foo 2015 25:61:61 GMT",
        b"7 seconds",
    ];
    each_case(named_by_value(&values), |case, value| async move {
        let cluster = cluster(2).await;
        let hostile = throttling_once(&value).await;
        let (report, elapsed) = run_with(&cluster, &hostile.url, "create", &[]).await;
        assert_committed(&case, &report, &cluster, "create").await;
        assert!(hostile.holds(ID), "{case}");
        assert!(
            elapsed < Duration::from_secs(5),
            "{case}: waited {elapsed:?}"
        );
    })
    .await;
}

/// A `Retry-After` of years is clamped, and the run deadline cuts the wait
/// short: the group rolls back soon after the deadline, not years later.
#[tokio::test]
async fn retry_after_beyond_the_deadline_is_cut_short_by_it() {
    const DEADLINE: &[(&str, &str)] = &[("RUN_TIMEOUT_SECS", "1"), ("ROLLBACK_TIMEOUT_SECS", "2")];
    let values: [&[u8]; 2] = [b"99999999", b"Fri, 31 Dec 9999 23:59:59 GMT"];
    each_case(named_by_value(&values), |case, value| async move {
        let cluster = cluster(2).await;
        let hostile = throttling_once(&value).await;
        let (report, elapsed) = run_with(&cluster, &hostile.url, "create", DEADLINE).await;
        assert_rolled_back(&case, &report, &cluster, "create", "", "RUN_TIMEOUT_SECS").await;
        assert!(!hostile.holds(ID), "{case}");
        assert_eq!(
            hostile.writes(),
            1,
            "{case}: retried before its Retry-After"
        );
        // The deadline (1 s) plus a quarter of the rollback budget, plus slack.
        assert!(elapsed < Duration::from_secs(6), "{case}: took {elapsed:?}");
    })
    .await;
}

/// Redirects to anywhere but the node itself, of a read or of a create, are
/// not followed: the other end receives nothing, and the reason says so.
#[tokio::test]
async fn a_redirect_to_another_host_is_never_followed() {
    let elsewhere = Arc::new(RawNode::start(contract).await);
    let port = elsewhere.url.rsplit(':').next().unwrap().to_string();
    let locations = [
        format!("http://127.0.0.1:{port}/v1/group/"),
        format!("http://localhost:{port}/v1/group/"),
        format!("//127.0.0.1:{port}/v1/group/"),
        "file:///etc/passwd".to_string(),
    ];
    let cases = locations
        .iter()
        .flat_map(|location| {
            [true, false].map(|of_read| {
                let what = if of_read { "read" } else { "create" };
                (
                    format!("{what} redirected to {location}"),
                    (location.clone(), of_read),
                )
            })
        })
        .collect();
    each_case(cases, |case, (location, of_read)| {
        let elsewhere = elsewhere.clone();
        async move {
            let cluster = cluster(2).await;
            let reply = answer("307 Temporary Redirect", &[("Location", &location)], "");
            let hostile = RawNode::start(move |request, held| match request.call {
                Call::Read(_) if of_read => reply.clone(),
                Call::Create(_) if !of_read => reply.clone(),
                _ => contract(request, held),
            })
            .await;
            let (report, _) = run_with(&cluster, &hostile.url, "create", &[]).await;
            assert_eq!(elsewhere.connections(), 0, "{case}: followed");
            assert!(!hostile.holds(ID), "{case}");
            let url = &hostile.url;
            if of_read {
                assert_nothing_written(&case, &report, &cluster, url, REDIRECT_NOT_FOLLOWED).await;
            } else {
                assert_rolled_back(
                    &case,
                    &report,
                    &cluster,
                    "create",
                    url,
                    REDIRECT_NOT_FOLLOWED,
                )
                .await;
            }
        }
    })
    .await;
}

/// A node serving the API under `/api/` and redirecting every call there
/// with a `308` (which keeps the method and the body): followed throughout.
#[tokio::test]
async fn redirects_within_the_node_are_followed() {
    let cluster = cluster(2).await;
    let hostile = RawNode::start(|request, held| {
        if request.path.starts_with("/api/") {
            return contract(request, held);
        }
        let location = format!("/api{}", request.path);
        answer("308 Permanent Redirect", &[("Location", &location)], "")
    })
    .await;
    let (report, _) = run_with(&cluster, &hostile.url, "create", &[]).await;
    assert_committed("create", &report, &cluster, "create").await;
    assert!(hostile.holds(ID), "{:?}", hostile.requests());
    let (report, _) = run_with(&cluster, &hostile.url, "delete", &[]).await;
    assert_committed("delete", &report, &cluster, "delete").await;
    assert!(!hostile.holds(ID), "{:?}", hostile.requests());
    let served: Vec<Call> = hostile
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/api/"))
        .map(|r| r.call)
        .collect();
    for call in [
        Call::Read(ID.into()),
        Call::Create(ID.into()),
        Call::Delete(ID.into()),
    ] {
        assert!(
            served.contains(&call),
            "{call:?} never reached /api/: {served:?}"
        );
    }
}
