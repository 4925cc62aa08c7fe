//! The job's HTTP stack alone (`examples/http_stack.rs` of the main crate):
//! the same request patterns as S1 and S2 through a bare `reqwest` client,
//! run against the same nodes in the same repetition as the job, so that
//! every figure of the job sits next to what its HTTP stack can reach there.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::process;

/// How the stack is driven: from one thread (as the job is), or from two
/// tokio workers with every request a task of its own.
#[derive(Debug, Clone, Copy)]
pub enum Threads {
    One,
    Two,
}

impl Threads {
    pub const BOTH: [Threads; 2] = [Threads::One, Threads::Two];

    pub fn key(self) -> &'static str {
        match self {
            Threads::One => "one_thread",
            Threads::Two => "two_threads",
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Threads::One => "1",
            Threads::Two => "2",
        }
    }
}

/// What one run of the stack printed, and its CPU time.
pub struct StackRun {
    pub line: Value,
    pub cpu_s: f64,
}

impl StackRun {
    /// A figure of the printed line; a missing one is an error, not a NaN
    /// that would slip into the results.
    pub fn number(&self, key: &str) -> Result<f64> {
        self.line[key]
            .as_f64()
            .with_context(|| format!("http_stack printed no {key:?}: {}", self.line))
    }
}

fn run(bin: &Path, args: &[String], timeout: Duration) -> Result<StackRun> {
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    // The output is one short line, far below a pipe's buffer, so reading it
    // after the exit cannot block the child.
    let finished = process::wait_rusage(&mut child, started, timeout)?;
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        std::io::Read::read_to_string(&mut out, &mut stdout)?;
    }
    if let Some(mut err) = child.stderr.take() {
        std::io::Read::read_to_string(&mut err, &mut stderr)?;
    }
    if finished.code != 0 {
        bail!("http_stack exited {}: {}", finished.code, stderr.trim());
    }
    let line = serde_json::from_str(stdout.trim())
        .with_context(|| format!("http_stack printed no JSON line: {stdout:?}"))?;
    Ok(StackRun {
        line,
        cpu_s: finished.cpu_s,
    })
}

/// One group's requests over every node of `urls`: a GET of `id` (absent)
/// on all at once, then a POST of it on all at once.
pub fn fanout(bin: &Path, urls: &[String], id: &str, threads: Threads) -> Result<StackRun> {
    let mut args = vec![
        "fanout".to_string(),
        "--id".into(),
        id.into(),
        "--threads".into(),
        threads.arg().into(),
    ];
    args.extend(urls.iter().cloned());
    run(bin, &args, Duration::from_secs(60))
}

/// What each loop of [`load`] sends.
pub enum Calls {
    /// `GET <url><path>`, again and again (what wrk sends).
    Get(String),
    /// A GET of a new id, then its POST (what the job sends to create a
    /// group on a node).
    Create,
}

/// `connections` loops per node sending `calls` for `seconds`.
pub fn load(
    bin: &Path,
    urls: &[String],
    calls: &Calls,
    connections: usize,
    seconds: u64,
    threads: Threads,
) -> Result<StackRun> {
    let mut args = vec!["load".to_string()];
    match calls {
        Calls::Get(path) => args.extend(["--path".to_string(), path.clone()]),
        Calls::Create => args.push("--create".into()),
    }
    args.extend([
        "--connections".into(),
        connections.to_string(),
        "--secs".into(),
        seconds.to_string(),
        "--threads".into(),
        threads.arg().into(),
    ]);
    args.extend(urls.iter().cloned());
    run(bin, &args, Duration::from_secs(seconds + 60))
}
