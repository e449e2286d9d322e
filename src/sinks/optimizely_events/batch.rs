//! Encoded batching: conversions grouped into request bodies by batch key, within count, size and time
//! limits.
//!
//! Each visitor is encoded to JSON once, when it arrives, and each batch encodes its key's top-level
//! fields once. A request body is those bytes joined, so the size limit applies to the exact body that
//! is sent (before compression), not to an estimate.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Url;
use serde_json::Value;
use tokio::time::Instant;

use crate::event::{BatchKey, Event, Payload};
use crate::sinks::util::settings::parse_endpoint;

/// The bytes that close a request body after the last visitor.
const BODY_SUFFIX: &[u8] = b"]}";

/// When a batch is closed and sent.
#[derive(Debug, Clone)]
pub(super) struct BatchLimits {
    pub max_events: usize,
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// One conversion with its visitor encoded as JSON.
#[derive(Debug)]
pub(super) struct Entry {
    pub event: Event,
    visitor: Bytes,
}

/// Conversions that share one request: same top-level fields, same endpoint.
#[derive(Debug)]
pub(super) struct Batch {
    key: Arc<BatchKey>,
    endpoint: Url,
    /// The body up to and including the `[` of `"visitors"`.
    prefix: Bytes,
    entries: Vec<Entry>,
    encoded_len: usize,
}

impl Batch {
    fn new(key: Arc<BatchKey>, endpoint: Url, prefix: Bytes) -> Batch {
        let encoded_len = prefix.len() + BODY_SUFFIX.len();
        Batch { key, endpoint, prefix, entries: Vec::new(), encoded_len }
    }

    /// Returns the URL this batch is sent to.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// Returns the number of conversions in the batch.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns the exact length in bytes of [`Batch::encode_body`].
    pub fn encoded_len(&self) -> usize {
        self.encoded_len
    }

    /// Returns the body length after adding a visitor of `visitor_len` bytes.
    fn encoded_len_with(&self, visitor_len: usize) -> usize {
        let separator = usize::from(!self.entries.is_empty());
        self.encoded_len + separator + visitor_len
    }

    fn push(&mut self, entry: Entry) {
        self.encoded_len = self.encoded_len_with(entry.visitor.len());
        self.entries.push(entry);
    }

    /// Builds the request body: the top-level fields and every visitor in arrival order.
    pub fn encode_body(&self) -> Bytes {
        let mut body = Vec::with_capacity(self.encoded_len);
        body.extend_from_slice(&self.prefix);
        for (index, entry) in self.entries.iter().enumerate() {
            if index > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&entry.visitor);
        }
        body.extend_from_slice(BODY_SUFFIX);
        Bytes::from(body)
    }

    /// Splits the batch into two batches of the first and the second half of its conversions. With an
    /// odd count, the second half gets the extra one.
    pub fn split_in_half(mut self) -> (Batch, Batch) {
        let second_entries = self.entries.split_off(self.entries.len() / 2);
        let mut second = Batch::new(self.key.clone(), self.endpoint.clone(), self.prefix.clone());
        for entry in second_entries {
            second.push(entry);
        }
        let mut first = Batch::new(self.key, self.endpoint, self.prefix);
        for entry in self.entries {
            first.push(entry);
        }
        (first, second)
    }

    /// Consumes the batch, returning its events.
    pub fn into_events(self) -> impl Iterator<Item = Event> {
        self.entries.into_iter().map(|entry| entry.event)
    }
}

/// An error that keeps an event out of every batch, so the event is never sent.
#[derive(Debug, PartialEq)]
pub(super) enum BatchError {
    /// The payload is not a conversion.
    Unsupported { kind: &'static str },
    /// A request body holding only this conversion would exceed `max_bytes`.
    TooLarge { body_len: usize, max_bytes: usize },
    /// The conversion's endpoint is not an absolute http or https URL.
    InvalidEndpoint { endpoint: String, reason: String },
    /// The conversion could not be encoded as JSON.
    Encoding { error: String },
}

/// An event the batcher did not accept, with the error.
#[derive(Debug)]
pub(super) struct Unbatched {
    pub event: Event,
    pub error: BatchError,
}

/// A batch that is still collecting conversions.
#[derive(Debug)]
struct OpenBatch {
    batch: Batch,
    deadline: Instant,
}

/// Groups conversions into batches and decides when each batch is ready to send.
#[derive(Debug)]
pub(super) struct Batcher {
    limits: BatchLimits,
    endpoint_override: Option<Url>,
    /// One open batch per distinct key. Keys change only with a datafile revision or an endpoint, so
    /// this list is short and a linear search is cheaper than hashing every key.
    open: Vec<OpenBatch>,
    /// The key of the last event that matched an open batch by value, not by pointer, and the key of
    /// that batch. The transform gives each chunk of conversions a key of its own, so the events of a
    /// chunk find their batch by pointer here instead of comparing every field.
    matched: Option<(Arc<BatchKey>, Arc<BatchKey>)>,
}

impl Batcher {
    /// Creates a batcher. `endpoint_override` replaces the endpoint of every conversion.
    pub fn new(limits: BatchLimits, endpoint_override: Option<Url>) -> Batcher {
        Batcher { limits, endpoint_override, open: Vec::new(), matched: None }
    }

    /// Adds an event, appending to `ready` every batch that reached a limit.
    ///
    /// The error is boxed because it carries the whole event and is rare.
    pub fn push(&mut self, event: Event, now: Instant, ready: &mut Vec<Batch>) -> Result<(), Box<Unbatched>> {
        let (batch_key, visitor) = match &event.payload {
            // The transform's conversions: the entry shares the event's buffer.
            Payload::EncodedConversion(conversion) => (&conversion.batch_key, conversion.visitor_json().clone()),
            Payload::Conversion(conversion) => {
                let mut visitor = Vec::new();
                conversion.visitor.write_json(&mut visitor);
                (&conversion.batch_key, Bytes::from(visitor))
            }
            other => {
                let kind = payload_kind(other);
                return Err(Box::new(Unbatched { event, error: BatchError::Unsupported { kind } }));
            }
        };

        let index = match self.find_open(batch_key) {
            Some(index) => index,
            None => match self.open_batch(batch_key, now) {
                Ok(index) => index,
                Err(error) => return Err(Box::new(Unbatched { event, error })),
            },
        };
        let empty_len = self.open[index].batch.prefix.len() + BODY_SUFFIX.len();
        let alone_len = empty_len + visitor.len();
        if alone_len > self.limits.max_bytes {
            self.close_if_empty(index);
            let error = BatchError::TooLarge { body_len: alone_len, max_bytes: self.limits.max_bytes };
            return Err(Box::new(Unbatched { event, error }));
        }

        let index = self.make_room(index, visitor.len(), now, ready);
        self.open[index].batch.push(Entry { event, visitor });
        if self.open[index].batch.len() >= self.limits.max_events {
            ready.push(self.open.swap_remove(index).batch);
        }
        Ok(())
    }

    /// Returns the earliest time at which an open batch times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open.iter().map(|open| open.deadline).min()
    }

    /// Removes and returns every batch whose timeout has passed at `now`.
    pub fn take_expired(&mut self, now: Instant) -> Vec<Batch> {
        let (expired, open) = std::mem::take(&mut self.open).into_iter().partition(|open| open.deadline <= now);
        self.open = open;
        expired.into_iter().map(|open: OpenBatch| open.batch).collect()
    }

    /// Removes and returns every open batch, for the flush at shutdown.
    pub fn take_all(&mut self) -> Vec<Batch> {
        self.open.drain(..).map(|open| open.batch).collect()
    }

    fn find_open(&mut self, key: &Arc<BatchKey>) -> Option<usize> {
        // Most events find their batch by pointer: the batch's own key, or the key of the batch an
        // equal key matched last. Different `Arc`s with equal values still share a batch.
        let same_key =
            |batch_key: &Arc<BatchKey>| self.open.iter().position(|open| Arc::ptr_eq(&open.batch.key, batch_key));
        if let Some(index) = same_key(key) {
            return Some(index);
        }
        if let Some((event_key, batch_key)) = &self.matched {
            if Arc::ptr_eq(event_key, key) {
                if let Some(index) = same_key(batch_key) {
                    return Some(index);
                }
            }
        }
        let index = self.open.iter().position(|open| self.same_request(&open.batch.key, key))?;
        self.matched = Some((key.clone(), self.open[index].batch.key.clone()));
        Some(index)
    }

    fn same_request(&self, open: &BatchKey, other: &BatchKey) -> bool {
        match self.endpoint_override {
            Some(_) => same_top_level_fields(open, other),
            None => open == other,
        }
    }

    fn open_batch(&mut self, batch_key: &Arc<BatchKey>, now: Instant) -> Result<usize, BatchError> {
        let endpoint = match &self.endpoint_override {
            Some(url) => url.clone(),
            None => parse_endpoint(&batch_key.endpoint)
                .map_err(|reason| BatchError::InvalidEndpoint { endpoint: batch_key.endpoint.clone(), reason })?,
        };
        let prefix = encode_prefix(batch_key).map_err(|error| BatchError::Encoding { error })?;
        let batch = Batch::new(batch_key.clone(), endpoint, prefix);
        self.open.push(OpenBatch { batch, deadline: now + self.limits.timeout });
        Ok(self.open.len() - 1)
    }

    /// Drops a batch that `open_batch` created for an event that then turned out too large, so that
    /// the batch does not time out later as an empty request.
    fn close_if_empty(&mut self, index: usize) {
        if self.open[index].batch.len() == 0 {
            self.open.swap_remove(index);
        }
    }

    /// Makes sure the batch at `index` has room for one more visitor of `visitor_len` bytes. A full
    /// batch moves to `ready` and an empty batch with the same key and endpoint takes its place.
    /// Returns the index of the batch to add to.
    fn make_room(&mut self, index: usize, visitor_len: usize, now: Instant, ready: &mut Vec<Batch>) -> usize {
        let batch = &self.open[index].batch;
        let fits = batch.len() < self.limits.max_events && batch.encoded_len_with(visitor_len) <= self.limits.max_bytes;
        if fits {
            return index;
        }

        let full = self.open.swap_remove(index).batch;
        let empty = Batch::new(full.key.clone(), full.endpoint.clone(), full.prefix.clone());
        ready.push(full);
        self.open.push(OpenBatch { batch: empty, deadline: now + self.limits.timeout });
        self.open.len() - 1
    }
}

/// Compares every field of two keys except `endpoint`, for use when the sink overrides the endpoint.
fn same_top_level_fields(left: &BatchKey, right: &BatchKey) -> bool {
    // The exhaustive pattern makes a new `BatchKey` field a compile error here, so it cannot be
    // forgotten in the comparison.
    let BatchKey {
        endpoint: _,
        account_id,
        project_id,
        revision,
        client_name,
        client_version,
        anonymize_ip,
        enrich_decisions,
    } = left;
    *account_id == right.account_id
        && *project_id == right.project_id
        && *revision == right.revision
        && *client_name == right.client_name
        && *client_version == right.client_version
        && *anonymize_ip == right.anonymize_ip
        && *enrich_decisions == right.enrich_decisions
}

/// Encodes the top-level fields of a request body followed by `"visitors":[`.
fn encode_prefix(key: &BatchKey) -> Result<Bytes, String> {
    let fields = match serde_json::to_value(key) {
        Ok(Value::Object(fields)) => fields,
        Ok(other) => return Err(format!("the batch key encoded as {other} instead of a JSON object")),
        Err(error) => return Err(error.to_string()),
    };

    let mut prefix = serde_json::to_vec(&fields).map_err(|error| error.to_string())?;
    // `prefix` ends with the object's closing brace, which is replaced by the `visitors` member.
    prefix.pop();
    if !fields.is_empty() {
        prefix.push(b',');
    }
    prefix.extend_from_slice(br#""visitors":["#);
    Ok(Bytes::from(prefix))
}

/// Returns the name of a payload kind for messages.
fn payload_kind(payload: &Payload) -> &'static str {
    match payload {
        Payload::RawMessage(text) if serde_json::from_slice::<serde_json::Value>(text).is_err() => "unparsed line",
        Payload::Message(_) | Payload::RawMessage(_) => "Segment message",
        Payload::Unparsed(_) => "unparsed line",
        Payload::Conversion(_) | Payload::EncodedConversion(_) => "conversion",
        Payload::Deletion(_) => "deletion request",
        Payload::DeadLetter(_) => "dead-letter record",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Conversion, EncodedConversion, Snapshot, SnapshotEvent, Tags, Visitor};
    use serde_json::json;

    fn key(revision: &str, endpoint: &str) -> Arc<BatchKey> {
        Arc::new(BatchKey {
            endpoint: endpoint.to_owned(),
            account_id: "100".to_owned(),
            project_id: "200".to_owned(),
            revision: revision.to_owned(),
            client_name: "optimizely-relay".to_owned(),
            client_version: "0.1.0".to_owned(),
            anonymize_ip: Some(true),
            enrich_decisions: true,
        })
    }

    fn conversion(key: &Arc<BatchKey>, visitor_id: &str) -> Event {
        let visitor = Visitor {
            visitor_id: visitor_id.to_owned(),
            attributes: Vec::new(),
            snapshots: vec![Snapshot {
                decisions: Vec::new(),
                events: vec![SnapshotEvent {
                    entity_id: "9".to_owned(),
                    key: "buy".to_owned(),
                    timestamp: 1_700_000_000_000,
                    uuid: format!("uuid-{visitor_id}"),
                    revenue: None,
                    value: None,
                    tags: Tags::default(),
                }],
            }],
        };
        Event::new(Payload::Conversion(Conversion { batch_key: key.clone(), visitor }))
    }

    fn limits(max_events: usize, max_bytes: usize) -> BatchLimits {
        BatchLimits { max_events, max_bytes, timeout: Duration::from_secs(1) }
    }

    fn visitor_ids(batch: &Batch) -> Vec<String> {
        let body: Value = serde_json::from_slice(&batch.encode_body()).expect("body is JSON");
        body["visitors"]
            .as_array()
            .expect("visitors is an array")
            .iter()
            .map(|visitor| visitor["visitor_id"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    const ENDPOINT: &str = "https://logx.optimizely.com/v1/events";

    #[test]
    fn prefix_encodes_top_level_fields() {
        let prefix = encode_prefix(&key("7", ENDPOINT)).expect("encodable");
        assert_eq!(
            std::str::from_utf8(&prefix).expect("UTF-8"),
            concat!(
                r#"{"account_id":"100","project_id":"200","revision":"7","client_name":"optimizely-relay","#,
                r#""client_version":"0.1.0","anonymize_ip":true,"enrich_decisions":true,"visitors":["#
            )
        );
    }

    #[test]
    fn body_matches_encoded_len() {
        let mut batcher = Batcher::new(limits(10, 10_000), None);
        let key = key("7", ENDPOINT);
        let mut ready = Vec::new();
        for id in ["a", "b", "c"] {
            batcher.push(conversion(&key, id), Instant::now(), &mut ready).expect("accepted");
        }
        let batch = batcher.take_all().pop().expect("one open batch");

        let body = batch.encode_body();
        assert_eq!(body.len(), batch.encoded_len());
        let parsed: Value = serde_json::from_slice(&body).expect("body is JSON");
        assert_eq!(parsed["revision"], json!("7"));
        assert_eq!(visitor_ids(&batch), ["a", "b", "c"]);
    }

    #[test]
    fn encoded_and_structured_conversions_share_a_batch() {
        let mut batcher = Batcher::new(limits(10, 10_000), None);
        let key = key("7", ENDPOINT);
        let mut ready = Vec::new();
        let Payload::Conversion(structured) = conversion(&key, "b").payload else { unreachable!() };
        let encoded = Event::new(Payload::EncodedConversion(EncodedConversion::new(&structured)));
        batcher.push(conversion(&key, "a"), Instant::now(), &mut ready).expect("accepted");
        batcher.push(encoded, Instant::now(), &mut ready).expect("accepted");
        let batch = batcher.take_all().pop().expect("one open batch");

        assert_eq!(visitor_ids(&batch), ["a", "b"]);
        assert_eq!(batch.encode_body().len(), batch.encoded_len());
    }

    #[test]
    fn batcher_closes_batch_at_max_events() {
        let mut batcher = Batcher::new(limits(2, 10_000), None);
        let key = key("7", ENDPOINT);
        let mut ready = Vec::new();
        batcher.push(conversion(&key, "a"), Instant::now(), &mut ready).expect("accepted");
        batcher.push(conversion(&key, "b"), Instant::now(), &mut ready).expect("accepted");
        assert_eq!(ready.len(), 1, "a full batch is ready without waiting for the next event");
        batcher.push(conversion(&key, "c"), Instant::now(), &mut ready).expect("accepted");

        assert_eq!(ready.len(), 1);
        assert_eq!(visitor_ids(&ready[0]), ["a", "b"]);
        let open = batcher.take_all();
        assert_eq!(open.len(), 1);
        assert_eq!(visitor_ids(&open[0]), ["c"]);
    }

    #[test]
    fn batcher_closes_batch_at_max_bytes() {
        let key = key("7", ENDPOINT);
        let mut probe = Batcher::new(limits(10, 10_000), None);
        let mut ready = Vec::new();
        probe.push(conversion(&key, "a"), Instant::now(), &mut ready).expect("accepted");
        probe.push(conversion(&key, "b"), Instant::now(), &mut ready).expect("accepted");
        let two_len = probe.take_all()[0].encoded_len();

        let mut batcher = Batcher::new(limits(10, two_len), None);
        for id in ["a", "b", "c"] {
            batcher.push(conversion(&key, id), Instant::now(), &mut ready).expect("accepted");
        }

        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].encoded_len(), two_len);
        assert_eq!(visitor_ids(&ready[0]), ["a", "b"]);
    }

    #[test]
    fn batcher_rejects_oversized_event() {
        let key = key("7", ENDPOINT);
        let mut batcher = Batcher::new(limits(10, 100), None);
        let mut ready = Vec::new();
        let unbatched = batcher.push(conversion(&key, "a"), Instant::now(), &mut ready).expect_err("too large");

        assert!(matches!(unbatched.error, BatchError::TooLarge { max_bytes: 100, .. }), "{:?}", unbatched.error);
        assert!(ready.is_empty());
        assert_eq!(batcher.next_deadline(), None, "no empty batch stays open");
    }

    #[test]
    fn batcher_rejects_non_conversion() {
        let mut batcher = Batcher::new(limits(10, 10_000), None);
        let event = Event::new(Payload::Message(json!({"type": "track"})));
        let unbatched = batcher.push(event, Instant::now(), &mut Vec::new()).expect_err("not a conversion");
        assert_eq!(unbatched.error, BatchError::Unsupported { kind: "Segment message" });
    }

    #[test]
    fn batcher_rejects_invalid_endpoint() {
        let mut batcher = Batcher::new(limits(10, 10_000), None);
        let event = conversion(&key("7", "not a url"), "a");
        let unbatched = batcher.push(event, Instant::now(), &mut Vec::new()).expect_err("invalid endpoint");
        assert!(matches!(unbatched.error, BatchError::InvalidEndpoint { .. }), "{:?}", unbatched.error);
    }

    #[test]
    fn batcher_groups_by_key_value() {
        let mut batcher = Batcher::new(limits(10, 10_000), None);
        let mut ready = Vec::new();
        let now = Instant::now();
        batcher.push(conversion(&key("7", ENDPOINT), "a"), now, &mut ready).expect("accepted");
        batcher.push(conversion(&key("7", ENDPOINT), "b"), now, &mut ready).expect("accepted");
        batcher.push(conversion(&key("8", ENDPOINT), "c"), now, &mut ready).expect("accepted");
        batcher
            .push(conversion(&key("7", "https://eu.logx.optimizely.com/v1/events"), "d"), now, &mut ready)
            .expect("accepted");

        let batches: Vec<Vec<String>> = batcher.take_all().iter().map(visitor_ids).collect();
        assert_eq!(batches, [vec!["a", "b"], vec!["c"], vec!["d"]]);
    }

    #[test]
    fn equal_keys_follow_batch_after_flush() {
        // `first` and `second` are equal, `other` differs. With two events a batch, the batch that
        // `second` matched by value is sent, so `second` opens the next batch, which `first` joins.
        let (first, second, other) = (key("7", ENDPOINT), key("7", ENDPOINT), key("8", ENDPOINT));
        let mut batcher = Batcher::new(limits(2, 10_000), None);
        let mut ready = Vec::new();
        let now = Instant::now();
        for (key, id) in [(&first, "a"), (&second, "b"), (&second, "c"), (&other, "x"), (&first, "d"), (&second, "e")] {
            batcher.push(conversion(key, id), now, &mut ready).expect("accepted");
        }

        let sent: Vec<Vec<String>> = ready.iter().map(visitor_ids).collect();
        assert_eq!(sent, [vec!["a", "b"], vec!["c", "d"]]);
        assert!(Arc::ptr_eq(&ready[1].key, &second), "the second batch has the key of its first event");
        let open: Vec<Vec<String>> = batcher.take_all().iter().map(visitor_ids).collect();
        assert_eq!(open, [vec!["x"], vec!["e"]]);
    }

    #[test]
    fn override_ignores_key_endpoint() {
        let target = Url::parse("http://127.0.0.1:9/v1/events").expect("valid URL");
        let mut batcher = Batcher::new(limits(10, 10_000), Some(target.clone()));
        let mut ready = Vec::new();
        let now = Instant::now();
        batcher.push(conversion(&key("7", ENDPOINT), "a"), now, &mut ready).expect("accepted");
        batcher
            .push(conversion(&key("7", "https://eu.logx.optimizely.com/v1/events"), "b"), now, &mut ready)
            .expect("accepted");

        let batches = batcher.take_all();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].endpoint(), &target);
        assert_eq!(visitor_ids(&batches[0]), ["a", "b"]);
    }

    #[test]
    fn batcher_expires_by_first_event() {
        let mut batcher = Batcher::new(limits(10, 10_000), None);
        let start = Instant::now();
        let mut ready = Vec::new();
        batcher.push(conversion(&key("7", ENDPOINT), "a"), start, &mut ready).expect("accepted");
        let later = start + Duration::from_millis(600);
        batcher.push(conversion(&key("7", ENDPOINT), "b"), later, &mut ready).expect("accepted");
        batcher.push(conversion(&key("8", ENDPOINT), "c"), later, &mut ready).expect("accepted");

        assert_eq!(batcher.next_deadline(), Some(start + Duration::from_secs(1)));
        let expired = batcher.take_expired(start + Duration::from_secs(1));
        assert_eq!(expired.len(), 1);
        assert_eq!(visitor_ids(&expired[0]), ["a", "b"]);
        assert_eq!(batcher.next_deadline(), Some(later + Duration::from_secs(1)));
    }

    #[test]
    fn split_keeps_order_and_lengths() {
        let mut batcher = Batcher::new(limits(10, 10_000), None);
        let key = key("7", ENDPOINT);
        let mut ready = Vec::new();
        for id in ["a", "b", "c", "d", "e"] {
            batcher.push(conversion(&key, id), Instant::now(), &mut ready).expect("accepted");
        }
        let batch = batcher.take_all().pop().expect("one batch");

        let (first, second) = batch.split_in_half();
        assert_eq!(visitor_ids(&first), ["a", "b"]);
        assert_eq!(visitor_ids(&second), ["c", "d", "e"]);
        assert_eq!(first.encode_body().len(), first.encoded_len());
        assert_eq!(second.encode_body().len(), second.encoded_len());
    }
}
