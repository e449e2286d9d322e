//! The conversion uuid for messages without a `messageId`.
//!
//! Optimizely de-duplicates conversions on their uuid. A message without a `messageId` gets a UUID v5
//! of its canonical JSON, so the same message read twice, such as on a replay after a crash, gets the
//! same uuid in every run and every version of this program.

use serde_json::Value;
use uuid::Uuid;

use super::borrowed::BorrowedValue;

/// Encodes `value` as canonical JSON: object keys sorted at every depth, no whitespace.
///
/// Keys are sorted by the bytes of their UTF-8 encoding, which is Unicode code point order. This
/// differs from RFC 8785 (JCS), which sorts by UTF-16 code units. Strings are escaped as serde_json
/// escapes them, and numbers are written as their text, which serde_json keeps as written apart from
/// the exponent, stored as `e+`/`e-` (so `1E3` is written `1e+3`). Array order is kept.
pub fn canonical_json(value: &Value) -> String {
    let mut output = String::new();
    write_canonical(value, &mut output);
    output
}

/// Returns the conversion uuid: the message id as given, or [`fallback_uuid`] of the message.
///
/// A string message id is used as given, and a number becomes its text as serde_json keeps it, which
/// is the text as written except that an exponent reads `e+` or `e-`. A missing or empty message id,
/// `null`, a boolean, an array or an object falls back to the uuid of the message's canonical JSON.
pub fn conversion_uuid(message_id: Option<&Value>, message: &Value) -> String {
    conversion_uuid_or_else(message_id, || message.clone())
}

/// Returns the conversion uuid as [`conversion_uuid`] does, building the message with `message` only
/// when the uuid falls back to its canonical JSON.
pub fn conversion_uuid_or_else(message_id: Option<&Value>, message: impl FnOnce() -> Value) -> String {
    match message_id {
        Some(Value::String(text)) if !text.is_empty() => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => fallback_uuid(&message()),
    }
}

/// Returns the conversion uuid as [`conversion_uuid_or_else`] does, from a message id in a borrowed
/// message, without building a `Value` of it.
pub(crate) fn conversion_uuid_borrowed(message_id: Option<&BorrowedValue>, message: impl FnOnce() -> Value) -> String {
    match message_id {
        Some(BorrowedValue::String(text)) if !text.is_empty() => (*text).to_owned(),
        // A borrowed number keeps the text that serde_json's `Number` displays.
        Some(BorrowedValue::Number(text)) => (*text).to_owned(),
        _ => fallback_uuid(&message()),
    }
}

/// Returns the UUID v5 (namespace OID) of the message's canonical JSON, lowercase and hyphenated.
pub fn fallback_uuid(message: &Value) -> String {
    let canonical = canonical_json(message);
    Uuid::new_v5(&Uuid::NAMESPACE_OID, canonical.as_bytes()).hyphenated().to_string()
}

/// Appends the canonical JSON of `value` to `output`.
///
/// The recursion depth follows the nesting of the value, which serde_json's parser limits to 128.
fn write_canonical(value: &Value, output: &mut String) {
    match value {
        Value::Array(items) => {
            output.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    output.push(',');
                }
                write_canonical(item, output);
            }
            output.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|(left, _), (right, _)| left.as_bytes().cmp(right.as_bytes()));

            output.push('{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    output.push(',');
                }
                output.push_str(&Value::String(key.clone()).to_string());
                output.push(':');
                write_canonical(item, output);
            }
            output.push('}');
        }
        // The Display form of a scalar is its compact JSON text.
        scalar => output.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical text of the messages below, written by hand.
    const CANONICAL: &str = concat!(
        r#"{"event":"Order Completed","messageId":"","#,
        r#""properties":{"Z":1,"b":[1,{"a":null,"z":true}],"revenue":19.99,"é":"ü","｡":"half","😀":"smile"},"#,
        r#""text":"line\nbreak \"q\"","timestamp":"2024-01-31T12:00:00Z","type":"track","userId":"u1"}"#
    );

    /// `uuid.uuid5(uuid.NAMESPACE_OID, CANONICAL)` as computed by Python's `uuid` module.
    const CANONICAL_UUID: &str = "8ca55c51-31c2-545b-8ffb-bd78fbba9aae";

    const MESSAGE: &str = r#"{
        "type": "track",
        "userId": "u1",
        "event": "Order Completed",
        "messageId": "",
        "timestamp": "2024-01-31T12:00:00Z",
        "text": "line\nbreak \"q\"",
        "properties": {
            "😀": "smile",
            "revenue": 19.99,
            "b": [1, {"z": true, "a": null}],
            "｡": "half",
            "é": "\u00fc",
            "Z": 1
        }
    }"#;

    const SAME_MESSAGE_REORDERED: &str = r#"{"properties":{"Z":1,"é":"ü","b":[1,{"a":null,"z":true}],"｡":"half","revenue":19.99,"😀":"smile"},
        "userId":"u1","timestamp":"2024-01-31T12:00:00Z","text":"line\nbreak \"q\"","messageId":"","event":"Order Completed","type":"track"}"#;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_else(|error| panic!("test message is not JSON: {error}"))
    }

    #[test]
    fn canonical_json_matches_handwritten() {
        assert_eq!(canonical_json(&parse(MESSAGE)), CANONICAL);
    }

    #[test]
    fn canonical_json_ignores_key_order() {
        assert_eq!(canonical_json(&parse(SAME_MESSAGE_REORDERED)), CANONICAL);
    }

    #[test]
    fn canonical_json_sorts_by_code_point() {
        // U+FF61 sorts before U+1F600 by code point, but after it by UTF-16 code unit (0xD83D).
        let value = parse(r#"{"😀": 1, "｡": 2, "a": 3, "B": 4}"#);
        assert_eq!(canonical_json(&value), r#"{"B":4,"a":3,"｡":2,"😀":1}"#);
    }

    #[test]
    fn canonical_json_keeps_number_text() {
        let value = parse(r#"{"a": 1.50, "b": 1E3, "c": -0, "d": 12345678901234567890123}"#);
        assert_eq!(canonical_json(&value), r#"{"a":1.50,"b":1e+3,"c":-0,"d":12345678901234567890123}"#);
    }

    #[test]
    fn canonical_json_of_scalars() {
        assert_eq!(canonical_json(&parse("null")), "null");
        assert_eq!(canonical_json(&parse("[]")), "[]");
        assert_eq!(canonical_json(&parse("{}")), "{}");
        assert_eq!(canonical_json(&parse(r#""tab\tcontrol\u0001""#)), r#""tab\tcontrol\u0001""#);
    }

    #[test]
    fn fallback_uuid_is_fixed() {
        assert_eq!(fallback_uuid(&parse(MESSAGE)), CANONICAL_UUID);
        assert_eq!(fallback_uuid(&parse(SAME_MESSAGE_REORDERED)), CANONICAL_UUID);
    }

    #[test]
    fn fallback_uuid_of_empty_object() {
        // Python: uuid.uuid5(uuid.NAMESPACE_OID, "{}")
        assert_eq!(fallback_uuid(&parse("{}")), "56bd00e8-9408-567f-b0cc-aab82ef285b4");
    }

    #[test]
    fn conversion_uuid_prefers_message_id() {
        let message = parse(MESSAGE);
        let cases = [
            (r#""ajs-next-1706702400000-abc""#, "ajs-next-1706702400000-abc"),
            (r#"" padded ""#, " padded "),
            ("12345", "12345"),
            ("1.50", "1.50"),
            ("-7", "-7"),
        ];
        for (message_id, expected) in cases {
            let parsed = parse(message_id);
            assert_eq!(conversion_uuid(Some(&parsed), &message), expected, "messageId {message_id}");
            assert_eq!(borrowed_uuid(message_id, &message), expected, "borrowed messageId {message_id}");
        }
    }

    /// Returns the uuid of `conversion_uuid_borrowed` for the message id JSON text `message_id`.
    fn borrowed_uuid(message_id: &str, message: &Value) -> String {
        let arena = bumpalo::Bump::new();
        let parsed = parse(message_id);
        let borrowed = BorrowedValue::from_value(&parsed, &arena);
        conversion_uuid_borrowed(Some(&borrowed), || message.clone())
    }

    #[test]
    fn conversion_uuid_falls_back_when_unusable() {
        let message = parse(MESSAGE);
        assert_eq!(conversion_uuid(None, &message), CANONICAL_UUID, "missing messageId");
        assert_eq!(conversion_uuid_borrowed(None, || message.clone()), CANONICAL_UUID, "borrowed, missing messageId");
        for message_id in [r#""""#, "null", "true", "[]", r#"{"id": "x"}"#] {
            let parsed = parse(message_id);
            assert_eq!(conversion_uuid(Some(&parsed), &message), CANONICAL_UUID, "messageId {message_id}");
            assert_eq!(borrowed_uuid(message_id, &message), CANONICAL_UUID, "borrowed messageId {message_id}");
        }
    }

    #[test]
    fn fallback_uuid_differs_between_messages() {
        let first = fallback_uuid(&parse(r#"{"userId": "u1"}"#));
        let second = fallback_uuid(&parse(r#"{"userId": "u2"}"#));
        assert_ne!(first, second);
    }
}
