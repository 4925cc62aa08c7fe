//! Nodes behind a real nginx that gives up on writes before the nodes finish
//! them: nginx answers `504` after its `proxy_read_timeout`, closes the
//! connection to the node, and the node applies the write anyway, later
//! (the slow nodes of late_writes.rs, 600 ms a write).
//! The job's own `REQUEST_TIMEOUT_MS` is longer than nginx's, so every lost
//! answer here is a gateway's. The tests read every node directly once the
//! late writes have landed, and check in nginx's access log that it did
//! answer `504` for each of them, so that they cannot pass by accident.
//!
//! Without nginx (`apt-get install nginx-light`, or `NGINX_BIN`) the tests
//! say so and pass, except under CI (`CI` set), where they fail: `.ci/run`
//! installs it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use node_sim::{NodeOp, SimCluster};

use crate::common::*;
use crate::late_writes::{create_rolled_back, delete_rolled_back, late_creates_left_behind};
use crate::late_writes::{slow_writers_and_a_refusal, IDS};

/// How long nginx waits for a node's answer before it answers `504`.
const PROXY_READ_TIMEOUT_MS: u64 = 100;

/// One nginx process in front of a cluster, one `server` per node; stopped
/// when dropped.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    urls: Vec<String>,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// The access log's lines, each `<status> <method>`.
    fn answers(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        log.lines().map(str::to_owned).collect()
    }

    /// Asserts that nginx answered `504` to `per_group` requests of each
    /// method for every group of [`IDS`]: one per slow node and write.
    fn assert_gave_up_on(&self, methods: &[(&str, usize)]) {
        let answers = self.answers();
        for &(method, per_group) in methods {
            let line = format!("504 {method}");
            let seen = answers.iter().filter(|l| **l == line).count();
            assert_eq!(seen, per_group * IDS.len(), "{method}: {answers:?}");
        }
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// nginx's configuration: every node of `upstreams` behind a port of its
/// own, answered `504` once the node has not answered for
/// [`PROXY_READ_TIMEOUT_MS`], with no retry of its own.
fn nginx_conf(dir: &Path, upstreams: &[String], ports: &[u16]) -> String {
    let dir = dir.display();
    let mut servers = String::new();
    for (upstream, port) in upstreams.iter().zip(ports) {
        servers.push_str(&format!(
            "    server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       location / {{\n\
             \x20           proxy_pass {upstream};\n\
             \x20           proxy_read_timeout {PROXY_READ_TIMEOUT_MS}ms;\n\
             \x20           proxy_next_upstream off;\n\
             \x20       }}\n\
             \x20   }}\n"
        ));
    }
    format!(
        "daemon off;\n\
         master_process off;\n\
         worker_processes 1;\n\
         pid {dir}/nginx.pid;\n\
         error_log {dir}/error.log warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
         \x20   log_format answer '$status $request_method';\n\
         \x20   access_log {dir}/access.log answer;\n\
         \x20   client_body_temp_path {dir}/body;\n\
         \x20   proxy_temp_path {dir}/proxy;\n\
         \x20   fastcgi_temp_path {dir}/fastcgi;\n\
         \x20   uwsgi_temp_path {dir}/uwsgi;\n\
         \x20   scgi_temp_path {dir}/scgi;\n\
         {servers}}}\n"
    )
}

/// nginx in front of every node of `cluster`, ready to proxy; `None` when
/// nginx is not installed (outside CI).
async fn nginx_in_front(cluster: &SimCluster) -> Option<Nginx> {
    let binary = installed(
        "NGINX_BIN",
        &["/usr/sbin/nginx", "/usr/bin/nginx"],
        "nginx-light",
    )?;
    api_consumer::node_api::install_tls_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let upstreams = cluster.urls();
    let ports: Vec<u16> = upstreams.iter().map(|_| free_port()).collect();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, nginx_conf(dir.path(), &upstreams, &ports)).expect("write nginx.conf");
    let child = Command::new(binary)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let urls = ports
        .iter()
        .map(|port| format!("http://127.0.0.1:{port}"))
        .collect();
    let nginx = Nginx { child, dir, urls };
    for url in &nginx.urls {
        let state = format!("{url}/_sim/state");
        let mut ready = false;
        for _ in 0..200 {
            if reqwest::get(&state)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let errors = std::fs::read_to_string(nginx.dir.path().join("error.log"));
        assert!(ready, "nginx did not proxy {url}: {errors:?}");
    }
    Some(nginx)
}

/// The job waits longer than nginx, so every lost answer is nginx's `504`.
fn settings(write_settle_ms: &str) -> Vec<(&str, &str)> {
    vec![
        ("REQUEST_TIMEOUT_MS", "1000"),
        ("MAX_RETRIES", "0"),
        ("WRITE_SETTLE_MS", write_settle_ms),
        ("CONCURRENCY", "8"),
        ("PRIOR_STATE", "read"),
    ]
}

/// Creates answered `504` by nginx on two nodes and refused on the third:
/// the rollback waits for the creates to land, undoes them (its deletes
/// answered `504` in turn), waits for those, and every node ends without
/// the groups.
#[tokio::test]
async fn behind_nginx_a_create_rolled_back_while_its_gateway_timed_out_creates_land() {
    let cluster = slow_writers_and_a_refusal(NodeOp::Create).await;
    let Some(nginx) = nginx_in_front(&cluster).await else {
        return;
    };
    create_rolled_back(&cluster, &nginx.urls, &settings("1500")).await;
    nginx.assert_gave_up_on(&[("POST", 2), ("DELETE", 2)]);
}

/// The same for a delete: every node keeps its groups.
#[tokio::test]
async fn behind_nginx_a_delete_rolled_back_while_its_gateway_timed_out_deletes_land() {
    let cluster = slow_writers_and_a_refusal(NodeOp::Delete).await;
    let Some(nginx) = nginx_in_front(&cluster).await else {
        return;
    };
    delete_rolled_back(&cluster, &nginx.urls, &settings("1500")).await;
    nginx.assert_gave_up_on(&[("DELETE", 2), ("POST", 2)]);
}

/// Without a window the rollback reads the slow nodes before their creates
/// land and leaves them: the groups are reported rolled back while nginx's
/// timed-out creates land on them afterwards. What `WRITE_SETTLE_MS` is for.
#[tokio::test]
async fn behind_nginx_without_a_window_the_late_creates_are_left_behind() {
    let cluster = slow_writers_and_a_refusal(NodeOp::Create).await;
    let Some(nginx) = nginx_in_front(&cluster).await else {
        return;
    };
    late_creates_left_behind(&cluster, &nginx.urls, &settings("0")).await;
    nginx.assert_gave_up_on(&[("POST", 2)]);
}
