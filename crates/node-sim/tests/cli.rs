//! The `node-sim` binary as the chart and the benchmarks run it: it prints one
//! URL per node, serves them, and exits 0 on SIGTERM. (Being an integration
//! test of this package, it also makes `cargo test` build the binary, which
//! the job's process tests start.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn get(url: &str, path: &str) -> String {
    let address = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn serves_its_nodes_and_exits_on_sigterm() {
    let mut sim = Command::new(env!("CARGO_BIN_EXE_node-sim"))
        .args([
            "--nodes",
            "2",
            "--base-port",
            "0",
            "--write-latency-ms",
            "250",
        ])
        .env_clear()
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(sim.stdout.take().unwrap());
    let urls: Vec<String> = (0..2)
        .map(|_| {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            line.trim().to_string()
        })
        .collect();
    assert_ne!(urls[0], urls[1]);
    for url in &urls {
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        assert!(get(url, "/healthz").starts_with("HTTP/1.1 200"), "{url}");
        let state = get(url, "/_sim/state");
        assert!(state.contains("\"groups\":[]"), "{state}");
        assert!(state.contains("\"undelivered_writes\":0"), "{state}");
        let faults = get(url, "/_sim/faults");
        assert!(faults.contains("\"write_latency_ms\":250"), "{faults}");
        assert!(faults.contains("\"latency_ms\":0"), "{faults}");
    }
    let term = Command::new("kill")
        .args(["-TERM", &sim.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = sim.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "node-sim did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}
