//! End-to-end acknowledgements.
//!
//! Every event a source emits carries an [`EventFinalizer`]. The finalizer is cloned when an event fans
//! out to several consumers, and every clone must be finalized with an [`EventStatus`]. When the last
//! clone is gone, the source's [`AckReceiver`] learns the merged status of the event: the most severe
//! status any consumer reported. A clone dropped without being finalized reports
//! [`EventStatus::Undelivered`], so an event lost to a bug or a shutdown timeout can never be counted as
//! delivered.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// The final outcome of one event, ordered from least to most severe.
///
/// Merging two statuses keeps the more severe one: an event delivered to one sink and dead-lettered by
/// another is dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum EventStatus {
    /// Accepted by the destination (a 2xx from the Event API, a line written to a file).
    Delivered = 1,
    /// Intentionally not sent, such as an `identify` message or an unknown event key in skip mode.
    Skipped = 2,
    /// Written to a dead-letter output with a reason.
    DeadLettered = 3,
    /// Neither delivered nor dead-lettered: the event was dropped or still in flight at shutdown.
    Undelivered = 4,
}

impl EventStatus {
    fn from_u8(value: u8) -> EventStatus {
        match value {
            1 => EventStatus::Delivered,
            2 => EventStatus::Skipped,
            3 => EventStatus::DeadLettered,
            _ => EventStatus::Undelivered,
        }
    }

    /// Returns the status name used in logs, metrics and the summary line.
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Delivered => "delivered",
            EventStatus::Skipped => "skipped",
            EventStatus::DeadLettered => "dead_lettered",
            EventStatus::Undelivered => "undelivered",
        }
    }
}

/// Receives the final status of each event a source emitted.
///
/// `cookie` is the value the source gave [`EventFinalizer::new`], such as a sequence number or a file
/// offset. Implementations are called from whichever task drops the last finalizer clone, so they must be
/// cheap and must not block.
pub trait AckReceiver: Send + Sync {
    /// Records the final status of the event identified by `cookie`.
    fn acknowledge(&self, cookie: u64, status: EventStatus);

    /// Records the final status with the reason a component gave for it, such as the dead-letter
    /// reason `unknown_event_key`. The default ignores the reason.
    fn acknowledge_with_reason(&self, cookie: u64, status: EventStatus, reason: Option<&str>) {
        let _ = reason;
        self.acknowledge(cookie, status);
    }
}

struct Shared {
    status: AtomicU8,
    cookie: u64,
    receiver: Arc<dyn AckReceiver>,
    /// The first reason given for a status other than delivered.
    reason: std::sync::OnceLock<Box<str>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let status = EventStatus::from_u8(self.status.load(Ordering::Acquire));
        let reason = self.reason.get().map(|reason| &**reason);
        self.receiver.acknowledge_with_reason(self.cookie, status, reason);
    }
}

/// One reference to an event's acknowledgement.
///
/// Cloning creates another reference that must be finalized too. An empty finalizer
/// ([`EventFinalizer::none`]) belongs to an event nobody waits for.
#[derive(Default)]
pub struct EventFinalizer {
    shared: Option<Arc<Shared>>,
}

impl EventFinalizer {
    /// Creates the first reference of a new event's acknowledgement.
    pub fn new(receiver: Arc<dyn AckReceiver>, cookie: u64) -> EventFinalizer {
        // The status starts at 0, below every real status, so the first update always wins.
        let reason = std::sync::OnceLock::new();
        EventFinalizer { shared: Some(Arc::new(Shared { status: AtomicU8::new(0), cookie, receiver, reason })) }
    }

    /// Creates a finalizer that reports to nobody.
    pub fn none() -> EventFinalizer {
        EventFinalizer { shared: None }
    }

    /// Raises the event's status to `status` if that is more severe, keeping this reference open.
    ///
    /// A transform marks a dead-lettered event with this before handing it to the dead-letter output, so
    /// that the sink writing the record (which finalizes with `Delivered`) cannot hide the outcome.
    pub fn update(&self, status: EventStatus) {
        if let Some(shared) = &self.shared {
            shared.status.fetch_max(status as u8, Ordering::AcqRel);
        }
    }

    /// Raises the event's status like [`EventFinalizer::update`] and records `reason`, unless a reason
    /// was recorded before.
    pub fn update_with_reason(&self, status: EventStatus, reason: &str) {
        if let Some(shared) = &self.shared {
            shared.status.fetch_max(status as u8, Ordering::AcqRel);
            let _ = shared.reason.set(reason.into());
        }
    }

    /// Raises the event's status to `status` if that is more severe and releases this reference.
    pub fn finalize(mut self, status: EventStatus) {
        if let Some(shared) = self.shared.take() {
            shared.status.fetch_max(status as u8, Ordering::AcqRel);
        }
    }
}

impl Clone for EventFinalizer {
    fn clone(&self) -> EventFinalizer {
        EventFinalizer { shared: self.shared.clone() }
    }
}

impl Drop for EventFinalizer {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.status.fetch_max(EventStatus::Undelivered as u8, Ordering::AcqRel);
        }
    }
}

impl std::fmt::Debug for EventFinalizer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.shared {
            Some(shared) => write!(formatter, "EventFinalizer(cookie={})", shared.cookie),
            None => write!(formatter, "EventFinalizer(none)"),
        }
    }
}

/// An [`AckReceiver`] that records every status, for unit tests.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Recorder(pub(crate) std::sync::Mutex<Vec<(u64, EventStatus)>>);

#[cfg(test)]
impl AckReceiver for Recorder {
    fn acknowledge(&self, cookie: u64, status: EventStatus) {
        self.0.lock().unwrap().push((cookie, status));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_reference_reports_its_status() {
        let recorder = Arc::new(Recorder::default());
        EventFinalizer::new(recorder.clone(), 7).finalize(EventStatus::Delivered);
        assert_eq!(*recorder.0.lock().unwrap(), vec![(7, EventStatus::Delivered)]);
    }

    #[test]
    fn clones_report_once_with_most_severe_status() {
        let recorder = Arc::new(Recorder::default());
        let first = EventFinalizer::new(recorder.clone(), 1);
        let second = first.clone();
        first.finalize(EventStatus::Delivered);
        assert!(recorder.0.lock().unwrap().is_empty());
        second.finalize(EventStatus::DeadLettered);
        assert_eq!(*recorder.0.lock().unwrap(), vec![(1, EventStatus::DeadLettered)]);
    }

    #[test]
    fn dropped_reference_reports_undelivered() {
        let recorder = Arc::new(Recorder::default());
        let first = EventFinalizer::new(recorder.clone(), 3);
        let second = first.clone();
        first.finalize(EventStatus::Delivered);
        drop(second);
        assert_eq!(*recorder.0.lock().unwrap(), vec![(3, EventStatus::Undelivered)]);
    }

    #[derive(Default)]
    struct ReasonRecorder(std::sync::Mutex<Vec<(EventStatus, Option<String>)>>);

    impl AckReceiver for ReasonRecorder {
        fn acknowledge(&self, _cookie: u64, _status: EventStatus) {
            unreachable!("acknowledge_with_reason is called");
        }

        fn acknowledge_with_reason(&self, _cookie: u64, status: EventStatus, reason: Option<&str>) {
            self.0.lock().unwrap().push((status, reason.map(str::to_owned)));
        }
    }

    #[test]
    fn first_reason_reaches_receiver() {
        let recorder = Arc::new(ReasonRecorder::default());
        let finalizer = EventFinalizer::new(recorder.clone(), 1);
        finalizer.update_with_reason(EventStatus::DeadLettered, "unknown_event_key");
        finalizer.update_with_reason(EventStatus::DeadLettered, "later");
        finalizer.finalize(EventStatus::Delivered);
        assert_eq!(
            *recorder.0.lock().unwrap(),
            vec![(EventStatus::DeadLettered, Some("unknown_event_key".to_owned()))]
        );
    }

    #[test]
    fn update_survives_later_delivery() {
        let recorder = Arc::new(Recorder::default());
        let finalizer = EventFinalizer::new(recorder.clone(), 4);
        finalizer.update(EventStatus::DeadLettered);
        finalizer.finalize(EventStatus::Delivered);
        assert_eq!(*recorder.0.lock().unwrap(), vec![(4, EventStatus::DeadLettered)]);
    }
}
