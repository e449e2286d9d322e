//! The reader task of the `kafka` source: takes messages from the assigned partitions' queues,
//! decodes them and emits their events.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::group::{ActivePartition, Shared};
use crate::ack::EventFinalizer;
use crate::event::{Event, Payload, Unparsed};
use crate::sources::{decode, Emitter, SourceError};

/// Messages taken from one partition before the next partition gets its turn, so that a busy
/// partition cannot starve the others.
const MESSAGES_PER_TURN: usize = 64;

/// How long the reader sleeps without a wake-up before it looks at the queues again. Wake-ups come
/// from librdkafka when a queue becomes non-empty; this bounds the delay if one is missed.
const IDLE_RECHECK: Duration = Duration::from_millis(500);

/// Reads the assigned partitions until shutdown.
pub(super) struct Reader {
    shared: Arc<Shared>,
    emitter: Emitter,
    payloads: Vec<Payload>,
    /// The position in the partition list where the next read pass starts.
    next_partition: usize,
}

impl Reader {
    pub fn new(shared: Arc<Shared>, emitter: Emitter) -> Reader {
        Reader { shared, emitter, payloads: Vec::new(), next_partition: 0 }
    }

    /// Reads messages until `shutdown` is cancelled or the consumer fails.
    pub async fn run(mut self, shutdown: &CancellationToken) -> Result<(), SourceError> {
        loop {
            let read = self.read_available();
            self.emitter.flush().await?;
            if let Some(message) = self.shared.failure.get() {
                return Err(SourceError::Kafka { message: message.clone() });
            }
            if shutdown.is_cancelled() {
                break;
            }
            if read > 0 {
                continue;
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = self.shared.failed.cancelled() => {}
                _ = self.shared.wake.notified() => {}
                _ = tokio::time::sleep(IDLE_RECHECK) => {}
            }
        }
        self.emitter.flush().await?;
        Ok(())
    }

    /// Takes the messages waiting in the partition queues, partition by partition, until every
    /// queue is empty or a chunk of events is full. Returns the number of messages taken.
    fn read_available(&mut self) -> usize {
        let shared = self.shared.clone();
        let mut active = shared.lock_active();
        let count = active.len();
        if count == 0 {
            return 0;
        }

        let mut read = 0;
        let mut empty_in_a_row = 0;
        let mut index = self.next_partition % count;
        while empty_in_a_row < count && !self.emitter.is_full() {
            let taken = self.read_partition(&mut active[index]);
            read += taken;
            empty_in_a_row = if taken == 0 { empty_in_a_row + 1 } else { 0 };
            index = (index + 1) % count;
        }
        self.next_partition = index;
        read
    }

    /// Takes up to [`MESSAGES_PER_TURN`] messages from one partition's queue.
    fn read_partition(&mut self, partition: &mut ActivePartition) -> usize {
        let mut taken = 0;
        for _ in 0..MESSAGES_PER_TURN {
            if self.emitter.is_full() {
                break;
            }
            match partition.queue.poll(Duration::ZERO) {
                None => break,
                Some(Ok(message)) => {
                    self.emit_message(partition.slot, &mut partition.started, &message);
                    taken += 1;
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(error)) => self.log_partition_error(&partition.partition.to_string(), &error),
            }
        }
        taken
    }

    fn emit_message(&mut self, slot: u32, started: &mut bool, message: &BorrowedMessage<'_>) {
        let shared = &self.shared;
        if !*started {
            *started = true;
            tracing::info!(
                component_id = %shared.source_id,
                partition = %format_args!("{}/{}", message.topic(), message.partition()),
                offset = message.offset(),
                "reading partition"
            );
        }

        decode_value(message.payload(), &mut self.payloads);
        self.emitter.add_bytes(message.payload_len() as u64);
        let origin = Arc::new(origin_of(message));
        let cookie = shared.offsets.add_message(slot, message.offset(), self.payloads.len() as u32);
        for payload in self.payloads.drain(..) {
            self.emitter.push_with_origin(payload, cookie, origin.clone());
        }
    }

    fn log_partition_error(&self, partition: &str, error: &KafkaError) {
        let shared = &self.shared;
        if let Some(occurrences) = shared.log_due(&format!("partition {partition}: {error}")) {
            tracing::warn!(
                component_id = %shared.source_id,
                partition,
                error = %shared.redact(&error.to_string()),
                occurrences,
                "reading a partition failed; librdkafka retries on its own"
            );
        }
    }
}

/// Decodes a message value: one Segment message or a batch envelope. A missing or blank value is
/// dead-lettered as `invalid_json`, so that every message leaves a trace.
pub fn decode_value(value: Option<&[u8]>, payloads: &mut Vec<Payload>) {
    let value = value.unwrap_or_default();
    if value.iter().all(u8::is_ascii_whitespace) {
        payloads.push(Payload::Unparsed(Unparsed {
            text: String::from_utf8_lossy(value).into_owned(),
            error: "the Kafka message has no value; expected a Segment message or a batch envelope".to_owned(),
            reason: "invalid_json",
            bytes: None,
        }));
        return;
    }
    decode::decode_owned_line(bytes::Bytes::copy_from_slice(value), payloads);
}

/// Returns where a message came from: `{"topic", "partition", "offset", "key"}`, the key as text
/// (invalid UTF-8 replaced) or `null`.
fn origin_of(message: &BorrowedMessage<'_>) -> Map<String, Value> {
    let mut origin = Map::new();
    origin.insert("topic".to_owned(), Value::String(message.topic().to_owned()));
    origin.insert("partition".to_owned(), Value::from(message.partition()));
    origin.insert("offset".to_owned(), Value::from(message.offset()));
    let key = message.key().map(|key| Value::String(String::from_utf8_lossy(key).into_owned()));
    origin.insert("key".to_owned(), key.unwrap_or(Value::Null));
    origin
}

impl Emitter {
    /// Adds an event whose acknowledgement carries `cookie` and whose dead-letter records carry
    /// `origin`.
    fn push_with_origin(&mut self, payload: Payload, cookie: u64, origin: Arc<Map<String, Value>>) {
        let finalizer = EventFinalizer::new(self.receiver.clone(), cookie);
        self.chunk.push(Event::with_finalizer(payload, finalizer).with_origin(origin));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a value and parses the text of single messages, which the transform would parse.
    fn decode(value: Option<&[u8]>) -> Vec<Payload> {
        let mut payloads = Vec::new();
        decode_value(value, &mut payloads);
        payloads
            .into_iter()
            .map(|payload| match payload {
                Payload::RawMessage(text) => decode::parse_raw_message(&text),
                other => other,
            })
            .collect()
    }

    #[test]
    fn message_value_decoded() {
        let payloads = decode(Some(br#"{"type":"track","event":"A"}"#));
        assert!(matches!(&payloads[..], [Payload::Message(_)]), "{payloads:?}");
    }

    #[test]
    fn batch_envelope_expands() {
        let payloads = decode(Some(br#"{"batch":[{"type":"track"},{"type":"identify"}]}"#));
        assert_eq!(payloads.len(), 2);
    }

    #[test]
    fn invalid_json_unparsed() {
        let payloads = decode(Some(b"{not json"));
        let [Payload::Unparsed(unparsed)] = &payloads[..] else { panic!("expected unparsed, got {payloads:?}") };
        assert_eq!(unparsed.reason, "invalid_json");
        assert_eq!(unparsed.text, "{not json");
    }

    #[test]
    fn missing_value_unparsed() {
        for value in [None, Some(&b""[..]), Some(&b" \n"[..])] {
            let payloads = decode(value);
            let [Payload::Unparsed(unparsed)] = &payloads[..] else { panic!("expected unparsed, got {payloads:?}") };
            assert_eq!(unparsed.reason, "invalid_json");
            assert!(unparsed.error.contains("no value"), "{}", unparsed.error);
        }
    }

    #[test]
    fn two_messages_in_one_value_unparsed() {
        let payloads = decode(Some(b"{\"type\":\"track\"}\n{\"type\":\"track\"}"));
        assert!(matches!(&payloads[..], [Payload::Unparsed(_)]), "{payloads:?}");
    }
}
