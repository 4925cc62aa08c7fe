//! The run's group ids: the entries of `GROUP_IDS`, then the lines of
//! `GROUP_IDS_FILE`, in that order.
//!
//! A file may hold any number of ids, so it is never held in memory. It is
//! read twice through one open descriptor: once while the configuration is
//! checked (every line must hold a valid id before any request is sent), and
//! once, as a stream, while the run starts groups. Holding the descriptor
//! means that replacing the file (a ConfigMap update swaps it atomically)
//! cannot change what the run reads; editing it in place can, and the second
//! read notices: a line that no longer holds a valid id, or a different
//! number of ids, stops the run from starting further groups.
//!
//! Every entry is one group's transaction. An id listed twice is run twice,
//! the second time only after the first has finished (never both at once),
//! so the second run finds the group where the first left it: at its goal,
//! it changes nothing. Dropping repeats instead would need a record of every
//! id seen, which grows with the batch.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::mpsc;

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

/// The run's ids, checked: `GROUP_IDS` in memory (the environment bounds
/// its size), `GROUP_IDS_FILE` as an open file and the number of ids in it.
#[derive(Debug, Clone)]
pub struct GroupIds {
    inline: Vec<GroupId>,
    /// The inline ids were found on the nodes, not listed in `GROUP_IDS`.
    discovered: bool,
    file: Option<IdsFile>,
    /// Only this shard's entries are handed out.
    shard: Shard,
    /// How many of the entries are this shard's.
    own: u64,
}

#[derive(Clone)]
struct IdsFile {
    file: Arc<File>,
    /// How errors name the file.
    shown: String,
    ids: u64,
}

impl fmt::Debug for IdsFile {
    /// The file by name and size, not by descriptor (which differs from one
    /// opening to the next).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdsFile")
            .field("file", &self.shown)
            .field("ids", &self.ids)
            .finish()
    }
}

/// Why the file could not be read as a list of ids. The message names the
/// line, never the whole content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdsError(pub String);

/// How many entries cross from the reading thread to the run at a time.
const STREAM_CHUNK: usize = 256;

/// The entries of a [`GroupIds`], in order, from [`GroupIds::stream`].
pub struct IdStream {
    receiver: mpsc::Receiver<Vec<Result<Entry, IdsError>>>,
    current: std::vec::IntoIter<Result<Entry, IdsError>>,
}

impl IdStream {
    /// The next entry, or `None` after the last one.
    pub async fn recv(&mut self) -> Option<Result<Entry, IdsError>> {
        loop {
            if let Some(next) = self.current.next() {
                return Some(next);
            }
            self.current = self.receiver.recv().await?.into_iter();
        }
    }
}

impl GroupIds {
    /// Ids from `GROUP_IDS` only.
    pub fn inline(ids: Vec<GroupId>) -> GroupIds {
        GroupIds {
            own: ids.len() as u64,
            inline: ids,
            discovered: false,
            file: None,
            shard: Shard::WHOLE,
        }
    }

    /// Ids found on the nodes (verify without ids, a reconcile's prune).
    pub fn discovered(ids: Vec<GroupId>) -> GroupIds {
        GroupIds {
            own: ids.len() as u64,
            inline: ids,
            discovered: true,
            file: None,
            shard: Shard::WHOLE,
        }
    }

    /// Adds `path` as `GROUP_IDS_FILE`, reading it once to check every line.
    /// `shown` is how errors name the file.
    pub fn with_file(mut self, path: &Path, shown: String) -> Result<GroupIds, IdsError> {
        let cannot_read =
            |e: std::io::Error| IdsError(format!("cannot read {shown}: {}: {e}", e.kind()));
        // Checked before opening: opening a FIFO would wait for a writer.
        if !std::fs::metadata(path).map_err(cannot_read)?.is_file() {
            // A pipe cannot be read a second time.
            return Err(IdsError(format!(
                "{shown} is not a regular file (the ids are read twice: checked in full \
                 before any request, then streamed while the run starts groups)"
            )));
        }
        let file = File::open(path).map_err(cannot_read)?;
        let file = Arc::new(file);
        // One pass checks every line and counts the ids, the shard's too.
        let (mut ids, mut own) = (0u64, self.own_inline());
        let mut lines = Lines::new(&file, &shown);
        while let Some(entry) = lines.next_id()? {
            ids += 1;
            own += u64::from(self.shard.owns(entry.id.as_str()));
        }
        self.file = Some(IdsFile { file, shown, ids });
        self.own = own;
        Ok(self)
    }

    /// Keeps only `shard`'s entries (positions still count every entry).
    /// Given before [`GroupIds::with_file`], the file's check counts the
    /// shard's entries; given after, the file is read once more to count
    /// them.
    pub fn with_shard(mut self, shard: Shard) -> Result<GroupIds, IdsError> {
        self.shard = shard;
        if self.file.is_none() {
            self.own = self.own_inline();
            return Ok(self);
        }
        let mut own = 0u64;
        self.for_each(|_| {
            own += 1;
            true
        })?;
        self.own = own;
        Ok(self)
    }

    /// How many of the inline ids are the shard's.
    fn own_inline(&self) -> u64 {
        self.inline
            .iter()
            .filter(|id| self.shard.owns(id.as_str()))
            .count() as u64
    }

    /// The share of the list this run handles.
    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// How many entries this run handles (each is one transaction): the
    /// shard's share of [`GroupIds::listed`].
    pub fn len(&self) -> u64 {
        self.own
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many entries the list holds, every shard's.
    pub fn listed(&self) -> u64 {
        self.inline.len() as u64 + self.file.as_ref().map_or(0, |f| f.ids)
    }

    /// How many ids `GROUP_IDS_FILE` holds, when it is given.
    pub fn file_ids(&self) -> Option<u64> {
        self.file.as_ref().map(|f| f.ids)
    }

    /// Reads every entry into memory. For tests and small lists; a run
    /// uses [`GroupIds::stream`].
    pub fn to_vec(&self) -> Result<Vec<Entry>, IdsError> {
        let mut entries = Vec::new();
        self.for_each(|entry| {
            entries.push(entry);
            true
        })?;
        Ok(entries)
    }

    /// Streams the entries, reading the file on a blocking thread about
    /// `buffer` ids ahead of the consumer. An item is an error when the file
    /// changed since it was checked; nothing follows an error.
    pub fn stream(&self, buffer: usize) -> IdStream {
        // Entries cross threads in chunks: one per id would wake each thread
        // once per id, a futex call and a context switch for every group.
        let chunk = buffer.clamp(1, STREAM_CHUNK);
        let (sender, receiver) = mpsc::channel((buffer / chunk).max(1));
        let ids = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut pending = Vec::with_capacity(chunk);
            let result = ids.for_each(|entry| {
                pending.push(Ok(entry));
                if pending.len() < chunk {
                    return true;
                }
                let full = std::mem::replace(&mut pending, Vec::with_capacity(chunk));
                sender.blocking_send(full).is_ok()
            });
            if let Err(error) = result {
                pending.push(Err(error));
            }
            if !pending.is_empty() {
                let _ = sender.blocking_send(pending);
            }
        });
        IdStream {
            receiver,
            current: Vec::new().into_iter(),
        }
    }

    /// Calls `each` for every entry in order until it returns `false`.
    fn for_each(&self, mut each: impl FnMut(Entry) -> bool) -> Result<(), IdsError> {
        for (index, id) in self.inline.iter().enumerate() {
            if !self.shard.owns(id.as_str()) {
                continue;
            }
            let number = index as u64 + 1;
            let position = if self.discovered {
                Position::Discovered(number)
            } else {
                Position::GroupIds(number)
            };
            if !each(Entry {
                id: id.clone(),
                position,
            }) {
                return Ok(());
            }
        }
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut lines = Lines::new(&file.file, &file.shown);
        let mut seen = 0u64;
        while let Some(entry) = lines
            .next_id()
            .map_err(|IdsError(e)| changed(&file.shown, &e))?
        {
            seen += 1;
            if seen > file.ids {
                break;
            }
            if !self.shard.owns(entry.id.as_str()) {
                continue;
            }
            if !each(entry) {
                return Ok(());
            }
        }
        if seen != file.ids {
            return Err(changed(
                &file.shown,
                &format!(
                    "it now holds a different number of ids than the {} checked",
                    file.ids
                ),
            ));
        }
        Ok(())
    }
}

fn changed(shown: &str, problem: &str) -> IdsError {
    IdsError(format!("{shown} changed during the run: {problem}"))
}

/// Reads a file from its start through a shared descriptor without moving
/// the descriptor's offset, so that the two reads cannot disturb each other.
struct FromStart {
    file: Arc<File>,
    offset: u64,
}

impl Read for FromStart {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.file.read_at(buf, self.offset)?;
        self.offset += read as u64;
        Ok(read)
    }
}

/// The ids of a file, one per line: lines trimmed (so `\r\n` works), blank
/// lines and lines starting with `#` skipped, a leading UTF-8 byte order
/// mark ignored.
struct Lines<'a> {
    reader: BufReader<FromStart>,
    shown: &'a str,
    line: u64,
    buffer: Vec<u8>,
}

impl<'a> Lines<'a> {
    fn new(file: &Arc<File>, shown: &'a str) -> Self {
        let source = FromStart {
            file: file.clone(),
            offset: 0,
        };
        Lines {
            reader: BufReader::with_capacity(64 * 1024, source),
            shown,
            line: 0,
            buffer: Vec::new(),
        }
    }

    fn next_id(&mut self) -> Result<Option<Entry>, IdsError> {
        loop {
            self.buffer.clear();
            let limit = MAX_LINE_BYTES as u64 + 1;
            let read = (&mut self.reader)
                .take(limit)
                .read_until(b'\n', &mut self.buffer)
                .map_err(|e| IdsError(format!("cannot read {}: {}: {e}", self.shown, e.kind())))?;
            if read == 0 {
                return Ok(None);
            }
            self.line += 1;
            let number = self.line;
            if self.buffer.len() as u64 >= limit && self.buffer.last() != Some(&b'\n') {
                return Err(IdsError(format!(
                    "{} line {number} is longer than {MAX_LINE_BYTES} bytes",
                    self.shown
                )));
            }
            let mut bytes = self.buffer.as_slice();
            if number == 1 {
                bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            }
            let text = std::str::from_utf8(bytes).map_err(|_| {
                IdsError(format!("{} line {number} is not valid UTF-8", self.shown))
            })?;
            let text = text.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            let id = GroupId::new(text)
                .map_err(|e| IdsError(format!("{} line {number}: {e}", self.shown)))?;
            return Ok(Some(Entry {
                id,
                position: Position::GroupIdsFile(number),
            }));
        }
    }
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
        GroupIds::inline(Vec::new()).with_file(file.path(), "\"ids.txt\"".into())
    }

    fn listed(ids: &GroupIds) -> Vec<(String, Position)> {
        ids.to_vec()
            .unwrap()
            .into_iter()
            .map(|e| (e.id.as_str().to_owned(), e.position))
            .collect()
    }

    #[test]
    fn inline_entries_come_first_then_file_lines_with_their_numbers() {
        let file = file_with(b"\xEF\xBB\xBF# header\nb\r\n\n  c  \n#d\ne");
        let ids = GroupIds::inline(vec![GroupId::new("a").unwrap()])
            .with_file(file.path(), "f".into())
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
        let names: Vec<String> = listed(&ids).into_iter().map(|(id, _)| id).collect();
        assert_eq!(names, ["a", "b", "a"]);
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
        let error = GroupIds::inline(Vec::new())
            .with_file(Path::new("/dev/null"), "\"/dev/null\"".into())
            .unwrap_err();
        assert!(error.0.contains("not a regular file"), "{}", error.0);
    }

    #[test]
    fn a_file_replaced_after_the_check_is_still_read_as_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids");
        std::fs::write(&path, "a\nb\n").unwrap();
        let ids = GroupIds::inline(Vec::new())
            .with_file(&path, "f".into())
            .unwrap();
        let replacement = dir.path().join("ids.new");
        std::fs::write(&replacement, "x\ny\nz\n").unwrap();
        std::fs::rename(&replacement, &path).unwrap();
        let names: Vec<String> = listed(&ids).into_iter().map(|(id, _)| id).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn a_file_edited_in_place_after_the_check_is_an_error_at_the_change() {
        let file = file_with(b"a\nb\nc\n");
        let ids = GroupIds::inline(Vec::new())
            .with_file(file.path(), "f".into())
            .unwrap();
        std::fs::write(file.path(), b"a\n\x01\nc\n").unwrap();
        let error = ids.to_vec().unwrap_err();
        assert_eq!(
            error.0,
            "f changed during the run: f line 2: group id contains the control character U+0001 at byte 0"
        );
        std::fs::write(file.path(), b"a\nb\n").unwrap();
        let error = ids.to_vec().unwrap_err();
        assert_eq!(
            error.0,
            "f changed during the run: it now holds a different number of ids than the 3 checked"
        );
        std::fs::write(file.path(), b"a\nb\nc\nd\n").unwrap();
        let error = ids.to_vec().unwrap_err();
        assert!(error.0.contains("different number"), "{}", error.0);
    }

    #[tokio::test]
    async fn the_stream_yields_every_entry_then_ends() {
        let content: String = (0..10_000).map(|i| format!("id-{i}\n")).collect();
        let ids = from_file(content.as_bytes()).unwrap();
        let mut stream = ids.stream(4);
        let mut count = 0;
        while let Some(entry) = stream.recv().await {
            let entry = entry.unwrap();
            assert_eq!(entry.id.as_str(), format!("id-{count}"));
            count += 1;
        }
        assert_eq!(count, 10_000);
    }

    #[tokio::test]
    async fn a_change_seen_while_streaming_ends_the_stream_after_the_entries_before_it() {
        // More ids than one chunk, so that the error follows full chunks.
        let content: String = (0..1_000).map(|i| format!("id-{i}\n")).collect();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, content.as_bytes()).unwrap();
        let ids = GroupIds::inline(Vec::new())
            .with_file(file.path(), "ids.txt".into())
            .unwrap();
        // Three ids fewer than were checked.
        let shorter: String = (0..997).map(|i| format!("id-{i}\n")).collect();
        std::fs::write(file.path(), shorter).unwrap();
        let mut stream = ids.stream(300);
        let mut entries = 0;
        let mut errors = Vec::new();
        while let Some(next) = stream.recv().await {
            match next {
                Ok(entry) => {
                    assert!(errors.is_empty(), "an entry followed the error");
                    assert_eq!(entry.id.as_str(), format!("id-{entries}"));
                    entries += 1;
                }
                Err(error) => errors.push(error.0),
            }
        }
        assert_eq!(entries, 997);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("different number"), "{}", errors[0]);
    }
}
