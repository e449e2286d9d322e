//! The `file` sink: appends one JSON line per event to a file.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::ack::EventStatus;
use crate::observability::{ComponentKind, ComponentMetrics};
use crate::topology::Input;

/// Settings of the `file` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file to append to; created, with its parent directories, when missing. Relative paths are
    /// resolved against the configuration file's directory.
    pub path: PathBuf,
}

impl FileSinkConfig {
    /// Returns the checks that need more than one option.
    pub fn validate(&self) -> Vec<String> {
        if self.path.as_os_str().is_empty() {
            return vec!["`path` is empty; give the file to append to".to_owned()];
        }
        Vec::new()
    }

    /// Resolves a relative path against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        self.path = crate::config::resolve_path(base, &self.path);
    }

    /// Opens the file for appending.
    pub async fn open(&self) -> std::io::Result<tokio::fs::File> {
        if let Some(parent) = self.path.parent() {
            if !parent.as_os_str().is_empty() {
                tokio::fs::create_dir_all(parent).await?;
            }
        }
        tokio::fs::OpenOptions::new().create(true).append(true).open(&self.path).await
    }

    /// Appends every event of `input` to `file` until the input closes. A chunk counts as delivered once
    /// it is written and flushed to the operating system.
    pub async fn run(&self, id: &str, mut file: tokio::fs::File, mut input: Input) {
        let mut buffer = Vec::with_capacity(64 * 1024);
        let metrics = ComponentMetrics::new(ComponentKind::Sink, id, "file");
        while let Some(events) = input.recv().await {
            metrics.received(events.len() as u64, 0);
            buffer.clear();
            for event in &events {
                event.payload.write_json_line(&mut buffer);
            }

            let written = match file.write_all(&buffer).await {
                Ok(()) => file.flush().await,
                Err(error) => Err(error),
            };
            let status = match written {
                Ok(()) => {
                    metrics.sent(events.len() as u64, buffer.len() as u64);
                    EventStatus::Delivered
                }
                Err(error) => {
                    metrics.error("write_failed");
                    tracing::error!(
                        component_id = %id,
                        path = %self.path.display(),
                        %error,
                        events = events.len(),
                        "writing to file failed"
                    );
                    EventStatus::Undelivered
                }
            };
            for event in events {
                event.finalize(status);
            }
        }
    }
}
