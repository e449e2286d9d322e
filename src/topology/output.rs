//! Outputs: the sending side of the bounded channels between components.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::ack::EventStatus;
use crate::event::{Event, Payload};

/// The receiving side of a component's input channel. Events travel in chunks to keep channel
/// operations off the per-event path.
pub type Input = mpsc::Receiver<Vec<Event>>;

/// What an output does with events when no component consumes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unconnected {
    /// Finalize each event with the given status and log a rate-limited warning. Used for `dropped`
    /// (dead-lettered) and `deletions` (skipped) outputs that the configuration leaves unconnected.
    Finalize(EventStatus),
}

/// The error of [`Output::send`] when every consumer has stopped.
#[derive(Debug, thiserror::Error)]
#[error("output `{output}` has no running consumer; {count} events were not passed on")]
pub struct OutputClosed {
    /// The output's full id, such as `opt.dropped`.
    pub output: String,
    /// How many events were not passed on.
    pub count: usize,
}

/// One named output of a component, fanning events out to every consumer.
///
/// Each consumer gets its own bounded channel. When more than one consumer exists, events are cloned
/// and every clone carries its own acknowledgement reference, so the source learns the most severe
/// outcome over all consumers.
pub struct Output {
    id: String,
    senders: Vec<mpsc::Sender<Vec<Event>>>,
    unconnected: Unconnected,
    last_warning: Option<Instant>,
    suppressed_warnings: u64,
}

impl Output {
    /// Creates an output with the full id `id` (`opt` or `opt.dropped`) that sends to `senders`.
    pub fn new(id: impl Into<String>, senders: Vec<mpsc::Sender<Vec<Event>>>, unconnected: Unconnected) -> Output {
        Output { id: id.into(), senders, unconnected, last_warning: None, suppressed_warnings: 0 }
    }

    /// Returns the output's full id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Returns whether any consumer is connected.
    pub fn is_connected(&self) -> bool {
        !self.senders.is_empty()
    }

    /// Sends a chunk of events to every consumer, waiting while a consumer's buffer is full.
    pub async fn send(&mut self, events: Vec<Event>) -> Result<(), OutputClosed> {
        if events.is_empty() {
            return Ok(());
        }
        if self.senders.is_empty() {
            self.finalize_unconnected(events);
            return Ok(());
        }

        let last = self.senders.len() - 1;
        for index in 0..last {
            let copy = events.clone();
            if self.senders[index].send(copy).await.is_err() {
                return Err(self.closed(events.len()));
            }
        }
        let count = events.len();
        if self.senders[last].send(events).await.is_err() {
            return Err(self.closed(count));
        }
        Ok(())
    }

    fn closed(&self, count: usize) -> OutputClosed {
        OutputClosed { output: self.id.clone(), count }
    }

    fn finalize_unconnected(&mut self, events: Vec<Event>) {
        let Unconnected::Finalize(status) = self.unconnected;
        let count = events.len();
        let mut example = None;
        for event in events {
            if example.is_none() {
                if let Payload::DeadLetter(record) = &event.payload {
                    example = Some(format!("{}: {}", record.reason, record.message));
                }
            }
            event.finalize(status);
        }

        // One warning per minute at most, carrying the number of events since the last one.
        self.suppressed_warnings += count as u64;
        let now = Instant::now();
        let due = self.last_warning.is_none_or(|last| now.duration_since(last) >= Duration::from_secs(60));
        if due {
            tracing::warn!(
                output = %self.id,
                events = self.suppressed_warnings,
                status = status.as_str(),
                example = example.as_deref().unwrap_or(""),
                "output is not connected to any sink; events were finalized without being written"
            );
            self.last_warning = Some(now);
            self.suppressed_warnings = 0;
        }
    }
}
