//! Bounded buffers between components, measured in events.
//!
//! Each consumer has one buffer that all its upstream outputs send into. A semaphore with one permit
//! per event bounds it: a sender takes permits for the events it adds, and the permits return when the
//! consumer takes the chunk out. When the buffer is full, `block` makes the sender wait, which slows
//! the upstream component. `drop_newest` instead finalizes the events that do not fit as undelivered,
//! so a sink that is down never holds back its siblings beyond its own buffer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::ack::EventStatus;
use crate::event::Event;

/// The default capacity of a buffer: four chunks of 256 events.
pub const DEFAULT_BUFFER_EVENTS: usize = 1024;

/// The behaviour of a full buffer towards new events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// The sender waits for room, which slows the upstream components and, through them, the sources.
    #[default]
    Block,
    /// Events that do not fit are finalized as undelivered, counted and logged, and the sender goes on.
    DropNewest,
}

/// Settings of a component's input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferConfig {
    /// Events the buffer holds at most. Default 1024.
    pub max_events: usize,
    /// `block` (default) or `drop_newest`.
    pub when_full: WhenFull,
}

impl Default for BufferConfig {
    fn default() -> BufferConfig {
        BufferConfig { max_events: DEFAULT_BUFFER_EVENTS, when_full: WhenFull::Block }
    }
}

impl BufferConfig {
    /// Returns the checks of the settings.
    pub fn validate(&self) -> Vec<String> {
        if self.max_events == 0 || self.max_events > Semaphore::MAX_PERMITS {
            return vec![format!(
                "invalid value for `buffer.max_events`: {}; give a number of events above 0",
                self.max_events
            )];
        }
        Vec::new()
    }
}

type Chunk = (Vec<Event>, OwnedSemaphorePermit);

/// The receiving side of a component's input buffer.
pub struct Input {
    receiver: mpsc::UnboundedReceiver<Chunk>,
    permits: Arc<Semaphore>,
}

impl Drop for Input {
    /// Closes the semaphore, so that a sender waiting for room in a full buffer fails at once instead of
    /// waiting for a consumer that is gone.
    fn drop(&mut self) {
        self.permits.close();
    }
}

impl Input {
    /// Takes the next chunk of events, or `None` once every sender is gone and the buffer is empty.
    pub async fn recv(&mut self) -> Option<Vec<Event>> {
        // Dropping the permit here returns the chunk's room to the buffer.
        self.receiver.recv().await.map(|(events, _permit)| events)
    }
}

/// The error of [`BufferSender::send`] when the consumer has stopped.
#[derive(Debug)]
pub struct BufferClosed(pub Vec<Event>);

/// A sending side of a component's input buffer. Clones share the buffer.
#[derive(Clone)]
pub struct BufferSender {
    consumer: Arc<str>,
    sender: mpsc::UnboundedSender<Chunk>,
    permits: Arc<Semaphore>,
    max_events: usize,
    when_full: WhenFull,
    dropped: Arc<DropCounter>,
}

/// Creates a buffer for the component `consumer`.
pub fn buffer(consumer: &str, config: BufferConfig) -> (BufferSender, Input) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let max_events = config.max_events.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max_events));
    let sender = BufferSender {
        consumer: consumer.into(),
        sender,
        permits: permits.clone(),
        max_events,
        when_full: config.when_full,
        dropped: Arc::new(DropCounter::default()),
    };
    (sender, Input { receiver, permits })
}

impl BufferSender {
    /// Adds events to the buffer, waiting for room or dropping what does not fit, as configured.
    pub async fn send(&self, mut events: Vec<Event>) -> Result<(), BufferClosed> {
        if events.is_empty() {
            return Ok(());
        }
        // A chunk larger than the whole buffer takes all of it rather than waiting forever.
        let requested = events.len().min(self.max_events) as u32;

        let permit = match self.when_full {
            WhenFull::Block => match self.permits.clone().acquire_many_owned(requested).await {
                Ok(permit) => permit,
                Err(_) => return Err(BufferClosed(events)),
            },
            WhenFull::DropNewest => {
                let room = (self.permits.available_permits() as u32).min(requested);
                let permit = self.permits.clone().try_acquire_many_owned(room).ok();
                let kept = permit.as_ref().map_or(0, |permit| permit.num_permits());
                if kept < events.len() {
                    self.drop_events(events.split_off(kept));
                }
                match permit {
                    Some(permit) if !events.is_empty() => permit,
                    _ => return Ok(()),
                }
            }
        };

        self.sender.send((events, permit)).map_err(|error| BufferClosed(error.0 .0))
    }

    /// Returns whether the buffer has room for `count` more events, or is empty enough to take a chunk
    /// that large, as [`BufferSender::send`] would.
    pub fn has_room(&self, count: usize) -> bool {
        self.permits.available_permits() >= count.min(self.max_events)
    }

    /// Returns how many events this buffer has dropped because it was full.
    pub fn dropped_events(&self) -> u64 {
        self.dropped.total.load(Ordering::Relaxed)
    }

    fn drop_events(&self, events: Vec<Event>) {
        let count = events.len() as u64;
        for event in events {
            event.finalizer.update_with_reason(EventStatus::Undelivered, "buffer_full");
            event.finalize(EventStatus::Undelivered);
        }
        self.dropped.record(&self.consumer, count, self.max_events);
        metrics::counter!("buffer_discarded_events_total", "component_id" => self.consumer.to_string())
            .increment(count);
    }
}

/// Counts events dropped by a full buffer and logs at most one warning a minute, with the count.
#[derive(Default)]
struct DropCounter {
    total: AtomicU64,
    since_warning: AtomicU64,
    last_warning: std::sync::Mutex<Option<Instant>>,
}

impl DropCounter {
    fn record(&self, consumer: &str, count: u64, max_events: usize) {
        self.total.fetch_add(count, Ordering::Relaxed);
        let pending = self.since_warning.fetch_add(count, Ordering::Relaxed) + count;

        let mut last = self.last_warning.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        if last.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(60)) {
            *last = Some(now);
            self.since_warning.fetch_sub(pending, Ordering::Relaxed);
            tracing::warn!(
                component_id = consumer,
                dropped_events = pending,
                max_events,
                "input buffer is full; dropped the newest events (buffer.when_full = \"drop_newest\")"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::{EventFinalizer, Recorder};
    use crate::event::Payload;

    fn events(recorder: &Arc<Recorder>, cookies: std::ops::Range<u64>) -> Vec<Event> {
        cookies
            .map(|cookie| {
                let finalizer = EventFinalizer::new(recorder.clone(), cookie);
                Event::with_finalizer(Payload::Message(serde_json::json!({"n": cookie})), finalizer)
            })
            .collect()
    }

    #[tokio::test]
    async fn drop_newest_keeps_what_fits() {
        let recorder = Arc::new(Recorder::default());
        let (sender, mut input) = buffer("sink", BufferConfig { max_events: 3, when_full: WhenFull::DropNewest });

        sender.send(events(&recorder, 0..2)).await.unwrap();
        sender.send(events(&recorder, 2..5)).await.unwrap();

        assert_eq!(sender.dropped_events(), 2);
        assert_eq!(*recorder.0.lock().unwrap(), vec![(3, EventStatus::Undelivered), (4, EventStatus::Undelivered)]);
        assert_eq!(input.recv().await.unwrap().len(), 2);
        assert_eq!(input.recv().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn room_returns_when_consumer_takes_chunk() {
        let recorder = Arc::new(Recorder::default());
        let (sender, mut input) = buffer("sink", BufferConfig { max_events: 2, when_full: WhenFull::DropNewest });

        sender.send(events(&recorder, 0..2)).await.unwrap();
        let taken = input.recv().await.unwrap();
        sender.send(events(&recorder, 2..4)).await.unwrap();

        assert_eq!(taken.len(), 2);
        assert_eq!(sender.dropped_events(), 0);
    }

    #[tokio::test]
    async fn block_waits_for_room() {
        let recorder = Arc::new(Recorder::default());
        let (sender, mut input) = buffer("sink", BufferConfig { max_events: 2, when_full: WhenFull::Block });
        sender.send(events(&recorder, 0..2)).await.unwrap();

        let blocked = sender.clone();
        let extra = events(&recorder, 2..3);
        let pending = tokio::spawn(async move { blocked.send(extra).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!pending.is_finished(), "a full blocking buffer accepted more events");

        input.recv().await.unwrap();
        pending.await.unwrap().unwrap();
        assert_eq!(input.recv().await.unwrap().len(), 1);
        assert_eq!(sender.dropped_events(), 0);
    }

    #[tokio::test]
    async fn oversized_chunk_takes_whole_buffer() {
        let recorder = Arc::new(Recorder::default());
        let (sender, mut input) = buffer("sink", BufferConfig { max_events: 2, when_full: WhenFull::Block });

        sender.send(events(&recorder, 0..5)).await.unwrap();

        assert_eq!(input.recv().await.unwrap().len(), 5);
    }

    #[tokio::test]
    async fn closed_consumer_returns_events() {
        let recorder = Arc::new(Recorder::default());
        let (sender, input) = buffer("sink", BufferConfig::default());
        drop(input);

        let error = sender.send(events(&recorder, 0..1)).await.unwrap_err();
        assert_eq!(error.0.len(), 1);
    }

    #[tokio::test]
    async fn full_buffer_fails_when_consumer_stops() {
        let recorder = Arc::new(Recorder::default());
        let (sender, input) = buffer("sink", BufferConfig { max_events: 1, when_full: WhenFull::Block });
        sender.send(events(&recorder, 0..1)).await.unwrap();

        let blocked = sender.clone();
        let extra = events(&recorder, 1..2);
        let pending = tokio::spawn(async move { blocked.send(extra).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(input);

        let result = tokio::time::timeout(Duration::from_secs(5), pending).await.expect("the sender stopped waiting");
        assert!(result.unwrap().is_err());
    }
}
