//! The unit of data that flows between components.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::ack::{EventFinalizer, EventStatus};

pub(crate) mod json;

/// One event in the pipeline: its payload and the acknowledgement reference of the source event it came
/// from.
#[derive(Debug, Clone)]
pub struct Event {
    /// The event's data at this stage of the pipeline.
    pub payload: Payload,
    /// The acknowledgement reference. A reference dropped without being finalized reports `Undelivered`.
    pub finalizer: EventFinalizer,
    /// Where the event came from, such as a Kafka topic, partition and offset, for logs and
    /// dead-letter records; `None` for sources that record nothing.
    pub origin: Option<Arc<Map<String, Value>>>,
}

impl Event {
    /// Creates an event with no acknowledgement, for library callers and tests.
    pub fn new(payload: Payload) -> Event {
        Event { payload, finalizer: EventFinalizer::none(), origin: None }
    }

    /// Creates an event that reports its final status through `finalizer`.
    pub fn with_finalizer(payload: Payload, finalizer: EventFinalizer) -> Event {
        Event { payload, finalizer, origin: None }
    }

    /// Sets where the event came from; dead-letter records carry it as `origin`.
    pub fn with_origin(mut self, origin: Arc<Map<String, Value>>) -> Event {
        self.origin = Some(origin);
        self
    }

    /// Releases the event, reporting `status` to its source.
    pub fn finalize(self, status: EventStatus) {
        self.finalizer.finalize(status);
    }
}

/// The data of an event.
#[derive(Debug, Clone)]
pub enum Payload {
    /// A Segment message as a source read it.
    Message(Value),
    /// A Segment message as the JSON text a source read, not parsed yet. Sources send a line this way
    /// only when it starts with `{` and has no top-level key `batch` or `writeKey`, so it decodes to
    /// one message or fails to parse. The `optimizely` transform parses it into borrowed strings
    /// instead of a `Value`; text that fails to parse is dead-lettered as [`Payload::Unparsed`] input
    /// would be.
    RawMessage(bytes::Bytes),
    /// Input a source could not parse as JSON, or rejected before parsing. The `optimizely` transform
    /// dead-letters it with its `reason`.
    Unparsed(Unparsed),
    /// An Event API request body holding one visitor.
    Conversion(Conversion),
    /// A conversion with its visitor entry already written as JSON, as the `optimizely` transform
    /// sends conversions on.
    EncodedConversion(EncodedConversion),
    /// A request to delete one user's data.
    Deletion(DeletionRequest),
    /// An event that cannot be delivered, with the reason.
    DeadLetter(DeadLetter),
}

impl Payload {
    /// Appends the payload as one line of compact JSON, as `console` and `file` sinks write it. Equal
    /// to serializing [`Payload::to_json`], but a conversion is written without building a `Value`.
    pub fn write_json_line(&self, output: &mut Vec<u8>) {
        match self {
            Payload::Conversion(conversion) => conversion.write_body(output),
            Payload::EncodedConversion(conversion) => conversion.write_body(output),
            other => {
                // Serializing a `Value` into a Vec cannot fail: every map key is a string.
                let _ = serde_json::to_writer(&mut *output, &other.to_json());
            }
        }
        output.push(b'\n');
    }

    /// Encodes the payload as the JSON value that `console` and `file` sinks write: the full Event API
    /// body for a conversion, the record for a dead letter, the message itself otherwise.
    pub fn to_json(&self) -> Value {
        match self {
            Payload::Message(message) => message.clone(),
            // The source decoder turns text that fails to parse into `Unparsed`, which is written as a
            // string; the same text here is written the same way.
            Payload::RawMessage(text) => serde_json::from_slice(text)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(text).into_owned())),
            Payload::Unparsed(unparsed) => Value::String(unparsed.text.clone()),
            Payload::Conversion(conversion) => conversion.to_body(),
            Payload::EncodedConversion(conversion) => conversion.to_body(),
            Payload::Deletion(deletion) => deletion.to_json(),
            Payload::DeadLetter(dead_letter) => dead_letter.to_json(),
        }
    }
}

/// Input that is not valid JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Unparsed {
    /// The input as text; invalid UTF-8 sequences are replaced with U+FFFD.
    pub text: String,
    /// The parser's error message, with line and column.
    pub error: String,
    /// The dead-letter reason: `invalid_json`, `invalid_utf8`, `too_deep`, or `line_too_long` for
    /// input over the line limit.
    pub reason: &'static str,
    /// The exact input, kept only when it is not valid UTF-8, because `text` then lost bytes.
    /// Dead-letter records carry it in base64 as `event_base64`.
    pub bytes: Option<Vec<u8>>,
}

/// The top-level fields of an Event API request: everything but `visitors`, plus the endpoint URL.
///
/// Conversions whose keys are equal may share one request. Keys are built once per datafile revision
/// and shared through an `Arc`, so grouping usually compares pointers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BatchKey {
    /// The URL the request is sent to.
    #[serde(skip)]
    pub endpoint: String,
    /// The datafile's `accountId`.
    pub account_id: String,
    /// The datafile's `projectId`.
    pub project_id: String,
    /// The datafile's `revision`.
    pub revision: String,
    /// The `client_name` setting of the transform.
    pub client_name: String,
    /// The version of this crate.
    pub client_version: String,
    /// The datafile's `anonymizeIP`; absent when the datafile lacks it, and the API then assumes `true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anonymize_ip: Option<bool>,
    /// Always `true`: the Event API adds the visitor's decisions itself.
    pub enrich_decisions: bool,
}

/// One conversion: the top-level fields of its request and its single visitor.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    /// The top-level fields and the endpoint.
    pub batch_key: Arc<BatchKey>,
    /// The visitor whose conversion this is.
    pub visitor: Visitor,
}

impl Conversion {
    /// Builds the complete Event API request body for this conversion alone.
    pub fn to_body(&self) -> Value {
        serde_json::to_value(self.body()).unwrap_or(Value::Null)
    }

    /// Writes the complete Event API request body as compact JSON, without building a `Value`.
    pub fn write_body(&self, output: &mut Vec<u8>) {
        json::write_body(self, output);
    }

    fn body(&self) -> Body<'_> {
        Body { key: &self.batch_key, visitors: [&self.visitor] }
    }
}

/// A conversion whose visitor entry is written as JSON: what [`Conversion`] becomes once encoded.
///
/// The `optimizely` transform encodes each conversion on the thread that mapped it and sends this on.
/// The sink then copies no field and frees one buffer instead of the twenty or so strings and vectors
/// of a [`Visitor`], which mimalloc frees more slowly on a thread other than the one that allocated
/// them. Against sending the [`Conversion`] on, the relay's CPU time end to end fell from 6.2 to 7.1 µs
/// per event to 5.2 to 5.5 µs (`cargo bench --bench end_to_end -- --events 1000000`, several runs).
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedConversion {
    /// The top-level fields and the endpoint.
    pub batch_key: Arc<BatchKey>,
    /// The visitor entry, as [`Visitor::write_json`] writes it.
    visitor_json: bytes::Bytes,
}

impl EncodedConversion {
    /// Encodes the visitor of `conversion`.
    pub fn new(conversion: &Conversion) -> EncodedConversion {
        let mut visitor_json = Vec::new();
        conversion.visitor.write_json(&mut visitor_json);
        EncodedConversion { batch_key: conversion.batch_key.clone(), visitor_json: visitor_json.into() }
    }

    /// Wraps a visitor entry that was written as [`Visitor::write_json`] writes it.
    pub(crate) fn from_visitor_json(batch_key: Arc<BatchKey>, visitor_json: Vec<u8>) -> EncodedConversion {
        EncodedConversion { batch_key, visitor_json: visitor_json.into() }
    }

    /// Replaces the visitor entry with one written as [`Visitor::write_json`] writes it.
    pub(crate) fn set_visitor_json(&mut self, visitor_json: bytes::Bytes) {
        self.visitor_json = visitor_json;
    }

    /// Returns the visitor entry as compact JSON.
    pub fn visitor_json(&self) -> &bytes::Bytes {
        &self.visitor_json
    }

    /// Decodes the conversion back into its fields.
    pub fn decode(&self) -> Result<Conversion, serde_json::Error> {
        let visitor = serde_json::from_slice(&self.visitor_json)?;
        Ok(Conversion { batch_key: self.batch_key.clone(), visitor })
    }

    /// Writes the complete Event API request body, as [`Conversion::write_body`] writes it.
    pub fn write_body(&self, output: &mut Vec<u8>) {
        json::write_body_with(&self.batch_key, output, |output| output.extend_from_slice(&self.visitor_json));
    }

    /// Builds the complete Event API request body, as [`Conversion::to_body`] builds it.
    pub fn to_body(&self) -> Value {
        let mut body = Vec::new();
        self.write_body(&mut body);
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    }
}

/// A request body with one visitor, serialized with the top-level fields first.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(flatten)]
    key: &'a BatchKey,
    visitors: [&'a Visitor; 1],
}

/// A visitor entry of an Event API request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Visitor {
    /// The user id or anonymous id.
    pub visitor_id: String,
    /// Visitor attributes, in trait order, then `$opt_user_agent`, then `$opt_bot_filtering`.
    pub attributes: Vec<VisitorAttribute>,
    /// Always one snapshot with no decisions and one event.
    pub snapshots: Vec<Snapshot>,
}

impl Visitor {
    /// Writes the visitor entry as compact JSON, byte for byte as serde_json serializes it.
    pub fn write_json(&self, output: &mut Vec<u8>) {
        json::write_visitor(self, output);
    }
}

/// A visitor attribute of an Event API request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitorAttribute {
    /// The datafile's attribute id, or the key itself for `$opt_` attributes.
    pub entity_id: String,
    /// The attribute key.
    pub key: String,
    /// Always `"custom"`, borrowed so that the transform allocates nothing for it.
    #[serde(rename = "type")]
    pub kind: Cow<'static, str>,
    /// A string, boolean or number.
    pub value: Value,
}

/// A snapshot of an Event API visitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Always empty: decisions are enriched by the Event API.
    pub decisions: Vec<Value>,
    /// The conversion events of this snapshot.
    pub events: Vec<SnapshotEvent>,
}

/// A conversion event of an Event API snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotEvent {
    /// The datafile's event id.
    pub entity_id: String,
    /// The datafile's event key.
    pub key: String,
    /// Epoch milliseconds of the conversion.
    pub timestamp: i64,
    /// The id Optimizely de-duplicates on.
    pub uuid: String,
    /// Revenue in cents.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub revenue: Option<i64>,
    /// A numeric value, written as the message wrote it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub value: Option<serde_json::Number>,
    /// Event tags.
    pub tags: Tags,
}

/// Event tags: the compact JSON text of an object, such as `{"plan":"pro"}`.
///
/// The transform writes the text once, and request bodies copy it. Writing it takes about 5,300
/// instructions per event where building a `serde_json::Map` took 10,600, before serializing it
/// (`valgrind --tool=callgrind`, 5,000 messages of the `end_to_end` benchmark's workload). Serializing
/// tags with serde parses the text into a map first, so only [`Visitor::write_json`] and
/// [`Conversion::write_body`] copy it.
///
/// Two tag sets are equal when their objects are, in any key order, as `serde_json::Map`s compare.
#[derive(Debug, Clone)]
pub struct Tags {
    json: String,
}

impl Tags {
    /// Builds tags from a map, written as serde_json writes the map.
    pub fn from_map(map: &Map<String, Value>) -> Tags {
        // Serializing a map with string keys into a string cannot fail.
        Tags { json: serde_json::to_string(map).unwrap_or_else(|_| "{}".to_owned()) }
    }

    /// Returns the tags' JSON text.
    pub fn as_json(&self) -> &str {
        &self.json
    }

    /// Parses the tags into a map.
    pub fn to_map(&self) -> Map<String, Value> {
        // The text is a JSON object: it was written from a map or by `TagsBuilder`.
        serde_json::from_str(&self.json).unwrap_or_default()
    }
}

impl Default for Tags {
    /// Returns no tags, `{}`.
    fn default() -> Tags {
        Tags { json: "{}".to_owned() }
    }
}

impl PartialEq for Tags {
    fn eq(&self, other: &Tags) -> bool {
        self.json == other.json || self.to_map() == other.to_map()
    }
}

impl Serialize for Tags {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_map().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Tags, D::Error> {
        Map::deserialize(deserializer).map(|map| Tags::from_map(&map))
    }
}

/// Writes the JSON text of [`Tags`] one member at a time, escaped as serde_json escapes it.
pub(crate) struct TagsBuilder {
    text: Vec<u8>,
    /// The offset of the object in `text`.
    start: usize,
}

impl TagsBuilder {
    /// Starts an empty object with room for `bytes` bytes.
    pub(crate) fn with_capacity(bytes: usize) -> TagsBuilder {
        TagsBuilder::in_buffer(Vec::with_capacity(bytes))
    }

    /// Starts an empty object at the end of `buffer`, such as a visitor entry being written.
    pub(crate) fn in_buffer(mut buffer: Vec<u8>) -> TagsBuilder {
        let start = buffer.len();
        buffer.push(b'{');
        TagsBuilder { text: buffer, start }
    }

    /// Adds a member with a string value. The caller adds each key once: a repeated key would be
    /// written twice.
    pub(crate) fn add_string(&mut self, key: &str, value: &str) {
        self.add_key(key);
        json::write_string(&mut self.text, value);
    }

    /// Adds a member whose value is JSON text, such as a number's text, written as it is.
    pub(crate) fn add_raw(&mut self, key: &str, json_text: &str) {
        self.add_key(key);
        self.text.extend_from_slice(json_text.as_bytes());
    }

    /// Adds members given as JSON text, `"key":value` pairs separated by commas, written as they are.
    pub(crate) fn add_members_text(&mut self, json_text: &str) {
        self.add_separator();
        self.text.extend_from_slice(json_text.as_bytes());
    }

    fn add_key(&mut self, key: &str) {
        self.add_separator();
        json::write_string(&mut self.text, key);
        self.text.push(b':');
    }

    /// Writes the comma before a member, unless the object is still empty.
    fn add_separator(&mut self) {
        if self.text.len() > self.start + 1 {
            self.text.push(b',');
        }
    }

    /// Closes the object and returns the buffer it was written to.
    pub(crate) fn finish_in_buffer(mut self) -> Vec<u8> {
        self.text.push(b'}');
        self.text
    }

    /// Closes the object of a builder from [`TagsBuilder::with_capacity`].
    pub(crate) fn finish(self) -> Tags {
        // Every piece written is a `str` or ASCII, so the text is UTF-8.
        let json = match String::from_utf8(self.finish_in_buffer()) {
            Ok(json) => json,
            Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
        };
        Tags { json }
    }
}

/// A request to delete one user's data, from a Segment `delete` message.
#[derive(Debug, Clone, PartialEq)]
pub struct DeletionRequest {
    /// The user id, else the anonymous id, of the message.
    pub identifier: String,
    /// The original `delete` message, kept for dead-letter records.
    pub message: Value,
}

impl DeletionRequest {
    /// Encodes the request as `{"identifier": ...}`.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("identifier".to_owned(), Value::String(self.identifier.clone()));
        Value::Object(map)
    }
}

/// A record on a dead-letter output.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Machine-readable reason, such as `unknown_event_key` or `http_400`.
    pub reason: String,
    /// Human-readable message that names the offending value.
    pub message: String,
    /// The id of the component that dead-lettered the event.
    pub component: String,
    /// The original event: the Segment message, the unparsed line as a string, or the request body.
    pub event: Value,
    /// Extra fields, such as `status`, `attempts` and `response` for events a sink could not deliver.
    pub details: Map<String, Value>,
}

impl DeadLetter {
    /// Encodes the record as one JSON object: `reason`, `message`, `component`, the details, and `event`.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("reason".to_owned(), Value::String(self.reason.clone()));
        map.insert("message".to_owned(), Value::String(self.message.clone()));
        map.insert("component".to_owned(), Value::String(self.component.clone()));
        for (key, value) in &self.details {
            map.insert(key.clone(), value.clone());
        }
        map.insert("event".to_owned(), self.event.clone());
        Value::Object(map)
    }
}

/// Returns the details of a dead-letter record of an event from `origin`: `{"origin": {...}}`, or no
/// details when the source recorded no origin.
pub fn origin_details(origin: Option<&Map<String, Value>>) -> Map<String, Value> {
    let mut details = Map::new();
    if let Some(origin) = origin {
        details.insert("origin".to_owned(), Value::Object(origin.clone()));
    }
    details
}
