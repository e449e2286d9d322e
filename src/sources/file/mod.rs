//! The `file` source: tails newline-delimited JSON files matching glob patterns.
//!
//! - [`fingerprint`]: files are identified by their first line, not their path.
//! - [`reader`]: one open file, read from an offset, with partial lines held back.
//! - [`checkpoint`]: which offsets are final, and the checkpoint file under `data_dir`.
//!
//! Rotation is handled without loss or duplication: a renamed file keeps its fingerprint and its open
//! handle is read to its end, while the new file at the old path is read from its start. A truncated
//! file (copy-truncate rotation) is read again from its start. Its copy, when an `include` pattern
//! matches it, is recognised by fingerprint and read from where the original stopped.

pub mod checkpoint;
pub mod fingerprint;
pub mod reader;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use self::checkpoint::Checkpoints;
use self::fingerprint::Fingerprint;
use self::reader::{identity_of, FileLine, WatchedFile};
use super::{decode, Emitter, SourceContext, SourceError, DEFAULT_MAX_LINE_BYTES};
use crate::event::Payload;

/// The starting position of a file that has no checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// From its first line.
    #[default]
    Beginning,
    /// From its end, for files that exist when the source starts. Files created later are always read
    /// from their beginning.
    End,
}

/// Whether the source follows files or reads them once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileMode {
    /// Follow the files, picking up new files and rotations, until shutdown.
    #[default]
    Tail,
    /// Read the files that exist at startup to their end, then stop, for backfills.
    Once,
}

/// Settings of the `file` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Glob patterns of the files to read, such as `/var/log/app/*.ndjson`. Relative patterns are
    /// resolved against the configuration file's directory.
    pub include: Vec<String>,
    /// Glob patterns of files to leave out, matched against the full path.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The starting position of files without a checkpoint: `beginning` (default) or `end`.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// `tail` (default) follows the files until shutdown; `once` reads them to their end and stops.
    /// `optimizely-relay run --once` sets `once` for every file source.
    #[serde(default)]
    pub mode: FileMode,
    /// Maximum length of one line in bytes. Longer lines are dead-lettered with the reason
    /// `line_too_long`, keeping their first `max_line_bytes` bytes. Default 1048576 (1 MiB).
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// Seconds between scans for new and rotated files. Default 1.
    #[serde(default = "default_glob_interval_secs")]
    pub glob_interval_secs: f64,
    /// Seconds to wait before reading again when no file had new data. Default 0.25.
    #[serde(default = "default_poll_interval_secs")]
    pub poll_interval_secs: f64,
    /// Seconds a file that no longer matches `include` (renamed away or deleted) stays open after its
    /// last new data, in case its writer appends a little more. Default 10.
    #[serde(default = "default_rotate_wait_secs")]
    pub rotate_wait_secs: f64,
    /// Seconds between checkpoint writes under `data_dir`. Default 1.
    #[serde(default = "default_checkpoint_interval_secs")]
    pub checkpoint_interval_secs: f64,
}

fn default_max_line_bytes() -> usize {
    DEFAULT_MAX_LINE_BYTES
}

fn default_glob_interval_secs() -> f64 {
    1.0
}

fn default_poll_interval_secs() -> f64 {
    0.25
}

fn default_rotate_wait_secs() -> f64 {
    10.0
}

fn default_checkpoint_interval_secs() -> f64 {
    1.0
}

impl FileSourceConfig {
    /// Returns the checks that need more than one option.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.include.is_empty() {
            errors.push("`include` is empty; list at least one glob pattern of files to read".to_owned());
        }
        for pattern in self.include.iter().chain(&self.exclude) {
            if let Err(error) = glob::Pattern::new(pattern) {
                errors.push(format!("invalid glob pattern `{pattern}`: {error}"));
            }
        }
        if self.max_line_bytes == 0 {
            errors.push("invalid value for `max_line_bytes`: 0; give a number of bytes above 0".to_owned());
        }
        for (name, value) in [
            ("glob_interval_secs", self.glob_interval_secs),
            ("poll_interval_secs", self.poll_interval_secs),
            ("rotate_wait_secs", self.rotate_wait_secs),
            ("checkpoint_interval_secs", self.checkpoint_interval_secs),
        ] {
            if Duration::try_from_secs_f64(value).is_err() || value <= 0.0 {
                errors.push(format!("invalid value for `{name}`: {value}; give a positive number of seconds"));
            }
        }
        errors
    }

    /// Resolves relative patterns against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        for pattern in self.include.iter_mut().chain(self.exclude.iter_mut()) {
            let resolved = crate::config::resolve_path(base, Path::new(pattern.as_str()));
            *pattern = resolved.to_string_lossy().into_owned();
        }
    }

    /// Returns the files that match `include` and no `exclude` pattern, sorted and without duplicates.
    pub fn matching_files(&self) -> Vec<PathBuf> {
        let excluded: Vec<glob::Pattern> =
            self.exclude.iter().filter_map(|pattern| glob::Pattern::new(pattern).ok()).collect();
        let mut files = Vec::new();
        for pattern in &self.include {
            let Ok(paths) = glob::glob(pattern) else { continue };
            for path in paths.flatten() {
                let is_excluded = excluded.iter().any(|exclude| exclude.matches_path(&path));
                if path.is_file() && !is_excluded {
                    files.push(path);
                }
            }
        }
        files.sort();
        files.dedup();
        files
    }

    /// Reads the files until shutdown, or to their end in `once` mode.
    pub async fn run(&self, context: SourceContext) -> Result<(), SourceError> {
        let once = context.once || self.mode == FileMode::Once;
        let checkpoint_path = context.data_dir.as_deref().map(|data_dir| Checkpoints::file_path(data_dir, &context.id));
        if checkpoint_path.is_none() && !once {
            tracing::warn!(
                component_id = %context.id,
                "no data_dir is set, so the file source keeps no checkpoints; after a restart it reads from `read_from` again"
            );
        }
        let checkpoints = Checkpoints::load(checkpoint_path, context.stats.clone())
            .map(Arc::new)
            .map_err(|message| SourceError::Checkpoint { message })?;

        let writer = CheckpointWriter { checkpoints: checkpoints.clone(), id: context.id.clone() };
        let interval = Duration::from_secs_f64(self.checkpoint_interval_secs);
        context.background.spawn(writer.run(interval, context.drained.clone()));

        let mut tailer = Tailer {
            config: self,
            id: context.id.clone(),
            emitter: Emitter::new(context.output, checkpoints.clone(), context.stats.clone(), "file"),
            stats: context.stats,
            checkpoints,
            watched: Vec::new(),
            closed: HashMap::new(),
            once,
        };
        tailer.run(&context.shutdown).await
    }
}

/// Writes the checkpoint file periodically, and once more after the pipeline has drained.
struct CheckpointWriter {
    checkpoints: Arc<Checkpoints>,
    id: String,
}

impl CheckpointWriter {
    async fn run(self, interval: Duration, drained: tokio_util::sync::CancellationToken) {
        loop {
            let last = tokio::select! {
                _ = tokio::time::sleep(interval) => false,
                _ = drained.cancelled() => true,
            };
            if let Err(error) = self.checkpoints.write() {
                tracing::error!(component_id = %self.id, %error, "writing the checkpoint file failed");
            }
            if last {
                return;
            }
        }
    }
}

/// The running state of a `file` source.
struct Tailer<'a> {
    config: &'a FileSourceConfig,
    id: String,
    emitter: Emitter,
    checkpoints: Arc<Checkpoints>,
    watched: Vec<WatchedFile>,
    /// Read offsets of files closed in this run, by fingerprint, so that a copy of one (copy-truncate
    /// rotation) continues where the original stopped.
    closed: HashMap<Fingerprint, u64>,
    /// Whether the files are read to their end once instead of followed.
    once: bool,
    stats: Arc<crate::topology::RunStats>,
}

impl Tailer<'_> {
    async fn run(&mut self, shutdown: &tokio_util::sync::CancellationToken) -> Result<(), SourceError> {
        let once = self.once;
        let glob_interval = Duration::from_secs_f64(self.config.glob_interval_secs);
        let poll_interval = Duration::from_secs_f64(self.config.poll_interval_secs);
        self.scan(true).await;
        let mut last_scan = Instant::now();

        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if !once && last_scan.elapsed() >= glob_interval {
                self.scan(false).await;
                last_scan = Instant::now();
            }

            let bytes = self.read_all().await?;
            if bytes > 0 {
                continue;
            }
            if once {
                self.emit_partial_lines().await?;
                break;
            }
            self.close_finished_files().await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(poll_interval) => {}
            }
        }

        self.emitter.flush().await?;
        Ok(())
    }

    /// Reads one chunk from every open file; returns the number of bytes read.
    async fn read_all(&mut self) -> Result<usize, SourceError> {
        let mut total = 0;
        let mut lines = Vec::new();
        for index in 0..self.watched.len() {
            let file = &mut self.watched[index];
            let count = match file.read_lines(self.config.max_line_bytes, &mut lines).await {
                Ok(count) => count,
                Err(error) => {
                    tracing::error!(component_id = %self.id, path = %file.path.display(), %error, "reading file failed");
                    0
                }
            };
            let slot = file.slot;
            total += count;
            self.emitter.add_bytes(count as u64);
            for line in lines.drain(..) {
                self.emit_line(slot, line);
                if self.emitter.is_full() {
                    self.emitter.flush().await?;
                }
            }
        }
        self.emitter.flush().await?;
        Ok(total)
    }

    fn emit_line(&mut self, slot: usize, line: FileLine) {
        let mut payloads = Vec::new();
        let end_offset = match line {
            FileLine::Complete { bytes, end_offset } => {
                decode::decode_owned_line(bytes.into(), &mut payloads);
                end_offset
            }
            FileLine::TooLong { prefix, length, end_offset } => {
                payloads.push(decode::too_long(&prefix, length, self.config.max_line_bytes));
                end_offset
            }
        };
        let cookie = self.checkpoints.add_line(slot, end_offset, payloads.len() as u32);
        for payload in payloads {
            self.emitter.push_with_cookie(payload, cookie);
        }
    }

    async fn emit_partial_lines(&mut self) -> Result<(), SourceError> {
        for index in 0..self.watched.len() {
            let slot = self.watched[index].slot;
            if let Some(line) = self.watched[index].take_partial(self.config.max_line_bytes) {
                self.emit_line(slot, line);
            }
        }
        self.emitter.flush().await?;
        Ok(())
    }

    /// Finds new files, follows renames, and starts reading files not read yet.
    async fn scan(&mut self, startup: bool) {
        for file in &mut self.watched {
            file.seen = false;
        }

        for path in self.config.matching_files() {
            let Ok(metadata) = std::fs::metadata(&path) else { continue };
            let identity = identity_of(&metadata);
            if let Some(file) = self.watched.iter_mut().find(|file| file.identity == identity) {
                if file.path != path {
                    tracing::info!(component_id = %self.id, from = %file.path.display(), to = %path.display(), "file renamed");
                    self.checkpoints.rename(file.slot, &path);
                    file.path = path;
                }
                file.seen = true;
                continue;
            }

            let fingerprint = match Fingerprint::of_file(&path, self.once) {
                Ok(Some(fingerprint)) => fingerprint,
                // No complete first line yet: the next scan looks again.
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(component_id = %self.id, path = %path.display(), %error, "cannot read file");
                    continue;
                }
            };
            if let Some(file) = self.watched.iter_mut().find(|file| file.fingerprint == fingerprint) {
                // A copy of a file being read, such as the copy of a copy-truncate rotation made before
                // the truncation was noticed: the original's handle is read instead.
                file.seen = true;
                continue;
            }
            self.start(path, fingerprint, metadata.len(), startup).await;
        }
    }

    async fn start(&mut self, path: PathBuf, fingerprint: Fingerprint, length: u64, startup: bool) {
        let (offset, origin) = if let Some(offset) = self.closed.remove(&fingerprint) {
            (offset, "the offset its original reached before rotation")
        } else if let Some(offset) = self.checkpoints.saved_offset(fingerprint) {
            (offset, "checkpoint")
        } else if startup && self.config.read_from == ReadFrom::End {
            (line_boundary_at_or_before(&path, length), "end")
        } else {
            (0, "beginning")
        };

        let slot = self.checkpoints.register(fingerprint, &path, offset);
        if startup && self.once {
            // The size of a read-once run is known up front, for the progress line.
            self.stats.add_bytes_total(length.saturating_sub(offset));
        }
        match WatchedFile::open(&path, slot, fingerprint, offset).await {
            Ok(file) => {
                tracing::info!(component_id = %self.id, path = %path.display(), offset, from = origin, "reading file");
                self.watched.push(file);
            }
            Err(error) => {
                tracing::warn!(component_id = %self.id, path = %path.display(), %error, "cannot open file");
            }
        }
    }

    /// Closes files that were truncated, and files no longer matched by `include` once they have been
    /// idle for `rotate_wait_secs`.
    async fn close_finished_files(&mut self) {
        let rotate_wait = Duration::from_secs_f64(self.config.rotate_wait_secs);
        let mut index = 0;
        while index < self.watched.len() {
            let file = &self.watched[index];
            let truncated = file.is_truncated().await.unwrap_or(false);
            let gone = !file.seen && file.idle_since.is_some_and(|since| since.elapsed() >= rotate_wait);
            if !(truncated || gone) {
                index += 1;
                continue;
            }

            let file = self.watched.swap_remove(index);
            if truncated {
                tracing::info!(component_id = %self.id, path = %file.path.display(), "file truncated; reading it again from its start");
            } else {
                tracing::info!(component_id = %self.id, path = %file.path.display(), "stopped reading a file that no longer matches `include`");
            }
            self.closed.insert(file.fingerprint, file.read_offset());
        }
    }
}

/// Returns the offset just past the last newline at or before `length`, so that reading from the
/// end never starts in the middle of a line.
fn line_boundary_at_or_before(path: &Path, length: u64) -> u64 {
    use std::io::{Read, Seek, SeekFrom};

    let Ok(mut file) = std::fs::File::open(path) else { return length };
    let window = length.min(64 * 1024);
    let mut tail = vec![0u8; window as usize];
    if file.seek(SeekFrom::Start(length - window)).is_err() || file.read_exact(&mut tail).is_err() {
        return length;
    }
    match tail.iter().rposition(|byte| *byte == b'\n') {
        Some(index) => length - window + index as u64 + 1,
        None => length - window,
    }
}

impl super::Emitter {
    /// Adds an event whose acknowledgement carries `cookie`.
    pub(crate) fn push_with_cookie(&mut self, payload: Payload, cookie: u64) {
        self.push_event(payload, cookie);
    }
}
