//! One run of the `api-consumer` binary as a separate process: a clean
//! environment holding only the variables given, an empty working directory
//! (so no `.env` is read), stdout and stderr to files, reaped with `wait4`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::process::{self, Finished};

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Result<Self> {
        let path = std::env::temp_dir().join(format!("api-consumer-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one run of the job did.
pub struct JobRun {
    /// The summary: the last line of stdout.
    pub summary: Value,
    /// The run report (`REPORT_PATH`).
    pub report: Value,
    pub process: Finished,
    /// Lines written to stdout, the summary included.
    pub log_lines: usize,
    /// The log lines at level WARN or ERROR, as written.
    pub warnings: Vec<String>,
}

impl JobRun {
    fn field(&self, name: &str) -> u64 {
        self.summary[name].as_u64().unwrap_or(0)
    }

    pub fn duration_ms(&self) -> u64 {
        self.field("duration_ms")
    }

    pub fn requests(&self) -> u64 {
        self.field("requests")
    }

    pub fn committed(&self) -> u64 {
        self.field("committed")
    }

    pub fn exit_code(&self) -> u64 {
        self.field("exit_code")
    }

    /// Requests per second: total requests over the run's `duration_ms`.
    pub fn requests_per_s(&self) -> f64 {
        self.requests() as f64 * 1000.0 / self.duration_ms().max(1) as f64
    }

    /// Requests per node, from the report.
    pub fn node_requests(&self) -> Vec<u64> {
        self.report["nodes"]
            .as_array()
            .map(|nodes| {
                nodes
                    .iter()
                    .map(|n| n["requests"].as_u64().unwrap_or(0))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Outcome counts from the summary.
    pub fn outcomes(&self) -> Value {
        serde_json::json!({
            "committed": self.field("committed"),
            "rolled_back": self.field("rolled_back"),
            "inconsistent": self.field("inconsistent"),
            "not_started": self.field("not_started"),
            "exit_code": self.exit_code(),
        })
    }
}

/// Runs the job once.
pub struct Job<'a> {
    pub bin: &'a Path,
    pub scratch: &'a Path,
    pub nodes: &'a [String],
    pub operation: &'a str,
    pub ids: &'a [String],
    /// Further variables (CONCURRENCY, ...).
    pub env: Vec<(&'static str, String)>,
    pub timeout: Duration,
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

impl Job<'_> {
    pub fn run(&self) -> Result<JobRun> {
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        let dir = self.scratch.join(format!("job-{n}"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let ids_file = dir.join("group-ids.txt");
        let mut ids = self.ids.join("\n");
        ids.push('\n');
        std::fs::write(&ids_file, ids)
            .with_context(|| format!("cannot write {}", ids_file.display()))?;
        let report_path = dir.join("report.json");
        let stdout_path = dir.join("stdout.jsonl");
        let stderr_path = dir.join("stderr.txt");
        let stdout = File::create(&stdout_path)?;
        let stderr = File::create(&stderr_path)?;

        let mut command = Command::new(self.bin);
        command
            .env_clear()
            .current_dir(&dir)
            .env("NODES", self.nodes.join(","))
            .env("OPERATION", self.operation)
            .env("REPORT_PATH", &report_path)
            .env("LOG_FORMAT", "json")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        // No ids at all: a verify of every group the nodes list.
        if !self.ids.is_empty() {
            command.env("GROUP_IDS_FILE", &ids_file);
        }
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        let finished = process::wait_rusage(&mut child, started, self.timeout)?;

        let output = std::fs::read_to_string(&stdout_path)
            .with_context(|| format!("cannot read {}", stdout_path.display()))?;
        let log_lines = output.lines().filter(|l| !l.trim().is_empty()).count();
        let warnings = output
            .lines()
            .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
            .map(str::to_owned)
            .collect();
        let last = output.lines().rev().find(|l| !l.trim().is_empty());
        let summary: Option<Value> = last.and_then(|l| serde_json::from_str(l).ok());
        let summary = match summary {
            Some(summary) if summary.get("exit_code").is_some() => summary,
            _ => {
                let errors = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                bail!(
                    "the job (exit {}) wrote no run summary; last line {:?}; stderr {:?}",
                    finished.code,
                    last.unwrap_or(""),
                    errors.trim()
                );
            }
        };
        if finished.code == 2 {
            bail!(
                "the job refused its configuration (exit 2): {}",
                last.unwrap_or("")
            );
        }
        if summary["exit_code"].as_i64() != Some(i64::from(finished.code)) {
            bail!(
                "the job exited {} but its summary says {}",
                finished.code,
                summary["exit_code"]
            );
        }
        let report = std::fs::read(&report_path)
            .with_context(|| format!("no run report at {}", report_path.display()))?;
        let report: Value = serde_json::from_slice(&report)
            .map_err(|e| anyhow!("the run report is not JSON: {e}"))?;
        let _ = std::fs::remove_dir_all(&dir);
        Ok(JobRun {
            summary,
            report,
            process: finished,
            log_lines,
            warnings,
        })
    }
}
