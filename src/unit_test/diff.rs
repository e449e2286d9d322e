//! The differences between expected and actual JSON values, by path.
//!
//! Object members are compared by key, so key order is ignored. Array elements are compared by
//! index. Numbers are compared as written, so `7` and `7.0` differ: the Event API receives the text.

use std::fmt;

use serde_json::Value;

/// Maximum length in characters of a value shown in a difference. Longer values are cut with `…`.
const MAX_SHOWN_CHARS: usize = 200;

/// One difference at one path.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// The path of the value, such as `$[0].visitors[0].visitor_id`.
    pub path: String,
    /// What differs.
    pub kind: DifferenceKind,
}

/// What differs at a path.
#[derive(Debug, Clone, PartialEq)]
pub enum DifferenceKind {
    /// Both sides have a value, and the values differ.
    Changed {
        /// The expected value.
        expected: Value,
        /// The actual value.
        actual: Value,
    },
    /// An object member that is expected but absent.
    MissingField(Value),
    /// An object member that is present but not expected.
    UnexpectedField(Value),
    /// An array element that is expected but absent.
    MissingElement(Value),
    /// An array element that is present but not expected.
    UnexpectedElement(Value),
}

impl fmt::Display for Difference {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = &self.path;
        match &self.kind {
            DifferenceKind::Changed { expected, actual } => {
                write!(formatter, "{path}: expected {}, actual {}", show(expected), show(actual))
            }
            DifferenceKind::MissingField(expected) => {
                write!(formatter, "{path}: missing field, expected {}", show(expected))
            }
            DifferenceKind::UnexpectedField(actual) => {
                write!(formatter, "{path}: unexpected field, actual {}", show(actual))
            }
            DifferenceKind::MissingElement(expected) => {
                write!(formatter, "{path}: missing element, expected {}", show(expected))
            }
            DifferenceKind::UnexpectedElement(actual) => {
                write!(formatter, "{path}: unexpected element, actual {}", show(actual))
            }
        }
    }
}

/// Returns every difference between `expected` and `actual`, with paths starting at `$`. Objects and
/// arrays are compared member by member, so only the differing leaves are listed.
pub fn diff(expected: &Value, actual: &Value) -> Vec<Difference> {
    let mut differences = Vec::new();
    compare("$".to_owned(), expected, actual, &mut differences);
    differences
}

fn compare(path: String, expected: &Value, actual: &Value, differences: &mut Vec<Difference>) {
    match (expected, actual) {
        (Value::Object(expected_members), Value::Object(actual_members)) => {
            for (key, expected_value) in expected_members {
                let member_path = member_path(&path, key);
                match actual_members.get(key) {
                    Some(actual_value) => compare(member_path, expected_value, actual_value, differences),
                    None => differences.push(Difference {
                        path: member_path,
                        kind: DifferenceKind::MissingField(expected_value.clone()),
                    }),
                }
            }
            for (key, actual_value) in actual_members {
                if !expected_members.contains_key(key) {
                    differences.push(Difference {
                        path: member_path(&path, key),
                        kind: DifferenceKind::UnexpectedField(actual_value.clone()),
                    });
                }
            }
        }
        (Value::Array(expected_items), Value::Array(actual_items)) => {
            let length = expected_items.len().max(actual_items.len());
            for index in 0..length {
                let element_path = format!("{path}[{index}]");
                match (expected_items.get(index), actual_items.get(index)) {
                    (Some(expected_item), Some(actual_item)) => {
                        compare(element_path, expected_item, actual_item, differences)
                    }
                    (Some(expected_item), None) => differences.push(Difference {
                        path: element_path,
                        kind: DifferenceKind::MissingElement(expected_item.clone()),
                    }),
                    (None, Some(actual_item)) => differences.push(Difference {
                        path: element_path,
                        kind: DifferenceKind::UnexpectedElement(actual_item.clone()),
                    }),
                    (None, None) => {}
                }
            }
        }
        _ if expected == actual => {}
        _ => differences.push(Difference {
            path,
            kind: DifferenceKind::Changed { expected: expected.clone(), actual: actual.clone() },
        }),
    }
}

/// Appends an object member to a path: `.name` when the name is a plain word, else `['name']`, the
/// syntax of the transform's `mapping` paths.
fn member_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && !key.chars().any(|character| matches!(character, '.' | '[' | ']' | '\'' | '"') || character.is_whitespace());
    if plain {
        return format!("{path}.{key}");
    }
    let escaped = key.replace('\\', "\\\\").replace('\'', "\\'");
    format!("{path}['{escaped}']")
}

/// Formats a value as compact JSON, cut to [`MAX_SHOWN_CHARS`] characters.
fn show(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(MAX_SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(expected: Value, actual: Value) -> Vec<String> {
        diff(&expected, &actual).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn equal_values_have_no_difference() {
        assert!(diff(&json!([{"a": 1, "b": [true, null]}]), &json!([{"a": 1, "b": [true, null]}])).is_empty());
    }

    #[test]
    fn key_order_is_ignored() {
        let expected: Value = serde_json::from_str(r#"{"a": 1, "b": {"c": 2, "d": 3}}"#).unwrap();
        let actual: Value = serde_json::from_str(r#"{"b": {"d": 3, "c": 2}, "a": 1}"#).unwrap();
        assert!(diff(&expected, &actual).is_empty());
    }

    #[test]
    fn changed_leaf_shows_path_and_values() {
        let expected = json!([{"visitors": [{"snapshots": [{"events": [{"revenue": 1999, "key": "k"}]}]}]}]);
        let actual = json!([{"visitors": [{"snapshots": [{"events": [{"revenue": 1998, "key": "k"}]}]}]}]);
        assert_eq!(
            lines(expected, actual),
            vec!["$[0].visitors[0].snapshots[0].events[0].revenue: expected 1999, actual 1998"]
        );
    }

    #[test]
    fn missing_field_named() {
        assert_eq!(
            lines(json!({"a": 1, "tags": {"coupon": "W"}}), json!({"a": 1, "tags": {}})),
            vec!["$.tags.coupon: missing field, expected \"W\""]
        );
    }

    #[test]
    fn unexpected_field_named() {
        assert_eq!(lines(json!({"a": 1}), json!({"a": 1, "value": 3})), vec!["$.value: unexpected field, actual 3"]);
    }

    #[test]
    fn array_length_differences_listed() {
        assert_eq!(
            lines(json!([1, 2, 3]), json!([1, 5])),
            vec!["$[1]: expected 2, actual 5", "$[2]: missing element, expected 3"]
        );
        assert_eq!(
            lines(json!([]), json!([{"identifier": "u"}])),
            vec!["$[0]: unexpected element, actual {\"identifier\":\"u\"}"]
        );
    }

    #[test]
    fn type_change_shows_both_values() {
        assert_eq!(
            lines(json!({"revenue": "1999"}), json!({"revenue": 1999})),
            vec!["$.revenue: expected \"1999\", actual 1999"]
        );
    }

    #[test]
    fn numbers_compared_as_written() {
        let expected: Value = serde_json::from_str(r#"{"value": 7.0}"#).unwrap();
        let actual: Value = serde_json::from_str(r#"{"value": 7}"#).unwrap();
        assert_eq!(lines(expected, actual), vec!["$.value: expected 7.0, actual 7"]);
    }

    #[test]
    fn unusual_keys_quoted() {
        assert_eq!(
            lines(json!({"Order Id": 1, "a.b": 2, "it's": 3}), json!({"Order Id": 2, "a.b": 2, "it's": 4})),
            vec!["$['Order Id']: expected 1, actual 2", "$['it\\'s']: expected 3, actual 4"]
        );
    }

    #[test]
    fn long_values_cut() {
        let long = "x".repeat(500);
        let line = &lines(json!({"a": long}), json!({"a": 1}))[0];
        assert!(line.starts_with("$.a: expected \"xxx"), "{line}");
        assert!(line.ends_with("…, actual 1"), "{line}");
        assert!(line.chars().count() < 250, "{line}");
    }
}
