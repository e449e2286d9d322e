//! A parsed JSON message that borrows its strings from the input text.
//!
//! The transform maps messages that sources pass on as text ([`crate::event::Payload::RawMessage`]).
//! Parsing them into a `serde_json::Value` allocated a string for every string and number and an
//! `IndexMap`, hashed with SipHash, for every object. [`BorrowedValue`] keeps strings without escapes
//! as slices of the input and objects as vectors of members. With the source passing lines on as
//! text, the whole stdin-to-file pipeline took 98,500 instead of 112,700 instructions per event
//! (`valgrind --tool=callgrind`, 5,000 messages of the `end_to_end` benchmark's workload).
//!
//! The parse runs serde_json's parser through `deserialize_any`, as `Value` does, so it accepts and
//! rejects the same input. [`BorrowedValue::to_value`] builds the `Value` that serde_json would have
//! parsed from the same text, for dead-letter records and other rare paths.

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, Serializer};
use serde_json::{Map, Number, Value};

/// The key under which serde_json's `arbitrary_precision` feature passes a number to `visit_map`: a
/// map with this one key whose value is the number's text. `serde_json::Value` checks for the same
/// key (serde_json 1.0, `src/number.rs`).
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// A JSON value whose strings borrow from the text it was parsed from where they contain no escape.
#[derive(Debug, Clone, PartialEq)]
pub enum BorrowedValue<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, with its text as serde_json keeps it.
    Number(Number),
    /// A string.
    String(Cow<'a, str>),
    /// An array.
    Array(Vec<BorrowedValue<'a>>),
    /// An object.
    Object(BorrowedObject<'a>),
}

/// The members of a JSON object in input order, each key once.
///
/// A key that appears twice keeps the position of its first occurrence and the value of its last,
/// as in a `serde_json::Map` built with `preserve_order`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BorrowedObject<'a> {
    members: Vec<(Cow<'a, str>, BorrowedValue<'a>)>,
}

impl<'a> BorrowedValue<'a> {
    /// Parses JSON text, with the same acceptance and error messages as parsing a `serde_json::Value`.
    pub fn parse(text: &'a [u8]) -> Result<BorrowedValue<'a>, serde_json::Error> {
        // Checking UTF-8 once for the whole text and parsing a `str` is cheaper than parsing bytes,
        // which checks every string on its own. Text that is not UTF-8 is parsed as bytes, so the
        // error names the same position as a `Value` parse does.
        match std::str::from_utf8(text) {
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_slice(text),
        }
    }

    /// Borrows a `serde_json::Value` without copying its strings.
    pub fn from_value(value: &'a Value) -> BorrowedValue<'a> {
        match value {
            Value::Null => BorrowedValue::Null,
            Value::Bool(boolean) => BorrowedValue::Bool(*boolean),
            Value::Number(number) => BorrowedValue::Number(number.clone()),
            Value::String(text) => BorrowedValue::String(Cow::Borrowed(text)),
            Value::Array(items) => BorrowedValue::Array(items.iter().map(BorrowedValue::from_value).collect()),
            Value::Object(map) => {
                let members =
                    map.iter().map(|(key, item)| (Cow::Borrowed(key.as_str()), BorrowedValue::from_value(item)));
                BorrowedValue::Object(BorrowedObject { members: members.collect() })
            }
        }
    }

    /// Builds the `serde_json::Value` with the same content.
    pub fn to_value(&self) -> Value {
        match self {
            BorrowedValue::Null => Value::Null,
            BorrowedValue::Bool(boolean) => Value::Bool(*boolean),
            BorrowedValue::Number(number) => Value::Number(number.clone()),
            BorrowedValue::String(text) => Value::String(text.as_ref().to_owned()),
            BorrowedValue::Array(items) => Value::Array(items.iter().map(BorrowedValue::to_value).collect()),
            BorrowedValue::Object(object) => {
                let mut map = Map::with_capacity(object.len());
                for (key, item) in object.iter() {
                    map.insert(key.to_owned(), item.to_value());
                }
                Value::Object(map)
            }
        }
    }

    /// Returns the string, or `None` for other values.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            BorrowedValue::String(text) => Some(text),
            _ => None,
        }
    }

    /// Returns the object, or `None` for other values.
    pub fn as_object(&self) -> Option<&BorrowedObject<'a>> {
        match self {
            BorrowedValue::Object(object) => Some(object),
            _ => None,
        }
    }

    /// Returns the array element at `index`, or `None` when this is no array or the index is past
    /// its end.
    pub fn element(&self, index: usize) -> Option<&BorrowedValue<'a>> {
        match self {
            BorrowedValue::Array(items) => items.get(index),
            _ => None,
        }
    }
}

impl<'a> BorrowedObject<'a> {
    /// Returns the value of member `key`.
    pub fn get(&self, key: &str) -> Option<&BorrowedValue<'a>> {
        self.members.iter().find(|(name, _)| name == key).map(|(_, value)| value)
    }

    /// Returns the number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Returns whether the object has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Returns an iterator over the members in input order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &BorrowedValue<'a>)> {
        self.members.iter().map(|(key, value)| (key.as_ref(), value))
    }

    /// Builds an object from members in input order, merging repeated keys as `serde_json::Map` does.
    fn from_members(mut members: Vec<(Cow<'a, str>, BorrowedValue<'a>)>) -> BorrowedObject<'a> {
        if has_repeated_key(&members) {
            members = merge_repeated_keys(members);
        }
        BorrowedObject { members }
    }
}

/// Returns whether two members share a key.
///
/// Each key sets one bit of a 256-bit filter chosen by its hash. Only a key whose bit is already set
/// is compared with the keys before it, so objects with distinct keys cost one hash per key instead
/// of a comparison per pair of keys.
fn has_repeated_key(members: &[(Cow<'_, str>, BorrowedValue<'_>)]) -> bool {
    let mut filter = [0u64; 4];
    for (index, (key, _)) in members.iter().enumerate() {
        let mut hasher = rustc_hash::FxHasher::default();
        key.hash(&mut hasher);
        let bit = (hasher.finish() >> 56) as usize;
        let (word, mask) = (bit / 64, 1u64 << (bit % 64));
        if filter[word] & mask != 0 && members[..index].iter().any(|(earlier, _)| earlier == key) {
            return true;
        }
        filter[word] |= mask;
    }
    false
}

/// Merges members with the same key into one at the first key's position, with the last value.
fn merge_repeated_keys<'a>(members: Vec<(Cow<'a, str>, BorrowedValue<'a>)>) -> Vec<(Cow<'a, str>, BorrowedValue<'a>)> {
    let mut merged: Vec<(Cow<'a, str>, BorrowedValue<'a>)> = Vec::with_capacity(members.len());
    for (key, value) in members {
        match merged.iter_mut().find(|(earlier, _)| *earlier == key) {
            Some((_, earlier_value)) => *earlier_value = value,
            None => merged.push((key, value)),
        }
    }
    merged
}

/// Serializes as the `serde_json::Value` of [`BorrowedValue::to_value`] does, without building it.
impl Serialize for BorrowedValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            BorrowedValue::Null => serializer.serialize_unit(),
            BorrowedValue::Bool(boolean) => serializer.serialize_bool(*boolean),
            BorrowedValue::Number(number) => number.serialize(serializer),
            BorrowedValue::String(text) => serializer.serialize_str(text),
            BorrowedValue::Array(items) => serializer.collect_seq(items),
            BorrowedValue::Object(object) => serializer.collect_map(object.iter()),
        }
    }
}

impl<'de> Deserialize<'de> for BorrowedValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<BorrowedValue<'de>, D::Error> {
        deserializer.deserialize_any(BorrowedValueVisitor)
    }
}

struct BorrowedValueVisitor;

impl<'de> Visitor<'de> for BorrowedValueVisitor {
    type Value = BorrowedValue<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<BorrowedValue<'de>, E> {
        Ok(BorrowedValue::Null)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<BorrowedValue<'de>, E> {
        Ok(BorrowedValue::Bool(value))
    }

    // serde_json with `arbitrary_precision` passes numbers to `visit_map`; these cover other
    // deserializers.
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<BorrowedValue<'de>, E> {
        Ok(BorrowedValue::Number(value.into()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<BorrowedValue<'de>, E> {
        Ok(BorrowedValue::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<BorrowedValue<'de>, E> {
        Number::from_f64(value).map(BorrowedValue::Number).ok_or_else(|| E::custom("a number is not finite"))
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<BorrowedValue<'de>, E> {
        Ok(BorrowedValue::String(Cow::Borrowed(value)))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<BorrowedValue<'de>, E> {
        Ok(BorrowedValue::String(Cow::Owned(value.to_owned())))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<BorrowedValue<'de>, E> {
        Ok(BorrowedValue::String(Cow::Owned(value)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<BorrowedValue<'de>, A::Error> {
        let mut items = Vec::with_capacity(sequence.size_hint().unwrap_or(0));
        while let Some(item) = sequence.next_element()? {
            items.push(item);
        }
        Ok(BorrowedValue::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BorrowedValue<'de>, A::Error> {
        let Some(first_key) = map.next_key::<Cow<'de, str>>()? else {
            return Ok(BorrowedValue::Object(BorrowedObject::default()));
        };
        if first_key == NUMBER_TOKEN {
            let text: String = map.next_value()?;
            return text.parse().map(BorrowedValue::Number).map_err(de::Error::custom);
        }

        let mut members = vec![(first_key, map.next_value()?)];
        while let Some(key) = map.next_key()? {
            members.push((key, map.next_value()?));
        }
        Ok(BorrowedValue::Object(BorrowedObject::from_members(members)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) {
        let expected: Value = serde_json::from_str(text).expect("test input is JSON");
        let borrowed = BorrowedValue::parse(text.as_bytes()).expect("parses");
        assert_eq!(borrowed.to_value(), expected, "{text}");
        assert_eq!(BorrowedValue::from_value(&expected), borrowed, "{text}");
        assert_eq!(
            serde_json::to_string(&borrowed.to_value()).unwrap(),
            serde_json::to_string(&expected).unwrap(),
            "{text}"
        );
        assert_eq!(
            serde_json::to_string(&borrowed).unwrap(),
            serde_json::to_string(&expected).unwrap(),
            "serialized directly: {text}"
        );
    }

    #[test]
    fn to_value_equals_value_parse() {
        let cases = [
            r#"{"a":1,"b":[true,false,null],"c":{"d":"e\u00e9\n"},"f":-0,"g":1.50,"h":1E3,"i":2e-7}"#,
            r#"{"big":123456789012345678901234567890,"neg":-12.5e+10}"#,
            r#"[1,"two",{"three":3}]"#,
            r#""text with \"quotes\" and \\ backslash""#,
            "{}",
            "[]",
            "null",
            "7",
        ];
        for text in cases {
            round_trip(text);
        }
    }

    #[test]
    fn repeated_keys_merge_like_map() {
        let text = r#"{"a":1,"b":2,"a":3,"c":{"x":1,"x":2},"b":null}"#;
        round_trip(text);
        let borrowed = BorrowedValue::parse(text.as_bytes()).unwrap();
        let object = borrowed.as_object().unwrap();
        let keys: Vec<&str> = object.iter().map(|(key, _)| key).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(object.get("a"), Some(&BorrowedValue::Number(3.into())));
    }

    #[test]
    fn many_distinct_keys_kept() {
        let members: Vec<String> = (0..300).map(|index| format!("\"k{index}\":{index}")).collect();
        let text = format!("{{{}}}", members.join(","));
        round_trip(&text);
        assert_eq!(BorrowedValue::parse(text.as_bytes()).unwrap().as_object().unwrap().len(), 300);
    }

    #[test]
    fn strings_without_escapes_borrowed() {
        let borrowed = BorrowedValue::parse(r#"{"plain":"caf\u00e9","raw":"café"}"#.as_bytes()).unwrap();
        let object = borrowed.as_object().unwrap();
        assert!(matches!(object.get("raw"), Some(BorrowedValue::String(Cow::Borrowed("café")))));
        assert!(matches!(object.get("plain"), Some(BorrowedValue::String(Cow::Owned(_)))));
    }

    #[test]
    fn same_errors_as_value() {
        let nested = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let cases = [r#"{"a": tru}"#, r#"{"a":"\ud800"}"#, "{\"a\":1", &nested, "[1,]", "01"];
        for text in cases {
            let expected = serde_json::from_str::<Value>(text).expect_err(text).to_string();
            let error = BorrowedValue::parse(text.as_bytes()).expect_err(text).to_string();
            assert_eq!(error, expected, "{text}");
        }
    }
}
