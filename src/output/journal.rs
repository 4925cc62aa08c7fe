//! The optional crash journal (`JOURNAL_PATH`).
//!
//! # What it adds over a rerun
//!
//! Without a journal, a run killed in the middle of a group (OOM, node loss,
//! SIGKILL) leaves that group on some nodes only. Rerunning the same input
//! repairs it: the rerun reads every node and converges the group to its goal.
//! What a rerun cannot do is *undo*: if the next run's input no longer holds
//! the group, or holds it with the other operation, the half-applied group
//! stays as it is, and a record removed by a killed delete is gone for good
//! unless the same delete is run again.
//!
//! With a journal, every group's intent is on disk before the first node is
//! changed: the prior state of every node and, for a delete, the exact record
//! each node held. The next run starts by resolving every transaction that
//! has an intent but no outcome: it reads the nodes back; a group found at its
//! goal everywhere is recorded as committed, any other is rolled back to the
//! recorded prior state (deleted records are restored exactly), and only then
//! does the run start its own groups.
//!
//! # Format and durability
//!
//! One entry per line, `<crc32 of the JSON, 8 hex digits> <JSON>`, appended and
//! flushed to disk (`fsync`) before the write it announces is sent. A line that
//! is torn (a crash during the append) or corrupt fails its checksum and is
//! skipped with a warning: the entry it held was never acknowledged, so no
//! node was changed on its account. At start the journal is compacted to the
//! unfinished intents (written to a temporary file, synced, renamed), so it
//! does not grow across runs.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{replace_atomically, sibling, Change, NodeState, Outcome};

/// The target these log lines carry, which `LOG_LEVEL` directives name
/// (`api_consumer::journal=debug`): part of the log interface, kept whatever file
/// the code lives in.
const LOG_TARGET: &str = "api_consumer::journal";

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("journal {path}: the writer stopped: {reason}")]
    Writer { path: PathBuf, reason: String },
    /// Another process (a run still rolling back, say) holds the journal.
    #[error("journal {path} is in use by another run")]
    Busy { path: PathBuf },
}

/// A node's part in a recorded intent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntentNode {
    /// The node's name (its base URL), as in `NODES`.
    pub node: String,
    /// Present or absent: intents are only written once every node was read.
    pub prior: NodeState,
    /// For a delete, the record the node held, to restore it exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<Value>,
}

/// A group about to be changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    pub group_id: String,
    pub operation: Change,
    pub nodes: Vec<IntentNode>,
    /// With two-phase nodes, the session whose intentions the transaction
    /// records (docs/TWO_PHASE.md, "The journal"), so that a later run can
    /// release them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
enum Entry {
    Intent(Intent),
    Outcome { group_id: String, outcome: Outcome },
}

/// An open journal: appends are serialised and synced one at a time.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Arc<Mutex<File>>,
    /// An exclusive lock on `<path>.lock`, held while the journal is open:
    /// two runs sharing a journal (an upgrade starting a new Job while the
    /// old pod still rolls back) take turns instead of interleaving.
    _lock: File,
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Encodes one entry as a journal line.
fn encode(entry: &Entry) -> Vec<u8> {
    // Serialising these plain types cannot fail; an empty object would be
    // skipped at read time rather than misread.
    let json = serde_json::to_string(entry).unwrap_or_else(|_| "{}".to_owned());
    format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes())).into_bytes()
}

/// Decodes one journal line; `None` for a torn or corrupt line.
fn decode(line: &[u8]) -> Option<Entry> {
    let crc = std::str::from_utf8(line.get(..8)?).ok()?;
    let json = line.get(9..)?;
    if crc32fast::hash(json) != u32::from_str_radix(crc, 16).ok()? {
        return None;
    }
    serde_json::from_slice(json).ok()
}

/// Reads every intent that has no outcome after it, in journal order.
fn unfinished(path: &Path) -> Result<Vec<Intent>, JournalError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(path)(e)),
    };
    let mut open: BTreeMap<String, (usize, Intent)> = BTreeMap::new();
    for (number, line) in (1..).zip(BufReader::new(file).split(b'\n')) {
        match decode(&line.map_err(io_error(path))?) {
            Some(Entry::Intent(intent)) => {
                open.insert(intent.group_id.clone(), (number, intent));
            }
            Some(Entry::Outcome { group_id, .. }) => {
                open.remove(&group_id);
            }
            None => tracing::warn!(target: LOG_TARGET, path = %path.display(), line = number,
                "journal line is torn or corrupt; skipped (it was never acknowledged)"
            ),
        }
    }
    let mut intents: Vec<(usize, Intent)> = open.into_values().collect();
    intents.sort_by_key(|(number, _)| *number);
    Ok(intents.into_iter().map(|(_, intent)| intent).collect())
}

/// Takes the journal's exclusive lock (a separate file, since compaction
/// replaces the journal itself); released when the returned file closes,
/// including when the process dies.
fn lock(path: &Path) -> Result<File, JournalError> {
    let lock_path = sibling(path, ".lock");
    let file = File::create(&lock_path).map_err(io_error(&lock_path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(JournalError::Busy {
            path: path.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io_error(&lock_path)(e)),
    }
}

impl Journal {
    /// Opens (or creates) the journal at `path` and returns the intents a
    /// previous run left unfinished. The file is compacted to those intents.
    ///
    /// Fails with [`JournalError::Busy`] while another process holds it.
    pub fn open(path: &Path) -> Result<(Journal, Vec<Intent>), JournalError> {
        let lock = lock(path)?;
        let pending = unfinished(path)?;
        replace_atomically(path, |compacted| {
            pending
                .iter()
                .try_for_each(|intent| compacted.write_all(&encode(&Entry::Intent(intent.clone()))))
        })
        .map_err(io_error(path))?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io_error(path))?;
        let journal = Journal {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(file)),
            _lock: lock,
        };
        Ok((journal, pending))
    }

    /// Records the intent before any node of the group is changed.
    pub async fn intent(&self, intent: Intent) -> Result<(), JournalError> {
        self.append(Entry::Intent(intent)).await
    }

    /// Records how a group ended; its intent no longer needs recovery.
    pub async fn outcome(&self, group_id: &str, outcome: Outcome) -> Result<(), JournalError> {
        let group_id = group_id.to_string();
        self.append(Entry::Outcome { group_id, outcome }).await
    }

    async fn append(&self, entry: Entry) -> Result<(), JournalError> {
        let line = encode(&entry);
        let file = self.file.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut file = super::lock(&file);
            file.write_all(&line)?;
            file.sync_data()
        })
        .await;
        match written {
            Ok(result) => result.map_err(io_error(&self.path)),
            Err(join) => Err(JournalError::Writer {
                path: self.path.clone(),
                reason: join.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(id: &str) -> Intent {
        Intent {
            group_id: id.to_string(),
            operation: Change::Delete,
            nodes: vec![IntentNode {
                node: "http://n1".to_string(),
                prior: NodeState::Present,
                record: Some(serde_json::json!({"groupId": id, "owner": "ops"})),
            }],
            session: None,
        }
    }

    #[tokio::test]
    async fn unfinished_intents_survive_a_restart_and_finished_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let (journal, pending) = Journal::open(&path).unwrap();
        assert!(pending.is_empty());
        journal.intent(intent("a")).await.unwrap();
        journal.intent(intent("b")).await.unwrap();
        journal.outcome("a", Outcome::Committed).await.unwrap();
        drop(journal);
        let (_journal, pending) = Journal::open(&path).unwrap();
        assert_eq!(pending, vec![intent("b")]);
        // Compacted: only the unfinished intent is left in the file.
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }

    #[tokio::test]
    async fn torn_and_corrupt_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let mut bytes = encode(&Entry::Intent(intent("a")));
        let mut corrupt = encode(&Entry::Intent(intent("b")));
        corrupt[12] ^= 0x20;
        bytes.extend_from_slice(&corrupt);
        let torn = encode(&Entry::Intent(intent("c")));
        bytes.extend_from_slice(&torn[..torn.len() / 2]);
        std::fs::write(&path, bytes).unwrap();
        let (_journal, pending) = Journal::open(&path).unwrap();
        assert_eq!(pending, vec![intent("a")]);
    }

    #[test]
    fn a_second_opener_waits_its_turn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let (first, _) = Journal::open(&path).unwrap();
        assert!(matches!(
            Journal::open(&path),
            Err(JournalError::Busy { .. })
        ));
        drop(first);
        assert!(Journal::open(&path).is_ok());
    }

    #[test]
    fn lines_round_trip() {
        let entry = Entry::Outcome {
            group_id: "g/ü".to_string(),
            outcome: Outcome::RolledBack,
        };
        let line = encode(&entry);
        assert_eq!(decode(&line[..line.len() - 1]), Some(entry));
        assert_eq!(decode(b"zzzzzzzz {}"), None);
        assert_eq!(decode(b""), None);
    }
}
