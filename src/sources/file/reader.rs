//! Reading one file line by line from an offset, for tailing.
//!
//! Unlike a plain line reader, a line without its newline is kept back until the newline arrives, so
//! a line the writer has not finished is never emitted half. Every line carries the offset just past
//! its newline, which is what a checkpoint records.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::fingerprint::Fingerprint;

/// The size of one read from a file.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A line read from a file.
#[derive(Debug, PartialEq, Eq)]
pub enum FileLine {
    /// A line within the limit, without its newline.
    Complete {
        /// The line's bytes.
        bytes: Vec<u8>,
        /// The offset just past the line's newline.
        end_offset: u64,
    },
    /// A line longer than the limit: its first bytes and its full length.
    TooLong {
        /// The first `max_line_bytes` bytes.
        prefix: Vec<u8>,
        /// The line's length without the newline.
        length: usize,
        /// The offset just past the line's newline.
        end_offset: u64,
    },
}

/// The device and inode of a file, which stay the same across renames.
pub type FileIdentity = (u64, u64);

/// Returns the identity of the file at `path`.
pub fn identity_of(metadata: &std::fs::Metadata) -> FileIdentity {
    (metadata.dev(), metadata.ino())
}

/// An open file being read.
pub struct WatchedFile {
    /// The checkpoint slot of the file.
    pub slot: usize,
    /// The file's fingerprint.
    pub fingerprint: Fingerprint,
    /// The path the file was last seen at.
    pub path: PathBuf,
    /// The file's device and inode.
    pub identity: FileIdentity,
    /// Whether the last scan found the file under an included path.
    pub seen: bool,
    /// Since when reads have found no new data, or `None` while data arrives.
    pub idle_since: Option<Instant>,
    file: tokio::fs::File,
    read_offset: u64,
    pending: Vec<u8>,
    oversized: Option<(Vec<u8>, usize)>,
}

impl WatchedFile {
    /// Opens the file at `path` and positions it at `offset`.
    pub async fn open(path: &Path, slot: usize, fingerprint: Fingerprint, offset: u64) -> std::io::Result<WatchedFile> {
        let mut file = tokio::fs::File::open(path).await?;
        let identity = identity_of(&file.metadata().await?);
        file.seek(std::io::SeekFrom::Start(offset)).await?;
        Ok(WatchedFile {
            slot,
            fingerprint,
            path: path.to_path_buf(),
            identity,
            seen: true,
            idle_since: None,
            file,
            read_offset: offset,
            pending: Vec::new(),
            oversized: None,
        })
    }

    /// Returns the offset of the next byte to read.
    pub fn read_offset(&self) -> u64 {
        self.read_offset
    }

    /// Reads at most one chunk and appends the complete lines to `lines`. Returns the number of bytes
    /// read; 0 at the end of the file.
    pub async fn read_lines(&mut self, max_line_bytes: usize, lines: &mut Vec<FileLine>) -> std::io::Result<usize> {
        let mut chunk = vec![0u8; READ_CHUNK_BYTES];
        let count = self.file.read(&mut chunk).await?;
        if count == 0 {
            self.idle_since.get_or_insert_with(Instant::now);
            return Ok(0);
        }
        self.idle_since = None;

        let base = self.read_offset;
        self.read_offset += count as u64;
        let mut start = 0;
        while start < count {
            let newline = chunk[start..count].iter().position(|byte| *byte == b'\n').map(|index| start + index);
            let end = newline.unwrap_or(count);
            self.append(&chunk[start..end], max_line_bytes);
            if let Some(index) = newline {
                lines.push(self.finish_line(base + index as u64 + 1, max_line_bytes));
            }
            start = end + 1;
        }
        Ok(count)
    }

    /// Returns the unfinished last line, for a read-once run that treats the end of the file as the end
    /// of its last line.
    pub fn take_partial(&mut self, max_line_bytes: usize) -> Option<FileLine> {
        if self.pending.is_empty() && self.oversized.is_none() {
            return None;
        }
        Some(self.finish_line(self.read_offset, max_line_bytes))
    }

    /// Returns whether the file is now shorter than the offset read so far, as after a copy-truncate
    /// rotation.
    pub async fn is_truncated(&self) -> std::io::Result<bool> {
        Ok(self.file.metadata().await?.len() < self.read_offset)
    }

    fn append(&mut self, bytes: &[u8], max_line_bytes: usize) {
        if let Some((_, length)) = &mut self.oversized {
            *length += bytes.len();
            return;
        }
        self.pending.extend_from_slice(bytes);
        if self.pending.len() > max_line_bytes {
            // Keep only the prefix from here on: the line is dead-lettered, never buffered in full.
            let length = self.pending.len();
            self.pending.truncate(max_line_bytes);
            self.oversized = Some((std::mem::take(&mut self.pending), length));
        }
    }

    fn finish_line(&mut self, end_offset: u64, max_line_bytes: usize) -> FileLine {
        if let Some((prefix, length)) = self.oversized.take() {
            return FileLine::TooLong { prefix, length, end_offset };
        }
        let bytes = std::mem::take(&mut self.pending);
        if bytes.len() > max_line_bytes {
            let length = bytes.len();
            return FileLine::TooLong { prefix: bytes[..max_line_bytes].to_vec(), length, end_offset };
        }
        FileLine::Complete { bytes, end_offset }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    async fn watched(path: &Path, offset: u64) -> WatchedFile {
        WatchedFile::open(path, 0, Fingerprint(0), offset).await.unwrap()
    }

    #[tokio::test]
    async fn partial_line_waits_for_newline() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("a.ndjson");
        std::fs::write(&path, b"one\ntw").unwrap();
        let mut file = watched(&path, 0).await;
        let mut lines = Vec::new();

        file.read_lines(100, &mut lines).await.unwrap();
        assert_eq!(lines, vec![FileLine::Complete { bytes: b"one".to_vec(), end_offset: 4 }]);

        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"o\n").unwrap();
        lines.clear();
        file.read_lines(100, &mut lines).await.unwrap();
        assert_eq!(lines, vec![FileLine::Complete { bytes: b"two".to_vec(), end_offset: 8 }]);
    }

    #[tokio::test]
    async fn long_line_kept_as_prefix() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("a.ndjson");
        std::fs::write(&path, b"abcdefghij\nok\n").unwrap();
        let mut file = watched(&path, 0).await;
        let mut lines = Vec::new();

        file.read_lines(4, &mut lines).await.unwrap();

        assert_eq!(
            lines,
            vec![
                FileLine::TooLong { prefix: b"abcd".to_vec(), length: 10, end_offset: 11 },
                FileLine::Complete { bytes: b"ok".to_vec(), end_offset: 14 },
            ]
        );
    }

    #[tokio::test]
    async fn reading_starts_at_offset() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("a.ndjson");
        std::fs::write(&path, b"one\ntwo\n").unwrap();
        let mut file = watched(&path, 4).await;
        let mut lines = Vec::new();

        file.read_lines(100, &mut lines).await.unwrap();

        assert_eq!(lines, vec![FileLine::Complete { bytes: b"two".to_vec(), end_offset: 8 }]);
    }

    #[tokio::test]
    async fn partial_taken_at_end_for_read_once() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("a.ndjson");
        std::fs::write(&path, b"one\nlast").unwrap();
        let mut file = watched(&path, 0).await;
        let mut lines = Vec::new();
        while file.read_lines(100, &mut lines).await.unwrap() > 0 {}

        assert_eq!(file.take_partial(100), Some(FileLine::Complete { bytes: b"last".to_vec(), end_offset: 8 }));
        assert_eq!(file.take_partial(100), None);
    }

    #[tokio::test]
    async fn truncation_detected() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("a.ndjson");
        std::fs::write(&path, b"one\ntwo\n").unwrap();
        let mut file = watched(&path, 0).await;
        let mut lines = Vec::new();
        file.read_lines(100, &mut lines).await.unwrap();
        assert!(!file.is_truncated().await.unwrap());

        std::fs::OpenOptions::new().write(true).truncate(true).open(&path).unwrap();
        assert!(file.is_truncated().await.unwrap());
    }
}
