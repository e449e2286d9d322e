//! Decoding of input lines into Segment messages.

use std::sync::LazyLock;

use memchr::memmem::Finder;
use serde_json::Value;

use crate::event::{Payload, Unparsed};

/// The deepest nesting of arrays and objects that a JSON document may have: the document's own
/// object or array is level 1. This is serde_json's recursion limit, which keeps parsing from
/// overflowing the stack; deeper input is dead-lettered with the reason `too_deep`.
pub const MAX_JSON_DEPTH: usize = 127;

/// The maximum number of messages one batch envelope may expand into. Each message becomes an event
/// that takes far more memory than its text, so a larger envelope is dead-lettered whole, as
/// `batch_too_large`. Segment's HTTP Tracking API documents a limit of 500 KB per batch request,
/// which leaves room for fewer messages than this.
pub const MAX_BATCH_MESSAGES: usize = 10_000;

/// The keys of a Segment batch envelope that are not messages.
const ENVELOPE_CONTEXT_KEY: &str = "context";

/// Decodes one line of newline-delimited JSON into payloads, appending them to `payloads`.
///
/// A UTF-8 byte order mark and a trailing `\r` are removed. A blank line yields nothing. A Segment batch
/// envelope (`{"batch": [...]}`) yields one payload per message; the envelope's `context` is merged into
/// each message's `context`, where the message's own keys win. A top-level `writeKey`, a credential, is
/// removed from every message so it never reaches a sink or a dead-letter record.
pub fn decode_line(line: &[u8], payloads: &mut Vec<Payload>) {
    decode_content(strip_line_marks(line), payloads);
}

/// Removes a trailing `\r`, then a UTF-8 byte order mark.
fn strip_line_marks(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line)
}

/// Decodes a line that [`strip_line_marks`] has been applied to.
fn decode_content(line: &[u8], payloads: &mut Vec<Payload>) {
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }

    match serde_json::from_slice::<Value>(line) {
        Ok(value) => decode_value(value, payloads),
        Err(error) => payloads.push(Payload::Unparsed(unparsed(line, &error, "invalid JSON"))),
    }
}

/// Decodes one line as [`decode_line`] does, but passes a line that can only be one message on as
/// its text, [`Payload::RawMessage`], for the `optimizely` transform to parse: a line that starts
/// with `{` and has no top-level key `batch` or `writeKey`. Other lines go through [`decode_line`].
pub fn decode_owned_line(line: bytes::Bytes, payloads: &mut Vec<Payload>) {
    let content = strip_line_marks(&line);
    if !is_single_message(content) {
        decode_content(content, payloads);
        return;
    }

    payloads.push(Payload::RawMessage(line.slice_ref(content)));
}

/// Returns whether `line` starts like a JSON object and has no top-level key `batch` or `writeKey`.
///
/// The line may still be invalid JSON: its consumer parses it and handles errors as [`decode_line`]
/// does. A line without the bytes `batch`, `writeKey` and `\\` (which could escape a key) cannot hold
/// such a key, and searching for those bytes with memchr costs far less than the scan below, which
/// took 12,500 instructions per line of the benchmark (`valgrind --tool=callgrind`). Other lines are
/// scanned: the scan reads the top-level keys and skips over values without checking them fully.
fn is_single_message(line: &[u8]) -> bool {
    if line.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
        return false;
    }
    // The finders are built once. Built for each call, the two searches took 1,600 instructions per
    // line of the benchmark's workload, against 860 with these (`valgrind --tool=callgrind`).
    static BATCH: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"batch"));
    static WRITE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"writeKey"));
    if memchr::memchr(b'\\', line).is_none() && BATCH.find(line).is_none() && WRITE_KEY.find(line).is_none() {
        return true;
    }
    scan_top_level_keys(line)
}

/// Returns whether `line` is a JSON object whose keys include neither `batch` nor `writeKey`, as far
/// as a scan that skips over values can tell.
fn scan_top_level_keys(line: &[u8]) -> bool {
    struct TopLevelKeys;

    impl<'de> serde::de::Visitor<'de> for TopLevelKeys {
        type Value = bool;

        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            formatter.write_str("a JSON object")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let mut single = true;
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                single &= key != "batch" && key != "writeKey";
                map.next_value::<serde::de::IgnoredAny>()?;
            }
            Ok(single)
        }
    }

    struct Scan(bool);

    impl<'de> serde::Deserialize<'de> for Scan {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Scan, D::Error> {
            deserializer.deserialize_map(TopLevelKeys).map(Scan)
        }
    }

    serde_json::from_slice::<Scan>(line).is_ok_and(|Scan(single)| single)
}

/// Parses text that [`decode_owned_line`] passed on as [`Payload::RawMessage`] into the payload that
/// [`decode_line`] builds from it: the message, or the parse error as [`Payload::Unparsed`].
pub fn parse_raw_message(text: &[u8]) -> Payload {
    match serde_json::from_slice::<Value>(text) {
        Ok(value) => Payload::Message(value),
        Err(error) => Payload::Unparsed(unparsed(text, &error, "invalid JSON")),
    }
}

/// Describes input that serde_json failed to parse, with the most specific reason:
/// `invalid_utf8` when the bytes are not UTF-8 (the record then keeps the exact bytes),
/// `too_deep` when arrays and objects nest deeper than [`MAX_JSON_DEPTH`], else `invalid_json`.
/// `what` starts the message of an `invalid_json` record, such as `invalid JSON array`.
pub fn unparsed(input: &[u8], error: &serde_json::Error, what: &str) -> Unparsed {
    let text = String::from_utf8_lossy(input).into_owned();
    if let Err(utf8_error) = std::str::from_utf8(input) {
        let error = format!(
            "invalid UTF-8 at byte {}: the input must be UTF-8 text; the record keeps the exact bytes in `event_base64`",
            utf8_error.valid_up_to()
        );
        return Unparsed { text, error, reason: "invalid_utf8", bytes: Some(input.to_vec()) };
    }

    let depth = nesting_depth(input);
    if depth > MAX_JSON_DEPTH {
        let error = format!(
            "arrays and objects nest {depth} levels deep, more than the maximum of {MAX_JSON_DEPTH}; flatten the message"
        );
        return Unparsed { text, error, reason: "too_deep", bytes: None };
    }

    let mut error = format!("{what}: {error}");
    if input.contains(&0) {
        error.push_str("; the input contains NUL bytes, as a file can after a crash of its writer");
    }
    Unparsed { text, error, reason: "invalid_json", bytes: None }
}

/// Returns the deepest nesting of `[` and `{` outside strings, for input that may not be valid JSON.
fn nesting_depth(input: &[u8]) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0;
    let mut in_string = false;
    let mut escaped = false;
    for byte in input {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Expands a parsed JSON value into message payloads, as [`decode_line`] does.
pub fn decode_value(value: Value, payloads: &mut Vec<Payload>) {
    let Value::Object(mut object) = value else {
        payloads.push(Payload::Message(value));
        return;
    };

    let is_envelope = !object.contains_key("type") && matches!(object.get("batch"), Some(Value::Array(_)));
    if !is_envelope {
        object.remove("writeKey");
        payloads.push(Payload::Message(Value::Object(object)));
        return;
    }

    let Some(Value::Array(messages)) = object.remove("batch") else { return };
    if messages.len() > MAX_BATCH_MESSAGES {
        let count = messages.len();
        object.insert("batch".to_owned(), Value::Array(messages));
        object.remove("writeKey");
        payloads.push(Payload::Unparsed(Unparsed {
            text: Value::Object(object).to_string(),
            error: format!(
                "the batch envelope holds {count} messages, more than the maximum of {MAX_BATCH_MESSAGES}; send smaller batches"
            ),
            reason: "batch_too_large",
            bytes: None,
        }));
        return;
    }
    let shared_context = match object.remove(ENVELOPE_CONTEXT_KEY) {
        Some(Value::Object(context)) => Some(context),
        _ => None,
    };
    for message in messages {
        payloads.push(Payload::Message(with_shared_context(message, shared_context.as_ref())));
    }
}

fn with_shared_context(message: Value, shared: Option<&serde_json::Map<String, Value>>) -> Value {
    let Value::Object(mut object) = message else { return message };
    object.remove("writeKey");
    let Some(shared) = shared else { return Value::Object(object) };

    let context = object.entry(ENVELOPE_CONTEXT_KEY).or_insert_with(|| Value::Object(Default::default()));
    if let Value::Object(context) = context {
        for (key, value) in shared {
            if !context.contains_key(key) {
                context.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(object)
}

/// Builds the payload for a line longer than the limit.
pub fn too_long(prefix: &[u8], length: usize, max_line_bytes: usize) -> Payload {
    Payload::Unparsed(Unparsed {
        text: String::from_utf8_lossy(prefix).into_owned(),
        error: format!(
            "line of {length} bytes is longer than max_line_bytes ({max_line_bytes}); only its first {max_line_bytes} bytes are kept; raise max_line_bytes if such lines are valid"
        ),
        reason: "line_too_long",
        bytes: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(line: &str) -> Vec<Payload> {
        let mut payloads = Vec::new();
        decode_line(line.as_bytes(), &mut payloads);
        payloads
    }

    fn message(payload: &Payload) -> &Value {
        match payload {
            Payload::Message(value) => value,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[test]
    fn object_line_becomes_message() {
        let payloads = decode("{\"type\":\"track\",\"event\":\"A\"}\r");
        assert_eq!(payloads.len(), 1);
        assert_eq!(message(&payloads[0]), &json!({"type": "track", "event": "A"}));
    }

    #[test]
    fn blank_line_yields_nothing() {
        assert!(decode("   \t").is_empty());
    }

    #[test]
    fn byte_order_mark_stripped() {
        let payloads = decode("\u{FEFF}{\"type\":\"track\"}");
        assert_eq!(message(&payloads[0]), &json!({"type": "track"}));
    }

    #[test]
    fn invalid_json_kept_as_text() {
        let payloads = decode("{\"type\": tra");
        let Payload::Unparsed(unparsed) = &payloads[0] else { panic!("expected unparsed") };
        assert_eq!(unparsed.text, "{\"type\": tra");
        assert_eq!(unparsed.reason, "invalid_json");
        assert!(unparsed.error.contains("line 1 column"), "{}", unparsed.error);
    }

    #[test]
    fn batch_envelope_expands_with_context() {
        let payloads = decode(
            r#"{"batch":[{"type":"track","event":"A","context":{"ip":"1.2.3.4"}},{"type":"identify"}],"writeKey":"secret","context":{"ip":"9.9.9.9","device":{"type":"phone"}}}"#,
        );
        assert_eq!(payloads.len(), 2);
        assert_eq!(
            message(&payloads[0]),
            &json!({"type":"track","event":"A","context":{"ip":"1.2.3.4","device":{"type":"phone"}}})
        );
        assert_eq!(
            message(&payloads[1]),
            &json!({"type":"identify","context":{"ip":"9.9.9.9","device":{"type":"phone"}}})
        );
    }

    #[test]
    fn write_key_removed_from_message() {
        let payloads = decode(r#"{"type":"track","writeKey":"wk-secret","event":"A"}"#);
        assert_eq!(message(&payloads[0]), &json!({"type":"track","event":"A"}));
    }

    fn unparsed_of(line: &[u8]) -> Unparsed {
        let mut payloads = Vec::new();
        decode_line(line, &mut payloads);
        assert_eq!(payloads.len(), 1, "one payload for {:?}", String::from_utf8_lossy(line));
        match payloads.remove(0) {
            Payload::Unparsed(unparsed) => unparsed,
            other => panic!("expected an unparsed payload, got {other:?}"),
        }
    }

    /// Builds a message whose `properties` nest arrays so that the whole document is `depth` deep.
    fn nested_message(depth: usize) -> String {
        let arrays = depth - 2;
        format!("{{\"type\":\"track\",\"properties\":{{\"a\":{}{}}}}}", "[".repeat(arrays), "]".repeat(arrays))
    }

    #[test]
    fn depth_limit_is_serde_json_limit() {
        let deepest = nested_message(MAX_JSON_DEPTH);
        assert!(matches!(decode(&deepest)[0], Payload::Message(_)), "depth {MAX_JSON_DEPTH} is accepted");

        let too_deep = unparsed_of(nested_message(MAX_JSON_DEPTH + 1).as_bytes());
        assert_eq!(too_deep.reason, "too_deep");
        assert!(too_deep.error.contains("128 levels"), "{}", too_deep.error);
        assert!(too_deep.error.contains("maximum of 127"), "{}", too_deep.error);
    }

    #[test]
    fn brackets_in_strings_not_counted() {
        let brackets = "[".repeat(500);
        let line = format!("{{\"type\":\"track\",\"event\":\"{brackets}\\\"{brackets}\"}}");
        let payloads = decode(&line);
        assert!(matches!(payloads[0], Payload::Message(_)), "{payloads:?}");
        assert_eq!(nesting_depth(format!("{line}x").as_bytes()), 1);
    }

    #[test]
    fn invalid_utf8_keeps_bytes() {
        let line = b"{\"type\":\"track\",\"event\":\"caf\xE9\"}";
        let unparsed = unparsed_of(line);
        assert_eq!(unparsed.reason, "invalid_utf8");
        assert_eq!(unparsed.bytes.as_deref(), Some(&line[..]));
        assert_eq!(unparsed.text, "{\"type\":\"track\",\"event\":\"caf\u{FFFD}\"}");
        assert!(unparsed.error.contains("invalid UTF-8 at byte 28"), "{}", unparsed.error);
    }

    #[test]
    fn nul_bytes_named_in_error() {
        let unparsed = unparsed_of(b"\0\0{\"type\":\"track\"}");
        assert_eq!(unparsed.reason, "invalid_json");
        assert_eq!(unparsed.bytes, None);
        assert!(unparsed.error.contains("NUL bytes"), "{}", unparsed.error);
    }

    #[test]
    fn escaped_nul_is_valid() {
        let payloads = decode(r#"{"type":"track","event":"a\u0000b"}"#);
        assert_eq!(message(&payloads[0]), &json!({"type": "track", "event": "a\u{0}b"}));
    }

    #[test]
    fn crlf_and_bom_together() {
        let payloads = decode("\u{FEFF}{\"type\":\"track\"}\r");
        assert_eq!(message(&payloads[0]), &json!({"type": "track"}));
    }

    #[test]
    fn oversized_batch_dead_lettered_whole() {
        let messages = vec!["{}"; MAX_BATCH_MESSAGES + 1].join(",");
        let unparsed = unparsed_of(format!(r#"{{"writeKey":"secret","batch":[{messages}]}}"#).as_bytes());
        assert_eq!(unparsed.reason, "batch_too_large");
        assert!(unparsed.error.contains("10001 messages"), "{}", unparsed.error);
        assert!(!unparsed.text.contains("secret"), "the write key is removed");

        let largest = vec!["{}"; MAX_BATCH_MESSAGES].join(",");
        assert_eq!(decode(&format!(r#"{{"batch":[{largest}]}}"#)).len(), MAX_BATCH_MESSAGES);
    }

    #[test]
    fn non_object_passed_through() {
        assert_eq!(message(&decode("[1,2]")[0]), &json!([1, 2]));
    }
}
