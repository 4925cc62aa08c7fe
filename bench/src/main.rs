//! Benchmarks of the `api-consumer` job against `node-sim` (docs/BENCHMARKS.md).
//!
//! Every scenario starts its own node-sim process on free ports, runs the
//! release binary of the job as a separate process with a clean environment,
//! and prints one JSON line on stdout: its inputs, what was measured, the
//! target and whether it was met. Progress goes to stderr.
//!
//! Exit code: 0 every target met, 1 a target missed or a scenario failed,
//! 2 bad arguments or missing binaries.

mod http;
mod job;
mod listing;
mod lost;
mod outage;
mod pipeline;
mod plot;
mod process;
mod requests;
mod sim;
mod stack;
mod wrk;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::job::{Job, JobRun, TempDir};
use crate::plot::FanoutPoint;
use crate::sim::NodeSim;
use crate::stack::Threads;

const USAGE: &str = "\
usage: api-consumer-bench [--quick] [--only S1,S2,...] [--root DIR] [--svg PATH]

  --quick      a small, fast version of every scenario (smoke test)
  --only LIST  run only these scenarios (S1 fan-out, S2 throughput,
               S3 rate limit, S4 retries, S5 memory, S6 listing memory,
               S7 requests per group, S8 slow nodes, S9 lost answers,
               S10 node down, S11 load shedding)
  --root DIR   the api-consumer checkout (default: this package's parent);
               uses DIR/target/release/{api-consumer,node-sim} and
               DIR/target/release/examples/http_stack
  --svg PATH   where S1 writes its plot (default: DIR/docs/bench-fanout.svg,
               or bench/target/bench-fanout-quick.svg with --quick)

Prints one JSON line per scenario on stdout. Exit code 0 when every target
is met, 1 when one is missed or a scenario fails, 2 on bad usage.
";

const SCENARIOS: [&str; 11] = [
    "S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10", "S11",
];

struct Options {
    quick: bool,
    only: Vec<String>,
    root: PathBuf,
    svg: Option<PathBuf>,
}

fn parse_args() -> Result<Option<Options>> {
    let mut options = Options {
        quick: false,
        only: SCENARIOS.iter().map(|s| s.to_string()).collect(),
        root: Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("..")),
        svg: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .with_context(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "--quick" => options.quick = true,
            "--only" => {
                let list = value("--only")?;
                let mut only = Vec::new();
                for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let name = name.to_ascii_uppercase();
                    if !SCENARIOS.contains(&name.as_str()) {
                        bail!("unknown scenario {name:?}; expected one of {SCENARIOS:?}");
                    }
                    only.push(name);
                }
                if only.is_empty() {
                    bail!("--only needs at least one scenario");
                }
                options.only = only;
            }
            "--root" => options.root = PathBuf::from(value("--root")?),
            "--svg" => options.svg = Some(PathBuf::from(value("--svg")?)),
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    Ok(Some(options))
}

/// What every scenario needs.
struct Bench {
    quick: bool,
    node_sim: PathBuf,
    job: PathBuf,
    /// The job's HTTP stack alone (`examples/http_stack.rs`).
    http_stack: PathBuf,
    scratch: TempDir,
    svg: PathBuf,
    /// Where S8 draws groups/s against node latency.
    latency_svg: PathBuf,
    root: PathBuf,
}

impl Bench {
    fn job<'a>(
        &'a self,
        nodes: &'a [String],
        operation: &'a str,
        ids: &'a [String],
        env: &[(&'static str, String)],
    ) -> Job<'a> {
        Job {
            bin: &self.job,
            scratch: self.scratch.path(),
            nodes,
            operation,
            ids,
            env: env.to_vec(),
            timeout: Duration::from_secs(600),
        }
    }
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(Some(options)) => options,
        Ok(None) => return ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: {error:#}");
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("bench: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(options: Options) -> Result<bool> {
    let release = options.root.join("target").join("release");
    let node_sim = release.join("node-sim");
    let job = release.join("api-consumer");
    let http_stack = release.join("examples").join("http_stack");
    for bin in [&node_sim, &job, &http_stack] {
        if !bin.is_file() {
            bail!(
                "{} not found; build it with `cargo build --release --locked --bins --example http_stack` \
                 in {} (bash bench/run.sh does)",
                bin.display(),
                options.root.display()
            );
        }
    }
    let svg = match options.svg {
        Some(svg) => svg,
        None if options.quick => options.root.join("bench/target/bench-fanout-quick.svg"),
        None => options.root.join("docs/bench-fanout.svg"),
    };
    let bench = Bench {
        quick: options.quick,
        node_sim,
        job,
        http_stack,
        scratch: TempDir::new()?,
        svg,
        latency_svg: if options.quick {
            options.root.join("bench/target/bench-latency-quick.svg")
        } else {
            options.root.join("docs/bench-latency.svg")
        },
        root: options.root,
    };
    eprintln!("bench: {}", machine());
    let started = Instant::now();
    let mut all_pass = true;
    for name in &options.only {
        eprintln!("bench: {name} ...");
        let scenario_started = Instant::now();
        let result = match name.as_str() {
            "S1" => s1_fanout(&bench),
            "S2" => s2_throughput(&bench),
            "S3" => s3_rate_limit(&bench),
            "S4" => s4_retries(&bench),
            "S5" => s5_memory(&bench),
            "S6" => listing::s6_listing_memory(&bench),
            "S7" => requests::s7_requests_per_group(&bench),
            "S8" => pipeline::s8_slow_nodes(&bench),
            "S9" => lost::s9_lost_answers(&bench),
            "S10" => outage::s10_node_down(&bench),
            _ => outage::s11_load_shedding(&bench),
        };
        let mut line = match result {
            Ok(line) => line,
            Err(error) => json!({"scenario": name, "error": format!("{error:#}"), "pass": false}),
        };
        line["quick"] = json!(bench.quick);
        line["elapsed_s"] = json!(round(scenario_started.elapsed().as_secs_f64(), 1));
        // A quick run is a smoke test of the command: its sizes are too small
        // for the targets to mean anything, so only a failed scenario counts.
        all_pass &= if bench.quick {
            line.get("error").is_none()
        } else {
            line["pass"].as_bool() == Some(true)
        };
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}").and_then(|()| stdout.flush())?;
    }
    eprintln!(
        "bench: done in {:.0} s; {}",
        started.elapsed().as_secs_f64(),
        if all_pass {
            "every target met"
        } else {
            "a target was missed"
        }
    );
    Ok(all_pass)
}

/// CPUs, CPU model and load average, for the record.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    format!("{cpus} CPUs ({model}), load average {load}")
}

fn ids(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("bench-{tag}-{i:05}")).collect()
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

fn env(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|&(k, v)| (k, v.to_string())).collect()
}

/// Fails unless every group committed.
fn all_committed(run: &JobRun, groups: usize) -> Result<()> {
    if run.committed() != groups as u64 || run.exit_code() != 0 {
        bail!("expected {groups} groups committed, got {}", run.outcomes());
    }
    Ok(())
}

/// Fails unless every node holds exactly `groups` groups.
fn expect_groups(sim: &NodeSim, groups: usize) -> Result<()> {
    for (url, state) in sim.urls.iter().zip(sim.states()?) {
        if state.groups != groups {
            bail!("{url} holds {} groups, expected {groups}", state.groups);
        }
    }
    Ok(())
}

/// Measured numbers of one job run, for the JSON line.
fn run_json(run: &JobRun, node_sim_cpu_s: Option<f64>) -> Value {
    let p = &run.process;
    let mut value = json!({
        "duration_ms": run.duration_ms(),
        "requests": run.requests(),
        "requests_per_s": round(run.requests_per_s(), 0),
        "outcomes": run.outcomes(),
        "job_process_wall_ms": round(p.wall_s * 1000.0, 0),
        "job_cpu_s": round(p.cpu_s, 3),
        "job_cpu_pct_of_one_core": round(100.0 * p.cpu_s / p.wall_s.max(1e-9), 0),
        "job_peak_rss_kib": p.max_rss_kib,
        "log_lines": run.log_lines,
    });
    if let Some(cpu) = node_sim_cpu_s {
        value["node_sim_cpu_s"] = json!(round(cpu, 3));
        value["node_sim_cpu_pct_of_one_core"] = json!(round(100.0 * cpu / p.wall_s.max(1e-9), 0));
    }
    value
}

/// Round trip of one `GET /v1/group/<absent id>/` (a 404) against `url`,
/// median of 11, on a fresh connection each time (connect included) and on
/// one kept-alive connection (after one warm-up request). Milliseconds.
fn measure_rtt(url: &str) -> Result<(f64, f64)> {
    const SAMPLES: usize = 11;
    let path = "/v1/group/bench-rtt-probe/";
    let check = |response: http::Response| -> Result<()> {
        if response.status != 404 {
            bail!("GET {path} answered {}, expected 404", response.status);
        }
        Ok(())
    };
    let mut fresh = Vec::new();
    for _ in 0..SAMPLES {
        let started = Instant::now();
        let mut conn = http::Conn::open(url)?;
        check(conn.request("GET", path, None, true)?)?;
        fresh.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let mut conn = http::Conn::open(url)?;
    check(conn.request("GET", path, None, false)?)?;
    let mut kept = Vec::new();
    for _ in 0..SAMPLES {
        let started = Instant::now();
        check(conn.request("GET", path, None, false)?)?;
        kept.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((median(&fresh), median(&kept)))
}

/// A client doing what the job does for one group, without any of its
/// logic: one thread per node, all released together, each opening a
/// connection and sending two GETs on it (probe, then "write"). Wall time
/// from the release to the last answer, milliseconds.
fn plain_client_fanout_ms(urls: &[String]) -> Result<f64> {
    let path = "/v1/group/bench-raw-fanout/";
    let barrier = std::sync::Barrier::new(urls.len() + 1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = urls
            .iter()
            .map(|url| {
                let barrier = &barrier;
                scope.spawn(move || -> Result<()> {
                    barrier.wait();
                    let mut conn = http::Conn::open(url)?;
                    conn.request("GET", path, None, false)?;
                    conn.request("GET", path, None, true)?;
                    Ok(())
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a fan-out thread panicked"))??;
        }
        Ok(started.elapsed().as_secs_f64() * 1000.0)
    })
}

/// S1: one group over N nodes with 50 ms of latency per call; the run
/// should take about two round trips (the probe, then the write).
fn s1_fanout(bench: &Bench) -> Result<Value> {
    const LATENCY_MS: u64 = 50;
    let (counts, repetitions): (&[u32], usize) = if bench.quick {
        (&[10, 50], 1)
    } else {
        (&[10, 25, 50, 100, 200], 3)
    };
    let latency = LATENCY_MS.to_string();
    let mut points = Vec::new();
    let mut rows = Vec::new();
    let mut rtt = (f64::NAN, f64::NAN);
    for &nodes in counts {
        eprintln!("bench: S1: {nodes} nodes");
        let sim = NodeSim::start(&bench.node_sim, nodes as usize, &["--latency-ms", &latency])?;
        rtt = measure_rtt(&sim.urls[0])?;
        let mut runs = Vec::new();
        let mut raw = Vec::new();
        let mut cpu_ms = Vec::new();
        let mut stack_ms: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for repetition in 0..repetitions {
            sim.reset()?;
            let ids = vec![format!("bench-s1-{nodes}-{repetition}")];
            let run = bench.job(&sim.urls, "create", &ids, &[]).run()?;
            all_committed(&run, 1)?;
            expect_groups(&sim, 1)?;
            runs.push(run.duration_ms() as f64);
            cpu_ms.push(round(run.process.cpu_s * 1000.0, 1));
            raw.push(plain_client_fanout_ms(&sim.urls)?);
            for (threads, times) in Threads::BOTH.into_iter().zip(&mut stack_ms) {
                let id = format!("bench-s1-{nodes}-{repetition}-stack-{}", threads.key());
                let run = stack::fanout(&bench.http_stack, &sim.urls, &id, threads)?;
                times.push(run.number("total_ms")?);
            }
        }
        let stack_medians = stack_ms.each_ref().map(|times| median(times));
        let point = FanoutPoint {
            nodes,
            median_ms: median(&runs),
            runs_ms: runs,
            two_rtt_ms: 2.0 * rtt.1,
            raw_ms: median(&raw),
            stack_ms: stack_medians[0].min(stack_medians[1]),
        };
        rows.push(json!({
            "nodes": nodes,
            "duration_ms": point.runs_ms,
            "median_ms": point.median_ms,
            "rtt_ms": {"fresh": round(rtt.0, 2), "kept_alive": round(rtt.1, 2)},
            "ratio_to_2rtt": round(point.median_ms / point.two_rtt_ms, 3),
            "job_cpu_ms": cpu_ms,
            "plain_client_ms": raw.iter().map(|&ms| round(ms, 1)).collect::<Vec<_>>(),
            "http_stack_ms": Threads::BOTH
                .iter()
                .zip(&stack_ms)
                .map(|(threads, times)| {
                    let times: Vec<f64> = times.iter().map(|&ms| round(ms, 1)).collect();
                    (threads.key().to_string(), json!(times))
                })
                .collect::<serde_json::Map<_, _>>(),
            "http_stack_ratio_to_2rtt": round(point.stack_ms / point.two_rtt_ms, 3),
        }));
        points.push(point);
    }
    let last = points.last().context("no node count")?;
    let two_rtt = 2.0 * rtt.1;
    let ratio = last.median_ms / two_rtt;
    let stack_ratio = last.stack_ms / two_rtt;
    if let Some(dir) = bench.svg.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    plot::fanout(&bench.svg, &points, LATENCY_MS)?;
    let plot = bench
        .svg
        .strip_prefix(&bench.root)
        .unwrap_or(&bench.svg)
        .display()
        .to_string();
    Ok(json!({
        "scenario": "S1",
        "name": "fan-out",
        "inputs": {
            "nodes": last.nodes,
            "groups": 1,
            "operation": "create",
            "node_sim": format!("--latency-ms {LATENCY_MS}"),
            "job_env": "defaults (CONCURRENCY=16, NODE_CONCURRENCY=8)",
            "repetitions": repetitions,
            "node_counts": counts,
        },
        "measured": {
            "duration_ms": last.median_ms,
            "rtt_ms": {"fresh": round(rtt.0, 2), "kept_alive": round(rtt.1, 2), "basis": "kept_alive"},
            "two_rtt_ms": round(two_rtt, 2),
            "ratio": round(ratio, 3),
            "http_stack_ms": round(last.stack_ms, 1),
            "http_stack_ratio": round(stack_ratio, 3),
            "http_stack_meets_target": stack_ratio <= 1.2,
            "by_node_count": rows,
            "plot": plot,
        },
        "target": "median duration_ms at the largest node count <= 1.2 x 2 x round trip (kept-alive GET, median of 11)",
        "http_stack": "the same requests through the job's HTTP stack alone (examples/http_stack.rs): the better median of one thread and two",
        "pass": ratio <= 1.2,
    }))
}

/// S2: 3 nodes, many groups, create then delete, no injected latency: the
/// job's requests/s against wrk's on the same nodes with the same number of
/// connections. Each repetition: reset, create, wrk, delete.
fn s2_throughput(bench: &Bench) -> Result<Value> {
    const NODES: usize = 3;
    const CONCURRENCY: usize = 16;
    const NODE_CONCURRENCY: usize = 8;
    let (groups, wrk_seconds, repetitions) = if bench.quick {
        (300, 2, 1)
    } else {
        (3000, 5, 3)
    };
    let sim = NodeSim::start(&bench.node_sim, NODES, &[])?;
    let ids = ids("s2", groups);
    // A read and a write per group and node, the calls the stack alone
    // sends: S7 and S8 measure what the lists save.
    let job_env = env(&[
        ("CONCURRENCY", &CONCURRENCY.to_string()),
        ("NODE_CONCURRENCY", &NODE_CONCURRENCY.to_string()),
        ("PRIOR_STATE", "read"),
    ]);
    let measure = |operation: &'static str| -> Result<Value> {
        let before = sim.cpu_seconds()?;
        let run = bench.job(&sim.urls, operation, &ids, &job_env).run()?;
        let sim_cpu = sim.cpu_seconds()? - before;
        all_committed(&run, groups)?;
        let mut value = run_json(&run, Some(sim_cpu));
        let requests = run.requests().max(1) as f64;
        value["job_cpu_us_per_request"] = json!(round(run.process.cpu_s * 1e6 / requests, 1));
        value["node_sim_cpu_us_per_request"] = json!(round(sim_cpu * 1e6 / requests, 1));
        Ok(value)
    };
    let targets: Vec<String> = sim
        .urls
        .iter()
        .map(|url| format!("{url}/v1/group/{}/", ids[0]))
        .collect();

    let mut reps = Vec::new();
    let (mut create_ratios, mut delete_ratios) = (Vec::new(), Vec::new());
    let mut stack_ratios = Vec::new();
    let mut job_to_stack = Vec::new();
    for repetition in 1..=repetitions {
        sim.reset()?;
        eprintln!("bench: S2 {repetition}/{repetitions}: create {groups} groups");
        let mut create = measure("create")?;
        expect_groups(&sim, groups)?;

        eprintln!("bench: S2 {repetition}/{repetitions}: wrk, {wrk_seconds} s");
        let before = sim.cpu_seconds()?;
        let started = Instant::now();
        let wrk = wrk::run_parallel(&targets, NODE_CONCURRENCY, wrk_seconds)?;
        let wrk_wall = started.elapsed().as_secs_f64();
        let wrk_sim_cpu = sim.cpu_seconds()? - before;
        let wrk_rps: f64 = wrk.iter().map(|w| w.requests_per_s).sum();
        let wrk_requests: u64 = wrk.iter().map(|w| w.requests).sum();
        let wrk_cpu: f64 = wrk.iter().map(|w| w.cpu_s).sum();
        let wrk_failures: u64 = wrk.iter().map(|w| w.non_2xx + w.socket_errors).sum();
        if wrk_failures > 0 {
            bail!("wrk saw {wrk_failures} non-2xx answers or socket errors");
        }

        // The HTTP stack alone: what it measured, and node-sim's CPU meanwhile.
        let stack_load = |calls: &stack::Calls, threads: Threads| -> Result<(f64, Value)> {
            let before = sim.cpu_seconds()?;
            let run = stack::load(
                &bench.http_stack,
                &sim.urls,
                calls,
                NODE_CONCURRENCY,
                wrk_seconds,
                threads,
            )?;
            let sim_cpu = sim.cpu_seconds()? - before;
            let (rps, requests) = (run.number("requests_per_s")?, run.number("requests")?);
            Ok((
                rps,
                json!({
                    "requests_per_s": rps,
                    "ratio_to_wrk": round(rps / wrk_rps, 3),
                    "cpu_us_per_request": round(run.cpu_s * 1e6 / requests.max(1.0), 1),
                    "node_sim_cpu_us_per_request": round(sim_cpu * 1e6 / requests.max(1.0), 1),
                }),
            ))
        };
        let mut stack_runs = serde_json::Map::new();
        let mut best_stack_rps = 0.0_f64;
        let wrk_calls = stack::Calls::Get(format!("/v1/group/{}/", ids[0]));
        for threads in Threads::BOTH {
            eprintln!(
                "bench: S2 {repetition}/{repetitions}: the HTTP stack alone, {}, {wrk_seconds} s",
                threads.key()
            );
            let (rps, json) = stack_load(&wrk_calls, threads)?;
            best_stack_rps = best_stack_rps.max(rps);
            stack_runs.insert(threads.key().to_string(), json);
        }
        stack_ratios.push(best_stack_rps / wrk_rps);

        eprintln!("bench: S2 {repetition}/{repetitions}: delete {groups} groups");
        let mut delete = measure("delete")?;
        expect_groups(&sim, 0)?;

        // Last, since the groups it creates stay on the nodes until the
        // next repetition's reset.
        eprintln!(
            "bench: S2 {repetition}/{repetitions}: the HTTP stack alone, the job's create calls, {wrk_seconds} s"
        );
        let (stack_create_rps, json) = stack_load(&stack::Calls::Create, Threads::One)?;
        stack_runs.insert("create_calls_one_thread".to_string(), json);
        let job_create_rps = create["requests_per_s"].as_f64().unwrap_or(0.0);
        create["ratio_to_http_stack"] = json!(round(job_create_rps / stack_create_rps, 3));
        job_to_stack.push(job_create_rps / stack_create_rps);

        for (run, ratios) in [
            (&mut create, &mut create_ratios),
            (&mut delete, &mut delete_ratios),
        ] {
            let ratio = run["requests_per_s"].as_f64().unwrap_or(0.0) / wrk_rps;
            run["ratio_to_wrk"] = json!(round(ratio, 3));
            ratios.push(ratio);
        }
        let per_request = |cpu: f64| round(cpu * 1e6 / wrk_requests.max(1) as f64, 1);
        reps.push(json!({
            "create": create,
            "delete": delete,
            "wrk": {
                "requests_per_s": round(wrk_rps, 0),
                "per_node_requests_per_s": wrk.iter().map(|w| round(w.requests_per_s, 0)).collect::<Vec<_>>(),
                "requests": wrk_requests,
                "wrk_cpu_pct_of_one_core": round(100.0 * wrk_cpu / wrk_wall, 0),
                "wrk_cpu_us_per_request": per_request(wrk_cpu),
                "node_sim_cpu_pct_of_one_core": round(100.0 * wrk_sim_cpu / wrk_wall, 0),
                "node_sim_cpu_us_per_request": per_request(wrk_sim_cpu),
            },
            "http_stack": Value::Object(stack_runs),
        }));
    }
    let (create_ratio, delete_ratio) = (median(&create_ratios), median(&delete_ratios));
    Ok(json!({
        "scenario": "S2",
        "name": "throughput",
        "inputs": {
            "nodes": NODES,
            "groups": groups,
            "operations": ["create", "delete"],
            "node_sim": "no faults, no latency",
            "job_env": {"CONCURRENCY": CONCURRENCY, "NODE_CONCURRENCY": NODE_CONCURRENCY, "PRIOR_STATE": "read", "LOG_LEVEL": "info (default)"},
            "wrk": format!(
                "one `wrk -t1 -c{NODE_CONCURRENCY} -d{wrk_seconds}s --timeout 5s` per node, all {NODES} at once, GET /v1/group/<existing id>/"
            ),
            "repetitions": repetitions,
        },
        "measured": {
            "create_ratio_to_wrk": round(create_ratio, 3),
            "delete_ratio_to_wrk": round(delete_ratio, 3),
            "http_stack_ratio_to_wrk": round(median(&stack_ratios), 3),
            "http_stack_meets_target": median(&stack_ratios) >= 0.8,
            "job_create_ratio_to_http_stack": round(median(&job_to_stack), 3),
            "repetitions": reps,
        },
        "target": "median over repetitions of job requests/s (requests / duration_ms) >= 0.8 x wrk requests/s of the same repetition, for create and for delete",
        "http_stack": format!(
            "GETs like wrk's through the job's HTTP stack alone (examples/http_stack.rs), {NODE_CONCURRENCY} loops per node, right after wrk: the better of one thread and two; and, for the job's own overhead, the stack sending the job's create calls (GET of a new id, then POST) from one thread"
        ),
        "pass": create_ratio >= 0.8 && delete_ratio >= 0.8,
    }))
}

/// S3: nodes limited to 50 requests/s, the job told the same: no 429, and
/// a run close to the busiest node's requests / 50.
fn s3_rate_limit(bench: &Bench) -> Result<Value> {
    const NODES: usize = 5;
    const RATE: u64 = 50;
    let groups = if bench.quick { 30 } else { 100 };
    let rate = RATE.to_string();
    let sim = NodeSim::start(&bench.node_sim, NODES, &["--rate-limit", &rate])?;
    let ids = ids("s3", groups);
    let run = bench
        .job(
            &sim.urls,
            "create",
            &ids,
            &env(&[("NODE_RATE_LIMIT", &rate)]),
        )
        .run()?;
    let states = sim.states()?;
    let throttled: u64 = states.iter().map(|s| s.status_429).sum();
    let node_requests: Vec<u64> = states.iter().map(|s| s.requests).collect();
    let busiest = node_requests.iter().copied().max().unwrap_or(0);
    let ideal_ms = busiest as f64 * 1000.0 / RATE as f64;
    let committed = run.committed() == groups as u64;
    let ratio = run.duration_ms() as f64 / ideal_ms.max(1.0);
    Ok(json!({
        "scenario": "S3",
        "name": "rate limit",
        "inputs": {
            "nodes": NODES,
            "groups": groups,
            "operation": "create",
            "node_sim": format!("--rate-limit {RATE}"),
            "job_env": {"NODE_RATE_LIMIT": RATE, "CONCURRENCY": "16 (default)", "NODE_CONCURRENCY": "8 (default)"},
        },
        "measured": {
            "duration_ms": run.duration_ms(),
            "responses_429": throttled,
            "requests_per_node_at_nodes": node_requests,
            "requests_per_node_by_job": run.node_requests(),
            "busiest_node_requests": busiest,
            "busiest_over_rate_ms": round(ideal_ms, 0),
            "ratio": round(ratio, 3),
            "outcomes": run.outcomes(),
        },
        "target": "zero 429 served and duration_ms <= 1.05 x busiest node's requests / 50 per s; every group committed",
        "pass": throttled == 0 && ratio <= 1.05 && committed,
    }))
}

/// S4: every call fails with probability 0.2 (500, not applied): requests
/// at most 1.1 x 1.25 x those of the same run without faults.
fn s4_retries(bench: &Bench) -> Result<Value> {
    const NODES: usize = 5;
    let groups = if bench.quick { 100 } else { 500 };
    let ids = ids("s4", groups);
    let job_env = env(&[("MAX_RETRIES", "10"), ("RETRY_BASE_DELAY_MS", "5")]);
    let mut measured = Vec::new();
    for (label, flags) in [
        ("fault_free", &[][..]),
        ("fail_rate_0.2", &["--fail-rate", "0.2", "--seed", "1"][..]),
    ] {
        eprintln!("bench: S4: {label}");
        let sim = NodeSim::start(&bench.node_sim, NODES, flags)?;
        let run = bench.job(&sim.urls, "create", &ids, &job_env).run()?;
        let states = sim.states()?;
        let served_500: u64 = states.iter().map(|s| s.status_500).sum();
        let at_nodes: u64 = states.iter().map(|s| s.requests).sum();
        measured.push((label, run, served_500, at_nodes));
    }
    let (free, faulty) = (&measured[0].1, &measured[1].1);
    let ratio = faulty.requests() as f64 / free.requests().max(1) as f64;
    let committed = measured
        .iter()
        .all(|(_, run, _, _)| run.committed() == groups as u64);
    let mut runs = serde_json::Map::new();
    for (label, run, served_500, at_nodes) in &measured {
        runs.insert(
            label.to_string(),
            json!({
                "requests": run.requests(),
                "requests_at_nodes": at_nodes,
                "responses_500": served_500,
                "duration_ms": run.duration_ms(),
                "outcomes": run.outcomes(),
            }),
        );
    }
    runs.insert("ratio".into(), json!(round(ratio, 3)));
    Ok(json!({
        "scenario": "S4",
        "name": "retries",
        "inputs": {
            "nodes": NODES,
            "groups": groups,
            "operation": "create",
            "node_sim": "none, then --fail-rate 0.2 --seed 1 (500, not applied, on every call)",
            "job_env": {"MAX_RETRIES": 10, "RETRY_BASE_DELAY_MS": 5, "CONCURRENCY": "16 (default)", "NODE_CONCURRENCY": "8 (default)"},
        },
        "measured": Value::Object(runs),
        "target": "requests with faults <= 1.1 x 1.25 x requests without; every group committed",
        "pass": ratio <= 1.1 * 1.25 && committed,
    }))
}

/// S5: peak RSS of the job with many groups over many nodes, against the
/// same run with a tenth of the groups.
fn s5_memory(bench: &Bench) -> Result<Value> {
    const LIMIT_BYTES: u64 = 30_000_000;
    let (nodes, large, small) = if bench.quick {
        (10, 400, 40)
    } else {
        (50, 2000, 200)
    };
    let sim = NodeSim::start(&bench.node_sim, nodes, &[])?;
    let mut rss = Vec::new();
    let mut runs = Vec::new();
    for groups in [small, large] {
        eprintln!("bench: S5: {nodes} nodes x {groups} groups");
        sim.reset()?;
        let ids = ids(&format!("s5-{groups}"), groups);
        let run = bench.job(&sim.urls, "create", &ids, &[]).run()?;
        all_committed(&run, groups)?;
        expect_groups(&sim, groups)?;
        rss.push(run.process.max_rss_kib);
        runs.push(json!({
            "groups": groups,
            "peak_rss_kib": run.process.max_rss_kib,
            "peak_rss_mb": round(run.process.max_rss_kib as f64 * 1024.0 / 1e6, 1),
            "duration_ms": run.duration_ms(),
            "requests": run.requests(),
            "outcomes": run.outcomes(),
        }));
    }
    let (small_rss, large_rss) = (rss[0], rss[1]);
    let ratio = large_rss as f64 / small_rss.max(1) as f64;
    let under_limit = large_rss * 1024 <= LIMIT_BYTES;
    Ok(json!({
        "scenario": "S5",
        "name": "memory",
        "inputs": {
            "nodes": nodes,
            "groups": [small, large],
            "operation": "create",
            "ids": "GROUP_IDS_FILE",
            "job_env": "defaults (CONCURRENCY=16, NODE_CONCURRENCY=8)",
        },
        "measured": {
            "runs": runs,
            "peak_rss_mb": round(large_rss as f64 * 1024.0 / 1e6, 1),
            "ratio_to_small": round(ratio, 3),
            "source": "wait4 ru_maxrss of the job process",
        },
        "target": "peak RSS <= 30 MB (30,000,000 bytes) and <= 1.1 x the run with a tenth of the groups",
        "pass": under_limit && ratio <= 1.1,
    }))
}
