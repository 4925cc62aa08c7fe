//! The groups of a run that did not commit, with bounded memory.
//!
//! A run over a long list can leave many groups not committed (a node down
//! for the whole run rolls back every group), and each one's detail grows
//! with the number of nodes. So the run keeps in memory only a sample of at
//! most [`KEPT_NODE_DETAILS`] node details (inconsistent groups are kept in
//! preference, as they matter most), and with `REPORT_PATH` appends every
//! group's detail to a spool file next to the report as it finishes. The
//! report file then lists every group, from the spool.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::LOG_TARGET;
use crate::domain::{sibling, GroupReport, Outcome};

/// How many node details (one per node of each group) the in-memory sample
/// holds at most: with 3 nodes, some 33,000 groups; with 1,000 nodes, 100.
pub const KEPT_NODE_DETAILS: usize = 100_000;

/// The groups of a run that did not commit.
#[derive(Debug)]
pub struct FailedGroups {
    /// Node details the sample may hold.
    pub(super) limit: usize,
    kept: Vec<GroupReport>,
    kept_details: usize,
    /// Groups not in `kept` (all of them are in the spool, when there is one).
    omitted: u64,
    /// The spool file and its writer, until a write to it fails.
    spool: Option<(PathBuf, BufWriter<File>)>,
}

impl FailedGroups {
    /// A list kept in memory only (within [`KEPT_NODE_DETAILS`]).
    pub fn in_memory() -> FailedGroups {
        FailedGroups {
            limit: KEPT_NODE_DETAILS,
            kept: Vec::new(),
            kept_details: 0,
            omitted: 0,
            spool: None,
        }
    }

    /// A list that also spools every group next to the report at
    /// `report_path`, for [`super::write_report`].
    pub fn spooled_for(report_path: &Path) -> FailedGroups {
        let path = sibling(report_path, ".groups.tmp");
        let spool = match File::create(&path) {
            Ok(file) => Some((path, BufWriter::new(file))),
            Err(error) => {
                tracing::error!(target: LOG_TARGET, path = %path.display(), error_message = %error, "cannot write the report's group list; the report will list only the groups kept in memory");
                None
            }
        };
        FailedGroups {
            spool,
            ..FailedGroups::in_memory()
        }
    }

    /// Adds one group that did not commit.
    pub fn push(&mut self, group: GroupReport) {
        if let Some((path, writer)) = &mut self.spool {
            let written = serde_json::to_writer(&mut *writer, &group)
                .map_err(std::io::Error::from)
                .and_then(|()| writer.write_all(b"\n"));
            if let Err(error) = written {
                tracing::error!(target: LOG_TARGET, path = %path.display(), error_message = %error, "cannot write the report's group list; the report will list only the groups kept in memory");
                let _ = std::fs::remove_file(path);
                self.spool = None;
            }
        }
        let details = group.nodes.len().max(1);
        if self.kept_details + details <= self.limit {
            self.kept_details += details;
            self.kept.push(group);
            return;
        }
        self.omitted += 1;
        if group.outcome == Outcome::Inconsistent {
            // Make room by dropping the latest kept group that is not
            // inconsistent, if that is enough.
            if let Some(at) = self
                .kept
                .iter()
                .rposition(|g| g.outcome != Outcome::Inconsistent)
            {
                let freed = self.kept[at].nodes.len().max(1);
                if self.kept_details - freed + details <= self.limit {
                    self.kept_details = self.kept_details - freed + details;
                    self.kept[at] = group;
                }
            }
        }
    }

    /// The kept groups, how many more did not commit, and the spool that
    /// lists them all, if it was written whole.
    pub fn into_parts(self) -> (Vec<GroupReport>, u64, Option<PathBuf>) {
        let spool = self.spool.and_then(|(path, mut writer)| match writer.flush() {
            Ok(()) => Some(path),
            Err(error) => {
                tracing::error!(target: LOG_TARGET, path = %path.display(), error_message = %error, "cannot write the report's group list");
                let _ = std::fs::remove_file(&path);
                None
            }
        });
        (self.kept, self.omitted, spool)
    }
}
