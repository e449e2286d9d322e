//! Counts of events by final outcome, for the summary line.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ack::{AckReceiver, EventStatus};

/// Counts events received from sources and their final statuses.
#[derive(Debug, Default)]
pub struct RunStats {
    received: AtomicU64,
    delivered: AtomicU64,
    skipped: AtomicU64,
    dead_lettered: AtomicU64,
    undelivered: AtomicU64,
    bytes_read: AtomicU64,
    bytes_total: AtomicU64,
}

/// A point-in-time copy of [`RunStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Events emitted by sources.
    pub received: u64,
    /// Events whose every copy was delivered.
    pub sent: u64,
    /// Events written to a dead-letter output.
    pub dead_lettered: u64,
    /// Events intentionally not sent.
    pub skipped: u64,
    /// Events that reached no final outcome (still in flight at the shutdown timeout, or lost to an
    /// internal error).
    pub undelivered: u64,
}

impl Summary {
    /// Returns the number of events whose outcome is not known yet.
    pub fn pending(&self) -> u64 {
        self.received.saturating_sub(self.sent + self.dead_lettered + self.skipped + self.undelivered)
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "received={} sent={} dead_lettered={} skipped={} undelivered={}",
            self.received, self.sent, self.dead_lettered, self.skipped, self.undelivered
        )
    }
}

impl RunStats {
    /// Counts `count` events emitted by a source.
    pub fn add_received(&self, count: u64) {
        self.received.fetch_add(count, Ordering::Relaxed);
    }

    /// Counts input bytes read by sources.
    pub fn add_bytes_read(&self, bytes: u64) {
        self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Adds to the known size of a finite input, such as files read once.
    pub fn add_bytes_total(&self, bytes: u64) {
        self.bytes_total.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Returns the input bytes read so far, and the total when the input's size is known.
    pub fn bytes(&self) -> (u64, Option<u64>) {
        let total = self.bytes_total.load(Ordering::Relaxed);
        (self.bytes_read.load(Ordering::Relaxed), (total > 0).then_some(total))
    }

    /// Returns the current counts.
    pub fn summary(&self) -> Summary {
        Summary {
            received: self.received.load(Ordering::Relaxed),
            sent: self.delivered.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            undelivered: self.undelivered.load(Ordering::Relaxed),
        }
    }
}

impl AckReceiver for RunStats {
    fn acknowledge(&self, _cookie: u64, status: EventStatus) {
        let counter = match status {
            EventStatus::Delivered => &self.delivered,
            EventStatus::Skipped => &self.skipped,
            EventStatus::DeadLettered => &self.dead_lettered,
            EventStatus::Undelivered => &self.undelivered,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
