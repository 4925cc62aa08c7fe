//! Every test talks real HTTP to nodes on 127.0.0.1 and free ports.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

use super::*;
use crate::api::NodeOp;
use node_contract::{group_item_path, GroupBody, GROUP_COLLECTION_PATH, GROUP_LIST_PATH};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn start(count: usize, faults: Faults) -> SimCluster {
    let options = SimOptions {
        faults,
        ..SimOptions::default()
    };
    SimCluster::start(LOCALHOST, 0, count, options)
        .await
        .expect("cluster starts")
}

fn client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client builds")
}

async fn call(method: Method, url: String, group_id: &str) -> reqwest::Response {
    client()
        .request(method, url)
        .json(&GroupBody::new(group_id))
        .send()
        .await
        .expect("request answered")
}

async fn create(node: &SimNode, group_id: &str) -> reqwest::Response {
    call(
        Method::POST,
        format!("{}/{GROUP_COLLECTION_PATH}", node.url()),
        group_id,
    )
    .await
}

async fn delete(node: &SimNode, group_id: &str) -> reqwest::Response {
    call(
        Method::DELETE,
        format!("{}/{GROUP_COLLECTION_PATH}", node.url()),
        group_id,
    )
    .await
}

async fn read(node: &SimNode, group_id: &str) -> reqwest::Response {
    client()
        .get(format!("{}/{}", node.url(), group_item_path(group_id)))
        .send()
        .await
        .expect("request answered")
}

async fn status(response: impl std::future::Future<Output = reqwest::Response>) -> u16 {
    response.await.status().as_u16()
}

/// Waits until the node has received an `op` call, so a test stops the node
/// with that call in flight rather than before it connected.
async fn arrived(node: &SimNode, op: &str) {
    while node.state().requests.get(op).copied().unwrap_or(0) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A client that gives up after 100 ms, closing its connection.
fn impatient() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(100))
        .build()
        .expect("client builds")
}

/// `GET /_sim/state`, over HTTP.
async fn sim_state(node: &SimNode) -> SimState {
    client()
        .get(format!("{}/_sim/state", node.url()))
        .send()
        .await
        .expect("state answered")
        .json()
        .await
        .expect("state parses")
}

/// Polls `/_sim/state` until `done` holds, for at most 10 seconds.
async fn settled(node: &SimNode, done: impl Fn(&SimState) -> bool) -> SimState {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = sim_state(node).await;
        if done(&state) {
            return state;
        }
        assert!(Instant::now() < deadline, "never settled: {state:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const WRITE_LATENCY: Duration = Duration::from_millis(300);

/// Sends a write from a client that gives up before the node's write
/// latency of `latency`. Returns when it was sent, and the node's state
/// when the client had given up if it was read before the write could have
/// landed (on a machine too slow for that, `None`).
async fn abandon(
    node: &SimNode,
    latency: Duration,
    request: reqwest::RequestBuilder,
) -> (Instant, Option<SimState>) {
    let sent = Instant::now();
    let outcome = request.send().await;
    assert!(
        outcome.as_ref().is_err_and(reqwest::Error::is_timeout),
        "the client gives up: {outcome:?}"
    );
    let state = node.state();
    // The write lands `latency` after it was sent at the earliest.
    let early = sent.elapsed() < latency;
    (sent, early.then_some(state))
}

fn faults(patch: impl FnOnce(&mut Faults)) -> Faults {
    let mut faults = Faults::default();
    patch(&mut faults);
    faults
}

#[tokio::test]
async fn serves_the_node_api() {
    let cluster = start(1, Faults::default()).await;
    let node = &cluster.nodes()[0];

    let created = create(node, "g1").await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(
        created.json::<GroupBody>().await.unwrap(),
        GroupBody::new("g1")
    );

    let duplicate = create(node, "g1").await;
    assert_eq!(duplicate.status(), StatusCode::BAD_REQUEST);
    assert!(duplicate.json::<Value>().await.unwrap()["error"].is_string());

    let got = read(node, "g1").await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.json::<GroupBody>().await.unwrap(), GroupBody::new("g1"));
    assert_eq!(status(read(node, "other")).await, 404);

    assert_eq!(status(create(node, "a0")).await, 201);
    let list = client()
        .get(format!("{}/{GROUP_LIST_PATH}", node.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), StatusCode::OK);
    assert_eq!(
        list.json::<Value>().await.unwrap(),
        json!({"groups": [{"groupId": "a0"}, {"groupId": "g1"}]})
    );

    assert_eq!(status(delete(node, "g1")).await, 200);
    assert_eq!(status(delete(node, "g1")).await, 404);
    assert_eq!(status(read(node, "g1")).await, 404);

    let health = client()
        .get(format!("{}/healthz", node.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    cluster.shutdown().await;
}

#[tokio::test]
async fn serves_paths_without_trailing_slash_and_rejects_bad_bodies() {
    let cluster = start(1, Faults::default()).await;
    let node = &cluster.nodes()[0];
    let url = node.url();

    assert_eq!(
        status(call(Method::POST, format!("{url}/v1/group"), "x")).await,
        201
    );
    let got = client()
        .get(format!("{url}/v1/group/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(
        status(call(Method::DELETE, format!("{url}/v1/group"), "x")).await,
        200
    );

    for body in ["not json", "{}", r#"{"groupId": 3}"#, r#"{"groupId": ""}"#] {
        let response = client()
            .post(format!("{url}/v1/group/"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "body {body}");
    }
    assert!(node.state().groups.is_empty());
    assert_eq!(node.state().responses.get("400"), Some(&4));
}

#[tokio::test]
async fn ids_with_reserved_characters_round_trip() {
    let cluster = start(1, Faults::default()).await;
    let node = &cluster.nodes()[0];
    let id = "a/b?c#d%e f é";

    assert_eq!(status(create(node, id)).await, 201);
    let got = read(node, id).await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.json::<GroupBody>().await.unwrap(), GroupBody::new(id));
    assert_eq!(node.state().groups, vec![id.to_owned()]);
    assert_eq!(status(read(node, "a/b")).await, 404);
    assert_eq!(status(delete(node, id)).await, 200);
}

#[tokio::test]
async fn concurrent_creates_of_one_id_have_one_winner() {
    let cluster = start(1, Faults::default()).await;
    let node = &cluster.nodes()[0];
    let statuses =
        futures::future::join_all((0..20).map(|_| status(create(node, "contended")))).await;
    assert_eq!(statuses.iter().filter(|&&s| s == 201).count(), 1);
    assert_eq!(statuses.iter().filter(|&&s| s == 400).count(), 19);
}

#[tokio::test]
async fn fail_rate_answers_500_without_applying() {
    let cluster = start(1, faults(|f| f.fail_rate = 1.0)).await;
    let node = &cluster.nodes()[0];
    assert_eq!(status(create(node, "g")).await, 500);
    assert!(node.state().groups.is_empty());
}

#[tokio::test]
async fn ambiguous_rate_applies_then_answers_500() {
    let cluster = start(1, faults(|f| f.ambiguous_rate = 1.0)).await;
    let node = &cluster.nodes()[0];
    assert_eq!(status(create(node, "g")).await, 500);
    assert_eq!(node.state().groups, vec!["g".to_owned()]);
    assert_eq!(status(delete(node, "g")).await, 500);
    assert!(node.state().groups.is_empty());
}

#[tokio::test]
async fn unavailable_rate_answers_503_without_applying() {
    let cluster = start(1, faults(|f| f.unavailable_rate = 1.0)).await;
    let node = &cluster.nodes()[0];
    assert_eq!(status(create(node, "g")).await, 503);
    assert!(node.state().groups.is_empty());
}

#[tokio::test]
async fn throttle_rate_answers_429_with_retry_after() {
    let cluster = start(
        1,
        faults(|f| {
            f.throttle_rate = 1.0;
            f.retry_after_secs = 7;
        }),
    )
    .await;
    let node = &cluster.nodes()[0];
    let response = create(node, "g").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "7");
    assert!(node.state().groups.is_empty());
}

#[tokio::test]
async fn timeout_rate_hangs_then_answers_504_without_applying() {
    let cluster = start(
        1,
        faults(|f| {
            f.timeout_rate = 1.0;
            f.hang_ms = 150;
        }),
    )
    .await;
    let node = &cluster.nodes()[0];
    let started = Instant::now();
    assert_eq!(status(create(node, "g")).await, 504);
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(node.state().groups.is_empty());
}

#[tokio::test]
async fn latency_delays_every_call() {
    let cluster = start(
        1,
        faults(|f| {
            f.latency_ms = 100;
            f.jitter_ms = 20;
            f.fail_ops = vec![];
        }),
    )
    .await;
    let node = &cluster.nodes()[0];
    let started = Instant::now();
    assert_eq!(status(read(node, "g")).await, 404);
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn fail_ops_restricts_faults_to_the_listed_calls() {
    let cluster = start(
        1,
        faults(|f| {
            f.fail_rate = 1.0;
            f.fail_ops = vec![NodeOp::Delete];
        }),
    )
    .await;
    let node = &cluster.nodes()[0];
    assert_eq!(status(create(node, "g")).await, 201);
    assert_eq!(status(read(node, "g")).await, 200);
    assert_eq!(status(delete(node, "g")).await, 500);
    assert_eq!(node.state().groups, vec!["g".to_owned()]);
}

#[tokio::test]
async fn rate_limit_answers_429_past_the_burst() {
    let cluster = start(1, faults(|f| f.rate_limit = 2)).await;
    let node = &cluster.nodes()[0];
    assert_eq!(status(read(node, "g")).await, 404);
    assert_eq!(status(read(node, "g")).await, 404);
    // The bucket refills one token per 500 ms: however slow the machine,
    // a few more quick calls meet an empty bucket.
    let mut limited = None;
    for _ in 0..5 {
        let response = read(node, "g").await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(response);
            break;
        }
    }
    let limited = limited.expect("a call past the burst is refused");
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);

    // Changing the limit takes effect at once, with a fresh bucket.
    node.set_faults(FaultsPatch {
        rate_limit: Some(0),
        ..FaultsPatch::default()
    })
    .unwrap();
    for _ in 0..5 {
        assert_eq!(status(read(node, "g")).await, 404);
    }
}

#[tokio::test]
async fn put_faults_changes_only_the_given_fields() {
    let cluster = start(1, faults(|f| f.latency_ms = 1)).await;
    let node = &cluster.nodes()[0];
    let url = format!("{}/_sim/faults", node.url());

    let response = client()
        .put(&url)
        .json(&json!({"fail_rate": 0.5, "fail_ops": ["create"], "write_latency_ms": 250}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let expected = faults(|f| {
        f.latency_ms = 1;
        f.write_latency_ms = 250;
        f.fail_rate = 0.5;
        f.fail_ops = vec![NodeOp::Create];
    });
    assert_eq!(response.json::<Faults>().await.unwrap(), expected);

    for bad in [
        json!({"fail_rate": 1.5}),
        json!({"timeout_rate": -0.1}),
        json!({"no_such_knob": 1}),
        json!({"fail_ops": ["put"]}),
        json!({"write_latency_ms": -1}),
        json!({"write_latency_ms": 1.5}),
        json!({"write_latency_ms": "300"}),
    ] {
        let response = client().put(&url).json(&bad).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(response.json::<Value>().await.unwrap()["error"].is_string());
    }

    let too_long = client()
        .put(&url)
        .header("content-type", "application/json")
        .body(r#"{"write_latency_ms": 18446744073709551616}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(too_long.status(), StatusCode::BAD_REQUEST);

    let current = client().get(&url).send().await.unwrap();
    assert_eq!(current.json::<Faults>().await.unwrap(), expected);
    assert_eq!(node.faults(), expected);
    assert!(node
        .set_faults(FaultsPatch {
            ambiguous_rate: Some(f64::NAN),
            ..FaultsPatch::default()
        })
        .is_err());
}

#[tokio::test]
async fn reset_clears_groups_and_counters_and_restores_faults() {
    let cluster = start(1, faults(|f| f.retry_after_secs = 3)).await;
    let node = &cluster.nodes()[0];
    assert_eq!(status(create(node, "g")).await, 201);
    node.set_faults(FaultsPatch {
        fail_rate: Some(1.0),
        ..FaultsPatch::default()
    })
    .unwrap();

    let reset = client()
        .post(format!("{}/_sim/reset", node.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), StatusCode::OK);
    let state = node.state();
    assert!(state.groups.is_empty());
    assert!(state.requests.values().all(|&n| n == 0));
    assert!(state.responses.is_empty());
    assert_eq!(node.faults(), faults(|f| f.retry_after_secs = 3));
}

#[tokio::test]
async fn counts_node_api_calls_but_not_inspection() {
    let cluster = start(1, Faults::default()).await;
    let node = &cluster.nodes()[0];
    assert_eq!(status(create(node, "g")).await, 201);
    assert_eq!(status(create(node, "g")).await, 400);
    assert_eq!(status(read(node, "g")).await, 200);
    assert_eq!(status(delete(node, "h")).await, 404);
    let _ = client()
        .get(format!("{}/{GROUP_LIST_PATH}", node.url()))
        .send()
        .await
        .unwrap();
    node.insert_group("seeded").await.unwrap();
    let _ = client()
        .get(format!("{}/_sim/faults", node.url()))
        .send()
        .await
        .unwrap();
    let _ = client()
        .get(format!("{}/healthz", node.url()))
        .send()
        .await
        .unwrap();

    let state: SimState = client()
        .get(format!("{}/_sim/state", node.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state, node.state());
    let counts = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
        pairs.iter().map(|&(k, v)| (k.to_owned(), v)).collect()
    };
    assert_eq!(
        state.requests,
        counts(&[("create", 2), ("delete", 1), ("get", 1), ("list", 1)])
    );
    assert_eq!(
        state.responses,
        counts(&[("200", 2), ("201", 1), ("400", 1), ("404", 1)])
    );
    assert_eq!(state.groups, vec!["g".to_owned(), "seeded".to_owned()]);
}

#[tokio::test]
async fn nodes_are_independent_and_seeded() {
    let flaky = faults(|f| {
        f.fail_rate = 0.5;
        f.fail_ops = vec![NodeOp::Get];
    });
    let outcomes = |cluster: SimCluster| async move {
        let mut seen = Vec::new();
        for node in cluster.nodes() {
            for _ in 0..16 {
                seen.push(status(read(node, "g")).await);
            }
        }
        seen
    };
    let first = outcomes(start(2, flaky.clone()).await).await;
    let second = outcomes(start(2, flaky).await).await;
    assert_eq!(first, second);
    assert!(first.contains(&500) && first.contains(&404));
    // Seeds differ per node, so the two nodes do not fail in lockstep.
    assert_ne!(first[..16], first[16..]);

    let cluster = start(2, Faults::default()).await;
    assert_eq!(status(create(&cluster.nodes()[0], "only-here")).await, 201);
    assert_eq!(status(read(&cluster.nodes()[1], "only-here")).await, 404);
}

#[tokio::test]
async fn data_file_keeps_groups_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("groups.json");
    let options = SimOptions {
        data_file: Some(path.clone()),
        ..SimOptions::default()
    };
    let cluster = SimCluster::start(LOCALHOST, 0, 2, options.clone())
        .await
        .unwrap();
    let [zero, one] = cluster.nodes() else {
        panic!("two nodes")
    };
    assert_eq!(status(create(zero, "a/b é")).await, 201);
    assert_eq!(status(create(one, "y")).await, 201);
    let on_disk: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(on_disk, json!({"nodes": {"0": ["a/b é"], "1": ["y"]}}));

    zero.kill().await;
    assert!(!zero.is_running().await);
    assert!(client()
        .get(format!("{}/healthz", zero.url()))
        .send()
        .await
        .is_err());
    zero.restart().await.unwrap();
    assert_eq!(status(read(zero, "a/b é")).await, 200);
    assert_eq!(zero.state().requests.get("create"), Some(&0));

    cluster.shutdown().await;
    let again = SimCluster::start(LOCALHOST, 0, 2, options).await.unwrap();
    assert_eq!(again.nodes()[0].state().groups, vec!["a/b é".to_owned()]);
    assert_eq!(status(read(&again.nodes()[1], "y")).await, 200);
    assert!(again.nodes()[1].remove_group("y").await.unwrap());
    again.shutdown().await;

    // A run with fewer nodes keeps the others' entries.
    let options = SimOptions {
        data_file: Some(path.clone()),
        ..SimOptions::default()
    };
    let single = SimCluster::start(LOCALHOST, 0, 1, options).await.unwrap();
    single.nodes()[0].reset().await.unwrap();
    let on_disk: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(on_disk, json!({"nodes": {"0": [], "1": []}}));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left behind");
}

#[tokio::test]
async fn restart_without_data_file_comes_back_empty() {
    let cluster = start(1, faults(|f| f.latency_ms = 1)).await;
    let node = &cluster.nodes()[0];
    node.insert_group("g").await.unwrap();
    node.set_faults(FaultsPatch {
        fail_rate: Some(1.0),
        ..FaultsPatch::default()
    })
    .unwrap();
    node.restart().await.unwrap();
    assert!(node.is_running().await);
    assert_eq!(status(read(node, "g")).await, 404);
    assert_eq!(node.faults(), faults(|f| f.latency_ms = 1));
}

#[tokio::test]
async fn data_file_missing_is_empty_and_corrupt_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.json");
    let options = SimOptions {
        data_file: Some(path.clone()),
        ..SimOptions::default()
    };
    let cluster = SimCluster::start(LOCALHOST, 0, 1, options).await.unwrap();
    assert!(cluster.nodes()[0].state().groups.is_empty());
    assert!(
        path.exists(),
        "written at start, so an unwritable path fails early"
    );

    let corrupt = dir.path().join("corrupt.json");
    std::fs::write(&corrupt, "{\"nodes\": [").unwrap();
    let options = SimOptions {
        data_file: Some(corrupt.clone()),
        ..SimOptions::default()
    };
    let error = SimCluster::start(LOCALHOST, 0, 1, options)
        .await
        .unwrap_err();
    assert!(matches!(error, SimError::DataFile { .. }), "{error}");
    assert!(error.to_string().contains("corrupt.json"), "{error}");
    assert_eq!(std::fs::read_to_string(&corrupt).unwrap(), "{\"nodes\": [");

    let options = SimOptions {
        data_file: Some(dir.path().join("no-such-dir").join("f.json")),
        ..SimOptions::default()
    };
    let error = SimCluster::start(LOCALHOST, 0, 1, options)
        .await
        .unwrap_err();
    assert!(matches!(error, SimError::DataFile { .. }), "{error}");
}

#[tokio::test]
async fn kill_drops_requests_in_flight() {
    let cluster = start(
        1,
        faults(|f| {
            f.timeout_rate = 1.0;
            f.hang_ms = 10_000;
        }),
    )
    .await;
    let node = &cluster.nodes()[0];
    let started = Instant::now();
    let pending = tokio::spawn(
        client()
            .post(format!("{}/{GROUP_COLLECTION_PATH}", node.url()))
            .json(&GroupBody::new("g"))
            .send(),
    );
    arrived(node, "create").await;
    node.kill().await;
    let outcome = pending.await.unwrap();
    assert!(
        outcome.is_err(),
        "no answer from a killed node: {outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn graceful_stop_cuts_injected_waits_short() {
    let cluster = start(
        1,
        faults(|f| {
            f.timeout_rate = 1.0;
            f.hang_ms = 10_000;
        }),
    )
    .await;
    let node = &cluster.nodes()[0];
    let started = Instant::now();
    let pending = tokio::spawn(
        client()
            .get(format!("{}/{}", node.url(), group_item_path("g")))
            .send(),
    );
    arrived(node, "get").await;
    cluster.shutdown().await;
    let response = pending.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn start_rejects_bad_arguments() {
    let error = SimCluster::start(LOCALHOST, 0, 0, SimOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, SimError::NoNodes));
    let error = SimCluster::start(LOCALHOST, 65_535, 2, SimOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, SimError::PortRange { .. }));
    let options = SimOptions {
        faults: faults(|f| f.throttle_rate = 2.0),
        ..SimOptions::default()
    };
    let error = SimCluster::start(LOCALHOST, 0, 1, options)
        .await
        .unwrap_err();
    assert!(matches!(error, SimError::InvalidFaults(_)));

    let taken = start(1, Faults::default()).await;
    let port = taken.nodes()[0].addr().port();
    let error = SimCluster::start(LOCALHOST, port, 1, SimOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, SimError::Bind { .. }), "{error}");
}

// ------------------------------------------------------------ two-phase

async fn two_phase(node: &SimNode, method: Method, group_id: &str, body: Value) -> (u16, Value) {
    let url = match method {
        Method::POST => format!("{}/v1/group", node.url()),
        _ => format!("{}/{}", node.url(), group_item_path(group_id)),
    };
    let response = client()
        .request(method, url)
        .json(&body)
        .send()
        .await
        .expect("request answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn prepare_or_commit(node: &SimNode, group_id: &str, session: &str) -> (u16, Value) {
    let body = json!({"groupId": group_id, "sessionId": session});
    two_phase(node, Method::POST, group_id, body).await
}

async fn delete_step(node: &SimNode, group_id: &str, session: &str) -> (u16, Value) {
    let body = json!({"sessionId": session});
    two_phase(node, Method::DELETE, group_id, body).await
}

fn intentions(node: &SimNode) -> Vec<(String, String, IntentionOp)> {
    node.state()
        .intentions
        .into_iter()
        .map(|i| (i.group_id, i.session_id, i.operation))
        .collect()
}

#[tokio::test]
async fn two_phase_creates_and_deletes_take_an_intention_then_its_commit() {
    let cluster = start(1, faults(|f| f.protocol = Protocol::TwoPhase)).await;
    let node = &cluster.nodes()[0];

    assert_eq!(prepare_or_commit(node, "g/1", "s1").await.0, 200);
    assert_eq!(
        status(read(node, "g/1")).await,
        404,
        "an intention is invisible"
    );
    assert_eq!(
        intentions(node),
        [("g/1".to_owned(), "s1".to_owned(), IntentionOp::Create)]
    );
    // Another session is refused while s1 holds the group.
    let (code, body) = prepare_or_commit(node, "g/1", "s2").await;
    assert_eq!(code, 409);
    assert!(
        body["detail"].as_str().unwrap().contains("another session"),
        "{body}"
    );
    assert_eq!(delete_step(node, "g/1", "s2").await.0, 409);
    // The same call again commits.
    assert_eq!(prepare_or_commit(node, "g/1", "s1").await.0, 200);
    assert_eq!(status(read(node, "g/1")).await, 200);
    assert!(intentions(node).is_empty());
    assert_eq!(
        prepare_or_commit(node, "g/1", "s1").await.0,
        409,
        "it exists"
    );

    // A delete: the group stays visible until the commit.
    assert_eq!(delete_step(node, "g/1", "s3").await.0, 200);
    assert_eq!(status(read(node, "g/1")).await, 200);
    assert_eq!(
        intentions(node),
        [("g/1".to_owned(), "s3".to_owned(), IntentionOp::Delete)]
    );
    assert_eq!(delete_step(node, "g/1", "s3").await.0, 200);
    assert_eq!(status(read(node, "g/1")).await, 404);
    assert_eq!(delete_step(node, "g/1", "s3").await.0, 404);
    assert!(intentions(node).is_empty());
    assert_eq!(node.state().groups, Vec::<String>::new());
}

#[tokio::test]
async fn two_phase_refuses_unknown_fields_and_the_standard_delete() {
    let cluster = start(1, faults(|f| f.protocol = Protocol::TwoPhase)).await;
    let node = &cluster.nodes()[0];
    let extra = json!({"groupId": "g", "sessionId": "s", "force": true});
    let (code, body) = two_phase(node, Method::POST, "g", extra).await;
    assert_eq!(code, 422);
    assert!(body["detail"].as_str().unwrap().contains("force"), "{body}");
    let missing = json!({"groupId": "g"});
    assert_eq!(two_phase(node, Method::POST, "g", missing).await.0, 422);
    let empty = json!({"groupId": "g", "sessionId": ""});
    assert_eq!(two_phase(node, Method::POST, "g", empty).await.0, 422);
    // A standard client's create and delete do not go through unnoticed.
    assert_eq!(status(create(node, "g")).await, 422);
    assert_eq!(status(delete(node, "g")).await, 405);
    assert!(intentions(node).is_empty() && node.state().groups.is_empty());
    // And a standard node refuses the two-phase delete.
    let standard = start(1, Faults::default()).await;
    let node = &standard.nodes()[0];
    node.insert_group("g").await.unwrap();
    assert_eq!(delete_step(node, "g", "s").await.0, 405);
    assert_eq!(status(read(node, "g")).await, 200);
}

#[tokio::test]
async fn an_intention_never_committed_blocks_its_group_until_a_restart() {
    let cluster = start(1, faults(|f| f.protocol = Protocol::TwoPhase)).await;
    let node = &cluster.nodes()[0];
    assert_eq!(prepare_or_commit(node, "g", "lost").await.0, 200);
    for session in ["a", "b"] {
        assert_eq!(prepare_or_commit(node, "g", session).await.0, 409);
    }
    node.restart().await.unwrap();
    assert!(intentions(node).is_empty());
    assert_eq!(prepare_or_commit(node, "g", "a").await.0, 200);
    assert_eq!(prepare_or_commit(node, "g", "a").await.0, 200);
    assert_eq!(status(read(node, "g")).await, 200);
}

#[tokio::test]
async fn two_phase_calls_take_every_fault_and_the_protocol_switches_at_runtime() {
    let cluster = start(1, Faults::default()).await;
    let node = &cluster.nodes()[0];
    // Switched on through PUT /_sim/faults, as a test or an operator would.
    let response = client()
        .put(format!("{}/_sim/faults", node.url()))
        .json(&json!({"protocol": "two-phase", "ambiguous_rate": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(node.faults().protocol, Protocol::TwoPhase);
    // Applied, then 500: the intention is there although the answer failed.
    assert_eq!(prepare_or_commit(node, "g", "s").await.0, 500);
    assert_eq!(intentions(node).len(), 1);
    // A resent first call commits.
    node.set_faults(FaultsPatch {
        ambiguous_rate: Some(0.0),
        ..FaultsPatch::default()
    })
    .unwrap();
    assert_eq!(prepare_or_commit(node, "g", "s").await.0, 200);
    assert_eq!(status(read(node, "g")).await, 200);
    // A reset restores the start-up protocol.
    node.reset().await.unwrap();
    assert_eq!(node.faults().protocol, Protocol::Standard);
    assert_eq!(status(create(node, "g")).await, 201);
}

#[test]
fn op_names_round_trip() {
    for op in NodeOp::ALL {
        assert_eq!(NodeOp::parse(op.as_str()), Some(op));
    }
    assert_eq!(NodeOp::parse("put"), None);
}

// ------------------------------------------------- writes outliving clients

fn slow_writes(protocol: Protocol) -> Faults {
    faults(|f| {
        f.write_latency_ms = WRITE_LATENCY.as_millis() as u64;
        f.protocol = protocol;
    })
}

#[tokio::test]
async fn a_create_whose_client_gave_up_lands_when_it_would_have() {
    let cluster = start(1, slow_writes(Protocol::Standard)).await;
    let node = &cluster.nodes()[0];
    let request = impatient()
        .post(format!("{}/{GROUP_COLLECTION_PATH}", node.url()))
        .json(&GroupBody::new("g"));
    let (sent, before) = abandon(node, WRITE_LATENCY, request).await;
    if let Some(before) = before {
        assert!(
            before.groups.is_empty(),
            "applied at disconnect: {before:?}"
        );
        assert_eq!(before.undelivered_writes, 0);
    }
    let state = settled(node, |s| s.undelivered_writes == 1).await;
    assert!(sent.elapsed() >= WRITE_LATENCY);
    assert_eq!(state.groups, vec!["g".to_owned()]);
    assert_eq!(state.requests.get("create"), Some(&1));
    assert!(state.responses.is_empty(), "nothing was sent: {state:?}");

    // The group is there for everyone, and a reset clears the counter.
    assert_eq!(status(read(node, "g")).await, 200);
    let reset = client()
        .post(format!("{}/_sim/reset", node.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        reset.json::<SimState>().await.unwrap().undelivered_writes,
        0
    );
}

#[tokio::test]
async fn a_delete_whose_client_gave_up_lands_when_it_would_have() {
    let cluster = start(1, slow_writes(Protocol::Standard)).await;
    let node = &cluster.nodes()[0];
    node.insert_group("g").await.unwrap();
    let request = impatient()
        .delete(format!("{}/{GROUP_COLLECTION_PATH}", node.url()))
        .json(&GroupBody::new("g"));
    let (sent, before) = abandon(node, WRITE_LATENCY, request).await;
    if let Some(before) = before {
        assert_eq!(before.groups, vec!["g".to_owned()], "applied at disconnect");
    }
    let state = settled(node, |s| s.undelivered_writes == 1).await;
    assert!(sent.elapsed() >= WRITE_LATENCY);
    assert!(state.groups.is_empty(), "{state:?}");
    assert!(state.responses.is_empty(), "{state:?}");
}

#[tokio::test]
async fn a_two_phase_step_whose_client_gave_up_lands_when_it_would_have() {
    let cluster = start(1, slow_writes(Protocol::TwoPhase)).await;
    let node = &cluster.nodes()[0];
    let body = json!({"groupId": "g", "sessionId": "s"});
    let request = impatient()
        .post(format!("{}/v1/group", node.url()))
        .json(&body);
    let (sent, before) = abandon(node, WRITE_LATENCY, request).await;
    if let Some(before) = before {
        assert!(
            before.intentions.is_empty(),
            "applied at disconnect: {before:?}"
        );
    }
    let state = settled(node, |s| s.undelivered_writes == 1).await;
    assert!(sent.elapsed() >= WRITE_LATENCY);
    assert_eq!(
        intentions(node),
        [("g".to_owned(), "s".to_owned(), IntentionOp::Create)]
    );
    assert!(state.groups.is_empty() && state.responses.is_empty());

    // The resent call is the second one, and commits.
    let request = impatient()
        .post(format!("{}/v1/group", node.url()))
        .json(&body);
    abandon(node, WRITE_LATENCY, request).await;
    let state = settled(node, |s| s.undelivered_writes == 2).await;
    assert_eq!(state.groups, vec!["g".to_owned()]);
    assert!(state.intentions.is_empty());

    let request = impatient()
        .delete(format!("{}/{}", node.url(), group_item_path("g")))
        .json(&json!({"sessionId": "t"}));
    abandon(node, WRITE_LATENCY, request).await;
    settled(node, |s| s.undelivered_writes == 3).await;
    assert_eq!(
        intentions(node),
        [("g".to_owned(), "t".to_owned(), IntentionOp::Delete)]
    );
}

#[tokio::test]
async fn write_latency_delays_writes_only_on_top_of_latency() {
    let cluster = start(
        1,
        faults(|f| {
            f.latency_ms = 50;
            f.write_latency_ms = 1_000;
            f.fail_ops = vec![];
        }),
    )
    .await;
    let node = &cluster.nodes()[0];
    node.insert_group("seeded").await.unwrap();

    let started = Instant::now();
    assert_eq!(status(read(node, "seeded")).await, 200);
    let list = client()
        .get(format!("{}/{GROUP_LIST_PATH}", node.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), StatusCode::OK);
    let reads = started.elapsed();
    assert!(reads >= Duration::from_millis(100), "{reads:?}");
    assert!(
        reads < Duration::from_millis(500),
        "reads waited: {reads:?}"
    );

    // A client that waits gets its answer, after both delays.
    let started = Instant::now();
    let created = create(node, "g").await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(
        created.json::<GroupBody>().await.unwrap(),
        GroupBody::new("g")
    );
    assert!(started.elapsed() >= Duration::from_millis(1_050));
    let state = sim_state(node).await;
    assert_eq!(state.undelivered_writes, 0);
    assert_eq!(state.responses.get("201"), Some(&1));
    assert_eq!(state.groups, vec!["g".to_owned(), "seeded".to_owned()]);
}

#[tokio::test]
async fn kill_ends_writes_in_progress_unapplied() {
    let latency = Duration::from_secs(1);
    let cluster = start(1, faults(|f| f.write_latency_ms = 1_000)).await;
    let node = &cluster.nodes()[0];
    let sent = Instant::now();
    let pending = tokio::spawn(
        client()
            .post(format!("{}/{GROUP_COLLECTION_PATH}", node.url()))
            .json(&GroupBody::new("g"))
            .send(),
    );
    arrived(node, "create").await;
    node.kill().await;
    assert!(
        pending.await.unwrap().is_err(),
        "no answer from a killed node"
    );
    // Past the moment the write would have landed: it never does.
    tokio::time::sleep_until((sent + latency * 3 / 2).into()).await;
    let state = node.state();
    assert!(state.groups.is_empty(), "{state:?}");
    assert_eq!(state.undelivered_writes, 0);
    assert!(state.responses.is_empty());
}

#[tokio::test]
async fn graceful_stop_ends_writes_whose_clients_have_gone() {
    let latency = Duration::from_secs(20);
    let cluster = start(1, faults(|f| f.write_latency_ms = 20_000)).await;
    let node = &cluster.nodes()[0];
    let request = impatient()
        .post(format!("{}/{GROUP_COLLECTION_PATH}", node.url()))
        .json(&GroupBody::new("g"));
    let (sent, _) = abandon(node, latency, request).await;
    // The stop cuts the injected wait short (a 503, nothing applied) and
    // returns once the write has ended.
    node.stop().await;
    assert!(sent.elapsed() < latency);
    let state = node.state();
    assert!(state.groups.is_empty(), "{state:?}");
    // The 503 is undelivered, or, if the node had not yet seen the
    // connection close when it was ready, handed to that connection.
    let handed = state.responses.get("503").copied().unwrap_or(0);
    assert_eq!(state.undelivered_writes + handed, 1, "{state:?}");
}

#[test]
fn older_state_and_faults_bodies_still_parse() {
    let state: SimState =
        serde_json::from_value(json!({"groups": ["g"], "requests": {}, "responses": {}})).unwrap();
    assert_eq!(state.undelivered_writes, 0);
    let mut body = serde_json::to_value(Faults::default()).unwrap();
    body.as_object_mut().unwrap().remove("write_latency_ms");
    assert_eq!(
        serde_json::from_value::<Faults>(body).unwrap(),
        Faults::default()
    );
}

/// With `max_in_flight` calls in progress the node sheds every further one
/// with an immediate `503`, applying nothing; a write whose client has gone
/// holds its place until it lands; below the bound again, calls are served.
#[tokio::test]
async fn max_in_flight_sheds_calls_above_the_bound_until_work_ends() {
    let cluster = start(
        1,
        faults(|f| {
            f.max_in_flight = 2;
            f.write_latency_ms = 300;
        }),
    )
    .await;
    let node = &cluster.nodes()[0];
    // Two writes whose clients give up after 100 ms: still in progress.
    let slow = [
        impatient()
            .post(format!("{}/v1/group/", node.url()))
            .json(&json!({"groupId": "a"})),
        impatient()
            .post(format!("{}/v1/group/", node.url()))
            .json(&json!({"groupId": "b"})),
    ];
    let sent = Instant::now();
    let abandoned = slow.map(|request| tokio::spawn(request.send()));
    for request in abandoned {
        assert!(request.await.unwrap().is_err_and(|e| e.is_timeout()));
    }
    let third = status(create(node, "c")).await;
    let read_while_full = status(read(node, "a")).await;
    if sent.elapsed() < Duration::from_millis(280) {
        // Both answered before the abandoned writes could have landed.
        assert_eq!((third, read_while_full), (503, 503));
    }
    let state = settled(node, |s| s.undelivered_writes == 2).await;
    assert_eq!(state.groups, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(status(create(node, "c")).await, 201);
    assert_eq!(status(read(node, "c")).await, 200);

    // The bound changes at runtime; 0 lifts it.
    node.set_faults(FaultsPatch {
        max_in_flight: Some(0),
        write_latency_ms: Some(50),
        ..FaultsPatch::default()
    })
    .unwrap();
    let ids: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    let answers = futures::future::join_all(ids.iter().map(|id| create(node, id))).await;
    assert!(answers.iter().all(|r| r.status() == StatusCode::CREATED));
}
