//! The `console` sink: one JSON line per event on standard output.

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::ack::EventStatus;
use crate::observability::{ComponentKind, ComponentMetrics};
use crate::topology::Input;

/// Settings of the `console` sink. It has none: every event is written as one line of compact JSON.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSinkConfig {}

impl ConsoleSinkConfig {
    /// Writes every event of `input` to standard output until the input closes.
    pub async fn run(&self, id: &str, mut input: Input) {
        let mut stdout = tokio::io::stdout();
        let mut buffer = Vec::with_capacity(64 * 1024);
        let metrics = ComponentMetrics::new(ComponentKind::Sink, id, "console");

        while let Some(events) = input.recv().await {
            metrics.received(events.len() as u64, 0);
            buffer.clear();
            for event in &events {
                event.payload.write_json_line(&mut buffer);
            }

            let written = match stdout.write_all(&buffer).await {
                Ok(()) => stdout.flush().await,
                Err(error) => Err(error),
            };
            let status = match written {
                Ok(()) => {
                    metrics.sent(events.len() as u64, buffer.len() as u64);
                    EventStatus::Delivered
                }
                Err(error) => {
                    metrics.error("write_failed");
                    tracing::error!(component_id = %id, %error, events = events.len(), "writing to standard output failed");
                    EventStatus::Undelivered
                }
            };
            for event in events {
                event.finalize(status);
            }
        }
    }
}
