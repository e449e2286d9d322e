//! Which offsets of each assigned partition may be committed.
//!
//! Every message read gets an entry in its partition's queue, in offset order. The events decoded from
//! the message report their outcomes through [`AckReceiver`]; a message is done when all of them are
//! delivered, dead-lettered or skipped. The offset to commit is one past the last message of the
//! longest done prefix of the queue, because Kafka's committed offset is the next message to read.
//!
//! A message with an undelivered event (dropped by a full buffer, or aborted at the shutdown timeout)
//! freezes its partition's commit offset before it for the rest of the assignment, so the next owner
//! of the partition reads it again. Later messages are still popped from the queue once done, so
//! memory stays bounded by the messages in flight.
//!
//! Each assignment of a partition gets a new slot. When the partition is revoked its slot is
//! released, and outcomes that arrive later are counted in the run's statistics but move no offset:
//! the partition's new owner commits it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::ack::{AckReceiver, EventStatus};
use crate::topology::RunStats;

/// Bits of an acknowledgement cookie that hold the message's sequence number within its slot; the
/// bits above hold the slot.
const SEQUENCE_BITS: u32 = 40;
const SEQUENCE_MASK: u64 = (1 << SEQUENCE_BITS) - 1;
/// Slots wrap around below this bound so that they fit the cookie's upper 24 bits.
const SLOT_LIMIT: u32 = 1 << (64 - SEQUENCE_BITS);

/// A topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic name.
    pub topic: String,
    /// The partition number.
    pub partition: i32,
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}/{}", self.topic, self.partition)
    }
}

#[derive(Debug)]
struct PendingMessage {
    offset: i64,
    /// Events of the message without an outcome yet.
    remaining: u32,
    /// Whether an event of the message ended undelivered.
    failed: bool,
}

/// The progress of one assignment of one partition.
#[derive(Debug, Default)]
pub struct PartitionProgress {
    /// The sequence number of the front of `messages`.
    first_sequence: u64,
    messages: VecDeque<PendingMessage>,
    /// Events read and not yet final.
    open_events: u64,
    /// One past the last message of the done prefix: the offset that may be committed.
    done_offset: Option<i64>,
    /// The first message that has an undelivered event; the done offset never passes it.
    held_at: Option<i64>,
    /// The offset of the last commit that was requested.
    committed_offset: Option<i64>,
}

impl PartitionProgress {
    /// Records a message that decoded to `events` events; returns its sequence number. A message
    /// without events (an empty batch envelope) is done at once.
    pub fn add_message(&mut self, offset: i64, events: u32) -> u64 {
        let sequence = self.first_sequence + self.messages.len() as u64;
        self.messages.push_back(PendingMessage { offset, remaining: events, failed: false });
        self.open_events += u64::from(events);
        self.advance();
        sequence
    }

    /// Records the outcome of one event of the message `sequence`. Returns whether the done offset
    /// moved.
    pub fn acknowledge(&mut self, sequence: u64, status: EventStatus) -> bool {
        let Some(index) = sequence.checked_sub(self.first_sequence) else { return false };
        let Some(message) = self.messages.get_mut(index as usize) else { return false };
        if message.remaining == 0 {
            return false;
        }
        message.remaining -= 1;
        self.open_events = self.open_events.saturating_sub(1);
        if status == EventStatus::Undelivered {
            message.failed = true;
        }
        self.advance()
    }

    /// Pops the done messages at the front of the queue, moving the done offset past them unless an
    /// undelivered event holds it.
    fn advance(&mut self) -> bool {
        let before = self.done_offset;
        while let Some(message) = self.messages.front() {
            if message.remaining > 0 {
                break;
            }
            if message.failed && self.held_at.is_none() {
                self.held_at = Some(message.offset);
            }
            if self.held_at.is_none() {
                self.done_offset = Some(message.offset + 1);
            }
            self.messages.pop_front();
            self.first_sequence += 1;
        }
        self.done_offset != before
    }

    /// Returns the number of events read and not yet final.
    pub fn open_events(&self) -> u64 {
        self.open_events
    }

    /// Returns the offset that may be committed: one past the last message of the done prefix.
    pub fn done_offset(&self) -> Option<i64> {
        self.done_offset
    }

    /// Returns the offset of the first message with an undelivered event, if any.
    pub fn held_at(&self) -> Option<i64> {
        self.held_at
    }

    /// Returns the done offset if it differs from the last commit requested, and records it as
    /// requested.
    pub fn take_commit(&mut self) -> Option<i64> {
        let offset = self.done_offset?;
        if self.committed_offset == Some(offset) {
            return None;
        }
        self.committed_offset = Some(offset);
        Some(offset)
    }

    /// Forgets a requested commit of `offset` that failed, so that the next commit requests it again.
    pub fn commit_failed(&mut self, offset: i64) {
        if self.committed_offset == Some(offset) {
            self.committed_offset = None;
        }
    }
}

struct Tracked {
    partition: TopicPartition,
    progress: PartitionProgress,
    /// Whether the hold of the commit offset was logged.
    hold_logged: bool,
}

#[derive(Default)]
struct State {
    slots: HashMap<u32, Tracked>,
    next_slot: u32,
}

/// The progress of every assigned partition: the [`AckReceiver`] of the `kafka` source.
pub struct Offsets {
    source_id: String,
    state: Mutex<State>,
    /// Notified whenever a partition's open events reach zero, for revocations that wait for them.
    settled: Condvar,
    stats: Arc<RunStats>,
}

impl Offsets {
    /// Creates an empty tracker that also counts every outcome in `stats`.
    pub fn new(source_id: &str, stats: Arc<RunStats>) -> Offsets {
        Offsets { source_id: source_id.to_owned(), state: Mutex::default(), settled: Condvar::new(), stats }
    }

    /// Starts tracking a newly assigned partition; returns its slot.
    pub fn register(&self, partition: TopicPartition) -> u32 {
        let mut state = self.lock();
        let slot = state.next_slot;
        state.next_slot = (state.next_slot + 1) % SLOT_LIMIT;
        state.slots.insert(slot, Tracked { partition, progress: PartitionProgress::default(), hold_logged: false });
        slot
    }

    /// Records a message of the partition in `slot`; returns the cookie its events carry.
    pub fn add_message(&self, slot: u32, offset: i64, events: u32) -> u64 {
        let mut state = self.lock();
        let sequence = match state.slots.get_mut(&slot) {
            Some(tracked) => tracked.progress.add_message(offset, events),
            None => 0,
        };
        (u64::from(slot) << SEQUENCE_BITS) | (sequence & SEQUENCE_MASK)
    }

    /// Waits until no event of the partitions in `slots` is open, or until `timeout` has passed.
    /// Returns the number of events still open.
    pub fn wait_settled(&self, slots: &[u32], timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            let open: u64 = slots
                .iter()
                .filter_map(|slot| state.slots.get(slot))
                .map(|tracked| tracked.progress.open_events())
                .sum();
            let now = Instant::now();
            if open == 0 || now >= deadline {
                return open;
            }
            state = match self.settled.wait_timeout(state, deadline - now) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Returns the offsets to commit for the partitions in `slots`, those whose done offset moved
    /// since the last commit, and records them as requested.
    pub fn take_commits(&self, slots: &[u32]) -> Vec<(TopicPartition, i64)> {
        let mut state = self.lock();
        let mut commits = Vec::new();
        for slot in slots {
            let Some(tracked) = state.slots.get_mut(slot) else { continue };
            if let Some(offset) = tracked.progress.take_commit() {
                commits.push((tracked.partition.clone(), offset));
            }
        }
        commits
    }

    /// Forgets a failed commit of `offset` for `partition`, so the next commit retries it.
    pub fn commit_failed(&self, partition: &TopicPartition, offset: i64) {
        let mut state = self.lock();
        for tracked in state.slots.values_mut().filter(|tracked| tracked.partition == *partition) {
            tracked.progress.commit_failed(offset);
        }
    }

    /// Stops tracking the partitions in `slots`.
    pub fn release(&self, slots: &[u32]) {
        let mut state = self.lock();
        for slot in slots {
            state.slots.remove(slot);
        }
    }

    /// Returns the done offset of the partition in `slot`, for tests and logs.
    pub fn done_offset(&self, slot: u32) -> Option<i64> {
        self.lock().slots.get(&slot).and_then(|tracked| tracked.progress.done_offset())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain data updated in single steps, so a panic elsewhere cannot corrupt it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl AckReceiver for Offsets {
    fn acknowledge(&self, cookie: u64, status: EventStatus) {
        self.stats.acknowledge(cookie, status);

        let slot = (cookie >> SEQUENCE_BITS) as u32;
        let sequence = cookie & SEQUENCE_MASK;
        let mut state = self.lock();
        let Some(tracked) = state.slots.get_mut(&slot) else { return };
        tracked.progress.acknowledge(sequence, status);

        if let (Some(offset), false) = (tracked.progress.held_at(), tracked.hold_logged) {
            tracked.hold_logged = true;
            tracing::warn!(
                component_id = %self.source_id,
                partition = %tracked.partition,
                offset,
                "an event of this message ended undelivered; the partition's offsets are not committed past it until another assignment reads it again"
            );
        }
        if tracked.progress.open_events() == 0 {
            self.settled.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_offset_follows_contiguous_prefix() {
        let mut progress = PartitionProgress::default();
        let first = progress.add_message(10, 1);
        let second = progress.add_message(11, 2);
        let third = progress.add_message(14, 1);

        progress.acknowledge(third, EventStatus::Delivered);
        assert_eq!(progress.done_offset(), None, "a later message cannot pass an open one");
        progress.acknowledge(first, EventStatus::Skipped);
        assert_eq!(progress.done_offset(), Some(11));
        progress.acknowledge(second, EventStatus::DeadLettered);
        assert_eq!(progress.done_offset(), Some(11), "one of the message's two events is still open");
        progress.acknowledge(second, EventStatus::Delivered);
        assert_eq!(progress.done_offset(), Some(15), "the offset after the last done message, across the gap");
        assert_eq!(progress.open_events(), 0);
    }

    #[test]
    fn undelivered_event_holds_offset() {
        let mut progress = PartitionProgress::default();
        let first = progress.add_message(0, 1);
        let second = progress.add_message(1, 1);
        let third = progress.add_message(2, 1);

        progress.acknowledge(first, EventStatus::Delivered);
        progress.acknowledge(second, EventStatus::Undelivered);
        progress.acknowledge(third, EventStatus::Delivered);

        assert_eq!(progress.done_offset(), Some(1));
        assert_eq!(progress.held_at(), Some(1));
        assert_eq!(progress.open_events(), 0);
        let fourth = progress.add_message(3, 1);
        progress.acknowledge(fourth, EventStatus::Delivered);
        assert_eq!(progress.done_offset(), Some(1), "no later message moves a held offset");
        assert!(progress.messages.is_empty(), "done messages behind the hold are not kept");
    }

    #[test]
    fn empty_message_done_at_once() {
        let mut progress = PartitionProgress::default();
        progress.add_message(7, 0);
        assert_eq!(progress.done_offset(), Some(8));
    }

    #[test]
    fn empty_message_waits_behind_open_one() {
        let mut progress = PartitionProgress::default();
        let first = progress.add_message(7, 1);
        progress.add_message(8, 0);
        assert_eq!(progress.done_offset(), None);
        progress.acknowledge(first, EventStatus::Delivered);
        assert_eq!(progress.done_offset(), Some(9));
    }

    #[test]
    fn commit_taken_once_per_offset() {
        let mut progress = PartitionProgress::default();
        assert_eq!(progress.take_commit(), None, "nothing done yet");
        let first = progress.add_message(0, 1);
        progress.acknowledge(first, EventStatus::Delivered);
        assert_eq!(progress.take_commit(), Some(1));
        assert_eq!(progress.take_commit(), None, "unchanged since the last commit");
        progress.commit_failed(1);
        assert_eq!(progress.take_commit(), Some(1), "a failed commit is requested again");
    }

    #[test]
    fn duplicate_outcome_ignored() {
        let mut progress = PartitionProgress::default();
        let first = progress.add_message(0, 1);
        let second = progress.add_message(1, 1);
        progress.acknowledge(second, EventStatus::Delivered);
        progress.acknowledge(second, EventStatus::Delivered);
        assert_eq!(progress.open_events(), 1);
        assert_eq!(progress.done_offset(), None);
        progress.acknowledge(first, EventStatus::Delivered);
        assert_eq!(progress.done_offset(), Some(2));
    }

    fn partition(number: i32) -> TopicPartition {
        TopicPartition { topic: "events".to_owned(), partition: number }
    }

    #[test]
    fn cookies_route_to_their_slot() {
        let offsets = Offsets::new("kafka", Arc::new(RunStats::default()));
        let zero = offsets.register(partition(0));
        let one = offsets.register(partition(1));
        let cookie_zero = offsets.add_message(zero, 5, 1);
        let cookie_one = offsets.add_message(one, 9, 1);

        offsets.acknowledge(cookie_one, EventStatus::Delivered);

        assert_eq!(offsets.done_offset(zero), None);
        assert_eq!(offsets.done_offset(one), Some(10));
        offsets.acknowledge(cookie_zero, EventStatus::Delivered);
        assert_eq!(offsets.take_commits(&[zero, one]), vec![(partition(0), 6), (partition(1), 10)]);
    }

    #[test]
    fn released_slot_ignores_late_outcomes() {
        let stats = Arc::new(RunStats::default());
        let offsets = Offsets::new("kafka", stats.clone());
        let first = offsets.register(partition(0));
        let cookie = offsets.add_message(first, 0, 1);
        offsets.release(&[first]);
        let second = offsets.register(partition(0));

        offsets.acknowledge(cookie, EventStatus::Delivered);

        assert_eq!(offsets.done_offset(second), None, "the outcome belongs to the earlier assignment");
        assert!(offsets.take_commits(&[first, second]).is_empty());
        assert_eq!(stats.summary().sent, 1, "the outcome is still counted");
    }

    #[test]
    fn wait_settled_returns_when_events_final() {
        let offsets = Arc::new(Offsets::new("kafka", Arc::new(RunStats::default())));
        let slot = offsets.register(partition(0));
        let cookie = offsets.add_message(slot, 0, 1);
        let acknowledger = offsets.clone();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            acknowledger.acknowledge(cookie, EventStatus::Delivered);
        });

        let started = Instant::now();
        let open = offsets.wait_settled(&[slot], Duration::from_secs(10));

        assert_eq!(open, 0);
        assert!(started.elapsed() < Duration::from_secs(5), "waited {:?}", started.elapsed());
        thread.join().unwrap();
    }

    #[test]
    fn wait_settled_bounded_by_timeout() {
        let offsets = Offsets::new("kafka", Arc::new(RunStats::default()));
        let slot = offsets.register(partition(0));
        offsets.add_message(slot, 0, 2);
        assert_eq!(offsets.wait_settled(&[slot], Duration::from_millis(20)), 2);
    }
}
