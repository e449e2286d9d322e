//! Request bodies: decompression with a size limit, and parsing into payloads with positions.

use serde_json::Value;

use crate::event::{Payload, Unparsed};
use crate::sources::decode;

/// The place of a payload in its request body, for error messages and acknowledgements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The 1-based line of an NDJSON body.
    Line(usize),
    /// The 0-based index in a JSON array or a Segment batch.
    Index(usize),
}

/// A problem with one part of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    /// The place in the body.
    pub position: Position,
    /// The problem.
    pub message: String,
}

/// The payloads of a body, each with its position, and the parts that could not be parsed. Unparsed
/// parts are also payloads, so that they end on a dead-letter output like any other bad input.
#[derive(Debug, Default)]
pub struct ParsedBody {
    /// The payloads in body order.
    pub payloads: Vec<(Position, Payload)>,
    /// The parts that are not valid JSON.
    pub errors: Vec<BodyError>,
}

impl ParsedBody {
    fn push(&mut self, position: Position, payload: Payload) {
        if let Payload::Unparsed(unparsed) = &payload {
            self.errors.push(BodyError { position, message: unparsed.error.clone() });
        }
        self.payloads.push((position, payload));
    }
}

/// The reason a body was rejected as a whole.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyRejection {
    /// The body, or what it decompresses to, is larger than the limit.
    TooLarge,
    /// The `Content-Encoding` is not supported.
    UnsupportedEncoding(String),
    /// The gzip data is corrupt.
    InvalidGzip(String),
}

/// Returns the body as sent, or gunzipped when `content_encoding` is `gzip`, never more than
/// `max_bytes` bytes.
pub fn decode_body(content_encoding: Option<&str>, body: &[u8], max_bytes: usize) -> Result<Vec<u8>, BodyRejection> {
    use std::io::Read;

    match content_encoding.map(|encoding| encoding.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => Ok(body.to_vec()),
        Some("gzip") | Some("x-gzip") => {
            // Read one byte past the limit to tell a body of exactly the limit from a larger one, so
            // that a small compressed body cannot expand without bound.
            let mut decoded = Vec::new();
            let mut reader = flate2::read::MultiGzDecoder::new(body).take(max_bytes as u64 + 1);
            reader.read_to_end(&mut decoded).map_err(|error| BodyRejection::InvalidGzip(error.to_string()))?;
            if decoded.len() > max_bytes {
                return Err(BodyRejection::TooLarge);
            }
            Ok(decoded)
        }
        Some(other) => Err(BodyRejection::UnsupportedEncoding(other.to_owned())),
    }
}

/// Parses a body of the plain ingestion path: a JSON array of messages, or newline-delimited JSON.
pub fn parse_plain(body: &[u8], max_line_bytes: usize) -> ParsedBody {
    let first = body.iter().find(|byte| !byte.is_ascii_whitespace() && **byte != 0xEF);
    if first == Some(&b'[') {
        parse_array(body)
    } else {
        parse_lines(body, max_line_bytes)
    }
}

fn parse_array(body: &[u8]) -> ParsedBody {
    let mut parsed = ParsedBody::default();
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => {
            for (index, item) in items.into_iter().enumerate() {
                let mut payloads = Vec::new();
                decode::decode_value(item, &mut payloads);
                for payload in payloads {
                    parsed.push(Position::Index(index), payload);
                }
            }
        }
        Ok(other) => parsed.push(Position::Index(0), Payload::Message(other)),
        Err(error) => {
            let line = error.line().max(1);
            let unparsed = decode::unparsed(body, &error, "invalid JSON array");
            parsed.push(Position::Line(line), Payload::Unparsed(unparsed));
        }
    }
    parsed
}

fn parse_lines(body: &[u8], max_line_bytes: usize) -> ParsedBody {
    let mut parsed = ParsedBody::default();
    let mut payloads = Vec::new();
    for (index, line) in body.split(|byte| *byte == b'\n').enumerate() {
        let position = Position::Line(index + 1);
        if line.len() > max_line_bytes {
            parsed.push(position, decode::too_long(&line[..max_line_bytes], line.len(), max_line_bytes));
            continue;
        }
        decode::decode_line(line, &mut payloads);
        for payload in payloads.drain(..) {
            parsed.push(position, payload);
        }
    }
    parsed
}

/// Parses the body of a Segment tracking API call. `kind` is the last path segment, such as `track`
/// or `batch`; a message without `type` gets it from the path. Returns the payloads and the write key
/// the body carries, if any.
pub fn parse_segment(kind: &str, body: &[u8]) -> (ParsedBody, Option<String>) {
    let mut parsed = ParsedBody::default();
    let value = match serde_json::from_slice::<Value>(body) {
        Ok(value) => value,
        Err(error) => {
            let unparsed = decode::unparsed(body, &error, "invalid JSON");
            parsed.push(Position::Index(0), Payload::Unparsed(unparsed));
            return (parsed, None);
        }
    };
    let write_key = value.get("writeKey").and_then(Value::as_str).map(str::to_owned);

    if kind == "batch" {
        let Value::Object(mut envelope) = value else {
            parsed.push(Position::Index(0), Payload::Message(value));
            return (parsed, write_key);
        };
        let messages = match envelope.remove("batch") {
            Some(Value::Array(messages)) => messages,
            _ => {
                let error = "a /v1/batch body needs a `batch` array of messages".to_owned();
                let text = Value::Object(envelope).to_string();
                parsed.push(
                    Position::Index(0),
                    Payload::Unparsed(Unparsed { text, error, reason: "invalid_json", bytes: None }),
                );
                return (parsed, write_key);
            }
        };
        let count = messages.len();
        envelope.insert("batch".to_owned(), Value::Array(messages));
        let mut payloads = Vec::with_capacity(count);
        decode::decode_value(Value::Object(envelope), &mut payloads);
        for (index, payload) in payloads.into_iter().enumerate() {
            parsed.push(Position::Index(index), payload);
        }
        return (parsed, write_key);
    }

    let mut message = value;
    if let Value::Object(object) = &mut message {
        if !object.contains_key("type") {
            object.insert("type".to_owned(), Value::String(kind.to_owned()));
        }
    }
    let mut payloads = Vec::new();
    decode::decode_value(message, &mut payloads);
    for payload in payloads {
        parsed.push(Position::Index(0), payload);
    }
    (parsed, write_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(parsed: &ParsedBody) -> Vec<Value> {
        parsed
            .payloads
            .iter()
            .filter_map(|(_, payload)| match payload {
                Payload::Message(message) => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn ndjson_lines_numbered_from_one() {
        let parsed = parse_plain(b"{\"a\":1}\n\nnot json\n{\"b\":2}\n", 1000);
        assert_eq!(messages(&parsed), vec![json!({"a": 1}), json!({"b": 2})]);
        assert_eq!(parsed.errors.len(), 1);
        assert_eq!(parsed.errors[0].position, Position::Line(3));
        let positions: Vec<Position> = parsed.payloads.iter().map(|(position, _)| *position).collect();
        assert_eq!(positions, vec![Position::Line(1), Position::Line(3), Position::Line(4)]);
    }

    #[test]
    fn json_array_indexed() {
        let parsed = parse_plain(b" [{\"a\":1}, 5, {\"b\":2}]", 1000);
        assert_eq!(messages(&parsed), vec![json!({"a": 1}), json!(5), json!({"b": 2})]);
        assert!(parsed.errors.is_empty());
        assert_eq!(parsed.payloads[2].0, Position::Index(2));
    }

    #[test]
    fn broken_array_is_one_error() {
        let parsed = parse_plain(b"[{\"a\":1},\n{\"b\":", 1000);
        assert_eq!(parsed.payloads.len(), 1);
        assert_eq!(parsed.errors[0].position, Position::Line(2));
    }

    #[test]
    fn long_line_rejected_alone() {
        let parsed = parse_plain(b"{\"a\":1}\n{\"long\":\"xxxxxxxxxxxxxxxx\"}\n", 10);
        assert_eq!(messages(&parsed), vec![json!({"a": 1})]);
        assert_eq!(parsed.errors[0].position, Position::Line(2));
        assert!(parsed.errors[0].message.contains("max_line_bytes"), "{}", parsed.errors[0].message);
    }

    #[test]
    fn segment_track_gets_type_from_path() {
        let (parsed, write_key) = parse_segment("track", br#"{"userId":"u","event":"E","writeKey":"wk"}"#);
        assert_eq!(messages(&parsed), vec![json!({"userId": "u", "event": "E", "type": "track"})]);
        assert_eq!(write_key.as_deref(), Some("wk"));
    }

    #[test]
    fn segment_batch_expands() {
        let body = br#"{"batch":[{"type":"track","event":"A"},{"type":"identify"}],"context":{"ip":"1.1.1.1"},"writeKey":"wk"}"#;
        let (parsed, write_key) = parse_segment("batch", body);
        assert_eq!(
            messages(&parsed),
            vec![
                json!({"type": "track", "event": "A", "context": {"ip": "1.1.1.1"}}),
                json!({"type": "identify", "context": {"ip": "1.1.1.1"}})
            ]
        );
        assert_eq!(write_key.as_deref(), Some("wk"));
        assert_eq!(parsed.payloads[1].0, Position::Index(1));
    }

    #[test]
    fn gzip_decoded_within_limit() {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&vec![b'a'; 1000]).unwrap();
        let compressed = encoder.finish().unwrap();

        assert_eq!(decode_body(Some("gzip"), &compressed, 1000).unwrap().len(), 1000);
        assert_eq!(decode_body(Some("gzip"), &compressed, 999), Err(BodyRejection::TooLarge));
        assert!(matches!(decode_body(Some("gzip"), b"not gzip", 1000), Err(BodyRejection::InvalidGzip(_))));
        assert_eq!(decode_body(Some("br"), b"x", 10), Err(BodyRejection::UnsupportedEncoding("br".to_owned())));
    }
}
