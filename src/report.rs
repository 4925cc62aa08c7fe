//! What a run leaves behind: the list of groups that did not commit (with
//! bounded memory), the report file and the termination message.
//!
//! A run over a long list can leave many groups not committed (a node down
//! for the whole run rolls back every group), and each one's detail grows
//! with the number of nodes. So the run keeps in memory only a sample of at
//! most [`KEPT_NODE_DETAILS`] node details (inconsistent groups are kept in
//! preference, as they matter most), and with `REPORT_PATH` appends every
//! group's detail to a spool file next to the report as it finishes. The
//! report file then lists every group, from the spool.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::run::RunReport;
use crate::transaction::{GroupReport, Outcome};

/// How many node details (one per node of each group) the in-memory sample
/// holds at most: with 3 nodes, some 33,000 groups; with 1,000 nodes, 100.
pub const KEPT_NODE_DETAILS: usize = 100_000;

/// The groups of a run that did not commit.
#[derive(Debug)]
pub struct FailedGroups {
    /// Node details the sample may hold.
    limit: usize,
    kept: Vec<GroupReport>,
    kept_details: usize,
    /// Groups not in `kept` (all of them are in the spool, when there is one).
    omitted: u64,
    spool: Option<Spool>,
}

#[derive(Debug)]
struct Spool {
    path: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl FailedGroups {
    /// A list kept in memory only (within [`KEPT_NODE_DETAILS`]).
    pub fn in_memory() -> FailedGroups {
        FailedGroups::with_limit(KEPT_NODE_DETAILS)
    }

    fn with_limit(limit: usize) -> FailedGroups {
        FailedGroups {
            limit,
            kept: Vec::new(),
            kept_details: 0,
            omitted: 0,
            spool: None,
        }
    }

    /// A list that also spools every group next to the report at
    /// `report_path`, for [`write_report`].
    pub fn spooled_for(report_path: &Path) -> FailedGroups {
        let path = sibling(report_path, ".groups.tmp");
        let writer = match File::create(&path) {
            Ok(file) => Some(BufWriter::new(file)),
            Err(error) => {
                tracing::error!(path = %path.display(), error = %error, "cannot write the report's group list; the report will list only the groups kept in memory");
                None
            }
        };
        FailedGroups {
            spool: Some(Spool { path, writer }),
            ..FailedGroups::in_memory()
        }
    }

    /// Adds one group that did not commit.
    pub fn push(&mut self, group: GroupReport) {
        if let Some(spool) = &mut self.spool {
            spool.append(&group);
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

    /// The kept groups, and how many more did not commit.
    pub fn into_parts(self) -> (Vec<GroupReport>, u64, Option<PathBuf>) {
        let spool = self.spool.and_then(|mut spool| {
            let flushed = spool.writer.take().map(|mut w| w.flush());
            match flushed {
                Some(Ok(())) => Some(spool.path),
                Some(Err(error)) => {
                    tracing::error!(path = %spool.path.display(), error = %error, "cannot write the report's group list");
                    let _ = std::fs::remove_file(&spool.path);
                    None
                }
                None => None,
            }
        });
        (self.kept, self.omitted, spool)
    }
}

impl Spool {
    fn append(&mut self, group: &GroupReport) {
        let Some(writer) = &mut self.writer else {
            return;
        };
        let written = serde_json::to_writer(&mut *writer, group)
            .map_err(std::io::Error::from)
            .and_then(|()| writer.write_all(b"\n"));
        if let Err(error) = written {
            tracing::error!(path = %self.path.display(), error = %error, "cannot write the report's group list; the report will list only the groups kept in memory");
            self.writer = None;
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Writes the report next to its final path, then renames it into place, so
/// a reader never sees half a report. Its `groups` are those of the spool at
/// `spool` (every group that did not commit) when there is one, else those
/// of `report`; the spool is removed.
pub fn write_report(path: &Path, report: &RunReport, spool: Option<&Path>) -> std::io::Result<()> {
    let result = write_report_via(path, report, spool);
    if let Some(spool) = spool {
        let _ = std::fs::remove_file(spool);
    }
    result
}

fn write_report_via(path: &Path, report: &RunReport, spool: Option<&Path>) -> std::io::Result<()> {
    let tmp = sibling(path, ".tmp");
    let mut out = BufWriter::new(File::create(&tmp)?);
    let mut head = serde_json::to_value(report).map_err(std::io::Error::other)?;
    let kept = head
        .as_object_mut()
        .and_then(|fields| fields.remove("groups"))
        .unwrap_or_default();
    let head = serde_json::to_string_pretty(&head).map_err(std::io::Error::other)?;
    // The head without its closing brace, then the groups, then the brace.
    let head = head.trim_end().trim_end_matches('}').trim_end();
    out.write_all(head.as_bytes())?;
    out.write_all(if head.ends_with('{') { b"\n" } else { b",\n" })?;
    out.write_all(b"  \"groups\": [")?;
    let mut first = true;
    let mut entry = |out: &mut BufWriter<File>, json: &str| -> std::io::Result<()> {
        out.write_all(if first { b"\n    " } else { b",\n    " })?;
        first = false;
        out.write_all(json.as_bytes())
    };
    match spool {
        Some(spool) => {
            for line in BufReader::new(File::open(spool)?).lines() {
                let line = line?;
                if !line.is_empty() {
                    entry(&mut out, &line)?;
                }
            }
        }
        None => {
            for group in kept.as_array().into_iter().flatten() {
                entry(&mut out, &group.to_string())?;
            }
        }
    }
    out.write_all(if first { b"]\n}\n" } else { b"\n  ]\n}\n" })?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The most Kubernetes keeps of a termination message.
pub const TERMINATION_MESSAGE_MAX_BYTES: usize = 4096;

/// Writes [`termination_message`] to `path` when that file exists (the
/// kubelet creates it for each container), so that `kubectl describe pod`
/// shows how the run ended.
pub fn write_termination_message(path: &Path, report: &RunReport) {
    if !path.is_file() {
        return;
    }
    if let Err(error) = std::fs::write(path, termination_message(report)) {
        tracing::warn!(path = %path.display(), error = %error, "cannot write the termination message");
    }
}

/// The run summary as one JSON object of at most
/// [`TERMINATION_MESSAGE_MAX_BYTES`]: the summary's figures, then as many
/// groups that did not commit as fit (inconsistent ones first, then in
/// report order), and how many did not fit.
pub fn termination_message(report: &RunReport) -> String {
    let totals = &report.totals;
    let mut head = serde_json::json!({
        "exit_code": report.exit_code,
        "operation": report.operation.as_str(),
        "groups": totals.groups,
        "committed": totals.committed,
        "rolled_back": totals.rolled_back,
        "inconsistent": totals.inconsistent,
        "not_started": totals.not_started,
        "requests": report.requests.requests,
        "retries": report.requests.retries,
        "duration_ms": report.duration_ms,
    });
    if let Some(reason) = report.stop_reason {
        head["stop_reason"] = reason.as_str().into();
    }
    if let Some(from) = report.not_attempted.as_ref().and_then(|n| n.from) {
        head["not_attempted_from"] = from.to_string().into();
    }
    let mut failed: Vec<&GroupReport> = report.recovered.iter().chain(&report.groups).collect();
    failed.sort_by_key(|g| g.outcome != Outcome::Inconsistent);
    let mut message = head.to_string();
    // Room for `,"failed":[`, `],"failed_omitted":<n>` and `}`.
    let budget = TERMINATION_MESSAGE_MAX_BYTES.saturating_sub(64);
    let mut listed = Vec::new();
    let mut used = message.len();
    for group in &failed {
        if budget.saturating_sub(used) < SMALLEST_ENTRY {
            break;
        }
        let entry = failed_entry(group).to_string();
        if used + entry.len() < budget {
            used += entry.len() + 1;
            listed.push(entry);
        }
    }
    let omitted = (failed.len() - listed.len()) as u64 + report.groups_omitted;
    if !failed.is_empty() || omitted > 0 {
        message.pop();
        message.push_str(&format!(",\"failed\":[{}]", listed.join(",")));
        if omitted > 0 {
            message.push_str(&format!(",\"failed_omitted\":{omitted}"));
        }
        message.push('}');
    }
    message
}

/// Below this many bytes left, no further group entry can fit.
const SMALLEST_ENTRY: usize = 40;

/// One group that did not commit, briefly: for an inconsistent one, the
/// nodes left at neither state and what they hold.
fn failed_entry(group: &GroupReport) -> serde_json::Value {
    const REASON_CHARS: usize = 120;
    let mut entry = serde_json::json!({
        "group_id": group.group_id,
        "outcome": group.outcome.as_str(),
    });
    if group.outcome == Outcome::Inconsistent {
        const NODES: usize = 4;
        let nodes: serde_json::Map<String, serde_json::Value> = group
            .diverged_nodes()
            .take(NODES)
            .map(|n| (n.node.clone(), n.final_state.as_str().into()))
            .collect();
        entry["nodes"] = nodes.into();
        let more = group.diverged_nodes().count().saturating_sub(NODES);
        if more > 0 {
            entry["nodes_omitted"] = more.into();
        }
    } else if let Some(reason) = &group.reason {
        let mut short: String = reason.chars().take(REASON_CHARS).collect();
        if short.len() < reason.len() {
            short.push('…');
        }
        entry["reason"] = short.into();
    }
    entry
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::Value;

    use super::*;
    use crate::client::RequestTotals;
    use crate::config::{GroupId, Operation};
    use crate::run::{ExitStatus, Totals};
    use crate::transaction::{NodeDetail, NodeState};

    fn group(id: &str, outcome: Outcome, nodes: usize) -> GroupReport {
        GroupReport {
            group_id: GroupId::new(id).unwrap(),
            operation: Operation::Create,
            outcome,
            reason: Some("why".into()),
            duration_ms: 1,
            nodes: (0..nodes)
                .map(|i| NodeDetail {
                    node: format!("http://n{i}"),
                    prior: NodeState::Absent,
                    final_state: NodeState::Absent,
                    written: false,
                    compensated: false,
                    detail: None,
                })
                .collect(),
        }
    }

    fn report(groups: Vec<GroupReport>, omitted: u64) -> RunReport {
        RunReport {
            operation: Operation::Create,
            started_at: "2026-11-23T00:00:00.000Z".into(),
            duration_ms: 5,
            exit_code: ExitStatus::Inconsistent,
            stop_reason: None,
            totals: Totals::default(),
            requests: RequestTotals::default(),
            nodes: Vec::new(),
            groups,
            groups_omitted: omitted,
            groups_spool: None,
            not_attempted: None,
            recovered: Vec::new(),
        }
    }

    fn ids(groups: &[GroupReport]) -> Vec<&str> {
        groups.iter().map(|g| g.group_id.as_str()).collect()
    }

    #[test]
    fn the_sample_stays_within_its_limit_and_prefers_inconsistent_groups() {
        let mut failed = FailedGroups::with_limit(9);
        for i in 0..5 {
            failed.push(group(&format!("r{i}"), Outcome::RolledBack, 3));
        }
        failed.push(group("bad", Outcome::Inconsistent, 3));
        let (kept, omitted, spool) = failed.into_parts();
        assert_eq!(ids(&kept), ["r0", "r1", "bad"]);
        assert_eq!((omitted, spool), (3, None));
    }

    #[test]
    fn the_report_file_lists_every_group_from_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        let mut failed = FailedGroups::spooled_for(&path);
        failed.limit = 4;
        for i in 0..50 {
            failed.push(group(&format!("g{i}"), Outcome::RolledBack, 2));
        }
        let (kept, omitted, spool) = failed.into_parts();
        assert_eq!((kept.len(), omitted), (2, 48));
        let spool = spool.unwrap();
        write_report(&path, &report(kept, omitted), Some(&spool)).unwrap();
        assert!(!spool.exists(), "the spool is removed");
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let listed = written["groups"].as_array().unwrap();
        assert_eq!(listed.len(), 50);
        assert_eq!(listed[49]["group_id"], "g49");
        assert_eq!(listed[0]["nodes"][1]["node"], "http://n1");
        assert_eq!(written["groups_omitted"], 48);
        assert_eq!(written["exit_code"], 3);
    }

    #[test]
    fn without_a_spool_the_report_lists_the_kept_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        for groups in [
            vec![],
            vec![
                group("a", Outcome::RolledBack, 1),
                group("b", Outcome::Inconsistent, 1),
            ],
        ] {
            write_report(&path, &report(groups.clone(), 0), None).unwrap();
            let written: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let listed: Vec<&str> = written["groups"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["group_id"].as_str().unwrap())
                .collect();
            assert_eq!(listed, ids(&groups));
            assert!(written.get("groups_omitted").is_none());
        }
    }

    #[test]
    fn the_termination_message_fits_whatever_the_groups() {
        let long = "x".repeat(256);
        let mut groups = Vec::new();
        for i in 0..300 {
            let mut g = group(&format!("{i}-{}", &long[..200]), Outcome::RolledBack, 2);
            g.reason = Some("r".repeat(10_000));
            groups.push(g);
        }
        let mut wide = group("wide", Outcome::Inconsistent, 1_000);
        for (i, node) in wide.nodes.iter_mut().enumerate() {
            node.final_state = NodeState::Present;
            node.node = format!("http://{i}{}", "n".repeat(1_000));
        }
        groups.push(wide);
        groups.push(group("bad", Outcome::Inconsistent, 0));
        let message = termination_message(&report(groups, 7));
        assert!(
            message.len() <= TERMINATION_MESSAGE_MAX_BYTES,
            "{}",
            message.len()
        );
        let message: Value = serde_json::from_str(&message).unwrap();
        let listed = message["failed"].as_array().unwrap();
        // The inconsistent groups come first; one too wide to fit is
        // counted, not listed.
        assert_eq!(listed[0]["group_id"], "bad");
        assert_eq!(listed[1]["outcome"], "rolled_back");
        assert!(listed[1]["reason"].as_str().unwrap().chars().count() <= 121);
        assert_eq!(
            message["failed_omitted"].as_u64().unwrap(),
            302 - listed.len() as u64 + 7
        );
        let mut narrow = group("narrow", Outcome::Inconsistent, 10);
        for node in &mut narrow.nodes {
            node.final_state = NodeState::Unknown;
        }
        let message = termination_message(&report(vec![narrow], 0));
        let message: Value = serde_json::from_str(&message).unwrap();
        let entry = &message["failed"][0];
        assert_eq!(entry["nodes"].as_object().unwrap().len(), 4);
        assert_eq!(entry["nodes"]["http://n0"], "unknown");
        assert_eq!(entry["nodes_omitted"], 6);
        assert!(message.get("failed_omitted").is_none());
    }
}
