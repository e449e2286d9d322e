//! Checkpoints of the `file` source: how far each file has been handled, saved under `data_dir`.
//!
//! Every line read gets an entry in its file's queue. The events decoded from the line report their
//! outcomes through [`AckReceiver`]; a line is done when all of them are delivered, dead-lettered or
//! skipped. The checkpoint of a file is the end offset of the last line of the longest done prefix of
//! its queue, so it never passes a line whose outcome is still open. A line with an undelivered event
//! (dropped by a full buffer, or aborted at the shutdown timeout) is never done in this run: the
//! checkpoint stays before it, and the next run reads it again.
//!
//! The checkpoint file is `data_dir/checkpoints/<source id>.json`, written atomically: periodically,
//! and once more after the pipeline has drained.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::fingerprint::Fingerprint;
use crate::ack::{AckReceiver, EventStatus};
use crate::state_files::{component_file_name, write_atomically};
use crate::topology::RunStats;

/// Bits of an acknowledgement cookie that hold the line's sequence number; the bits above hold the
/// file's slot.
const SEQUENCE_BITS: u32 = 40;
const SEQUENCE_MASK: u64 = (1 << SEQUENCE_BITS) - 1;

/// The version of the checkpoint file format.
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct CheckpointFile {
    version: u32,
    files: Vec<SavedFile>,
}

/// One file's saved progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedFile {
    fingerprint: Fingerprint,
    /// Bytes from the start of the file whose events all reached a final outcome.
    offset: u64,
    /// The path the file had when last seen, for people reading the checkpoint.
    path: PathBuf,
}

#[derive(Debug)]
struct Line {
    end_offset: u64,
    /// Events of the line without an outcome yet.
    remaining: u32,
    /// Whether an event of the line ended undelivered.
    failed: bool,
}

#[derive(Debug)]
struct FileProgress {
    fingerprint: Fingerprint,
    path: PathBuf,
    committed: u64,
    /// The sequence number of the front of `lines`.
    first_sequence: u64,
    lines: VecDeque<Line>,
}

impl FileProgress {
    /// Pops the done lines at the front of the queue, advancing the committed offset past them.
    fn advance(&mut self) -> bool {
        let mut advanced = false;
        while let Some(line) = self.lines.front() {
            if line.remaining > 0 || line.failed {
                break;
            }
            self.committed = line.end_offset;
            self.lines.pop_front();
            self.first_sequence += 1;
            advanced = true;
        }
        advanced
    }
}

#[derive(Debug, Default)]
struct State {
    /// Progress by slot; slots are never reused within a run, so cookies stay unambiguous.
    files: Vec<FileProgress>,
    /// Offsets loaded from the checkpoint file for files not registered in this run yet.
    saved: HashMap<Fingerprint, SavedFile>,
    dirty: bool,
}

/// The acknowledgement bookkeeping and checkpoint file of one `file` source.
pub struct Checkpoints {
    path: Option<PathBuf>,
    state: Mutex<State>,
    stats: Arc<RunStats>,
}

impl Checkpoints {
    /// Loads the checkpoint file at `path`, when given. A missing file starts empty; a corrupt one is
    /// reported as an error so that the source does not silently read everything again.
    pub fn load(path: Option<PathBuf>, stats: Arc<RunStats>) -> Result<Checkpoints, String> {
        let mut state = State::default();
        if let Some(path) = &path {
            match std::fs::read(path) {
                Ok(bytes) => {
                    let file: CheckpointFile = serde_json::from_slice(&bytes).map_err(|error| {
                        format!(
                            "the checkpoint file `{}` is corrupt: {error}; move it away to read the files again from `read_from`",
                            path.display()
                        )
                    })?;
                    if file.version != FORMAT_VERSION {
                        return Err(format!(
                            "the checkpoint file `{}` has version {}, but this build reads version {FORMAT_VERSION}",
                            path.display(),
                            file.version
                        ));
                    }
                    state.saved = file.files.into_iter().map(|saved| (saved.fingerprint, saved)).collect();
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(format!("cannot read the checkpoint file `{}`: {error}", path.display())),
            }
        }
        Ok(Checkpoints { path, state: Mutex::new(state), stats })
    }

    /// Returns the checkpoint file path under `data_dir` of the source `source_id`.
    pub fn file_path(data_dir: &Path, source_id: &str) -> PathBuf {
        data_dir.join("checkpoints").join(format!("{}.json", component_file_name(source_id)))
    }

    /// Returns the saved offset of a file, if the checkpoint file has one.
    pub fn saved_offset(&self, fingerprint: Fingerprint) -> Option<u64> {
        self.lock().saved.get(&fingerprint).map(|saved| saved.offset)
    }

    /// Starts tracking a file read from `offset`; returns its slot.
    pub fn register(&self, fingerprint: Fingerprint, path: &Path, offset: u64) -> usize {
        let mut state = self.lock();
        state.saved.remove(&fingerprint);
        state.files.push(FileProgress {
            fingerprint,
            path: path.to_path_buf(),
            committed: offset,
            first_sequence: 0,
            lines: VecDeque::new(),
        });
        state.dirty = true;
        state.files.len() - 1
    }

    /// Records the path a tracked file has now.
    pub fn rename(&self, slot: usize, path: &Path) {
        if let Some(file) = self.lock().files.get_mut(slot) {
            file.path = path.to_path_buf();
        }
    }

    /// Records a line that ends at `end_offset` and decoded to `events` events; returns the cookie
    /// those events carry. A line without events (a blank line) is done at once.
    pub fn add_line(&self, slot: usize, end_offset: u64, events: u32) -> u64 {
        let mut state = self.lock();
        let file = &mut state.files[slot];
        let sequence = file.first_sequence + file.lines.len() as u64;
        file.lines.push_back(Line { end_offset, remaining: events, failed: false });
        if events == 0 && file.advance() {
            state.dirty = true;
        }
        ((slot as u64) << SEQUENCE_BITS) | (sequence & SEQUENCE_MASK)
    }

    /// Returns the committed offset of the file in `slot`.
    pub fn committed(&self, slot: usize) -> u64 {
        self.lock().files.get(slot).map_or(0, |file| file.committed)
    }

    /// Writes the checkpoint file if anything changed since the last write.
    pub fn write(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        let text = {
            let mut state = self.lock();
            if !state.dirty {
                return Ok(());
            }
            state.dirty = false;
            let mut files: Vec<SavedFile> = state.saved.values().cloned().collect();
            files.extend(state.files.iter().map(|file| SavedFile {
                fingerprint: file.fingerprint,
                offset: file.committed,
                path: file.path.clone(),
            }));
            // A file re-registered after a truncation keeps only its newest slot.
            files.reverse();
            let mut seen = std::collections::HashSet::new();
            files.retain(|file| seen.insert(file.fingerprint));
            files.sort_by(|left, right| left.path.cmp(&right.path));
            serde_json::to_vec_pretty(&CheckpointFile { version: FORMAT_VERSION, files })
                .map_err(std::io::Error::other)?
        };
        write_atomically(path, &text)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain data updated in single steps, so a panic elsewhere cannot corrupt it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl AckReceiver for Checkpoints {
    fn acknowledge(&self, cookie: u64, status: EventStatus) {
        self.stats.acknowledge(cookie, status);

        let slot = (cookie >> SEQUENCE_BITS) as usize;
        let sequence = cookie & SEQUENCE_MASK;
        let mut state = self.lock();
        let Some(file) = state.files.get_mut(slot) else { return };
        let Some(index) = sequence.checked_sub(file.first_sequence) else { return };
        let Some(line) = file.lines.get_mut(index as usize) else { return };

        line.remaining = line.remaining.saturating_sub(1);
        if status == EventStatus::Undelivered {
            line.failed = true;
        }
        if file.advance() {
            state.dirty = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoints(path: Option<PathBuf>) -> Checkpoints {
        Checkpoints::load(path, Arc::new(RunStats::default())).unwrap()
    }

    #[test]
    fn offset_advances_over_done_prefix_only() {
        let checkpoints = checkpoints(None);
        let slot = checkpoints.register(Fingerprint(1), Path::new("a"), 0);
        let first = checkpoints.add_line(slot, 10, 1);
        let second = checkpoints.add_line(slot, 25, 2);
        let third = checkpoints.add_line(slot, 30, 1);

        checkpoints.acknowledge(third, EventStatus::Delivered);
        assert_eq!(checkpoints.committed(slot), 0, "a later line cannot pass an open one");
        checkpoints.acknowledge(first, EventStatus::Skipped);
        assert_eq!(checkpoints.committed(slot), 10);
        checkpoints.acknowledge(second, EventStatus::DeadLettered);
        assert_eq!(checkpoints.committed(slot), 10, "one of the line's two events is still open");
        checkpoints.acknowledge(second, EventStatus::Delivered);
        assert_eq!(checkpoints.committed(slot), 30);
    }

    #[test]
    fn undelivered_line_holds_checkpoint() {
        let checkpoints = checkpoints(None);
        let slot = checkpoints.register(Fingerprint(1), Path::new("a"), 5);
        let first = checkpoints.add_line(slot, 10, 1);
        let second = checkpoints.add_line(slot, 20, 1);

        checkpoints.acknowledge(first, EventStatus::Undelivered);
        checkpoints.acknowledge(second, EventStatus::Delivered);

        assert_eq!(checkpoints.committed(slot), 5);
    }

    #[test]
    fn blank_line_done_at_once() {
        let checkpoints = checkpoints(None);
        let slot = checkpoints.register(Fingerprint(1), Path::new("a"), 0);
        checkpoints.add_line(slot, 1, 0);
        assert_eq!(checkpoints.committed(slot), 1);
    }

    #[test]
    fn checkpoint_file_round_trip() {
        let directory = tempfile::tempdir().unwrap();
        let path = Checkpoints::file_path(directory.path(), "logs");
        let first = checkpoints(Some(path.clone()));
        let slot = first.register(Fingerprint(77), Path::new("/var/log/a.ndjson"), 0);
        let cookie = first.add_line(slot, 42, 1);
        first.acknowledge(cookie, EventStatus::Delivered);
        first.write().unwrap();

        let second = checkpoints(Some(path.clone()));
        assert_eq!(second.saved_offset(Fingerprint(77)), Some(42));
        assert_eq!(second.saved_offset(Fingerprint(78)), None);
        assert_eq!(path, directory.path().join("checkpoints/logs.json"));
    }

    #[test]
    fn corrupt_checkpoint_file_rejected() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("checkpoints.json");
        std::fs::write(&path, b"{ trunc").unwrap();

        let error = Checkpoints::load(Some(path), Arc::new(RunStats::default())).err().unwrap();
        assert!(error.contains("is corrupt"), "{error}");
    }

    #[test]
    fn acknowledgements_reach_run_stats() {
        let stats = Arc::new(RunStats::default());
        let checkpoints = Checkpoints::load(None, stats.clone()).unwrap();
        let slot = checkpoints.register(Fingerprint(1), Path::new("a"), 0);
        let cookie = checkpoints.add_line(slot, 3, 1);
        checkpoints.acknowledge(cookie, EventStatus::DeadLettered);
        assert_eq!(stats.summary().dead_lettered, 1);
    }
}
