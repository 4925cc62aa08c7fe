//! A `node-sim` process serving K nodes on free ports of 127.0.0.1, stopped
//! (SIGTERM, then SIGKILL) when dropped, and also when the harness dies.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::http;
use crate::process;

pub struct NodeSim {
    child: Child,
    pub urls: Vec<String>,
}

impl NodeSim {
    /// Starts `nodes` nodes with the extra node-sim flags `flags`, and waits
    /// until every URL is printed.
    pub fn start(bin: &Path, nodes: usize, flags: &[&str]) -> Result<Self> {
        Self::start_on(bin, 0, nodes, flags)
    }

    /// [`NodeSim::start`] on the ports from `base_port` on (0: free ports),
    /// as a node restarted where it was needs.
    pub fn start_on(bin: &Path, base_port: u16, nodes: usize, flags: &[&str]) -> Result<Self> {
        let mut command = Command::new(bin);
        command
            .env_clear()
            .args(["--host", "127.0.0.1", "--base-port"])
            .arg(base_port.to_string())
            .arg("--nodes")
            .arg(nodes.to_string())
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child
        // between fork and exec.
        unsafe {
            command.pre_exec(|| {
                // Stop with the harness even if it is killed.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take();
        // From here on, dropping `sim` stops the process.
        let mut sim = NodeSim {
            child,
            urls: Vec::new(),
        };
        let stdout = stdout.ok_or_else(|| anyhow!("node-sim has no stdout"))?;
        let (sender, urls) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while sim.urls.len() < nodes {
            let left = deadline.saturating_duration_since(Instant::now());
            match urls.recv_timeout(left) {
                Ok(url) => {
                    let url = url.trim().to_string();
                    http::authority(&url)?;
                    sim.urls.push(url);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "node-sim printed {} of {nodes} URLs in 30 s",
                        sim.urls.len()
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!(
                        "node-sim exited after printing {} of {nodes} URLs",
                        sim.urls.len()
                    )
                }
            }
        }
        Ok(sim)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time node-sim has used so far, seconds.
    pub fn cpu_seconds(&self) -> Result<f64> {
        process::cpu_seconds(self.pid())
    }

    /// `POST /_sim/reset` on every node: no groups, zero counters, start-up
    /// faults.
    pub fn reset(&self) -> Result<()> {
        self.urls
            .iter()
            .try_for_each(|url| http::post(url, "/_sim/reset"))
    }

    /// `GET /_sim/state` of every node.
    pub fn states(&self) -> Result<Vec<NodeState>> {
        self.urls
            .iter()
            .map(|url| NodeState::parse(http::get_json(url, "/_sim/state")?))
            .collect()
    }

    /// SIGKILL, as a crash: open connections drop, nothing is flushed.
    pub fn kill(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_none() {
            self.child.kill()?;
            self.child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, up to 5 s to exit, then SIGKILL.
    fn stop(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        process::signal(self.pid(), libc::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for NodeSim {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!(
                "bench: cannot stop node-sim (pid {}): {error:#}",
                self.pid()
            );
        }
    }
}

/// What `GET /_sim/state` says about one node.
pub struct NodeState {
    pub groups: usize,
    /// Node-API requests received, all kinds together.
    pub requests: u64,
    pub status_429: u64,
    pub status_500: u64,
    pub status_503: u64,
}

impl NodeState {
    fn parse(state: Value) -> Result<Self> {
        let groups = state["groups"]
            .as_array()
            .ok_or_else(|| anyhow!("/_sim/state without a groups list: {state}"))?
            .len();
        let count = |map: &str, key: &str| state[map][key].as_u64().unwrap_or(0);
        let requests = state["requests"]
            .as_object()
            .ok_or_else(|| anyhow!("/_sim/state without request counters: {state}"))?
            .values()
            .filter_map(Value::as_u64)
            .sum();
        Ok(NodeState {
            groups,
            requests,
            status_429: count("responses", "429"),
            status_500: count("responses", "500"),
            status_503: count("responses", "503"),
        })
    }
}
