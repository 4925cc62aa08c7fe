//! `wrk` against several nodes at once: one process per node, started
//! together, each reaped with `wait4` for its CPU time.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::process;

/// What one wrk process measured.
pub struct WrkRun {
    pub requests_per_s: f64,
    pub requests: u64,
    /// Answers that were not 2xx or 3xx.
    pub non_2xx: u64,
    /// Connect, read, write and timeout errors together.
    pub socket_errors: u64,
    pub cpu_s: f64,
}

/// Runs `wrk -t1 -c<connections> -d<seconds>s <url>` on every URL at once.
pub fn run_parallel(urls: &[String], connections: usize, seconds: u64) -> Result<Vec<WrkRun>> {
    let mut children: Vec<(String, Child, Instant)> = Vec::new();
    for url in urls {
        let child = Command::new("wrk")
            .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s")])
            .args(["--timeout", "5s", url])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start wrk (is it installed? `apt-get install wrk`)")?;
        children.push((url.clone(), child, Instant::now()));
    }
    let timeout = Duration::from_secs(seconds + 30);
    let mut runs = Vec::new();
    let mut failure = None;
    // Reap every child, even after a failure, so none is left behind.
    for (url, mut child, started) in children {
        let result = process::wait_rusage(&mut child, started, timeout).and_then(|finished| {
            let mut output = String::new();
            if let Some(mut stdout) = child.stdout.take() {
                stdout.read_to_string(&mut output)?;
            }
            if finished.code != 0 {
                let mut errors = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    stderr.read_to_string(&mut errors)?;
                }
                bail!("wrk exited {}: {}", finished.code, errors.trim());
            }
            parse(&output, finished.cpu_s)
        });
        match result {
            Ok(run) => runs.push(run),
            Err(error) => failure = Some(error.context(format!("wrk against {url}"))),
        }
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(runs),
    }
}

fn parse(output: &str, cpu_s: f64) -> Result<WrkRun> {
    let mut requests_per_s = None;
    let mut requests = None;
    let mut non_2xx = 0;
    let mut socket_errors = 0;
    for line in output.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("Requests/sec:") {
            requests_per_s = value.trim().parse::<f64>().ok();
        } else if let Some(value) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = value.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(value) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            socket_errors = value
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1))
                .filter_map(|n| n.parse::<u64>().ok())
                .sum();
        } else if line.contains(" requests in ") {
            requests = line
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok());
        }
    }
    let requests_per_s =
        requests_per_s.ok_or_else(|| anyhow!("no Requests/sec line in wrk's output: {output}"))?;
    Ok(WrkRun {
        requests_per_s,
        requests: requests.unwrap_or(0),
        non_2xx,
        socket_errors,
        cpu_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() -> Result<()> {
        let output = "Running 5s test @ http://127.0.0.1:1/v1/group/x/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   150.00us   50.00us   1.00ms   90.00%
    Req/Sec    50.00k     1.00k   52.00k    70.00%
  250000 requests in 5.00s, 30.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  49999.50
Transfer/sec:      6.00MB
";
        let run = parse(output, 1.5)?;
        assert_eq!(run.requests, 250_000);
        assert!((run.requests_per_s - 49_999.5).abs() < 1e-9);
        assert_eq!(run.non_2xx, 4);
        assert_eq!(run.socket_errors, 3);
        Ok(())
    }
}
