//! The consumer group side of the `kafka` source: rebalances, offset commits and librdkafka's logs.
//!
//! librdkafka runs rebalance callbacks on the thread that polls the consumer queue. That thread is
//! a dedicated OS thread ([`run_group_thread`]), not a tokio worker, because a revocation blocks it:
//! the revoked partitions' offsets must be committed before the callback returns, since the
//! partitions belong to another member once the group has rebalanced.
//!
//! Messages never arrive on the consumer queue. Each partition's messages are split into a queue of
//! its own when the partition is assigned, before librdkafka starts fetching it, and the reader task
//! polls those queues. So a reader slowed down by a full pipeline never delays a rebalance, and
//! librdkafka stops fetching a partition whose queue is full.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::offsets::{Offsets, TopicPartition};
use crate::log_limit::LogLimiter;

/// The consumer type of the source.
pub(super) type GroupConsumer = BaseConsumer<GroupContext>;

/// How long one poll of the consumer queue waits for an event; also how quickly the group thread
/// notices that the pipeline has drained.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// How often a repeated librdkafka log line or error is logged at most.
const LOG_INTERVAL: Duration = Duration::from_secs(30);

/// A partition the source reads: its message queue and its tracking slot.
pub(super) struct ActivePartition {
    pub partition: TopicPartition,
    pub slot: u32,
    pub queue: PartitionQueue<GroupContext>,
    /// Whether a message was read since the assignment, for the log line of the first one.
    pub started: bool,
}

/// State shared by the group thread, the rebalance callbacks and the reader task.
pub(super) struct Shared {
    pub source_id: String,
    pub offsets: Arc<Offsets>,
    /// The partitions being read. Lock order: `active` before the state inside `offsets`.
    active: Mutex<Vec<ActivePartition>>,
    /// Woken when a partition queue becomes non-empty or the assignment changes.
    pub wake: Arc<Notify>,
    /// The consumer, for splitting partition queues during an assignment. Weak, because the
    /// consumer owns this state through its context.
    pub consumer: OnceLock<Weak<GroupConsumer>>,
    revoke_timeout: Duration,
    /// Values of secret librdkafka properties, removed from every log line.
    secrets: Vec<String>,
    /// Set when librdkafka reports a fatal error; the reader then stops the source with it.
    pub failure: OnceLock<String>,
    pub failed: CancellationToken,
    limiter: Mutex<LogLimiter>,
}

impl Shared {
    pub fn new(source_id: &str, offsets: Arc<Offsets>, revoke_timeout: Duration, secrets: Vec<String>) -> Shared {
        Shared {
            source_id: source_id.to_owned(),
            offsets,
            active: Mutex::new(Vec::new()),
            wake: Arc::new(Notify::new()),
            consumer: OnceLock::new(),
            revoke_timeout,
            secrets,
            failure: OnceLock::new(),
            failed: CancellationToken::new(),
            limiter: Mutex::new(LogLimiter::new(LOG_INTERVAL)),
        }
    }

    pub fn lock_active(&self) -> MutexGuard<'_, Vec<ActivePartition>> {
        // Plain data updated in single steps, so a panic elsewhere cannot corrupt it.
        self.active.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Removes the values of secret properties from `text`.
    pub fn redact(&self, text: &str) -> String {
        let mut redacted = text.to_owned();
        for secret in &self.secrets {
            redacted = redacted.replace(secret.as_str(), "<redacted>");
        }
        redacted
    }

    /// Returns the number of occurrences to report when a log line for `key` is due.
    pub fn log_due(&self, key: &str) -> Option<u64> {
        self.limiter.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).check(key)
    }

    /// Starts reading newly assigned partitions. Runs before librdkafka starts fetching them, so
    /// every message of theirs lands in their own queue.
    fn assign(&self, list: &TopicPartitionList) {
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            tracing::error!(component_id = %self.source_id, "partitions were assigned while the consumer is closing; they are not read");
            return;
        };
        let mut assigned = Vec::new();
        {
            let mut active = self.lock_active();
            for element in list.elements() {
                let partition = TopicPartition { topic: element.topic().to_owned(), partition: element.partition() };
                if active.iter().any(|reading| reading.partition == partition) {
                    continue;
                }
                let Some(mut queue) = consumer.split_partition_queue(&partition.topic, partition.partition) else {
                    tracing::error!(component_id = %self.source_id, %partition, "cannot create the queue of an assigned partition; it is not read");
                    continue;
                };
                let wake = self.wake.clone();
                queue.set_nonempty_callback(move || wake.notify_one());
                let slot = self.offsets.register(partition.clone());
                assigned.push(partition.to_string());
                active.push(ActivePartition { partition, slot, queue, started: false });
            }
        }
        self.wake.notify_one();
        tracing::info!(
            component_id = %self.source_id,
            partitions = %assigned.join(","),
            "partitions assigned; reading each from its committed offset, or from auto_offset_reset without one"
        );
    }

    /// Hands revoked partitions back: stops reading them, waits up to `revoke_timeout` for their
    /// events to reach a final outcome, and commits the offsets that are final.
    fn revoke(&self, consumer: &GroupConsumer, list: &TopicPartitionList) {
        let revoked: Vec<TopicPartition> = list
            .elements()
            .iter()
            .map(|element| TopicPartition { topic: element.topic().to_owned(), partition: element.partition() })
            .collect();
        let slots: Vec<u32> = {
            let mut active = self.lock_active();
            let (gone, kept): (Vec<ActivePartition>, Vec<ActivePartition>) =
                active.drain(..).partition(|reading| revoked.contains(&reading.partition));
            *active = kept;
            gone.iter().map(|reading| reading.slot).collect()
        };

        let open_events = self.offsets.wait_settled(&slots, self.revoke_timeout);
        let committed = commit(consumer, &self.offsets, &slots, self);
        self.offsets.release(&slots);

        let partitions: Vec<String> = revoked.iter().map(ToString::to_string).collect();
        if open_events > 0 {
            tracing::warn!(
                component_id = %self.source_id,
                partitions = %partitions.join(","),
                committed = %committed,
                open_events,
                timeout_secs = self.revoke_timeout.as_secs_f64(),
                "partitions revoked before all their events reached a final outcome; the next owner reads the open ones again"
            );
        } else {
            tracing::info!(
                component_id = %self.source_id,
                partitions = %partitions.join(","),
                committed = %committed,
                "partitions revoked; committed the offsets of their final events"
            );
        }
    }

    /// Records a fatal error: the consumer cannot go on, and the source stops with it.
    fn fail(&self, message: String) {
        if self.failure.set(message).is_ok() {
            self.failed.cancel();
        }
    }
}

/// Commits the done offsets of the partitions in `slots` that moved since their last commit, and
/// waits for the result. Returns the committed offsets as text for logs, such as `events/0@42`, or
/// `unchanged` when no offset moved.
///
/// Commits wait for the broker because librdkafka reports the result of an asynchronous commit only
/// to an `offset_commit_cb`, which rdkafka does not set; waiting lets a failed commit be retried.
/// A wait takes one round trip to the group coordinator, or up to librdkafka's request timeout
/// while the coordinator is unreachable, and only delays this thread's rebalance handling.
fn commit(consumer: &GroupConsumer, offsets: &Offsets, slots: &[u32], shared: &Shared) -> String {
    let commits = offsets.take_commits(slots);
    if commits.is_empty() {
        return "unchanged".to_owned();
    }
    let mut list = TopicPartitionList::with_capacity(commits.len());
    for (partition, offset) in &commits {
        if let Err(error) = list.add_partition_offset(&partition.topic, partition.partition, Offset::Offset(*offset)) {
            tracing::error!(component_id = %shared.source_id, %partition, offset, %error, "cannot list an offset to commit");
        }
    }
    let text: Vec<String> = commits.iter().map(|(partition, offset)| format!("{partition}@{offset}")).collect();
    let text = text.join(",");

    if let Err(error) = consumer.commit(&list, CommitMode::Sync) {
        tracing::warn!(component_id = %shared.source_id, offsets = %text, error = %shared.redact(&error.to_string()), "committing offsets failed; the next commit retries them");
        for (partition, offset) in &commits {
            offsets.commit_failed(partition, *offset);
        }
        return format!("failed ({})", shared.redact(&error.to_string()));
    }
    tracing::debug!(component_id = %shared.source_id, offsets = %text, "committed offsets");
    text
}

/// Returns the librdkafka log level that matches the enabled `tracing` level of this module, so
/// that librdkafka produces only lines that are logged. (rdkafka's default follows the `log`
/// crate, which this program does not use.)
pub(super) fn librdkafka_log_level() -> RDKafkaLogLevel {
    if tracing::enabled!(tracing::Level::DEBUG) {
        RDKafkaLogLevel::Debug
    } else {
        RDKafkaLogLevel::Notice
    }
}

/// The librdkafka context of the source's consumer: rebalance callbacks and logs.
pub(super) struct GroupContext {
    shared: Arc<Shared>,
}

impl GroupContext {
    pub fn new(shared: Arc<Shared>) -> GroupContext {
        GroupContext { shared }
    }
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let shared = &self.shared;
        let message = shared.redact(message);
        let key: String = format!("{facility}:{message}").chars().filter(|c| !c.is_ascii_digit()).take(80).collect();
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                if let Some(occurrences) = shared.log_due(&key) {
                    tracing::error!(component_id = %shared.source_id, facility, occurrences, "librdkafka: {message}");
                }
            }
            RDKafkaLogLevel::Warning => {
                if let Some(occurrences) = shared.log_due(&key) {
                    tracing::warn!(component_id = %shared.source_id, facility, occurrences, "librdkafka: {message}");
                }
            }
            RDKafkaLogLevel::Notice => {
                tracing::info!(component_id = %shared.source_id, facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Info | RDKafkaLogLevel::Debug => {
                tracing::debug!(component_id = %shared.source_id, facility, "librdkafka: {message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let shared = &self.shared;
        let key = format!("error:{error}");
        if let Some(occurrences) = shared.log_due(&key) {
            tracing::error!(
                component_id = %shared.source_id,
                error = %shared.redact(&error.to_string()),
                reason = %shared.redact(reason),
                occurrences,
                "Kafka client error; librdkafka retries on its own"
            );
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &GroupConsumer, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => self.shared.assign(list),
            Rebalance::Revoke(list) => self.shared.revoke(consumer, list),
            Rebalance::Error(error) => {
                tracing::error!(component_id = %self.shared.source_id, %error, "the consumer group rebalance failed")
            }
        }
    }
}

/// Serves the consumer queue until `stop` is set: rebalances, errors and log lines, and a
/// commit of the assigned partitions' done offsets every `commit_interval`. Then commits once more
/// and closes the consumer, which leaves the group.
///
/// `stop` is set once the pipeline has drained, so the last commit covers every event that reached
/// a final outcome.
pub(super) fn run_group_thread(
    consumer: Arc<GroupConsumer>,
    shared: Arc<Shared>,
    commit_interval: Duration,
    stop: Arc<AtomicBool>,
) {
    let mut last_commit = Instant::now();
    while !stop.load(Ordering::Acquire) {
        match consumer.poll(POLL_TIMEOUT) {
            None | Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Ok(message)) => {
                // Every assigned partition has its own queue, so this is unexpected; the message is
                // not committed and its partition's next owner reads it again.
                if let Some(occurrences) = shared.log_due("unexpected message") {
                    tracing::error!(
                        component_id = %shared.source_id,
                        topic = message.topic(),
                        partition = message.partition(),
                        offset = message.offset(),
                        occurrences,
                        "a message arrived outside its partition's queue and was not read"
                    );
                }
            }
            Some(Err(KafkaError::MessageConsumptionFatal(code))) => {
                let reason = consumer.client().fatal_error().map(|(_, reason)| reason).unwrap_or_default();
                shared.fail(shared.redact(&format!("the Kafka consumer failed: {code}: {reason}")));
            }
            // Other errors reached `GroupContext::error`, which logs them; librdkafka recovers.
            Some(Err(_)) => {}
        }

        if last_commit.elapsed() >= commit_interval {
            let slots: Vec<u32> = shared.lock_active().iter().map(|reading| reading.slot).collect();
            commit(&consumer, &shared.offsets, &slots, &shared);
            last_commit = Instant::now();
        }
    }

    let slots: Vec<u32> = shared.lock_active().iter().map(|reading| reading.slot).collect();
    let committed = commit(&consumer, &shared.offsets, &slots, &shared);
    tracing::info!(component_id = %shared.source_id, committed = %committed, "committed the final offsets; leaving the consumer group");

    // The partition queues hold the consumer; once they are gone, dropping the last reference closes
    // the consumer, which revokes its partitions and leaves the group.
    shared.lock_active().clear();
    drop(consumer);
}
