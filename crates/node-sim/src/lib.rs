//! `node-sim`: a reference node with fault injection (docs/NODE_API.md,
//! "node-sim").
//!
//! The job is only as trustworthy as the worst node it has been run against,
//! and real nodes misbehave in ways mocks never do: answers lost after the call
//! landed, throttling, hangs, restarts that lose or keep data. This module
//! serves the node API of `node_contract` for real, over HTTP, and makes each of
//! those behaviours a dial that tests, demos and benchmarks can turn, at start
//! and at runtime.
//!
//! A [`SimCluster`] runs several independent nodes in one process: each has its
//! own groups, counters, faults and random stream, so a test can make one node
//! flaky while the others behave. Tests seed and inspect nodes directly through
//! [`SimNode`]; other processes use the `/_sim/` endpoints, which are never
//! faulted and never counted, so inspecting a node does not change what it
//! reports.
//!
//! Like a real server with a thread or task per request, a node finishes the
//! writes it started: a create or delete whose client gives up (a timeout, a
//! proxy cutting the connection) is still applied, at the moment it would
//! have been had the client waited, and counted in
//! [`SimState::undelivered_writes`]. With
//! [`write_latency_ms`](Faults::write_latency_ms) writes can outlast a
//! client's timeout while reads stay fast. A node with
//! [`max_in_flight`](Faults::max_in_flight) sheds load as a server at its
//! capacity does: every call above the bound gets an immediate `503`.
//!
//! A node can be stopped gracefully, killed (open connections dropped, in-flight
//! answers lost, writes in progress ended where they are) and restarted on the
//! same address, as a chaos test needs. Without a data file a restarted node
//! comes back empty, like an in-memory server; with one it comes back with the
//! groups it had.

pub mod api;
mod conn;
mod memory;
mod node;
mod store;
#[cfg(test)]
mod tests;
pub mod two_phase;

use std::collections::BTreeSet;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::api::{Faults, FaultsPatch, NodeOp, SimState};
pub use self::two_phase::{Intention, IntentionOp, Protocol};

use self::memory::NodeMemory;
use self::node::Node;
use self::store::Store;

/// How long a graceful stop waits for in-flight requests before cutting the
/// remaining connections, so a stuck client cannot hold a shutdown forever.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Start-up settings shared by every node of a cluster.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// Faults every node starts with, and returns to on reset or restart.
    pub faults: Faults,
    /// Node `i` draws its faults from a generator seeded with `seed + i`, so a
    /// run is reproducible for a given request order.
    pub seed: u64,
    /// Where the groups of all nodes persist across restarts; `None` keeps
    /// them in memory only.
    pub data_file: Option<PathBuf>,
}

/// Why a cluster or node could not start, or a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("the node count must be at least 1")]
    NoNodes,
    #[error("{count} nodes from base port {base_port} go past port 65535")]
    PortRange { base_port: u16, count: usize },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("invalid faults: {0}")]
    InvalidFaults(String),
    #[error("data file {}: {reason}", path.display())]
    DataFile { path: PathBuf, reason: String },
}

/// A set of independent simulated nodes served from this process.
///
/// Dropping the cluster stops accepting connections on every node without
/// waiting; [`SimCluster::shutdown`] waits for in-flight requests.
#[derive(Debug)]
pub struct SimCluster {
    nodes: Vec<SimNode>,
    root: CancellationToken,
}

impl SimCluster {
    /// Starts `count` nodes on `host`, node `i` on port `base_port + i`, or
    /// each on its own free port when `base_port` is 0.
    ///
    /// Every port is bound and the data file (if any) loaded and rewritten
    /// before any node answers, so a bad port or an unwritable or corrupt file
    /// fails here, not on the first request.
    pub async fn start(
        host: IpAddr,
        base_port: u16,
        count: usize,
        options: SimOptions,
    ) -> Result<SimCluster, SimError> {
        if count == 0 {
            return Err(SimError::NoNodes);
        }
        node::validate_faults(&options.faults).map_err(SimError::InvalidFaults)?;
        let ports = ports(base_port, count)?;

        let mut loaded = match &options.data_file {
            Some(path) => Some(store::read(path).await?),
            None => None,
        };
        let states: Vec<Arc<Mutex<NodeMemory>>> = (0..count)
            .map(|index| {
                let groups = loaded
                    .as_mut()
                    .and_then(|nodes| nodes.remove(&index.to_string()))
                    .unwrap_or_default();
                let state = NodeMemory::new(
                    options.faults.clone(),
                    node_seed(options.seed, index),
                    groups.into_iter().collect(),
                );
                Arc::new(Mutex::new(state))
            })
            .collect();
        // Entries for node indices this run does not have stay in the file,
        // so starting fewer nodes never destroys the others' data.
        let store = options.data_file.as_ref().map(|path| {
            Arc::new(Store::new(
                path.clone(),
                states.clone(),
                loaded.unwrap_or_default(),
            ))
        });

        let mut listeners = Vec::with_capacity(count);
        for port in ports {
            listeners.push(bind(SocketAddr::new(host, port)).await?);
        }
        if let Some(store) = &store {
            store.save().await?;
        }

        let root = CancellationToken::new();
        let mut nodes = Vec::with_capacity(count);
        for (index, (listener, state)) in listeners.into_iter().zip(states).enumerate() {
            let addr = listener.local_addr().map_err(|source| SimError::Bind {
                addr: SocketAddr::new(host, 0),
                source,
            })?;
            let node = Arc::new(Node::new(
                index,
                node_seed(options.seed, index),
                options.faults.clone(),
                state,
                store.clone(),
            ));
            let server = Server::spawn(node.clone(), listener, &root);
            nodes.push(SimNode {
                node,
                addr,
                url: format!("http://{addr}"),
                root: root.clone(),
                server: tokio::sync::Mutex::new(Some(server)),
            });
        }
        Ok(SimCluster { nodes, root })
    }

    /// Base URLs of the nodes, in index order, e.g. `http://127.0.0.1:8080`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.url.clone()).collect()
    }

    /// The nodes, in index order.
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// Serves until `shutdown` completes, then shuts down gracefully; the
    /// binary passes its SIGTERM/SIGINT future here.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        shutdown.await;
        self.shutdown().await;
    }

    /// Stops every node: no new connections, in-flight requests answered
    /// (injected waits cut short with `503`), then returns.
    pub async fn shutdown(self) {
        futures::future::join_all(self.nodes.iter().map(SimNode::stop)).await;
    }
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        // Without this, servers of a cluster dropped by a failing test would
        // keep their ports until the runtime ends.
        self.root.cancel();
    }
}

/// Handle on one simulated node: its address, direct inspection and seeding
/// for tests, and its life cycle.
#[derive(Debug)]
pub struct SimNode {
    node: Arc<Node>,
    addr: SocketAddr,
    url: String,
    root: CancellationToken,
    // A tokio mutex so stop, kill and restart of one node run one at a time.
    server: tokio::sync::Mutex<Option<Server>>,
}

impl SimNode {
    /// Position of the node in its cluster (the key in the data file).
    pub fn index(&self) -> usize {
        self.node.index
    }

    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bound address; it stays the same across restarts.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Same as `GET /_sim/state`.
    pub fn state(&self) -> SimState {
        self.node.state()
    }

    /// Current faults, same as `GET /_sim/faults`.
    pub fn faults(&self) -> Faults {
        self.node.faults()
    }

    /// Same as `PUT /_sim/faults`: changes only the given fields and returns
    /// the resulting faults; an invalid patch changes nothing.
    pub fn set_faults(&self, patch: FaultsPatch) -> Result<Faults, SimError> {
        self.node.set_faults(patch).map_err(SimError::InvalidFaults)
    }

    /// Same as `POST /_sim/reset`: no groups, zero counters, start-up faults.
    pub async fn reset(&self) -> Result<(), SimError> {
        self.node.reset().await
    }

    /// Adds a group as if it had been there before the test, bypassing faults
    /// and counters. Returns whether it was absent.
    pub async fn insert_group(&self, group_id: &str) -> Result<bool, SimError> {
        self.node.insert(group_id).await
    }

    /// Removes a group bypassing faults and counters. Returns whether it was
    /// present.
    pub async fn remove_group(&self, group_id: &str) -> Result<bool, SimError> {
        self.node.remove(group_id).await
    }

    /// Whether the node is serving (not stopped or killed).
    pub async fn is_running(&self) -> bool {
        self.server.lock().await.is_some()
    }

    /// Stops serving gracefully: the port is released, requests in flight are
    /// answered (injected waits cut short with `503`), writes whose clients
    /// have gone run to their end; connections and writes still open after a
    /// few seconds are cut. Stopping a stopped node does nothing.
    pub async fn stop(&self) {
        if let Some(server) = self.server.lock().await.take() {
            server.stop(STOP_GRACE).await;
        }
    }

    /// Stops serving abruptly, like a crashed process: open connections are
    /// dropped, requests in flight get no answer, although a call may
    /// already have been applied, and writes in progress end where they are:
    /// none lands after this returns.
    pub async fn kill(&self) {
        if let Some(server) = self.server.lock().await.take() {
            server.kill().await;
        }
    }

    /// Brings the node back on the same address as a freshly started
    /// process: counters zero, start-up faults, groups from the data file (or
    /// none without one). A running node is killed first.
    pub async fn restart(&self) -> Result<(), SimError> {
        let mut slot = self.server.lock().await;
        if let Some(server) = slot.take() {
            server.kill().await;
        }
        let groups = match &self.node.store {
            Some(store) => store.read_node(self.node.index).await?,
            None => BTreeSet::new(),
        };
        self.node.reboot(groups);
        let listener = bind(self.addr).await?;
        *slot = Some(Server::spawn(self.node.clone(), listener, &self.root));
        Ok(())
    }
}

/// One serving instance of a node; a restart makes a new one.
#[derive(Debug)]
struct Server {
    /// Ends accepting and cuts injected waits short.
    stopping: CancellationToken,
    /// Makes every open connection fail on its next read or write, and ends
    /// the writes in progress where they are.
    killed: CancellationToken,
    /// The writes in progress, whose clients may have gone.
    writes: TaskTracker,
    task: JoinHandle<()>,
}

impl Server {
    fn spawn(node: Arc<Node>, listener: TcpListener, root: &CancellationToken) -> Server {
        let stopping = root.child_token();
        let killed = CancellationToken::new();
        let writes = TaskTracker::new();
        let instance = node::Instance {
            stopping: stopping.clone(),
            killed: killed.clone(),
            writes: writes.clone(),
        };
        let router = node::router(node.clone(), instance);
        let listener = conn::KillableListener::new(listener, killed.clone(), node.clone());
        let serve = axum::serve(listener, router)
            .with_graceful_shutdown(stopping.clone().cancelled_owned());
        let index = node.index;
        let task = tokio::spawn(async move {
            if let Err(error) = serve.await {
                tracing::error!(node = index, %error, "node stopped serving");
            }
        });
        Server {
            stopping,
            killed,
            writes,
            task,
        }
    }

    /// Connections and the writes of clients that have gone get `grace`
    /// together; whatever is left then is killed.
    async fn stop(mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        self.stopping.cancel();
        self.writes.close();
        if tokio::time::timeout_at(deadline, &mut self.task)
            .await
            .is_err()
        {
            self.killed.cancel();
            let _ = self.task.await;
        }
        if tokio::time::timeout_at(deadline, self.writes.wait())
            .await
            .is_err()
        {
            self.killed.cancel();
            self.writes.wait().await;
        }
    }

    /// Returns once no write of this instance can change the node any more,
    /// so a restart starts from what the kill left.
    async fn kill(self) {
        self.killed.cancel();
        self.stopping.cancel();
        self.writes.close();
        let _ = self.task.await;
        self.writes.wait().await;
    }
}

fn node_seed(seed: u64, index: usize) -> u64 {
    seed.wrapping_add(index as u64)
}

fn ports(base_port: u16, count: usize) -> Result<Vec<u16>, SimError> {
    if base_port == 0 {
        return Ok(vec![0; count]);
    }
    (0..count)
        .map(|i| {
            usize::from(base_port)
                .checked_add(i)
                .and_then(|port| u16::try_from(port).ok())
                .ok_or(SimError::PortRange { base_port, count })
        })
        .collect()
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, SimError> {
    // tokio sets SO_REUSEADDR, so a restart can rebind while connections of
    // the killed instance linger in TIME_WAIT.
    TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Bind { addr, source })
}
