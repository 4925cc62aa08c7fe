//! The job's HTTP stack alone: the yardstick the benchmarks hold the job
//! against (`bash bench/run.sh`, docs/BENCHMARKS.md).
//!
//! It sends the benchmarks' request patterns through a bare `reqwest`
//! client — the same crate versions as the job (one lock file), the same
//! tokio runtime, `tcp_nodelay` and kept-alive connections — with none of
//! the job's work: no middleware, per-node limits, statistics, transaction,
//! journal or logging. Whatever it cannot reach, the job cannot either.
//!
//! ```text
//! http_stack fanout --id ID [--threads 1|2] URL...
//!     GET /v1/group/ID/ on every node at once (expects 404), then
//!     POST /v1/group/ {"groupId": ID} on every node at once (expects 201):
//!     the requests of one `create` over N nodes (S1)
//! http_stack load (--path PATH | --create) [--connections C] [--secs S] [--threads 1|2] URL...
//!     C request loops per node for S seconds, each on its kept-alive
//!     connection, sending either GET URL+PATH (expects 200), what
//!     `wrk -t1 -cC` does, or with --create a GET of a new id (expects 404)
//!     followed by its POST (expects 201), what the job sends to create a
//!     group on a node (S2)
//! ```
//!
//! `--threads 1` (the default) drives everything from one thread, as the job
//! does; `--threads 2` uses two tokio workers and spawns every request as a
//! task of its own, so that both cores share the work. One JSON line on
//! stdout; exit code 0, or 1 with the reason on stderr.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures::future::try_join_all;
use reqwest::{Client, StatusCode};
use serde_json::json;

const USAGE: &str = "usage: http_stack fanout --id ID [--threads 1|2] URL...
       http_stack load (--path PATH | --create) [--connections C] [--secs S] [--threads 1|2] URL...";

enum Mode {
    Fanout {
        id: String,
    },
    Load {
        calls: Calls,
        connections: usize,
        duration: Duration,
    },
}

/// What each load loop sends.
#[derive(Clone)]
enum Calls {
    /// `GET <url><path>` of an existing group, again and again.
    Get(String),
    /// A GET of a new id, then its POST.
    Create,
}

struct Args {
    mode: Mode,
    threads: usize,
    urls: Vec<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().context(USAGE)?;
    let (mut id, mut path, mut create) = (None, None, false);
    let (mut connections, mut secs, mut threads) = (8usize, 5u64, 1usize);
    let mut urls = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--id" => id = Some(value()?),
            "--path" => path = Some(value()?),
            "--create" => create = true,
            "--connections" => connections = value()?.parse().context("--connections")?,
            "--secs" => secs = value()?.parse().context("--secs")?,
            "--threads" => threads = value()?.parse().context("--threads")?,
            flag if flag.starts_with("--") => bail!("unknown option {flag}\n{USAGE}"),
            url => urls.push(url.trim_end_matches('/').to_string()),
        }
    }
    ensure!(!urls.is_empty(), "no node URL given\n{USAGE}");
    ensure!(matches!(threads, 1 | 2), "--threads is 1 or 2");
    ensure!(connections > 0, "--connections must be at least 1");
    let mode = match mode.as_str() {
        "fanout" => Mode::Fanout {
            id: id.context("fanout needs --id")?,
        },
        "load" => Mode::Load {
            calls: match (path, create) {
                (Some(path), false) => Calls::Get(path),
                (None, true) => Calls::Create,
                _ => bail!("load needs one of --path and --create\n{USAGE}"),
            },
            connections,
            duration: Duration::from_secs(secs),
        },
        other => bail!("unknown mode {other:?}\n{USAGE}"),
    };
    Ok(Args {
        mode,
        threads,
        urls,
    })
}

fn main() {
    if let Err(error) = run() {
        eprintln!("http_stack: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = parse_args()?;
    let runtime = match args.threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
    };
    let line = runtime.block_on(async {
        let connections = match &args.mode {
            Mode::Fanout { .. } => 1,
            Mode::Load { connections, .. } => *connections,
        };
        api_consumer::node_api::install_tls_provider();
        let client = Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(connections)
            .build()?;
        let spawn = args.threads > 1;
        match &args.mode {
            Mode::Fanout { id } => fanout(&client, &args.urls, id, spawn).await,
            Mode::Load {
                calls,
                connections,
                duration,
            } => load(&client, &args.urls, calls, *connections, *duration, spawn).await,
        }
    })?;
    println!("{line}");
    Ok(())
}

/// Runs `requests` concurrently: spawned as tasks of their own with
/// `spawn`, otherwise polled together by the calling task (as the job polls
/// one group's requests).
async fn all<F>(requests: Vec<F>, spawn: bool) -> Result<Vec<F::Output>>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    if spawn {
        let tasks: Vec<_> = requests.into_iter().map(tokio::spawn).collect();
        Ok(try_join_all(tasks).await?)
    } else {
        Ok(futures::future::join_all(requests).await)
    }
}

async fn expect(request: reqwest::RequestBuilder, status: StatusCode) -> Result<()> {
    let response = request.send().await?;
    let got = response.status();
    response.bytes().await?;
    ensure!(got == status, "answered {got}, expected {status}");
    Ok(())
}

/// Sends every request at once (see [`all`]); each must answer `status`.
async fn expect_all(
    requests: impl Iterator<Item = reqwest::RequestBuilder>,
    status: StatusCode,
    spawn: bool,
) -> Result<()> {
    let calls = requests.map(|request| expect(request, status)).collect();
    all(calls, spawn).await?.into_iter().collect()
}

async fn fanout(
    client: &Client,
    urls: &[String],
    id: &str,
    spawn: bool,
) -> Result<serde_json::Value> {
    let started = Instant::now();
    let reads = urls
        .iter()
        .map(|url| client.get(format!("{url}/v1/group/{id}/")));
    expect_all(reads, StatusCode::NOT_FOUND, spawn).await?;
    let reads_done = started.elapsed();
    let body = json!({ "groupId": id });
    let writes = urls
        .iter()
        .map(|url| client.post(format!("{url}/v1/group/")).json(&body));
    expect_all(writes, StatusCode::CREATED, spawn).await?;
    Ok(json!({
        "mode": "fanout",
        "nodes": urls.len(),
        "reads_ms": ms(reads_done),
        "total_ms": ms(started.elapsed()),
    }))
}

async fn load(
    client: &Client,
    urls: &[String],
    calls: &Calls,
    connections: usize,
    duration: Duration,
    spawn: bool,
) -> Result<serde_json::Value> {
    let started = Instant::now();
    let until = started + duration;
    let loops = urls
        .iter()
        .enumerate()
        .flat_map(|(node, url)| (0..connections).map(move |slot| (node, slot, url.clone())))
        .map(|(node, slot, url)| {
            let (client, calls) = (client.clone(), calls.clone());
            async move {
                let mut sent = 0u64;
                match &calls {
                    Calls::Get(path) => {
                        let target = format!("{url}{path}");
                        while Instant::now() < until {
                            expect(client.get(&target), StatusCode::OK).await?;
                            sent += 1;
                        }
                    }
                    Calls::Create => {
                        let collection = format!("{url}/v1/group/");
                        while Instant::now() < until {
                            let id = format!("http-stack-{node}-{slot}-{sent}");
                            let item = format!("{collection}{id}/");
                            expect(client.get(item), StatusCode::NOT_FOUND).await?;
                            let body = json!({ "groupId": id });
                            let create = client.post(&collection).json(&body);
                            expect(create, StatusCode::CREATED).await?;
                            sent += 2;
                        }
                    }
                }
                Ok::<u64, anyhow::Error>(sent)
            }
        })
        .collect();
    let mut requests = 0;
    for sent in all(loops, spawn).await? {
        requests += sent?;
    }
    let elapsed = started.elapsed();
    Ok(json!({
        "mode": "load",
        "calls": match calls {
            Calls::Get(_) => "get",
            Calls::Create => "create",
        },
        "nodes": urls.len(),
        "connections_per_node": connections,
        "requests": requests,
        "elapsed_ms": ms(elapsed),
        "requests_per_s": (requests as f64 / elapsed.as_secs_f64()).round(),
    }))
}

fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 10_000.0).round() / 10.0
}
