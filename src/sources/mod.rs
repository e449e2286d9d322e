//! Sources: components that read Segment messages and emit them as events.

pub mod decode;
pub mod file;
pub mod http_server;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod lines;
pub mod stdin;

use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::ack::{AckReceiver, EventFinalizer};
use crate::config::{parse_typed, unknown_type, DataKind, OutputSpec};
use crate::event::{Event, Payload};
use crate::topology::{Output, OutputClosed, RunStats};

pub use file::FileSourceConfig;
pub use http_server::HttpServerSourceConfig;
#[cfg(feature = "kafka")]
pub use kafka::KafkaSourceConfig;
pub use stdin::StdinSourceConfig;

/// The default maximum line length: 1 MiB, far above any Segment message (Segment's own API rejects
/// messages over 32 KB).
pub const DEFAULT_MAX_LINE_BYTES: usize = 1024 * 1024;

/// How many events a source sends to its output in one chunk at most.
pub const CHUNK_EVENTS: usize = 256;

/// The settings of one source, by type.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// `type = "stdin"`.
    Stdin(StdinSourceConfig),
    /// `type = "file"`.
    File(FileSourceConfig),
    /// `type = "http_server"`.
    HttpServer(HttpServerSourceConfig),
    /// `type = "kafka"`, in builds with the `kafka` feature (on by default).
    #[cfg(feature = "kafka")]
    Kafka(KafkaSourceConfig),
}

impl SourceConfig {
    /// The known source types.
    pub const TYPES: &'static [&'static str] = &["stdin", "file", "http_server", "kafka"];

    /// Parses a source's table (without `type`) by its type.
    pub fn parse(component_type: &str, table: toml::Table) -> Result<SourceConfig, Vec<String>> {
        match component_type {
            "stdin" => parse_typed(table, SourceConfig::Stdin),
            "file" => parse_typed(table, SourceConfig::File),
            "http_server" => parse_typed(table, SourceConfig::HttpServer),
            #[cfg(feature = "kafka")]
            "kafka" => parse_typed(table, SourceConfig::Kafka),
            #[cfg(not(feature = "kafka"))]
            "kafka" => Err(vec![
                "this build has no kafka source; build optimizely-relay with its `kafka` feature, which is on by default"
                    .to_owned(),
            ]),
            other => Err(unknown_type(other, SourceConfig::TYPES)),
        }
    }

    /// Returns the source's type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceConfig::Stdin(_) => "stdin",
            SourceConfig::File(_) => "file",
            SourceConfig::HttpServer(_) => "http_server",
            #[cfg(feature = "kafka")]
            SourceConfig::Kafka(_) => "kafka",
        }
    }

    /// Returns the checks that need more than one option.
    pub fn validate(&self) -> Vec<String> {
        match self {
            SourceConfig::Stdin(config) => config.validate(),
            SourceConfig::File(config) => config.validate(),
            SourceConfig::HttpServer(config) => config.validate(),
            #[cfg(feature = "kafka")]
            SourceConfig::Kafka(config) => config.validate(),
        }
    }

    /// Resolves relative paths against the configuration file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        if let SourceConfig::File(config) = self {
            config.resolve_paths(base);
        }
    }

    /// Returns the source's outputs: one default output of Segment messages.
    pub fn outputs(&self) -> Vec<OutputSpec> {
        vec![OutputSpec { name: None, kind: DataKind::Messages, required: true }]
    }
}

/// The handles a running source gets from the topology.
pub struct SourceContext {
    /// The component id.
    pub id: String,
    /// The default output.
    pub output: Output,
    /// Cancelled when the source must stop reading (SIGINT, SIGTERM).
    pub shutdown: CancellationToken,
    /// Counts of received events and their outcomes.
    pub stats: Arc<RunStats>,
    /// The directory for state that survives restarts, when configured.
    pub data_dir: Option<std::path::PathBuf>,
    /// Whether file sources read their files once instead of following them (`run --once`).
    pub once: bool,
    /// Tasks that must outlive the source, such as the final checkpoint write. The topology waits for
    /// them after the pipeline has drained.
    pub background: tokio_util::task::TaskTracker,
    /// Cancelled once every event has reached its final outcome or the shutdown timeout has passed.
    pub drained: CancellationToken,
}

/// The error of a source that stopped before the end of its input.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Reading failed.
    #[error("reading {what} failed: {error}")]
    Read {
        /// The input being read, such as `standard input` or a file path.
        what: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// Every consumer of the source's output stopped.
    #[error(transparent)]
    OutputClosed(#[from] OutputClosed),
    /// The checkpoint file cannot be used.
    #[error("{message}")]
    Checkpoint {
        /// What is wrong with the checkpoint file and what to do.
        message: String,
    },
    /// The Kafka consumer cannot be created or failed; secrets are already removed.
    #[error("{message}")]
    Kafka {
        /// What failed and why.
        message: String,
    },
}

/// Collects events into chunks and sends them, attaching a finalizer to each.
pub(crate) struct Emitter {
    output: Output,
    receiver: Arc<dyn AckReceiver>,
    stats: Arc<RunStats>,
    chunk: Vec<Event>,
    next_cookie: u64,
    metrics: crate::observability::ComponentMetrics,
    pending_bytes: u64,
}

impl Emitter {
    pub(crate) fn new(
        output: Output,
        receiver: Arc<dyn AckReceiver>,
        stats: Arc<RunStats>,
        component_type: &'static str,
    ) -> Emitter {
        let metrics = crate::observability::ComponentMetrics::new(
            crate::observability::ComponentKind::Source,
            output.id(),
            component_type,
        );
        Emitter {
            output,
            receiver,
            stats,
            chunk: Vec::with_capacity(CHUNK_EVENTS),
            next_cookie: 0,
            metrics,
            pending_bytes: 0,
        }
    }

    /// Counts input bytes read; they are reported with the next flush.
    pub(crate) fn add_bytes(&mut self, bytes: u64) {
        self.pending_bytes += bytes;
    }

    /// Adds an event; its cookie is a sequence number.
    pub(crate) fn push(&mut self, payload: Payload) {
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        self.push_event(payload, cookie);
    }

    fn push_event(&mut self, payload: Payload, cookie: u64) {
        let finalizer = EventFinalizer::new(self.receiver.clone(), cookie);
        self.chunk.push(Event::with_finalizer(payload, finalizer));
    }

    pub(crate) fn is_full(&self) -> bool {
        self.chunk.len() >= CHUNK_EVENTS
    }

    /// Sends the collected events, waiting while the consumer's buffer is full.
    pub(crate) async fn flush(&mut self) -> Result<(), OutputClosed> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK_EVENTS));
        let bytes = std::mem::take(&mut self.pending_bytes);
        self.stats.add_received(chunk.len() as u64);
        self.stats.add_bytes_read(bytes);
        self.metrics.received(chunk.len() as u64, bytes);
        self.output.send(chunk).await
    }
}

/// Reads newline-delimited JSON from `reader`, into buffers of `capacity` bytes, until its end or
/// until `shutdown` is cancelled.
pub(crate) async fn read_lines<R>(
    reader: R,
    capacity: usize,
    what: &str,
    max_line_bytes: usize,
    emitter: &mut Emitter,
    shutdown: &CancellationToken,
) -> Result<(), SourceError>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut lines = lines::LineReader::new(reader, capacity, max_line_bytes);
    let mut payloads = Vec::new();
    let mut bytes_before = 0;

    loop {
        // The flag is read for each line, and the cancellation future polled only while the read
        // waits. Polled first for each line, the future took a lock of the token's waiter list and
        // 2% of the relay's CPU samples end to end (`perf record`).
        if shutdown.is_cancelled() {
            break;
        }
        let line = tokio::select! {
            biased;
            line = lines.next_line() => line,
            _ = shutdown.cancelled() => break,
        };
        let line = line.map_err(|error| SourceError::Read { what: what.to_owned(), error })?;
        let Some(line) = line else { break };
        emitter.add_bytes(lines.bytes_read() - bytes_before);
        bytes_before = lines.bytes_read();

        match line {
            lines::Line::Complete(bytes) => decode::decode_owned_line(bytes, &mut payloads),
            lines::Line::TooLong { prefix, length } => payloads.push(decode::too_long(&prefix, length, max_line_bytes)),
        }
        for payload in payloads.drain(..) {
            emitter.push(payload);
        }

        // Send when the chunk is full, or when no more input is waiting, so that a slow trickle of
        // events is not held back to fill a chunk.
        if emitter.is_full() || !lines.has_buffered_data() {
            emitter.flush().await?;
        }
    }

    emitter.flush().await?;
    Ok(())
}
