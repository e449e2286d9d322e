//! File identity by content: a checksum of the first line.
//!
//! A file keeps its fingerprint when it is renamed (rotation by rename) or copied (the copy of a
//! copy-truncate rotation), and a new file at the same path gets a new one. Two files whose first lines
//! are byte-for-byte equal are taken for the same file; Segment messages carry a unique `messageId`, so
//! in practice their first lines differ.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How many bytes of the first line the fingerprint covers at most. A longer first line is
/// fingerprinted on its first `MAX_FINGERPRINT_BYTES` bytes.
pub const MAX_FINGERPRINT_BYTES: usize = 4096;

/// The identity of a file: the CRC-32 of its first line and that line's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub u64);

impl Fingerprint {
    /// Computes the fingerprint from the first bytes of a file. Returns `None` while the file has no
    /// complete first line and is shorter than [`MAX_FINGERPRINT_BYTES`], because it cannot be identified yet.
    pub fn of_prefix(prefix: &[u8]) -> Option<Fingerprint> {
        Fingerprint::compute(prefix, false)
    }

    /// Computes the fingerprint like [`Fingerprint::of_prefix`], but takes an unfinished first line as
    /// it is, for files read once that will not grow.
    pub fn of_final_prefix(prefix: &[u8]) -> Option<Fingerprint> {
        Fingerprint::compute(prefix, true)
    }

    fn compute(prefix: &[u8], final_content: bool) -> Option<Fingerprint> {
        let line = match prefix.iter().position(|byte| *byte == b'\n') {
            Some(end) => &prefix[..=end],
            None if prefix.len() >= MAX_FINGERPRINT_BYTES => &prefix[..MAX_FINGERPRINT_BYTES],
            None if final_content && !prefix.is_empty() => prefix,
            None => return None,
        };
        let checksum = crc32fast::hash(line);
        Some(Fingerprint(((line.len() as u64) << 32) | u64::from(checksum)))
    }

    /// Reads the start of the file at `path` and computes its fingerprint; `final_content` as for
    /// [`Fingerprint::of_final_prefix`].
    pub fn of_file(path: &Path, final_content: bool) -> std::io::Result<Option<Fingerprint>> {
        let file = std::fs::File::open(path)?;
        let mut prefix = Vec::with_capacity(1024);
        file.take(MAX_FINGERPRINT_BYTES as u64).read_to_end(&mut prefix)?;
        Ok(Fingerprint::compute(&prefix, final_content))
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{:016x}", self.0))
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fingerprint, D::Error> {
        let text = String::deserialize(deserializer)?;
        u64::from_str_radix(&text, 16).map(Fingerprint).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_decides() {
        let first = Fingerprint::of_prefix(b"{\"a\":1}\n{\"b\":2}\n").unwrap();
        let same_first_line = Fingerprint::of_prefix(b"{\"a\":1}\nother\n").unwrap();
        let other = Fingerprint::of_prefix(b"{\"a\":2}\n").unwrap();
        assert_eq!(first, same_first_line);
        assert_ne!(first, other);
    }

    #[test]
    fn partial_first_line_not_ready() {
        assert_eq!(Fingerprint::of_prefix(b"{\"a\":"), None);
        assert_eq!(Fingerprint::of_prefix(b""), None);
    }

    #[test]
    fn final_content_fingerprinted_whole() {
        assert!(Fingerprint::of_final_prefix(b"{\"a\":1}").is_some());
        assert_eq!(Fingerprint::of_final_prefix(b""), None);
    }

    #[test]
    fn long_first_line_uses_prefix() {
        let long = vec![b'x'; MAX_FINGERPRINT_BYTES + 10];
        assert!(Fingerprint::of_prefix(&long).is_some());
    }

    #[test]
    fn serializes_as_hex() {
        let text = serde_json::to_string(&Fingerprint(0x1_0000_00ff)).unwrap();
        assert_eq!(text, "\"00000001000000ff\"");
        assert_eq!(serde_json::from_str::<Fingerprint>(&text).unwrap(), Fingerprint(0x1_0000_00ff));
    }
}
