//! `METRICS_PUSHGATEWAY_URL`: the run's metrics pushed to a real Prometheus
//! Pushgateway (the `prometheus-pushgateway` binary, started here on
//! loopback), and a gateway that is down or refuses changing nothing.
//!
//! Without the binary (`apt-get install prometheus-pushgateway`, or
//! `PUSHGATEWAY_BIN`) the gateway tests say so and pass, except under CI
//! (`CI` set), where they fail: `.ci/run` installs it.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use node_sim::FaultsPatch;

use crate::common::*;

/// A Pushgateway on a free loopback port, stopped when dropped.
struct Gateway {
    child: Child,
    url: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn gateway() -> Option<Gateway> {
    api_consumer::node_api::install_tls_provider();
    let paths = [
        "/usr/bin/prometheus-pushgateway",
        "/usr/local/bin/pushgateway",
    ];
    let binary = installed("PUSHGATEWAY_BIN", &paths, "prometheus-pushgateway")?;
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let child = Command::new(binary)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus-pushgateway");
    let gateway = Gateway {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let ready = format!("{}/-/ready", gateway.url);
    for _ in 0..100 {
        if let Ok(response) = reqwest::get(&ready).await {
            if response.status().is_success() {
                return Some(gateway);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "prometheus-pushgateway did not become ready at {}",
        gateway.url
    );
}

/// One sample of the gateway's `/metrics`: name, labels, value.
type Series = (String, BTreeMap<String, String>, f64);

/// The api_consumer series the gateway holds for `job`.
async fn scrape(gateway: &Gateway, job: &str) -> Vec<Series> {
    let text = reqwest::get(format!("{}/metrics", gateway.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| line.starts_with("api_consumer_"))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels: BTreeMap<String, String> = labels
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once("=\"").unwrap();
                    (key.to_owned(), value.trim_end_matches('"').to_owned())
                })
                .collect();
            (name.to_owned(), labels, value.parse().unwrap())
        })
        .filter(|(_, labels, _)| labels.get("job").map(String::as_str) == Some(job))
        .collect()
}

fn value(series: &[Series], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    series
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

fn unique_job(prefix: &str) -> String {
    format!("{prefix}-{}", rand::random::<u32>())
}

#[tokio::test]
async fn a_failed_run_keeps_the_last_success_of_the_run_before() {
    let Some(gateway) = gateway().await else {
        return;
    };
    let cluster = cluster(3).await;
    let job = unique_job("it-success");
    let metrics = [
        ("METRICS_PUSHGATEWAY_URL", gateway.url.as_str()),
        ("METRICS_JOB", job.as_str()),
    ];
    let report = run_on(&cluster, "create", &["m1", "m2"], &metrics).await;
    assert_eq!(u8::from(report.exit_code), 0);
    let first = scrape(&gateway, &job).await;
    let committed = [("operation", "create"), ("outcome", "committed")];
    assert_eq!(value(&first, "api_consumer_groups", &committed), Some(2.0));
    assert_eq!(value(&first, "api_consumer_exit_code", &[]), Some(0.0));
    let node = cluster.urls()[0].clone();
    // A read of the prior state (404) and a create (201) per group.
    assert_eq!(
        value(
            &first,
            "api_consumer_requests",
            &[("node", &node), ("status", "201")]
        ),
        Some(2.0)
    );
    assert!(value(&first, "api_consumer_duration_seconds", &[]).is_some());
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        value(&first, "api_consumer_build_info", &[("version", version)]),
        Some(1.0)
    );
    let success = value(&first, "api_consumer_last_success_timestamp_seconds", &[])
        .expect("a successful run pushes its time");
    // No pod or instance in the grouping key: the gateway fills in an empty
    // instance itself.
    assert!(first
        .iter()
        .all(|(_, labels, _)| labels.get("instance").is_none_or(String::is_empty)));

    // The next run fails on one node and rolls back: it replaces the run's
    // metrics but not the last success.
    fault(&cluster, 1, failing(&[node_sim::NodeOp::Create]));
    let report = run_on(&cluster, "create", &["m3"], &metrics).await;
    assert_eq!(u8::from(report.exit_code), 1);
    let second = scrape(&gateway, &job).await;
    assert_eq!(value(&second, "api_consumer_exit_code", &[]), Some(1.0));
    let rolled_back = [("operation", "create"), ("outcome", "rolled_back")];
    assert_eq!(
        value(&second, "api_consumer_groups", &rolled_back),
        Some(1.0)
    );
    assert_eq!(value(&second, "api_consumer_groups", &committed), Some(0.0));
    assert_eq!(
        value(&second, "api_consumer_last_success_timestamp_seconds", &[]),
        Some(success)
    );
    assert!(
        value(
            &second,
            "api_consumer_retries",
            &[("node", &cluster.urls()[1])]
        )
        .unwrap()
            > 0.0
    );
}

/// A node that went down and was given up: its `api_consumer_node_up` is 0
/// and its time down is pushed; the other nodes' are 1 and 0.
#[tokio::test]
async fn a_node_down_is_pushed_as_down() {
    let Some(gateway) = gateway().await else {
        return;
    };
    let cluster = cluster(2).await;
    let dead = dead_node();
    let mut urls = cluster.urls();
    urls.push(dead.clone());
    let job = unique_job("it-down");
    let vars = [
        ("METRICS_PUSHGATEWAY_URL", gateway.url.as_str()),
        ("METRICS_JOB", job.as_str()),
        ("NODE_DOWN_AFTER_FAILURES", "5"),
        ("NODE_DOWN_WAIT_SECS", "1"),
    ];
    let report = run(&config(&urls, "create", &["d1", "d2", "d3"], &vars)).await;
    assert_eq!(u8::from(report.exit_code), 1);
    let pushed = scrape(&gateway, &job).await;
    assert_eq!(
        value(&pushed, "api_consumer_node_up", &[("node", &dead)]),
        Some(0.0)
    );
    assert_eq!(
        value(&pushed, "api_consumer_node_downs", &[("node", &dead)]),
        Some(1.0)
    );
    let down = value(
        &pushed,
        "api_consumer_node_down_seconds",
        &[("node", &dead)],
    );
    assert!(down.is_some_and(|s| s >= 1.0), "{down:?}");
    let up = &cluster.urls()[0];
    assert_eq!(
        value(&pushed, "api_consumer_node_up", &[("node", up)]),
        Some(1.0)
    );
    assert_eq!(
        value(&pushed, "api_consumer_node_down_seconds", &[("node", up)]),
        Some(0.0)
    );
}

#[tokio::test]
async fn a_sharded_run_pushes_under_its_shard_and_while_it_runs() {
    let Some(gateway) = gateway().await else {
        return;
    };
    let cluster = cluster(2).await;
    for index in 0..2 {
        fault(
            &cluster,
            index,
            FaultsPatch {
                latency_ms: Some(150),
                ..FaultsPatch::default()
            },
        );
    }
    let job = unique_job("it-progress");
    let ids: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let config = config(
        &cluster.urls(),
        "create",
        &ids,
        &[
            ("METRICS_PUSHGATEWAY_URL", gateway.url.as_str()),
            ("METRICS_JOB", job.as_str()),
            ("PROGRESS_INTERVAL_SECS", "1"),
            ("CONCURRENCY", "1"),
            ("PRIOR_STATE", "read"),
            ("SHARD_COUNT", "2"),
            ("SHARD_INDEX", "1"),
        ],
    );
    let running = tokio::spawn(async move { run(&config).await });
    // While it runs: the groups so far, under shard 1, and no exit code yet.
    let mut seen_running = false;
    while !running.is_finished() {
        let now = scrape(&gateway, &job).await;
        if value(&now, "api_consumer_groups", &[("shard", "1")]).is_some()
            && value(&now, "api_consumer_exit_code", &[]).is_none()
        {
            seen_running = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = running.await.unwrap();
    assert_eq!(u8::from(report.exit_code), 0);
    assert!(seen_running, "no push while the run went on");
    let end = scrape(&gateway, &job).await;
    let own = report.totals.committed as f64;
    assert!(own > 0.0);
    assert_eq!(
        value(
            &end,
            "api_consumer_groups",
            &[("outcome", "committed"), ("shard", "1")]
        ),
        Some(own)
    );
    assert_eq!(
        value(&end, "api_consumer_exit_code", &[("shard", "1")]),
        Some(0.0)
    );
}

/// A gateway that is down, refuses the push (node-sim answers 404) or never
/// answers:
/// the run's outcome, exit code and summary are those without metrics, and
/// each failed push is one warning line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_is_down_or_refuses_changes_nothing() {
    let cluster = cluster(2).await;
    let nodes = cluster.urls().join(",");
    let refusing = cluster.urls()[0].clone();
    // Accepts connections (the kernel's backlog) and never answers: the push
    // gives up after its 5 s.
    let (_silent, silent_url) = never_accepting();
    for gateway in [dead_node(), refusing, silent_url] {
        let dir = tempfile::tempdir().unwrap();
        let vars = [
            ("NODES", nodes.as_str()),
            ("OPERATION", "create"),
            ("GROUP_IDS", "d1,d2"),
            ("METRICS_PUSHGATEWAY_URL", gateway.as_str()),
        ];
        let output = command(&dir, &vars).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{stdout}");
        let lines = json_lines(&output.stdout);
        let warnings: Vec<_> = lines
            .iter()
            .filter(|l| l["message"] == "metrics push failed; the run goes on")
            .collect();
        assert_eq!(warnings.len(), 1, "{stdout}");
        assert_eq!(warnings[0]["level"], "WARN");
        let summary = lines.last().unwrap();
        assert_eq!(summary["message"], "run summary");
        assert_eq!(summary["committed"], 2);
    }
}

#[tokio::test]
async fn a_two_phase_run_pushes_its_metrics_too() {
    let Some(gateway) = gateway().await else {
        return;
    };
    let cluster = crate::two_phase::two_phase_cluster(2).await;
    let job = unique_job("it-two-phase");
    let report = run_on(
        &cluster,
        "create",
        &["t1"],
        &[
            ("NODE_PROTOCOL", "two-phase"),
            ("METRICS_PUSHGATEWAY_URL", gateway.url.as_str()),
            ("METRICS_JOB", job.as_str()),
            ("PRIOR_STATE", "read"),
        ],
    )
    .await;
    assert_eq!(u8::from(report.exit_code), 0, "{report:#?}");
    let pushed = scrape(&gateway, &job).await;
    let committed = [("operation", "create"), ("outcome", "committed")];
    assert_eq!(value(&pushed, "api_consumer_groups", &committed), Some(1.0));
    // Per node: the prepare and the commit (200), the read before (404) and
    // the read after (200).
    let node = cluster.urls()[0].clone();
    assert_eq!(
        value(
            &pushed,
            "api_consumer_requests",
            &[("node", &node), ("status", "200")]
        ),
        Some(3.0)
    );
    assert!(value(&pushed, "api_consumer_last_success_timestamp_seconds", &[]).is_some());
}
