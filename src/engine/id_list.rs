//! The run's group ids: the entries of `GROUP_IDS`, then the lines of
//! `GROUP_IDS_FILE`, in that order, checked in full before any request is
//! sent and then held in memory.
//!
//! # Supported scale
//!
//! An entry costs its id's bytes plus some 60 bytes of bookkeeping, so a
//! run (or a shard, which keeps only its own entries) holds 1,000,000 ids of
//! up to 24 bytes in about 70 MB (docs/BENCHMARKS.md, "Id lists"). The file
//! is read once, at start: replacing or editing it during the run changes
//! nothing.
//!
//! Every entry is one group's transaction. An id listed twice is run twice,
//! the second time only after the first has finished (never both at once),
//! so the second run finds the group where the first left it: at its goal,
//! it changes nothing.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use crate::domain::{GroupId, Position, Shard};

/// The longest line read from `GROUP_IDS_FILE`. Ids are at most 256 bytes;
/// the rest is room for surrounding blanks and comments.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// One listed id and where it was listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: GroupId,
    pub position: Position,
}

/// The run's entries: this shard's share of the list, in list order.
/// Cloning shares them.
#[derive(Debug, Clone, Default)]
pub struct GroupIds {
    entries: Arc<Vec<Entry>>,
    /// How many entries the whole list holds, every shard's.
    listed: u64,
    /// How many ids `GROUP_IDS_FILE` holds, when it is given.
    file_ids: Option<u64>,
    shard: Shard,
}

/// Why the file could not be read as a list of ids. The message names the
/// line, never the whole content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdsError(pub String);

impl GroupIds {
    /// This shard's entries of `GROUP_IDS` (already checked).
    pub fn inline(ids: Vec<GroupId>, shard: Shard) -> GroupIds {
        GroupIds::of(ids, Position::GroupIds, shard)
    }

    /// Ids found on the nodes (verify without ids, a reconcile's prune),
    /// already this shard's.
    pub fn discovered(ids: Vec<GroupId>) -> GroupIds {
        GroupIds::of(ids, Position::Discovered, Shard::WHOLE)
    }

    /// `shard`'s entries of `ids`, the n-th at `position(n)` (from 1).
    fn of(ids: Vec<GroupId>, position: fn(u64) -> Position, shard: Shard) -> GroupIds {
        let listed = ids.len() as u64;
        let entries = (1..).zip(ids).map(|(n, id)| Entry {
            id,
            position: position(n),
        });
        GroupIds {
            entries: Arc::new(entries.filter(|e| shard.owns(e.id.as_str())).collect()),
            listed,
            file_ids: None,
            shard,
        }
    }

    /// Adds this shard's ids of the file at `path` (`GROUP_IDS_FILE`),
    /// checking every line. `shown` is how errors name the file.
    pub fn with_file(mut self, path: &Path, shown: &str) -> Result<GroupIds, IdsError> {
        let cannot_read =
            |e: std::io::Error| IdsError(format!("cannot read {shown}: {}: {e}", e.kind()));
        if !std::fs::metadata(path).map_err(cannot_read)?.is_file() {
            return Err(IdsError(format!("{shown} is not a regular file")));
        }
        let file = File::open(path).map_err(cannot_read)?;
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        let entries = Arc::make_mut(&mut self.entries);
        let (mut line, mut file_ids) = (Vec::new(), 0u64);
        for number in 1.. {
            line.clear();
            // A line is read up to one byte past the limit, never whole.
            let limit = MAX_LINE_BYTES as u64 + 1;
            let read = (&mut reader).take(limit).read_until(b'\n', &mut line);
            if read.map_err(cannot_read)? == 0 {
                break;
            }
            if line.len() as u64 >= limit && line.last() != Some(&b'\n') {
                let message =
                    format!("{shown} line {number} is longer than {MAX_LINE_BYTES} bytes");
                return Err(IdsError(message));
            }
            let Some(id) = file_id(&line, number, shown)? else {
                continue;
            };
            file_ids += 1;
            if self.shard.owns(id.as_str()) {
                let position = Position::GroupIdsFile(number);
                entries.push(Entry { id, position });
            }
        }
        entries.shrink_to_fit();
        self.listed += file_ids;
        self.file_ids = Some(file_ids);
        Ok(self)
    }

    /// The share of the list this run handles.
    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// How many entries this run handles (each is one transaction): the
    /// shard's share of [`GroupIds::listed`].
    pub fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many entries the list holds, every shard's.
    pub fn listed(&self) -> u64 {
        self.listed
    }

    /// How many ids `GROUP_IDS_FILE` holds, when it is given.
    pub fn file_ids(&self) -> Option<u64> {
        self.file_ids
    }

    /// This run's entries, in list order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

/// The id on line `number` of the file: the line trimmed (so `\r\n`
/// works), `None` when blank or starting with `#`; a leading UTF-8 byte
/// order mark is ignored.
fn file_id(line: &[u8], number: u64, shown: &str) -> Result<Option<GroupId>, IdsError> {
    let bytes = match number {
        1 => line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line),
        _ => line,
    };
    let text = std::str::from_utf8(bytes)
        .map_err(|_| IdsError(format!("{shown} line {number} is not valid UTF-8")))?
        .trim();
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    let id = GroupId::new(text).map_err(|e| IdsError(format!("{shown} line {number}: {e}")))?;
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write as _;

    use super::*;

    fn file_with(content: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(content).unwrap();
        file
    }

    fn from_file(content: &[u8]) -> Result<GroupIds, IdsError> {
        let file = file_with(content);
        GroupIds::default().with_file(file.path(), "\"ids.txt\"")
    }

    fn listed(ids: &GroupIds) -> Vec<(String, Position)> {
        ids.entries()
            .iter()
            .map(|e| (e.id.as_str().to_owned(), e.position))
            .collect()
    }

    fn names(ids: &GroupIds) -> Vec<String> {
        listed(ids).into_iter().map(|(id, _)| id).collect()
    }

    #[test]
    fn inline_entries_come_first_then_file_lines_with_their_numbers() {
        let file = file_with(b"\xEF\xBB\xBF# header\nb\r\n\n  c  \n#d\ne");
        let ids = GroupIds::inline(vec![GroupId::new("a").unwrap()], Shard::WHOLE)
            .with_file(file.path(), "f")
            .unwrap();
        assert_eq!(ids.len(), 4);
        assert_eq!(ids.file_ids(), Some(3));
        assert_eq!(
            listed(&ids),
            vec![
                ("a".into(), Position::GroupIds(1)),
                ("b".into(), Position::GroupIdsFile(2)),
                ("c".into(), Position::GroupIdsFile(4)),
                ("e".into(), Position::GroupIdsFile(6)),
            ]
        );
    }

    #[test]
    fn repeated_ids_are_all_listed() {
        let ids = from_file(b"a\nb\na\n").unwrap();
        assert_eq!(names(&ids), ["a", "b", "a"]);
    }

    #[test]
    fn a_bad_line_is_named() {
        let error = from_file(b"a\n\nb\x01c\n").unwrap_err();
        assert_eq!(
            error.0,
            "\"ids.txt\" line 3: group id contains the control character U+0001 at byte 1"
        );
        let error = from_file(b"a\n\xff\n").unwrap_err();
        assert_eq!(error.0, "\"ids.txt\" line 2 is not valid UTF-8");
    }

    #[test]
    fn an_overlong_line_is_refused_without_reading_it_whole() {
        let mut content = b"a\n#".to_vec();
        content.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES * 3));
        let error = from_file(&content).unwrap_err();
        assert_eq!(
            error.0,
            format!("\"ids.txt\" line 2 is longer than {MAX_LINE_BYTES} bytes")
        );
        // A line of exactly the limit (newline excluded) is fine.
        let mut content = b"#".to_vec();
        content.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES - 1));
        content.extend(b"\nz\n");
        assert_eq!(from_file(&content).unwrap().len(), 1);
    }

    #[test]
    fn a_pipe_is_refused() {
        let error = GroupIds::default()
            .with_file(Path::new("/dev/null"), "\"/dev/null\"")
            .unwrap_err();
        assert!(error.0.contains("not a regular file"), "{}", error.0);
    }

    #[test]
    fn a_file_replaced_or_edited_after_the_check_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids");
        std::fs::write(&path, "a\nb\n").unwrap();
        let ids = GroupIds::default().with_file(&path, "f").unwrap();
        let replacement = dir.path().join("ids.new");
        std::fs::write(&replacement, "x\ny\nz\n").unwrap();
        std::fs::rename(&replacement, &path).unwrap();
        assert_eq!(names(&ids), ["a", "b"]);
        std::fs::write(&path, b"a\n\x01\nc\n").unwrap();
        assert_eq!(names(&ids), ["a", "b"]);
    }

    #[test]
    fn a_shard_keeps_its_own_entries_and_counts_the_whole_list() {
        let content: String = (0..1_000).map(|i| format!("id-{i}\n")).collect();
        let shard = Shard::new(1, 4).unwrap();
        let inline = vec![GroupId::new("id-0").unwrap(), GroupId::new("id-1").unwrap()];
        let file = file_with(content.as_bytes());
        let ids = GroupIds::inline(inline, shard)
            .with_file(file.path(), "f")
            .unwrap();
        assert_eq!(ids.listed(), 1_002);
        assert_eq!(ids.file_ids(), Some(1_000));
        assert!(ids.entries().iter().all(|e| shard.owns(e.id.as_str())));
        let owned = (0..1_000)
            .filter(|i| shard.owns(&format!("id-{i}")))
            .count()
            + ["id-0", "id-1"].iter().filter(|id| shard.owns(id)).count();
        assert_eq!(ids.len(), owned as u64);
    }

    #[test]
    fn every_entry_is_kept_in_order() {
        let content: String = (0..10_000).map(|i| format!("id-{i}\n")).collect();
        let ids = from_file(content.as_bytes()).unwrap();
        assert_eq!(ids.len(), 10_000);
        for (count, entry) in ids.entries().iter().enumerate() {
            assert_eq!(entry.id.as_str(), format!("id-{count}"));
        }
    }
}
