//! What a run leaves behind: the [`RunReport`], the report file
//! (`REPORT_PATH`), the list of groups that did not commit (`failed.rs`) and
//! the termination message (`termination.rs`).

mod failed;
mod termination;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::ser::{Error as _, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::value::{to_raw_value, RawValue};
use serde_json::{Map, Value};

pub use failed::{FailedGroups, KEPT_NODE_DETAILS};
pub use termination::{
    termination_message, write_termination_message, TERMINATION_MESSAGE_MAX_BYTES,
};

use crate::domain::{
    replace_atomically, ExitStatus, GroupId, GroupReport, Operation, OutcomeCounts, Position,
    StopReason,
};
use crate::node_api::{NodeStatsSnapshot, RequestTotals};

/// The entries a stopped run did not attempt: every entry from `from` to
/// the end of the list (the run starts groups in list order).
#[derive(Debug, Clone, Serialize)]
pub struct NotAttempted {
    pub count: u64,
    /// Where the first of them is listed (`GROUP_IDS_FILE line 5012`);
    /// absent when the list itself could no longer be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Position>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_group_id: Option<GroupId>,
}

/// The version of a dry run's report (the plan), for tools that read it:
/// raised when a field changes meaning or goes away.
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// The share of the list a sharded run handled (`SHARD_COUNT` above 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ShardReport {
    /// This run's shard, from 0.
    pub index: u32,
    /// How many shards share the list.
    pub count: u32,
    /// Entries in the whole list, every shard's.
    pub list_entries: u64,
    /// Of them, this shard's. The groups a verify without ids or a prune
    /// finds on the nodes are counted in `listing` and `totals`, also this
    /// shard's only.
    pub entries: u64,
}

/// What listing the nodes (`GET /v1/groups`) found: for a verify without
/// ids, and for a reconcile.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Listing {
    /// Nodes that answered with their list.
    pub nodes_listed: u64,
    /// Distinct valid group ids over every list.
    pub groups_found: u64,
    /// Listed ids that are not valid group ids (left alone: no URL can
    /// address them).
    #[serde(skip_serializing_if = "is_zero")]
    pub invalid_ids: u64,
    /// The nodes whose list could not be had, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<ListFailure>,
}

/// One node whose list could not be had.
#[derive(Debug, Clone, Serialize)]
pub struct ListFailure {
    pub node: String,
    pub reason: String,
}

/// The groups a reconcile found on the nodes that its ids do not list.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Unlisted {
    /// How many: every one of them is pruned, or none is.
    pub groups: u64,
    /// Of them, those on some nodes only, by the lists.
    pub inconsistent: u64,
    /// The first of those, by id.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inconsistent_first: Vec<GroupId>,
    /// With `PRUNE=true`: why nothing was pruned, if nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune_refused: Option<String>,
    /// With a refused prune: the first of the groups it would have deleted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prune_first: Vec<GroupId>,
}

/// What a run did: the totals, and the detail of every group not committed.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Set for a dry run only: its report is the plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format_version: Option<u32>,
    pub operation: Operation,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Set when the list is split over shards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardReport>,
    pub started_at: String,
    pub duration_ms: u64,
    pub exit_code: ExitStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
    pub totals: OutcomeCounts,
    /// Requests over every node, as in `nodes`.
    pub requests: RequestTotals,
    pub nodes: Vec<NodeStatsSnapshot>,
    /// The groups whose transaction ended other than `committed`: all of
    /// them, or a sample within [`KEPT_NODE_DETAILS`] (the
    /// report file lists all of them).
    pub groups: Vec<GroupReport>,
    /// Groups not committed that are not in `groups`.
    #[serde(skip_serializing_if = "is_zero")]
    pub groups_omitted: u64,
    /// Where every group not committed was spooled, for the report file.
    #[serde(skip)]
    pub groups_spool: Option<std::path::PathBuf>,
    /// The entries not attempted because the run stopped first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_attempted: Option<NotAttempted>,
    /// Groups a killed run left unfinished, resolved from the journal before
    /// this run's own groups (not counted in `totals`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recovered: Vec<GroupReport>,
    /// What listing the nodes found, when the run listed them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listing: Option<Listing>,
    /// A reconcile's groups found on the nodes but not listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unlisted: Option<Unlisted>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The target these log lines carry, which `LOG_LEVEL` directives name
/// (`api_consumer::report=debug`): part of the log interface, kept whatever file
/// the code lives in.
const LOG_TARGET: &str = "api_consumer::report";

/// Writes the report atomically at `path` (a reader never sees half a
/// report). Its `groups` are those of the spool at `spool` (every group that
/// did not commit) when there is one, else those of `report`; the spool is
/// removed.
pub fn write_report(path: &Path, report: &RunReport, spool: Option<&Path>) -> std::io::Result<()> {
    let result = replace_atomically(path, |out| {
        let mut head = match serde_json::to_value(report).map_err(std::io::Error::other)? {
            Value::Object(fields) => fields,
            _ => Map::new(),
        };
        let groups = match (spool, head.remove("groups")) {
            (Some(path), _) => Groups::Spool(path),
            (None, Some(Value::Array(kept))) => Groups::Kept(kept),
            (None, _) => Groups::Kept(Vec::new()),
        };
        serde_json::to_writer_pretty(&mut *out, &ReportFile { head, groups })
            .map_err(std::io::Error::other)?;
        out.write_all(b"\n")
    });
    if let Some(spool) = spool {
        let _ = std::fs::remove_file(spool);
    }
    result
}

/// The report file's document: the report's fields (nested objects with
/// their keys in serde_json's order), then `groups`, each group on one line
/// however many there are, streamed from the spool.
#[derive(Serialize)]
struct ReportFile<'a> {
    #[serde(flatten)]
    head: Map<String, Value>,
    groups: Groups<'a>,
}

/// Where the report file's groups come from.
enum Groups<'a> {
    /// One compact JSON object per line, as [`FailedGroups`] spooled them.
    Spool(&'a Path),
    /// The report's own `groups`, as a `Value` like its other fields.
    Kept(Vec<Value>),
}

impl Serialize for Groups<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Each group goes in as a raw (compact) value, so that a pretty
        // report keeps one line per group.
        let mut seq = serializer.serialize_seq(None)?;
        match self {
            Groups::Spool(path) => {
                let file = File::open(path).map_err(S::Error::custom)?;
                for line in BufReader::new(file).lines() {
                    let line = line.map_err(S::Error::custom)?;
                    if !line.is_empty() {
                        let raw = RawValue::from_string(line).map_err(S::Error::custom)?;
                        seq.serialize_element(&raw)?;
                    }
                }
            }
            Groups::Kept(groups) => {
                for group in groups {
                    seq.serialize_element(&to_raw_value(group).map_err(S::Error::custom)?)?;
                }
            }
        }
        seq.end()
    }
}
