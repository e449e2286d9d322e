//! The running `optimizely` transform: routes each message's outcome to an output.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine;
use futures::stream::{FuturesOrdered, StreamExt};
use serde_json::{Map, Value};

use super::borrowed::{BorrowedValue, ParseBuffer};
use super::config::OptimizelyTransformConfig;
use super::datafile::Datafile;
use super::mapper::{MapOutcome, MapWarnings, Mapper, MapperSettings, Rejection, SkipReason, ENTRY_EXTRA_BYTES};
use crate::ack::EventStatus;
use crate::event::{BatchKey, DeadLetter, EncodedConversion, Event, Payload};
use crate::log_limit::LogLimiter;
use crate::observability::{ComponentKind, ComponentMetrics};
use crate::sources::decode;
use crate::topology::{Input, Output};

/// Counters of problems that removed a field but still let the conversion be sent.
#[derive(Debug, Default)]
pub struct WarningCounters {
    /// Revenues left out because they were not convertible.
    pub invalid_revenue: AtomicU64,
    /// Values left out because they were not numeric.
    pub invalid_value: AtomicU64,
    /// Tags removed because they were arrays or objects.
    pub removed_tags: AtomicU64,
    /// Traits left out.
    pub removed_attributes: AtomicU64,
    /// Tags and traits left out because their object had more than `max_properties` keys.
    pub excess_properties: AtomicU64,
}

impl WarningCounters {
    fn add(&self, warnings: &MapWarnings) {
        let counts = [
            (&self.invalid_revenue, warnings.invalid_revenue),
            (&self.invalid_value, warnings.invalid_value),
            (&self.removed_tags, warnings.removed_tags),
            (&self.removed_attributes, warnings.removed_attributes),
            (&self.excess_properties, warnings.excess_properties),
        ];
        // The tasks that map chunks share these counters, and an atomic add moves the counter's cache
        // line between cores even when it adds 0.
        for (counter, count) in counts {
            if count > 0 {
                counter.fetch_add(u64::from(count), Ordering::Relaxed);
            }
        }
    }
}

/// The `optimizely` transform: maps messages with the current datafile, which can be swapped while it
/// runs.
pub struct OptimizelyTransform {
    id: String,
    settings: Arc<MapperSettings>,
    mapper: ArcSwap<Mapper>,
    warnings: WarningCounters,
    metrics: ComponentMetrics,
    /// `optimizely_removed_fields_total` for the fields revenue, value, tags and attributes, in that
    /// order.
    removed_fields: [metrics::Counter; 4],
}

/// One event being routed: its acknowledgement, its origin, and where its outcome goes.
struct Routed<'a> {
    finalizer: crate::ack::EventFinalizer,
    origin: Option<Arc<Map<String, Value>>>,
    mapped: &'a mut MappedChunk,
    limiter: &'a Mutex<LogLimiter>,
}

/// The outcomes of one chunk of events, by output.
struct MappedChunk {
    conversions: Vec<Event>,
    dropped: Vec<Event>,
    deletions: Vec<Event>,
    visitors: VisitorBuffer,
}

/// The size of the buffers that hold the visitor entries of a chunk's conversions, unless the rest of
/// the chunk needs less.
const VISITOR_BUFFER_BYTES: usize = 64 * 1024;

/// The buffer that the visitor entries of a chunk's conversions are written to, many to a buffer.
///
/// A full buffer becomes one `Bytes`, and each conversion keeps a slice of it. With a buffer of its
/// own, each entry took an allocation that the sink's thread freed, and mimalloc's collection of
/// those frees took 3.9% of the relay's CPU samples end to end (`perf record`).
///
/// NOTE: a conversion that outlives the others of its buffer keeps the whole buffer, up to 64 KB.
/// The sink sends and drops a chunk's conversions together, so this stays rare.
struct VisitorBuffer {
    /// The top-level fields of the chunk's conversions.
    batch_key: Arc<BatchKey>,
    text: Vec<u8>,
    /// The index in the chunk's conversions and the range in `text` of each entry.
    entries: Vec<(usize, std::ops::Range<usize>)>,
    /// The room that the chunk's messages may still ask for: the length of each message's text plus
    /// `ENTRY_EXTRA_BYTES`, for the messages not given room yet.
    pending_room: usize,
}

impl VisitorBuffer {
    /// Creates the buffer of the conversions of `events`.
    fn new(batch_key: Arc<BatchKey>, events: &[Event]) -> VisitorBuffer {
        let pending_room = events
            .iter()
            .map(|event| match &event.payload {
                Payload::RawMessage(text) => text.len() + ENTRY_EXTRA_BYTES,
                _ => 0,
            })
            .sum();
        VisitorBuffer { batch_key, text: Vec::new(), entries: Vec::new(), pending_room }
    }

    /// Returns the buffer to append an entry of about `bytes` to, with at least that much room.
    ///
    /// A new buffer is no larger than the rest of the chunk may need, so that the conversions of a
    /// chunk of few messages, which the sink may keep until its batch times out, keep little memory.
    fn with_room(&mut self, bytes: usize, conversions: &mut [Event]) -> &mut Vec<u8> {
        if self.text.capacity() - self.text.len() < bytes {
            self.hand_out(conversions);
            self.text = Vec::with_capacity(bytes.max(VISITOR_BUFFER_BYTES.min(self.pending_room)));
        }
        self.pending_room = self.pending_room.saturating_sub(bytes);
        &mut self.text
    }

    /// Gives each conversion with an entry in the buffer its slice of the buffer, and empties it.
    fn hand_out(&mut self, conversions: &mut [Event]) {
        if self.entries.is_empty() {
            return;
        }
        let shared = bytes::Bytes::from(std::mem::take(&mut self.text));
        for (index, range) in self.entries.drain(..) {
            if let Some(Payload::EncodedConversion(conversion)) =
                conversions.get_mut(index).map(|event| &mut event.payload)
            {
                conversion.set_visitor_json(shared.slice(range));
            }
        }
    }
}

/// The three outputs of the transform.
pub struct TransformOutputs {
    /// Conversions, as [`Payload::EncodedConversion`].
    pub conversions: Output,
    /// Dead-letter records.
    pub dropped: Output,
    /// Deletion requests.
    pub deletions: Output,
}

impl OptimizelyTransform {
    /// Creates the transform with its first datafile.
    pub fn new(
        id: impl Into<String>,
        config: &OptimizelyTransformConfig,
        datafile: Arc<Datafile>,
    ) -> OptimizelyTransform {
        let settings = Arc::new(MapperSettings::from(config));
        let mapper = Mapper::new(settings.clone(), datafile);
        let id = id.into();
        let metrics = ComponentMetrics::new(ComponentKind::Transform, &id, "optimizely");
        let removed_fields = ["revenue", "value", "tags", "attributes"]
            .map(|field| metrics.counter("optimizely_removed_fields_total", &[("field", field)]));
        OptimizelyTransform {
            id,
            settings,
            mapper: ArcSwap::from_pointee(mapper),
            warnings: WarningCounters::default(),
            metrics,
            removed_fields,
        }
    }

    /// Creates the transform from its settings written as TOML, as in a `[transforms.ID]` table without
    /// `type` and `inputs`, with `datafile` as its first datafile. The `[datafile]` table is still
    /// required, but the transform does not load it.
    ///
    /// Fails with every unknown option and invalid value, each with a "did you mean" hint where one fits.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use optimizely_relay::transforms::optimizely::{datafile::Datafile, OptimizelyTransform, MapOutcome};
    /// let datafile = Datafile::parse(include_bytes!("../../../config-examples/quickstart-datafile.json"))?;
    /// let settings = "revenue_unit = \"dollars\"\n[datafile]\npath = \"unused.json\"";
    /// let transform = OptimizelyTransform::from_toml("opt", settings, Arc::new(datafile))?;
    ///
    /// let outcome = transform.map_bytes(br#"{"type":"track","event":"order_completed","userId":"u-1","timestamp":"2026-12-01T10:00:00Z","properties":{"revenue":"19.99"}}"#);
    /// let MapOutcome::Conversion(conversion, _) = outcome else { panic!("expected a conversion") };
    /// assert_eq!(conversion.visitor.snapshots[0].events[0].revenue, Some(1999));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_toml(
        id: impl Into<String>,
        settings: &str,
        datafile: Arc<Datafile>,
    ) -> Result<OptimizelyTransform, crate::config::ConfigErrors> {
        let id = id.into();
        let label = format!("transforms.{id}");
        let as_errors = |messages: Vec<String>| {
            crate::config::ConfigErrors(
                messages.into_iter().map(|message| crate::config::ConfigError::component(&label, message)).collect(),
            )
        };
        let table: toml::Table = toml::from_str(settings)
            .map_err(|error| as_errors(vec![crate::config::error::invalid_toml(settings, &error)]))?;
        let crate::transforms::TransformConfig::Optimizely(config) =
            crate::transforms::TransformConfig::parse("optimizely", table).map_err(as_errors)?;
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(as_errors(problems));
        }
        Ok(OptimizelyTransform::new(id, &config, datafile))
    }

    /// Maps one Segment message given as JSON bytes, such as a line of NDJSON. A UTF-8 byte order mark
    /// and a trailing `\r` are ignored; bytes that are not JSON give [`MapOutcome::Rejected`] with the
    /// reason `invalid_json`. A `{"batch":[...]}` envelope is one message here: expand it with
    /// [`crate::sources::decode::decode_line`] first.
    pub fn map_bytes(&self, line: &[u8]) -> MapOutcome {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        let mut buffer = ParseBuffer::default();
        if let Ok(message) = BorrowedValue::parse(line, &mut buffer) {
            return self.count_warnings(self.mapper.load().map_borrowed(&message));
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(message) => self.map_message(&message),
            Err(error) => {
                MapOutcome::Rejected(Rejection { reason: "invalid_json", message: format!("invalid JSON: {error}") })
            }
        }
    }

    /// Returns the component id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Returns the datafile in use.
    pub fn datafile(&self) -> Arc<Datafile> {
        self.mapper.load().datafile().clone()
    }

    /// Replaces the datafile. Messages mapped afterwards use the new one; conversions already mapped
    /// keep the revision they were mapped with.
    pub fn set_datafile(&self, datafile: Arc<Datafile>) {
        self.mapper.store(Arc::new(Mapper::new(self.settings.clone(), datafile)));
    }

    /// Returns the counters of removed fields.
    pub fn warnings(&self) -> &WarningCounters {
        &self.warnings
    }

    /// Maps one Segment message with the current datafile.
    pub fn map_message(&self, message: &Value) -> MapOutcome {
        self.count_warnings(self.mapper.load().map(message))
    }

    fn count_warnings(&self, outcome: MapOutcome) -> MapOutcome {
        if let MapOutcome::Conversion(_, warnings) = &outcome {
            self.warnings.add(warnings);
        }
        outcome
    }

    /// Consumes `input` until it closes, sending each outcome to its output.
    ///
    /// Up to two chunks per CPU core are mapped at once, each on its own task, and the outcomes of
    /// chunks are sent in the order the chunks arrived. Mapping is the costliest stage of the
    /// pipeline, and one task mapping every chunk kept the end-to-end benchmark at about 1.4 of its
    /// 2 cores. On 2 cores, 500,000 messages from standard input to a file took 1.73 s instead of
    /// 2.39 s with one chunk per core. A chunk that finished before the one ahead of it still counts
    /// until it is sent, so with one chunk per core a core could wait for the slower chunk. Two per
    /// core raised the end-to-end benchmark from 285,000 to 295,000 events/s to 336,000 to 371,000,
    /// and four per core measured 330,000 to 345,000.
    pub async fn run(self: Arc<Self>, mut input: Input, mut outputs: TransformOutputs) {
        let limiter = Arc::new(Mutex::new(LogLimiter::new(Duration::from_secs(60))));
        let concurrency = 2 * std::thread::available_parallelism().map_or(1, usize::from);
        let mut mapping = FuturesOrdered::new();
        let mut input_open = true;
        while input_open || !mapping.is_empty() {
            tokio::select! {
                Some(mapped) = mapping.next(), if !mapping.is_empty() => match mapped {
                    Ok(mapped) => self.send(mapped, &mut outputs).await,
                    Err(error) => {
                        tracing::error!(component_id = %self.id, %error, "mapping a chunk of events failed, so its events are undelivered");
                    }
                },
                events = input.recv(), if input_open && mapping.len() < concurrency => match events {
                    Some(events) => {
                        let transform = self.clone();
                        let limiter = limiter.clone();
                        mapping.push_back(tokio::spawn(async move { transform.map_chunk(events, &limiter) }));
                    }
                    None => input_open = false,
                },
            }
        }
    }

    /// Maps a chunk of events with one datafile, so a chunk never mixes revisions.
    fn map_chunk(&self, events: Vec<Event>, limiter: &Mutex<LogLimiter>) -> MappedChunk {
        self.metrics.received(events.len() as u64, 0);
        let mapper = self.mapper.load_full();
        // The chunk's conversions share a copy of the key. Shared by every chunk, the key's reference
        // count moved between the cores that map chunks and the sink's, and its increments and
        // decrements took 2.3% of the relay's CPU samples end to end (`perf record`).
        let batch_key = Arc::new(BatchKey::clone(mapper.batch_key()));
        let mut mapped = MappedChunk {
            conversions: Vec::with_capacity(events.len()),
            dropped: Vec::new(),
            deletions: Vec::new(),
            visitors: VisitorBuffer::new(batch_key, &events),
        };
        let mut buffer = ParseBuffer::default();
        for event in events {
            self.route(&mapper, event, &mut mapped, limiter, &mut buffer);
        }
        mapped.visitors.hand_out(&mut mapped.conversions);
        mapped
    }

    async fn send(&self, mapped: MappedChunk, outputs: &mut TransformOutputs) {
        for (output, chunk) in [
            (&mut outputs.conversions, mapped.conversions),
            (&mut outputs.dropped, mapped.dropped),
            (&mut outputs.deletions, mapped.deletions),
        ] {
            if let Err(error) = output.send(chunk).await {
                tracing::error!(component_id = %self.id, %error, "a downstream component stopped; events are undelivered");
            }
        }
    }

    fn route(
        &self,
        mapper: &Mapper,
        event: Event,
        mapped: &mut MappedChunk,
        limiter: &Mutex<LogLimiter>,
        buffer: &mut ParseBuffer,
    ) {
        let Event { payload, finalizer, origin } = event;
        let routed = Routed { finalizer, origin, mapped, limiter };
        match payload {
            Payload::Message(message) => {
                let outcome = mapper.map(&message);
                self.route_outcome(outcome, || message, routed);
            }
            Payload::RawMessage(text) => match BorrowedValue::parse(&text, buffer) {
                Ok(message) => {
                    let MappedChunk { conversions, visitors, .. } = &mut *routed.mapped;
                    let output = visitors.with_room(text.len() + ENTRY_EXTRA_BYTES, conversions);
                    let start = output.len();
                    match mapper.encode_borrowed(&message, output) {
                        Ok(warnings) => {
                            let entry = start..output.len();
                            visitors.entries.push((conversions.len(), entry));
                            // The conversion gets its entry when the buffer is handed out.
                            let conversion =
                                EncodedConversion::from_visitor_json(visitors.batch_key.clone(), Vec::new());
                            self.route_conversion(conversion, &warnings, routed);
                        }
                        Err(outcome) => self.route_outcome(outcome, || message.to_value(), routed),
                    }
                }
                Err(_) => {
                    let event = Event {
                        payload: decode::parse_raw_message(&text),
                        finalizer: routed.finalizer,
                        origin: routed.origin,
                    };
                    self.route(mapper, event, routed.mapped, routed.limiter, buffer);
                }
            },
            Payload::Unparsed(unparsed) => {
                let rejection = Rejection { reason: unparsed.reason, message: unparsed.error };
                let mut record = self.dead_letter(
                    rejection,
                    Value::String(unparsed.text),
                    routed.finalizer,
                    routed.origin,
                    routed.limiter,
                );
                if let (Some(bytes), Payload::DeadLetter(dead_letter)) = (unparsed.bytes, &mut record.payload) {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
                    dead_letter.details.insert("event_base64".to_owned(), Value::String(encoded));
                }
                routed.mapped.dropped.push(record);
            }
            other => {
                let rejection = Rejection {
                    reason: "unsupported_event",
                    message: "the transform accepts Segment messages only; connect it to a source".to_owned(),
                };
                let record =
                    self.dead_letter(rejection, other.to_json(), routed.finalizer, routed.origin, routed.limiter);
                routed.mapped.dropped.push(record);
            }
        }
    }

    /// Sends a conversion to the conversions output, counting the fields its mapping removed.
    fn route_conversion(&self, conversion: EncodedConversion, warnings: &MapWarnings, routed: Routed<'_>) {
        let Routed { finalizer, origin, mapped, limiter } = routed;
        self.warnings.add(warnings);
        self.count_removed_fields(warnings);
        if warnings.excess_properties > 0 {
            if let Some(count) = check_limit(limiter, "excess_properties") {
                tracing::warn!(component_id = %self.id, count, max_properties = self.settings.max_properties, "left out the tags and traits past max_properties of messages with more keys");
            }
        }
        let payload = Payload::EncodedConversion(conversion);
        mapped.conversions.push(Event { payload, finalizer, origin });
    }

    /// Sends the outcome of mapping one message to its output. `original` builds the message for a
    /// dead-letter record.
    fn route_outcome(&self, outcome: MapOutcome, original: impl FnOnce() -> Value, routed: Routed<'_>) {
        if let MapOutcome::Conversion(conversion, warnings) = &outcome {
            // Encoded here, on the thread that mapped it: see `EncodedConversion`.
            return self.route_conversion(EncodedConversion::new(conversion), warnings, routed);
        }
        let Routed { finalizer, origin, mapped, limiter } = routed;
        match outcome {
            MapOutcome::Conversion(..) => {}
            MapOutcome::Deletion(deletion) => {
                mapped.deletions.push(Event { payload: Payload::Deletion(deletion), finalizer, origin })
            }
            MapOutcome::Skipped(reason) => {
                if let SkipReason::UnknownEventKey(key) = &reason {
                    if let Some(count) = check_limit_in_group(limiter, "skip", &format!("skip:{key}")) {
                        tracing::info!(component_id = %self.id, event_key = %key, count, "skipped messages with an event key not in the datafile");
                    }
                }
                let reason = match &reason {
                    SkipReason::MessageType(_) => "message_type",
                    SkipReason::UnknownEventKey(_) => "unknown_event_key",
                };
                self.metrics.discarded(reason, true, 1);
                finalizer.finalize(EventStatus::Skipped);
            }
            MapOutcome::Rejected(rejection) => {
                mapped.dropped.push(self.dead_letter(rejection, original(), finalizer, origin, limiter))
            }
        }
    }

    fn count_removed_fields(&self, warnings: &MapWarnings) {
        let removed =
            [warnings.invalid_revenue, warnings.invalid_value, warnings.removed_tags, warnings.removed_attributes];
        for (counter, count) in self.removed_fields.iter().zip(removed) {
            if count > 0 {
                counter.increment(u64::from(count));
            }
        }
    }

    fn dead_letter(
        &self,
        rejection: Rejection,
        original: Value,
        finalizer: crate::ack::EventFinalizer,
        origin: Option<Arc<Map<String, Value>>>,
        limiter: &Mutex<LogLimiter>,
    ) -> Event {
        // Unknown event keys are limited per key, so that a key that vanished in a datafile update is
        // reported on its own, up to a few keys per interval. Other reasons are limited per reason.
        let due = match rejection.reason {
            "unknown_event_key" => {
                check_limit_in_group(limiter, rejection.reason, &format!("{}:{}", rejection.reason, rejection.message))
            }
            reason => check_limit(limiter, reason),
        };
        if let Some(count) = due {
            tracing::warn!(component_id = %self.id, reason = rejection.reason, count, example = %rejection.message, "dead-lettered messages");
        }
        finalizer.update_with_reason(EventStatus::DeadLettered, rejection.reason);
        let record = DeadLetter {
            reason: rejection.reason.to_owned(),
            message: rejection.message,
            component: self.id.clone(),
            event: original,
            details: crate::event::origin_details(origin.as_deref()),
        };
        Event { payload: Payload::DeadLetter(record), finalizer, origin }
    }
}

/// Records one occurrence of `key` in the limiter shared by the tasks that map chunks.
fn check_limit(limiter: &Mutex<LogLimiter>, key: &str) -> Option<u64> {
    limiter.lock().unwrap_or_else(PoisonError::into_inner).check(key)
}

/// Records one occurrence of `key`, of `group`, in the limiter shared by the tasks that map chunks.
fn check_limit_in_group(limiter: &Mutex<LogLimiter>, group: &str, key: &str) -> Option<u64> {
    limiter.lock().unwrap_or_else(PoisonError::into_inner).check_in_group(group, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{buffer, BufferConfig, Unconnected, WhenFull};

    fn batch_key() -> Arc<BatchKey> {
        Arc::new(BatchKey {
            endpoint: "http://127.0.0.1:1/v1/events".to_owned(),
            account_id: "1".to_owned(),
            project_id: "2".to_owned(),
            revision: "3".to_owned(),
            client_name: "optimizely-relay".to_owned(),
            client_version: "0.1.0".to_owned(),
            anonymize_ip: None,
            enrich_decisions: true,
        })
    }

    fn raw_messages(count: usize, length: usize) -> Vec<Event> {
        (0..count).map(|_| Event::new(Payload::RawMessage(vec![b' '; length].into()))).collect()
    }

    #[test]
    fn visitor_buffer_sized_to_small_chunk() {
        let mut visitors = VisitorBuffer::new(batch_key(), &raw_messages(2, 100));
        assert_eq!(visitors.pending_room, 2 * (100 + ENTRY_EXTRA_BYTES));

        let capacity = visitors.with_room(100 + ENTRY_EXTRA_BYTES, &mut []).capacity();
        assert!((1_224..VISITOR_BUFFER_BYTES).contains(&capacity), "capacity {capacity}");
        assert_eq!(visitors.pending_room, 100 + ENTRY_EXTRA_BYTES);
    }

    #[test]
    fn visitor_buffer_capped_for_large_chunk() {
        let mut visitors = VisitorBuffer::new(batch_key(), &raw_messages(256, 1_000));

        let capacity = visitors.with_room(1_000 + ENTRY_EXTRA_BYTES, &mut []).capacity();
        assert!((VISITOR_BUFFER_BYTES..2 * VISITOR_BUFFER_BYTES).contains(&capacity), "capacity {capacity}");
    }

    /// Drains an output's buffer into the user ids of its events: the visitor id of a conversion, the
    /// `userId` of a dead-lettered message.
    async fn user_ids(mut input: Input) -> Vec<String> {
        let mut ids = Vec::new();
        while let Some(events) = input.recv().await {
            for event in events {
                let id = match &event.payload {
                    Payload::EncodedConversion(conversion) => conversion.decode().unwrap().visitor.visitor_id,
                    Payload::DeadLetter(record) => record.event["userId"].as_str().unwrap_or_default().to_owned(),
                    other => panic!("unexpected payload {other:?}"),
                };
                ids.push(id);
                event.finalize(EventStatus::Delivered);
            }
        }
        ids
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunk_outcomes_keep_input_order() {
        let datafile = Datafile::parse(include_bytes!("../../../config-examples/quickstart-datafile.json")).unwrap();
        let settings = "revenue_unit = \"dollars\"\n[datafile]\npath = \"unused.json\"";
        let transform = Arc::new(OptimizelyTransform::from_toml("opt", settings, Arc::new(datafile)).unwrap());

        let capacity = BufferConfig { max_events: 100_000, when_full: WhenFull::Block };
        let (input_sender, input) = buffer("opt", capacity);
        let (conversions_sender, conversions) = buffer("conversions", capacity);
        let (dropped_sender, dropped) = buffer("dropped", capacity);
        let (deletions_sender, _deletions) = buffer("deletions", capacity);
        let unconnected = Unconnected::Finalize(EventStatus::Undelivered);
        let outputs = TransformOutputs {
            conversions: Output::new("opt", vec![conversions_sender], unconnected),
            dropped: Output::new("opt.dropped", vec![dropped_sender], unconnected),
            deletions: Output::new("opt.deletions", vec![deletions_sender], unconnected),
        };

        // Chunks alternate between 2,000 messages with many properties and 3 short ones, so a short
        // chunk finishes before the long one sent ahead of it. Every tenth message has no type and is
        // dead-lettered.
        let (mut expected_conversions, mut expected_dropped) = (Vec::new(), Vec::new());
        let properties: String = (0..40).map(|index| format!(",\"p{index}\":\"value {index}\"")).collect();
        let mut next = 0;
        for chunk in 0..40 {
            let (count, extra) = if chunk % 2 == 0 { (2_000, properties.as_str()) } else { (3, "") };
            let mut events = Vec::new();
            for _ in 0..count {
                let user_id = format!("u-{next}");
                let message_type = if next % 10 == 9 { "" } else { "\"type\":\"track\"," };
                let line = format!(
                    "{{{message_type}\"event\":\"order_completed\",\"userId\":\"{user_id}\",\"timestamp\":\"2026-12-01T10:00:00Z\",\"properties\":{{\"revenue\":\"1.00\"{extra}}}}}"
                );
                if message_type.is_empty() { &mut expected_dropped } else { &mut expected_conversions }.push(user_id);
                events.push(Event::new(Payload::RawMessage(line.into_bytes().into())));
                next += 1;
            }
            input_sender.send(events).await.unwrap();
        }
        drop(input_sender);

        transform.run(input, outputs).await;
        assert_eq!(user_ids(conversions).await, expected_conversions);
        assert_eq!(user_ids(dropped).await, expected_dropped);
    }
}
