//! Decoding of input lines into Segment messages.

use serde_json::Value;

use crate::event::{Payload, Unparsed};

/// The keys of a Segment batch envelope that are not messages.
const ENVELOPE_CONTEXT_KEY: &str = "context";

/// Decodes one line of newline-delimited JSON into payloads, appending them to `payloads`.
///
/// A UTF-8 byte order mark and a trailing `\r` are removed. A blank line yields nothing. A Segment batch
/// envelope (`{"batch": [...]}`) yields one payload per message; the envelope's `context` is merged into
/// each message's `context`, where the message's own keys win. A top-level `writeKey`, a credential, is
/// removed from every message so it never reaches a sink or a dead-letter record.
pub fn decode_line(line: &[u8], payloads: &mut Vec<Payload>) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }

    match serde_json::from_slice::<Value>(line) {
        Ok(value) => decode_value(value, payloads),
        Err(error) => payloads.push(Payload::Unparsed(Unparsed {
            text: String::from_utf8_lossy(line).into_owned(),
            error: format!("invalid JSON: {error}"),
            reason: "invalid_json",
        })),
    }
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

    #[test]
    fn non_object_passed_through() {
        assert_eq!(message(&decode("[1,2]")[0]), &json!([1, 2]));
    }
}
