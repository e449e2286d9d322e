//! Snapshot files: the events of one output as a pretty-printed JSON array with sorted keys.
//!
//! Only one field varies between versions of the relay: the `client_version` of each Event API body.
//! Snapshots hold [`CLIENT_VERSION_PLACEHOLDER`] in its place, which matches the running version, so
//! an upgrade does not rewrite every snapshot. Every other field is stable: a uuid derived from a
//! message without `messageId` is a UUID v5 of the message's canonical JSON, the same on every run.

use std::path::Path;

use serde_json::{Map, Value};

/// The value of `client_version` that matches the version of the running relay. An expectation that
/// gives a version number instead is compared with it exactly.
pub const CLIENT_VERSION_PLACEHOLDER: &str = "<current version>";

/// The key of the relay's version in an Event API body.
const CLIENT_VERSION_KEY: &str = "client_version";

/// Renders events as the content of a snapshot file: pretty JSON with keys sorted at every level,
/// `client_version` replaced by the placeholder, and a final newline.
pub fn render(events: &[Value]) -> String {
    let events: Vec<Value> = events.iter().map(|event| sort_keys(&with_placeholder(event))).collect();
    let mut text = serde_json::to_string_pretty(&Value::Array(events)).unwrap_or_default();
    text.push('\n');
    text
}

/// Parses the content of a snapshot file.
pub fn parse(text: &str) -> Result<Vec<Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(events)) => Ok(events),
        Ok(other) => Err(format!("it contains a JSON {}, not an array of events", kind(&other))),
        Err(error) => Err(format!("it is not valid JSON: {error}")),
    }
}

/// Reads a snapshot file: `Ok(None)` when it does not exist.
pub fn read(path: &Path) -> Result<Option<Vec<Value>>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("cannot read snapshot `{}`: {error}", path.display())),
    };
    parse(&text).map(Some).map_err(|problem| format!("snapshot `{}` is unusable: {problem}", path.display()))
}

/// Writes `events` to a snapshot file, creating its directories.
pub fn write(path: &Path, events: &[Value]) -> Result<(), String> {
    if let Some(directory) = path.parent().filter(|directory| !directory.as_os_str().is_empty()) {
        std::fs::create_dir_all(directory)
            .map_err(|error| format!("cannot create directory `{}`: {error}", directory.display()))?;
    }
    std::fs::write(path, render(events)).map_err(|error| format!("cannot write snapshot `{}`: {error}", path.display()))
}

/// Prepares actual events for comparison with `expected`. Where an expected event contains the
/// placeholder as its `client_version` and the actual event contains the running version, the
/// actual event gets the placeholder too.
pub fn match_placeholders(expected: &[Value], actual: &[Value]) -> Vec<Value> {
    actual
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let wants_placeholder = expected
                .get(index)
                .and_then(|expected_event| expected_event.get(CLIENT_VERSION_KEY))
                .is_some_and(|version| version == CLIENT_VERSION_PLACEHOLDER);
            if wants_placeholder {
                with_placeholder(event)
            } else {
                event.clone()
            }
        })
        .collect()
}

/// Returns `event` with a `client_version` equal to the running version replaced by the placeholder.
fn with_placeholder(event: &Value) -> Value {
    let mut event = event.clone();
    if let Some(version) = event.get_mut(CLIENT_VERSION_KEY) {
        if version == env!("CARGO_PKG_VERSION") {
            *version = Value::String(CLIENT_VERSION_PLACEHOLDER.to_owned());
        }
    }
    event
}

/// Returns `value` with the members of every object sorted by key. Arrays keep their order, which is
/// significant.
fn sort_keys(value: &Value) -> Value {
    match value {
        Value::Object(members) => {
            let mut keys: Vec<&String> = members.keys().collect();
            keys.sort();
            let sorted: Map<String, Value> =
                keys.into_iter().map(|key| (key.clone(), sort_keys(&members[key]))).collect();
            Value::Object(sorted)
        }
        Value::Array(items) => Value::Array(items.iter().map(sort_keys).collect()),
        other => other.clone(),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn render_sorts_keys_and_uses_placeholder() {
        let body: Value = serde_json::from_str(&format!(
            r#"{{"revision":"42","client_version":"{}","visitors":[{{"visitor_id":"u","attributes":[]}}]}}"#,
            env!("CARGO_PKG_VERSION")
        ))
        .unwrap();

        let expected = concat!(
            "[\n",
            "  {\n",
            "    \"client_version\": \"<current version>\",\n",
            "    \"revision\": \"42\",\n",
            "    \"visitors\": [\n",
            "      {\n",
            "        \"attributes\": [],\n",
            "        \"visitor_id\": \"u\"\n",
            "      }\n",
            "    ]\n",
            "  }\n",
            "]\n",
        );
        assert_eq!(render(&[body]), expected);
    }

    #[test]
    fn render_keeps_array_order_and_number_text() {
        let events: Vec<Value> = vec![serde_json::from_str(r#"{"b":[3,1,2],"a":7.50}"#).unwrap()];
        assert_eq!(
            render(&events),
            "[\n  {\n    \"a\": 7.50,\n    \"b\": [\n      3,\n      1,\n      2\n    ]\n  }\n]\n"
        );
    }

    #[test]
    fn other_client_version_kept() {
        let events = vec![json!({"client_version": "0.0.1"})];
        assert!(render(&events).contains("\"client_version\": \"0.0.1\""));
    }

    #[test]
    fn placeholder_applied_only_where_expected() {
        let version = env!("CARGO_PKG_VERSION");
        let expected = vec![json!({"client_version": CLIENT_VERSION_PLACEHOLDER}), json!({"client_version": version})];
        let actual = vec![json!({"client_version": version}), json!({"client_version": version})];

        let prepared = match_placeholders(&expected, &actual);

        assert_eq!(prepared[0], json!({"client_version": CLIENT_VERSION_PLACEHOLDER}));
        assert_eq!(prepared[1], json!({"client_version": version}));
    }

    #[test]
    fn parse_rejects_non_array() {
        assert_eq!(parse("{\"a\": 1}").unwrap_err(), "it contains a JSON object, not an array of events");
        assert!(parse("[1,").unwrap_err().starts_with("it is not valid JSON"));
        assert_eq!(parse("[]").unwrap(), Vec::<Value>::new());
    }
}
