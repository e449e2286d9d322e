//! Paths that select a field of a Segment message, such as `$.properties.revenue`.
//!
//! The syntax is a small subset of JSONPath: `$` for the whole message, then any number of
//! segments. `.name` selects an object member by a name that contains no `.`, `[`, `]`, quote or
//! whitespace. `['name']` or `["name"]` selects a member by any name, where `\\`, `\'` and `\"` escape
//! a backslash or a quote. `[N]` selects the array element at the zero-based index `N`. Wildcards,
//! recursive descent (`..`), filters, slices, negative indexes and whitespace are not supported.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_json::Value;

use super::borrowed::BorrowedValue;

/// A parsed path into a JSON value, such as `$.properties['Order Id']`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    /// The path as configured, kept for messages.
    text: String,
    segments: Vec<Segment>,
}

/// One step of a [`JsonPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// An object member by name.
    Member(String),
    /// An array element by zero-based index.
    Index(usize),
}

/// A path that does not follow the supported syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid path {path:?}: {reason} at character {position}; valid paths look like $.properties.revenue, \
     $.properties['Order Id'] or $.items[0]"
)]
pub struct PathError {
    /// The path as configured.
    pub path: String,
    /// The position of the problem, counting characters from 1.
    pub position: usize,
    /// The problem found at that position.
    pub reason: String,
}

impl JsonPath {
    /// Returns the value the path selects in `value`, or `None` when a member or element is missing or
    /// a step meets a value of the wrong type (a name on an array, an index on an object).
    pub fn lookup<'a, T: JsonTree>(&self, value: &'a T) -> Option<&'a T> {
        let mut current = value;
        for segment in &self.segments {
            current = match segment {
                Segment::Member(name) => current.member(name)?,
                Segment::Index(index) => current.element(*index)?,
            };
        }
        Some(current)
    }

    /// Returns the path as configured.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for JsonPath {
    type Err = PathError;

    fn from_str(text: &str) -> Result<JsonPath, PathError> {
        let segments = Parser::new(text).parse()?;
        Ok(JsonPath { text: text.to_owned(), segments })
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for JsonPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsonPath, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// A JSON value that a [`JsonPath`] can step into.
pub trait JsonTree {
    /// Returns the value of object member `name`, or `None` when this is no object or has no such member.
    fn member(&self, name: &str) -> Option<&Self>;
    /// Returns the array element at `index`, or `None` when this is no array or the index is past its end.
    fn element(&self, index: usize) -> Option<&Self>;
}

impl JsonTree for Value {
    fn member(&self, name: &str) -> Option<&Value> {
        self.as_object()?.get(name)
    }

    fn element(&self, index: usize) -> Option<&Value> {
        self.as_array()?.get(index)
    }
}

impl JsonTree for BorrowedValue<'_> {
    fn member(&self, name: &str) -> Option<&Self> {
        self.as_object()?.get(name)
    }

    fn element(&self, index: usize) -> Option<&Self> {
        BorrowedValue::element(self, index)
    }
}

/// One or more paths tried in order, configured as one string or a non-empty array of strings.
#[derive(Debug, Clone, PartialEq)]
pub struct PathList(pub Vec<JsonPath>);

impl PathList {
    /// Returns the first value, in path order, that a path selects and `accept` approves.
    ///
    /// `accept` decides what counts as present for a field, such as a non-blank string for a user id.
    pub fn lookup_first<'a>(&self, value: &'a Value, accept: impl Fn(&Value) -> bool) -> Option<&'a Value> {
        self.0.iter().filter_map(|path| path.lookup(value)).find(|found| accept(found))
    }

    /// Returns an iterator over the paths in order.
    pub fn iter(&self) -> std::slice::Iter<'_, JsonPath> {
        self.0.iter()
    }
}

impl std::fmt::Display for PathList {
    /// Writes the paths as `$.userId or $.anonymousId`.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, path) in self.0.iter().enumerate() {
            if index > 0 {
                formatter.write_str(" or ")?;
            }
            write!(formatter, "{path}")?;
        }
        Ok(())
    }
}

impl<'de> serde::Deserialize<'de> for PathList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<PathList, D::Error> {
        deserializer.deserialize_any(PathListVisitor)
    }
}

struct PathListVisitor;

impl<'de> Visitor<'de> for PathListVisitor {
    type Value = PathList;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a path string such as \"$.userId\" or a non-empty array of path strings")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<PathList, E> {
        let path = text.parse().map_err(E::custom)?;
        Ok(PathList(vec![path]))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<PathList, A::Error> {
        let mut paths = Vec::new();
        while let Some(path) = sequence.next_element::<JsonPath>()? {
            paths.push(path);
        }

        if paths.is_empty() {
            return Err(de::Error::custom("the list of paths is empty; give at least one path, such as \"$.userId\""));
        }
        Ok(PathList(paths))
    }
}

/// A recursive-descent parser over the characters of a path.
struct Parser<'a> {
    text: &'a str,
    chars: Vec<char>,
    /// Index into `chars` of the next character.
    index: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Parser<'a> {
        Parser { text, chars: text.chars().collect(), index: 0 }
    }

    fn parse(mut self) -> Result<Vec<Segment>, PathError> {
        if self.next() != Some('$') {
            return Err(self.error_at(0, "a path must start with `$`"));
        }

        let mut segments = Vec::new();
        while let Some(character) = self.next() {
            let segment = match character {
                '.' => self.member_name()?,
                '[' => self.bracket()?,
                _ => return Err(self.error_at(self.index - 1, format!("expected '.' or '[' but found {character:?}"))),
            };
            segments.push(segment);
        }
        Ok(segments)
    }

    /// Parses the name after a `.`.
    fn member_name(&mut self) -> Result<Segment, PathError> {
        let start = self.index;
        while let Some(character) = self.peek() {
            if matches!(character, '.' | '[') {
                break;
            }
            if matches!(character, ']' | '\'' | '"') || character.is_whitespace() {
                let reason = format!("{character:?} is not allowed in a name after '.'; use ['name'] instead");
                return Err(self.error_at(self.index, reason));
            }
            self.next();
        }

        let name: String = self.chars[start..self.index].iter().collect();
        match name.as_str() {
            "" if self.peek() == Some('.') => Err(self.error_at(start, "recursive descent `..` is not supported")),
            "" => Err(self.error_at(start, "expected a member name after '.'")),
            "*" => Err(self.error_at(start, "wildcards are not supported")),
            _ => Ok(Segment::Member(name)),
        }
    }

    /// Parses the text after a `[`: a quoted name or an index, then the closing `]`.
    fn bracket(&mut self) -> Result<Segment, PathError> {
        let start = self.index;
        let segment = match self.peek() {
            Some(quote @ ('\'' | '"')) => {
                self.next();
                Segment::Member(self.quoted_name(quote)?)
            }
            Some(digit) if digit.is_ascii_digit() => Segment::Index(self.index_value()?),
            Some('-') => return Err(self.error_at(start, "negative indexes are not supported")),
            Some('*') => return Err(self.error_at(start, "wildcards are not supported")),
            Some(other) => {
                return Err(self.error_at(start, format!("expected a quoted name or an index but found {other:?}")));
            }
            None => return Err(self.error_at(start, "expected a quoted name or an index after '['")),
        };

        if self.peek() != Some(']') {
            return Err(self.error_at(self.index, "expected ']'"));
        }
        self.next();
        Ok(segment)
    }

    /// Parses a name up to the closing `quote`, resolving backslash escapes.
    fn quoted_name(&mut self, quote: char) -> Result<String, PathError> {
        let start = self.index - 1;
        let mut name = String::new();
        loop {
            match self.next() {
                Some(character) if character == quote => return Ok(name),
                Some('\\') => match self.next() {
                    Some(escaped @ ('\\' | '\'' | '"')) => name.push(escaped),
                    _ => {
                        let reason = "unsupported escape; only \\\\, \\' and \\\" are allowed";
                        return Err(self.error_at(self.index.saturating_sub(2), reason));
                    }
                },
                Some(character) => name.push(character),
                None => return Err(self.error_at(start, format!("unclosed quote {quote}"))),
            }
        }
    }

    /// Parses the digits of an array index.
    fn index_value(&mut self) -> Result<usize, PathError> {
        let start = self.index;
        while self.peek().is_some_and(|character| character.is_ascii_digit()) {
            self.next();
        }

        let digits: String = self.chars[start..self.index].iter().collect();
        digits.parse().map_err(|_| self.error_at(start, format!("index {digits} is too large")))
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.index).copied()
    }

    fn next(&mut self) -> Option<char> {
        let character = self.peek();
        if character.is_some() {
            self.index += 1;
        }
        character
    }

    /// Builds an error for the character at `index` (zero-based).
    fn error_at(&self, index: usize, reason: impl Into<String>) -> PathError {
        PathError { path: self.text.to_owned(), position: index + 1, reason: reason.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(text: &str) -> JsonPath {
        text.parse().unwrap_or_else(|error| panic!("{text} should parse: {error}"))
    }

    fn message() -> Value {
        json!({
            "event": "Order Completed",
            "userId": "u1",
            "properties": {
                "revenue": 19.99,
                "Order Id": "o-7",
                "x.y": "dotted",
                "it's": "apostrophe",
                "say \"hi\"": "quotes",
                "": "empty name",
                "items": [{"sku": "a"}, {"sku": "b"}],
            },
            "context": {"traits": {"$opt_plan": "gold"}},
            "a": {"x.y": 1},
        })
    }

    #[test]
    fn lookup_finds_values() {
        let message = message();
        let cases = [
            ("$", message.clone()),
            ("$.event", json!("Order Completed")),
            ("$.properties.revenue", json!(19.99)),
            ("$.properties['Order Id']", json!("o-7")),
            ("$.properties[\"Order Id\"]", json!("o-7")),
            ("$.a[\"x.y\"]", json!(1)),
            ("$['properties']['x.y']", json!("dotted")),
            ("$.properties['it\\'s']", json!("apostrophe")),
            ("$.properties[\"say \\\"hi\\\"\"]", json!("quotes")),
            ("$.properties['']", json!("empty name")),
            ("$.properties.items[0].sku", json!("a")),
            ("$.properties.items[1]", json!({"sku": "b"})),
            ("$.context.traits.$opt_plan", json!("gold")),
        ];
        for (text, expected) in cases {
            assert_eq!(path(text).lookup(&message), Some(&expected), "{text}");
        }
    }

    #[test]
    fn lookup_misses_return_none() {
        let message = message();
        let cases = [
            "$.missing",
            "$.properties.missing",
            "$.properties.items[2]",
            "$.properties.items.sku",
            "$.properties[0]",
            "$.event.length",
            "$.event[0]",
            "$.a.x.y",
        ];
        for text in cases {
            assert_eq!(path(text).lookup(&message), None, "{text}");
        }
    }

    #[test]
    fn display_keeps_configured_text() {
        for text in ["$", "$.properties['Order Id']", "$.a[\"x.y\"]", "$.items[0]"] {
            assert_eq!(path(text).to_string(), text);
            assert_eq!(path(text).as_str(), text);
        }
    }

    #[test]
    fn invalid_paths_name_position() {
        let cases = [
            ("", 1, "must start with `$`"),
            ("properties.revenue", 1, "must start with `$`"),
            ("$properties", 2, "expected '.' or '['"),
            ("$.", 3, "expected a member name"),
            ("$.a.", 5, "expected a member name"),
            ("$..a", 3, "recursive descent"),
            ("$.*", 3, "wildcards"),
            ("$[*]", 3, "wildcards"),
            ("$.a b", 4, "' ' is not allowed"),
            ("$.a]", 4, "']' is not allowed"),
            ("$['a'", 6, "expected ']'"),
            ("$['a]", 3, "unclosed quote '"),
            ("$[\"a']", 3, "unclosed quote \""),
            ("$[", 3, "after '['"),
            ("$[a]", 3, "expected a quoted name or an index"),
            ("$[-1]", 3, "negative indexes"),
            ("$[1", 4, "expected ']'"),
            ("$[1a]", 4, "expected ']'"),
            ("$['a'x]", 6, "expected ']'"),
            ("$['a\\n']", 5, "unsupported escape"),
            ("$[99999999999999999999999]", 3, "too large"),
            ("$.é f", 4, "' ' is not allowed"),
        ];
        for (text, position, reason) in cases {
            let error = text.parse::<JsonPath>().expect_err(text);
            assert_eq!(error.position, position, "{text:?}: {error}");
            assert!(error.reason.contains(reason), "{text:?}: {error}");
        }
    }

    #[test]
    fn error_message_names_path_and_example() {
        let message = "$.a[".parse::<JsonPath>().unwrap_err().to_string();
        assert!(message.contains("\"$.a[\""), "{message}");
        assert!(message.contains("at character 5"), "{message}");
        assert!(message.contains("$.properties['Order Id']"), "{message}");
    }

    #[derive(Debug, serde::Deserialize)]
    struct Mapping {
        user_id: PathList,
    }

    #[test]
    fn path_list_reads_string_or_array() {
        let single: Mapping = toml::from_str("user_id = \"$.userId\"").unwrap();
        assert_eq!(single.user_id, PathList(vec![path("$.userId")]));

        let list: Mapping = toml::from_str("user_id = [\"$.userId\", \"$.anonymousId\"]").unwrap();
        assert_eq!(list.user_id, PathList(vec![path("$.userId"), path("$.anonymousId")]));
    }

    #[test]
    fn path_list_rejects_empty_and_invalid() {
        let empty = toml::from_str::<Mapping>("user_id = []").unwrap_err().to_string();
        assert!(empty.contains("the list of paths is empty"), "{empty}");

        let invalid = toml::from_str::<Mapping>("user_id = [\"$.userId\", \"anonymousId\"]").unwrap_err().to_string();
        assert!(invalid.contains("\"anonymousId\""), "{invalid}");
        assert!(invalid.contains("must start with `$`"), "{invalid}");

        let number = toml::from_str::<Mapping>("user_id = 7").unwrap_err().to_string();
        assert!(number.contains("a path string"), "{number}");
    }

    #[test]
    fn json_path_deserializes_from_string() {
        let parsed: JsonPath = serde_json::from_value(json!("$.properties['Order Id']")).unwrap();
        assert_eq!(parsed, path("$.properties['Order Id']"));

        let error = serde_json::from_value::<JsonPath>(json!("$.")).unwrap_err().to_string();
        assert!(error.contains("expected a member name"), "{error}");
    }

    #[test]
    fn lookup_first_skips_rejected_values() {
        let paths = PathList(vec![path("$.userId"), path("$.anonymousId")]);
        let is_usable = |value: &Value| value.as_str().is_some_and(|text| !text.trim().is_empty());

        let blank_user = json!({"userId": "  ", "anonymousId": "anon-1"});
        assert_eq!(paths.lookup_first(&blank_user, is_usable), Some(&json!("anon-1")));

        let both = json!({"userId": "u1", "anonymousId": "anon-1"});
        assert_eq!(paths.lookup_first(&both, is_usable), Some(&json!("u1")));

        let neither = json!({"userId": null});
        assert_eq!(paths.lookup_first(&neither, is_usable), None);

        assert_eq!(paths.iter().count(), 2);
    }
}
