//! Acknowledgements of one HTTP request: the outcome of each of its events.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::ack::{AckReceiver, EventStatus};
use crate::topology::RunStats;

/// The outcome of one event of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventOutcome {
    /// The final status.
    pub status: EventStatus,
    /// The reason a component gave, such as `unknown_event_key`.
    pub reason: Option<String>,
}

/// Collects the outcomes of one request's events; the cookie of an event is its index in the request.
pub struct RequestAcks {
    stats: Arc<RunStats>,
    outcomes: Mutex<Vec<Option<EventOutcome>>>,
    complete: Notify,
}

impl RequestAcks {
    /// Creates the collector of a request with `count` events.
    pub fn new(stats: Arc<RunStats>, count: usize) -> Arc<RequestAcks> {
        Arc::new(RequestAcks { stats, outcomes: Mutex::new(vec![None; count]), complete: Notify::new() })
    }

    /// Waits until every event has an outcome, at most `timeout`. Returns the outcomes, `None` for the
    /// events still open at the timeout.
    pub async fn wait(&self, timeout: std::time::Duration) -> Vec<Option<EventOutcome>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register interest before checking, so a notification between the two is not missed.
            let notified = self.complete.notified();
            if self.lock().iter().all(Option::is_some) {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<EventOutcome>>> {
        self.outcomes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl AckReceiver for RequestAcks {
    fn acknowledge(&self, cookie: u64, status: EventStatus) {
        self.acknowledge_with_reason(cookie, status, None);
    }

    fn acknowledge_with_reason(&self, cookie: u64, status: EventStatus, reason: Option<&str>) {
        self.stats.acknowledge(cookie, status);
        let mut outcomes = self.lock();
        if let Some(slot) = outcomes.get_mut(cookie as usize) {
            *slot = Some(EventOutcome { status, reason: reason.map(str::to_owned) });
        }
        if outcomes.iter().all(Option::is_some) {
            self.complete.notify_waiters();
        }
    }
}
