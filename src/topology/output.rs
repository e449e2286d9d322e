//! Outputs: the sending side of the bounded channels between components.

use std::time::{Duration, Instant};

use super::buffer::BufferSender;
use crate::ack::EventStatus;
use crate::event::{Event, Payload};
use crate::observability::ComponentMetrics;

/// The handling of events on an output that no component consumes.
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
/// Each consumer has its own bounded buffer. When more than one consumer exists, events are cloned
/// and every clone carries its own acknowledgement reference, so the source learns the most severe
/// outcome over all consumers.
pub struct Output {
    id: String,
    senders: Vec<BufferSender>,
    unconnected: Unconnected,
    last_warning: Option<Instant>,
    suppressed_warnings: u64,
    metrics: Option<(ComponentMetrics, Option<&'static str>)>,
}

impl Output {
    /// Creates an output with the full id `id` (`opt` or `opt.dropped`) that sends to `senders`.
    pub fn new(id: impl Into<String>, senders: Vec<BufferSender>, unconnected: Unconnected) -> Output {
        Output { id: id.into(), senders, unconnected, last_warning: None, suppressed_warnings: 0, metrics: None }
    }

    /// Counts the events sent through this output in `metrics`: `component_sent_events_total`, with an
    /// `output` label for a named output, and for dead-letter records also
    /// `component_discarded_events_total` by reason.
    pub fn with_metrics(mut self, metrics: ComponentMetrics, name: Option<&'static str>) -> Output {
        self.metrics = Some((metrics, name));
        self
    }

    fn count(&self, events: &[Event]) {
        let Some((metrics, name)) = &self.metrics else { return };
        match name {
            None => metrics.sent(events.len() as u64, 0),
            Some(name) => metrics.sent_to_output(name, events.len() as u64),
        }
        for event in events {
            if let Payload::DeadLetter(record) = &event.payload {
                metrics.discarded(&record.reason, false, 1);
            }
        }
    }

    /// Returns the output's full id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Returns whether any consumer is connected.
    pub fn is_connected(&self) -> bool {
        !self.senders.is_empty()
    }

    /// Returns whether every consumer's buffer has room for `count` more events right now, so that a
    /// source answering clients can reject a request instead of waiting.
    pub fn has_room(&self, count: usize) -> bool {
        self.senders.iter().all(|sender| sender.has_room(count))
    }

    /// Sends a chunk of events to every consumer. A full buffer makes this wait or drops events, as the
    /// consumer's `buffer.when_full` sets.
    pub async fn send(&mut self, events: Vec<Event>) -> Result<(), OutputClosed> {
        if events.is_empty() {
            return Ok(());
        }
        self.count(&events);
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
        for event in events {
            event.finalize(status);
        }

        // Dead-letter records that are not written anywhere get a warning, at most one a minute with
        // the count since the last one. The startup warning about the unconnected output covers the
        // other statuses.
        if status != EventStatus::DeadLettered {
            return;
        }
        self.suppressed_warnings += count as u64;
        let now = Instant::now();
        let due = self.last_warning.is_none_or(|last| now.duration_since(last) >= Duration::from_secs(60));
        if due {
            tracing::warn!(
                output = %self.id,
                events = self.suppressed_warnings,
                "dead-letter records were counted but not written, because no sink consumes this output"
            );
            self.last_warning = Some(now);
            self.suppressed_warnings = 0;
        }
    }
}
