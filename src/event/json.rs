//! Writes Event API request bodies as compact JSON.
//!
//! The output is byte for byte what serde_json writes for the derived `Serialize` of [`Visitor`] and
//! its parts, which the tests below check. Writing member names as constants and copying strings that
//! need no escaping skips serde_json's byte-by-byte escaping of every name and value, and tags are
//! copied as the text the transform wrote.

use serde::Serialize;

use super::{BatchKey, Conversion, Snapshot, SnapshotEvent, Visitor, VisitorAttribute};

/// Writes the complete request body of `conversion`: the top-level fields, then its one visitor.
pub(super) fn write_body(conversion: &Conversion, output: &mut Vec<u8>) {
    write_body_with(&conversion.batch_key, output, |output| write_visitor(&conversion.visitor, output));
}

/// Writes a request body: the top-level fields of `key`, then the one visitor that `write_visitor`
/// writes.
pub(super) fn write_body_with(key: &BatchKey, output: &mut Vec<u8>, write_visitor: impl FnOnce(&mut Vec<u8>)) {
    write_value(output, key);
    // The key is written as an object. Its closing brace makes way for the `visitors` member.
    if output.last() == Some(&b'}') {
        output.pop();
        output.push(b',');
    }
    output.extend_from_slice(b"\"visitors\":[");
    write_visitor(output);
    output.extend_from_slice(b"]}");
}

/// Writes one visitor entry.
pub(super) fn write_visitor(visitor: &Visitor, output: &mut Vec<u8>) {
    // One reservation instead of the doublings of an empty vector: the benchmark's visitors are
    // about 1.5 KB long, and each doubling copied what was written so far.
    output.reserve(estimated_visitor_len(visitor));
    write_visitor_start(output, &visitor.visitor_id);
    for attribute in &visitor.attributes {
        write_attribute(attribute, output);
    }
    output.extend_from_slice(b"],\"snapshots\":");
    write_array(output, &visitor.snapshots, write_snapshot);
    output.push(b'}');
}

/// Returns an estimate of the length of a visitor entry: its strings and tags plus room for the
/// member names, numbers and short values. An escape or a long attribute value may exceed it.
fn estimated_visitor_len(visitor: &Visitor) -> usize {
    let attributes: usize =
        visitor.attributes.iter().map(|attribute| 64 + attribute.entity_id.len() + attribute.key.len()).sum();
    let events: usize = visitor
        .snapshots
        .iter()
        .flat_map(|snapshot| &snapshot.events)
        .map(|event| 160 + event.entity_id.len() + event.key.len() + event.uuid.len() + event.tags.as_json().len())
        .sum();
    64 + visitor.visitor_id.len() + attributes + events
}

/// Writes `items` as a JSON array, each item with `write_item`.
fn write_array<T>(output: &mut Vec<u8>, items: &[T], write_item: fn(&T, &mut Vec<u8>)) {
    output.push(b'[');
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            output.push(b',');
        }
        write_item(item, output);
    }
    output.push(b']');
}

fn write_attribute(attribute: &VisitorAttribute, output: &mut Vec<u8>) {
    let value = match &attribute.value {
        serde_json::Value::String(text) => AttributeValue::String(text),
        other => AttributeValue::Json(other),
    };
    write_attribute_entry(output, &attribute.entity_id, &attribute.key, &attribute.kind, value);
}

/// The value of a visitor attribute.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AttributeValue<'a> {
    /// A string.
    String(&'a str),
    /// A boolean.
    Bool(bool),
    /// A number, as JSON text.
    Number(&'a str),
    /// Any JSON value, written with serde_json.
    Json(&'a serde_json::Value),
}

impl AttributeValue<'_> {
    /// Builds the `serde_json::Value` that is written for this value.
    pub(crate) fn to_value(self) -> serde_json::Value {
        match self {
            AttributeValue::String(text) => serde_json::Value::String(text.to_owned()),
            AttributeValue::Bool(boolean) => serde_json::Value::Bool(boolean),
            // The text is a JSON number, so it parses. A text that did not would stay a string.
            AttributeValue::Number(text) => match text.parse::<serde_json::Number>() {
                Ok(number) => serde_json::Value::Number(number),
                Err(_) => serde_json::Value::String(text.to_owned()),
            },
            AttributeValue::Json(value) => value.clone(),
        }
    }
}

/// Writes one attribute entry, after a comma unless it is the first element of its array.
pub(crate) fn write_attribute_entry(
    output: &mut Vec<u8>,
    entity_id: &str,
    key: &str,
    kind: &str,
    value: AttributeValue,
) {
    if output.last() != Some(&b'[') {
        output.push(b',');
    }
    write_attribute_prefix(output, entity_id, key, kind);
    write_attribute_value(output, value);
}

/// Returns the text that starts an attribute entry, up to its value, for
/// [`write_attribute_with_prefix`].
pub(crate) fn attribute_prefix(entity_id: &str, key: &str, kind: &str) -> Vec<u8> {
    let mut prefix = Vec::new();
    write_attribute_prefix(&mut prefix, entity_id, key, kind);
    prefix
}

/// Writes one attribute entry as [`write_attribute_entry`] does, with the start of the entry
/// written before by [`attribute_prefix`].
pub(crate) fn write_attribute_with_prefix(output: &mut Vec<u8>, prefix: &[u8], value: AttributeValue) {
    if output.last() != Some(&b'[') {
        output.push(b',');
    }
    output.extend_from_slice(prefix);
    write_attribute_value(output, value);
}

fn write_attribute_prefix(output: &mut Vec<u8>, entity_id: &str, key: &str, kind: &str) {
    output.extend_from_slice(b"{\"entity_id\":");
    write_string(output, entity_id);
    output.extend_from_slice(b",\"key\":");
    write_string(output, key);
    output.extend_from_slice(b",\"type\":");
    write_string(output, kind);
    output.extend_from_slice(b",\"value\":");
}

/// Writes the value of an attribute entry and closes the entry.
fn write_attribute_value(output: &mut Vec<u8>, value: AttributeValue) {
    match value {
        AttributeValue::String(text) => write_string(output, text),
        AttributeValue::Bool(boolean) => output.extend_from_slice(if boolean { b"true" } else { b"false" }),
        // serde_json with `arbitrary_precision` writes a number as its text.
        AttributeValue::Number(text) => output.extend_from_slice(text.as_bytes()),
        AttributeValue::Json(other) => write_value(output, other),
    }
    output.push(b'}');
}

/// Writes the start of a visitor entry: its id and the opening of its attributes.
pub(crate) fn write_visitor_start(output: &mut Vec<u8>, visitor_id: &str) {
    output.extend_from_slice(b"{\"visitor_id\":");
    write_string(output, visitor_id);
    output.extend_from_slice(b",\"attributes\":[");
}

/// Writes the end of the attributes of a visitor entry that [`write_visitor_start`] began, and the
/// start of its one snapshot, with no decisions, up to its one event.
pub(crate) fn write_snapshot_start(output: &mut Vec<u8>) {
    output.extend_from_slice(b"],\"snapshots\":[{\"decisions\":[],\"events\":[");
}

/// Closes the event that [`write_event_start`] began and its tags ended, and the visitor entry of
/// [`write_snapshot_start`].
pub(crate) fn write_visitor_end(output: &mut Vec<u8>) {
    output.extend_from_slice(b"}]}]}");
}

fn write_snapshot(snapshot: &Snapshot, output: &mut Vec<u8>) {
    output.extend_from_slice(b"{\"decisions\":");
    write_value(output, &snapshot.decisions);
    output.extend_from_slice(b",\"events\":");
    write_array(output, &snapshot.events, write_event);
    output.push(b'}');
}

fn write_event(event: &SnapshotEvent, output: &mut Vec<u8>) {
    let fields = EventFields {
        entity_id: &event.entity_id,
        key: &event.key,
        timestamp: event.timestamp,
        uuid: &event.uuid,
        revenue: event.revenue,
        value: event.value.as_ref(),
    };
    write_event_start(output, &fields);
    output.extend_from_slice(event.tags.as_json().as_bytes());
    output.push(b'}');
}

/// The members of an event entry other than its tags.
pub(crate) struct EventFields<'a> {
    /// The event id from the datafile.
    pub entity_id: &'a str,
    /// The event key.
    pub key: &'a str,
    /// The time of the event, in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The event's unique id.
    pub uuid: &'a str,
    /// The revenue in cents, when present.
    pub revenue: Option<i64>,
    /// The numeric value, when present.
    pub value: Option<&'a serde_json::Number>,
}

/// Writes an event entry up to the value of its `tags` member.
pub(crate) fn write_event_start(output: &mut Vec<u8>, event: &EventFields) {
    output.extend_from_slice(b"{\"entity_id\":");
    write_string(output, event.entity_id);
    output.extend_from_slice(b",\"key\":");
    write_string(output, event.key);
    output.extend_from_slice(b",\"timestamp\":");
    write_value(output, &event.timestamp);
    output.extend_from_slice(b",\"uuid\":");
    write_string(output, event.uuid);
    if let Some(revenue) = event.revenue {
        output.extend_from_slice(b",\"revenue\":");
        write_value(output, &revenue);
    }
    if let Some(value) = event.value {
        output.extend_from_slice(b",\"value\":");
        write_value(output, value);
    }
    output.extend_from_slice(b",\"tags\":");
}

/// Writes `text` as a JSON string, escaped as serde_json escapes it.
pub(super) fn write_string(output: &mut Vec<u8>, text: &str) {
    if needs_escape(text.as_bytes()) {
        write_value(output, text);
    } else {
        output.push(b'"');
        output.extend_from_slice(text.as_bytes());
        output.push(b'"');
    }
}

/// Returns whether `bytes` contains a byte that serde_json escapes. serde_json escapes only `"`, `\`
/// and the control characters below U+0020 (serde_json 1.0, `ESCAPE` in `src/ser.rs`), so text
/// without them is copied as it is.
fn needs_escape(bytes: &[u8]) -> bool {
    // Against a check of one byte at a time, words cut a 5,000-event run's instructions by 2.8%
    // (`valgrind --tool=callgrind`). The last word overlaps the one before it, and text of 4 to 7
    // bytes is checked as its first and last four bytes, so short keys and values take no loop
    // over single bytes.
    let escapes = |word: u64| escaped_bytes(word) != 0;
    let word_at = |start: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[start..start + 8]);
        u64::from_le_bytes(word)
    };
    let half_word_at = |start: usize| {
        let mut half = [0u8; 4];
        half.copy_from_slice(&bytes[start..start + 4]);
        u64::from(u32::from_le_bytes(half))
    };

    let length = bytes.len();
    match length {
        0..=3 => bytes.iter().any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\'),
        4..=7 => escapes(half_word_at(0) | half_word_at(length - 4) << 32),
        _ => {
            let mut start = 0;
            while start + 8 < length {
                if escapes(word_at(start)) {
                    return true;
                }
                start += 8;
            }
            escapes(word_at(length - 8))
        }
    }
}

/// Returns `word` with the high bit set in the lowest of its eight bytes that serde_json escapes
/// (`"`, `\` or a byte below 0x20), or 0 when it has none. Bits above the lowest can be set wrongly,
/// so callers read only whether the result is 0, or its lowest set bit.
///
/// `(word - limit * ONES) & !word & HIGH_BITS` marks the lowest byte below `limit` (at most 0x80),
/// and XOR with `"` or `\` turns those bytes to 0.
pub(crate) fn escaped_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let below = |word: u64, limit: u8| word.wrapping_sub(ONES * u64::from(limit)) & !word & HIGH_BITS;
    below(word, 0x20) | below(word ^ (ONES * u64::from(b'"')), 1) | below(word ^ (ONES * u64::from(b'\\')), 1)
}

/// Writes `value` with serde_json.
pub(super) fn write_value<T: Serialize + ?Sized>(output: &mut Vec<u8>, value: &T) {
    // Serializing into a Vec cannot fail for these values: every map key is a string.
    let _ = serde_json::to_writer(&mut *output, value);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{json, Value};

    use super::*;

    #[test]
    fn needs_escape_finds_each_byte_at_each_position() {
        for byte in 0..=u8::MAX {
            let escaped = byte < 0x20 || byte == b'"' || byte == b'\\';
            for length in 1..=19 {
                for position in 0..length {
                    let mut text = vec![b'a'; length];
                    text[position] = byte;
                    assert_eq!(needs_escape(&text), escaped, "byte {byte:#04x} at {position} of {length}");
                }
            }
        }
        assert!(!needs_escape("plain text, café, 日本".as_bytes()));
        assert!(!needs_escape(b""));
    }
    use crate::event::{BatchKey, Tags};

    fn visitor(revenue: Option<i64>, value: Option<serde_json::Number>, tags: Value) -> Visitor {
        let Value::Object(tags) = tags else { panic!("tags must be an object") };
        let attribute = |key: &str, value: Value| VisitorAttribute {
            entity_id: format!("id-{key}"),
            key: key.to_owned(),
            kind: "custom".into(),
            value,
        };
        Visitor {
            visitor_id: "user \"1\"\n".to_owned(),
            attributes: vec![
                attribute("plan", json!("Straße")),
                attribute("beta", json!(false)),
                attribute("age", json!(42)),
                attribute("score", json!(1.5)),
            ],
            snapshots: vec![Snapshot {
                decisions: vec![json!({"campaign_id": "1"})],
                events: vec![SnapshotEvent {
                    entity_id: "30000001".to_owned(),
                    key: "order\\completed".to_owned(),
                    timestamp: -1,
                    uuid: "m-\u{1}".to_owned(),
                    revenue,
                    value,
                    tags: Tags::from_map(&tags),
                }],
            }],
        }
    }

    fn key() -> BatchKey {
        BatchKey {
            endpoint: "http://127.0.0.1/v1/events".to_owned(),
            account_id: "1".to_owned(),
            project_id: "2".to_owned(),
            revision: "3".to_owned(),
            client_name: "relay".to_owned(),
            client_version: "0.1.0".to_owned(),
            anonymize_ip: None,
            enrich_decisions: true,
        }
    }

    #[test]
    fn visitor_matches_serde_json() {
        let tags = json!({"a": "\u{e9}/\"x\"", "b": 1.50, "c": true, "\t": "\u{7f}"});
        let cases = [
            visitor(None, None, json!({})),
            visitor(Some(1999), Some(serde_json::Number::from_f64(3.5).unwrap()), tags.clone()),
            visitor(Some(-5), None, tags),
        ];
        for visitor in cases {
            let mut written = Vec::new();
            write_visitor(&visitor, &mut written);
            assert_eq!(String::from_utf8(written).unwrap(), serde_json::to_string(&visitor).unwrap());
        }
    }

    #[test]
    fn body_matches_serde_json() {
        let conversion = Conversion { batch_key: Arc::new(key()), visitor: visitor(Some(1), None, json!({"k": "v"})) };
        let mut written = Vec::new();
        write_body(&conversion, &mut written);
        assert_eq!(String::from_utf8(written).unwrap(), serde_json::to_string(&conversion.body()).unwrap());
    }

    #[test]
    fn encoded_conversion_body_and_decode() {
        let tags = json!({"a": "\u{e9}/\"x\"", "b": 1.50, "c": true});
        let conversion = Conversion { batch_key: Arc::new(key()), visitor: visitor(Some(1999), None, tags) };
        let encoded = super::super::EncodedConversion::new(&conversion);

        let (mut structured_body, mut encoded_body) = (Vec::new(), Vec::new());
        conversion.write_body(&mut structured_body);
        encoded.write_body(&mut encoded_body);
        assert_eq!(String::from_utf8(encoded_body).unwrap(), String::from_utf8(structured_body).unwrap());
        assert_eq!(encoded.to_body(), conversion.to_body());
        assert_eq!(encoded.decode().unwrap(), conversion);
    }

    #[test]
    fn strings_escaped_like_serde_json() {
        let cases = [
            "",
            "plain",
            "naïve",
            "a\"b",
            "back\\slash",
            "tab\t",
            "\u{0}\u{1f}",
            "\u{7f}",
            "/",
            "\u{2028}",
            "eight by\"tes and more",
            "seventeen bytes!\n",
        ];
        for text in cases {
            let mut written = Vec::new();
            write_string(&mut written, text);
            assert_eq!(String::from_utf8(written).unwrap(), serde_json::to_string(text).unwrap(), "{text:?}");
        }
    }
}
