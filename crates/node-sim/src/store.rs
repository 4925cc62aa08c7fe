//! The `--data-file`: groups of every node of the process in one JSON file,
//! `{"nodes": {"<index>": [ids]}}`, so a restarted node keeps its groups.
//!
//! The file is rewritten whole after every mutation, atomically (a temporary
//! file in the same directory, synced, then renamed over it): a crash at any
//! point leaves either the old or the new version, never a torn one. One
//! process owns a file; two processes sharing one would overwrite each other.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::memory::{lock, NodeMemory};
use super::SimError;

/// Ids per node index, as stored.
pub(crate) type NodeGroups = BTreeMap<String, Vec<String>>;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataFile {
    nodes: NodeGroups,
}

pub(crate) struct Store {
    path: PathBuf,
    states: Vec<Arc<Mutex<NodeMemory>>>,
    /// Entries of node indices this process does not run, written back as read.
    others: NodeGroups,
    /// Serialises writers, so the snapshot taken last is also written last.
    writer: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    pub(crate) fn new(
        path: PathBuf,
        states: Vec<Arc<Mutex<NodeMemory>>>,
        others: NodeGroups,
    ) -> Self {
        Self {
            path,
            states,
            others,
            writer: tokio::sync::Mutex::new(()),
        }
    }

    /// Writes the current groups of every node.
    ///
    /// The snapshot is taken after the writer lock is held, so whichever save
    /// runs last includes every mutation made before it started: concurrent
    /// mutations cannot leave an older snapshot on disk.
    pub(crate) async fn save(self: &Arc<Self>) -> Result<(), SimError> {
        // A task of its own, so that a handler dropped with its connection
        // cannot abandon a mutation that is in memory but not yet on disk.
        let store = Arc::clone(self);
        let task = tokio::spawn(async move {
            let _writer = store.writer.lock().await;
            let mut nodes = store.others.clone();
            for (index, state) in store.states.iter().enumerate() {
                let groups = lock(state).groups.iter().cloned().collect();
                nodes.insert(index.to_string(), groups);
            }
            let mut bytes =
                serde_json::to_vec_pretty(&DataFile { nodes }).map_err(io::Error::other)?;
            bytes.push(b'\n');
            let path = store.path.clone();
            tokio::task::spawn_blocking(move || replace(&path, &bytes))
                .await
                .map_err(io::Error::other)?
        });
        task.await
            .map_err(io::Error::other)
            .and_then(|written| written)
            .map_err(|error| self.error(format!("cannot write: {error}")))
    }

    /// The groups of one node as they are on disk now.
    pub(crate) async fn read_node(&self, index: usize) -> Result<BTreeSet<String>, SimError> {
        let mut nodes = read(&self.path).await?;
        Ok(nodes
            .remove(&index.to_string())
            .unwrap_or_default()
            .into_iter()
            .collect())
    }

    fn error(&self, reason: String) -> SimError {
        SimError::DataFile {
            path: self.path.clone(),
            reason,
        }
    }
}

/// Reads the file; a missing file is an empty one, so a first start needs no
/// preparation.
pub(crate) async fn read(path: &Path) -> Result<NodeGroups, SimError> {
    let error = |reason: String| SimError::DataFile {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = match tokio::fs::read(path).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(NodeGroups::new()),
        Err(e) => return Err(error(format!("cannot read: {e}"))),
    };
    serde_json::from_slice::<DataFile>(&bytes)
        .map(|file| file.nodes)
        .map_err(|e| {
            error(format!(
                "not a node-sim data file ({e}); expected {{\"nodes\": {{\"0\": [\"id\", ...]}}}}; fix or remove it"
            ))
        })
}

/// Replaces `path` with `bytes` atomically: a synced temporary file in the
/// same directory, renamed over it.
fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let mut temp = tempfile::NamedTempFile::new_in(dir.unwrap_or(Path::new(".")))?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
