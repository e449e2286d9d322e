//! A parsed JSON message that borrows its strings instead of copying them.
//!
//! The transform maps messages that sources pass on as text ([`crate::event::Payload::RawMessage`]).
//! Parsing them into a `serde_json::Value` allocated a string for every string and number and an
//! `IndexMap`, hashed with SipHash, for every object. [`BorrowedValue`] borrows strings and keeps
//! objects as slices of members. With the source passing lines on as text, the whole stdin-to-file
//! pipeline took 98,500 instead of 112,700 instructions per event (`valgrind --tool=callgrind`, 5,000
//! messages of the `end_to_end` benchmark's workload).
//!
//! The parse runs sonic-rs's SIMD parser into its own tree, which [`ParseBuffer`] keeps, and borrows
//! that tree's strings. Against serde_json with a visitor, it cut the same pipeline from 61,100 to
//! 52,300 instructions per event, and the relay's CPU time end to end by 22%. The slices of arrays
//! and objects, and the few strings that are not borrowed, live in an arena of the [`ParseBuffer`],
//! so a value needs no allocation of its own and no drop. Against vectors and owned strings, the arena
//! cut the stdin-to-Event-API pipeline from 45,600 to 42,900 instructions per event.
//!
//! serde_json parses, through `deserialize_any` as `Value` does, the text that sonic-rs rejects, that
//! may nest deeper than serde_json allows, or that is not UTF-8. So the parse accepts and rejects the
//! same input as serde_json, with serde_json's errors. [`BorrowedValue::to_value`] builds the `Value`
//! that serde_json would have parsed from the same text, for dead-letter records and other rare paths.

use std::fmt;
use std::hash::{Hash, Hasher};

use bumpalo::collections::Vec as ArenaVec;
use bumpalo::Bump;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, Serializer};
use serde_json::{Map, Number, Value};

/// The key under which serde_json's `arbitrary_precision` feature passes a number to `visit_map`: a
/// map with this one key whose value is the number's text. `serde_json::Value` checks for the same
/// key (serde_json 1.0, `src/number.rs`).
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// A JSON value whose strings borrow from the text or tree it was parsed from, or from an arena.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BorrowedValue<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as the text serde_json's `arbitrary_precision` keeps: as written, except that an
    /// exponent is written as `e` and a sign (`1E3` is `1e+3`).
    Number(&'a str),
    /// A string.
    String(&'a str),
    /// An array.
    Array(&'a [BorrowedValue<'a>]),
    /// An object.
    Object(BorrowedObject<'a>),
}

/// The members of a JSON object in input order, each key once.
///
/// A key that appears twice keeps the position of its first occurrence and the value of its last,
/// as in a `serde_json::Map` built with `preserve_order`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BorrowedObject<'a> {
    members: &'a [(&'a str, BorrowedValue<'a>)],
}

/// The deepest nesting that serde_json parses: it rejects 128 levels of arrays and objects. sonic-rs
/// accepts up to 254, so a tree deeper than this goes to serde_json, which returns its error.
const MAX_DEPTH: usize = 127;

/// The maximum count of `{` and `[` bytes, in strings or not, in a text that sonic-rs parses, or
/// `None` for no limit.
///
/// Optimized, sonic-rs parses nested values recursively with less than 1 KB of stack per level,
/// so its own limit of 254 levels fits the 2 MB stack of Rust's and tokio's threads, and release
/// builds count nothing. Counting the brackets of each message took 1.8% of the relay's CPU samples
/// end to end (`perf record`).
///
/// NOTE: a caller that parses on a thread with less than about 256 KB of stack may overflow it on
/// text nested 254 levels deep.
///
/// NOTE: unoptimized, sonic-rs takes about 75 KB of stack per level. This crate's own debug builds
/// optimize it (`[profile.dev.package.sonic-rs]`), but a crate that embeds this one in a debug build
/// may not, so debug builds send only text with at most 8 brackets to sonic-rs.
const MAX_TREE_OPENINGS: Option<usize> = if cfg!(debug_assertions) { Some(8) } else { None };

/// The tree and the arena that a [`BorrowedValue`] from [`BorrowedValue::parse`] borrows from. One
/// buffer serves many parses in turn: each parse empties the arena and keeps its memory.
#[derive(Default)]
pub struct ParseBuffer {
    tree: sonic_rs::Value,
    arena: Bump,
}

impl<'a> BorrowedValue<'a> {
    /// Parses JSON text, with the same acceptance and error messages as parsing a `serde_json::Value`.
    pub fn parse(text: &'a [u8], buffer: &'a mut ParseBuffer) -> Result<BorrowedValue<'a>, serde_json::Error> {
        BorrowedValue::parse_with_limit(text, buffer, MAX_TREE_OPENINGS)
    }

    /// Parses JSON text as [`BorrowedValue::parse`] does, with sonic-rs for text that has at most
    /// `max_openings` `{` and `[` bytes when that is set.
    fn parse_with_limit(
        text: &'a [u8],
        buffer: &'a mut ParseBuffer,
        max_openings: Option<usize>,
    ) -> Result<BorrowedValue<'a>, serde_json::Error> {
        buffer.arena.reset();
        let ParseBuffer { tree, arena } = buffer;
        let arena: &'a Bump = arena;
        // Only debug builds set a limit, so the count stops at the first bracket past it.
        let within_limit = max_openings.is_none_or(|max| memchr::memchr2_iter(b'{', b'[', text).nth(max).is_none());
        if within_limit {
            // sonic-rs checks that the text is UTF-8 while it parses, and rejects text that is not,
            // which serde_json then parses to its own error.
            if let Ok(parsed) = sonic_rs::from_slice::<sonic_rs::Value>(text) {
                *tree = parsed;
                let tree: &'a sonic_rs::Value = tree;
                let mut value = BorrowedValue::Null;
                if BorrowedValue::from_tree(tree, arena, 0, &mut value).is_some() {
                    return Ok(value);
                }
            }
        }
        // As `serde_json::from_slice` does: the value, then nothing but whitespace.
        let mut deserializer = serde_json::Deserializer::from_slice(text);
        let value = ValueSeed { arena }.deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(value)
    }

    /// Borrows a sonic-rs tree whose root is nested `depth` levels deep into `slot`, or returns
    /// `None` when it contains something serde_json reads differently: a number it rejects, its
    /// number key, or nesting deeper than `MAX_DEPTH`.
    ///
    /// Each value is written where it is kept, the member or item of its container. Returned from a
    /// call, a value was built on the stack with one store per field, then copied to the container
    /// with one 16-byte load. The processor cannot serve that load from the smaller stores while
    /// they are pending, and `perf annotate` showed the copy as a third of the conversion's samples.
    /// Written in place, the parse and conversion took 1.34 instead of 1.39 µs a message, and 1.24 µs
    /// with the number read in place as well (`cargo bench --bench transform`, `borrowed_parse`).
    #[inline(always)]
    fn from_tree(
        value: &'a sonic_rs::Value,
        arena: &'a Bump,
        depth: usize,
        slot: &mut BorrowedValue<'a>,
    ) -> Option<()> {
        use sonic_rs::{JsonType, JsonValueTrait};
        match value.get_type() {
            JsonType::Null => *slot = BorrowedValue::Null,
            JsonType::Boolean => *slot = BorrowedValue::Bool(value.is_true()),
            JsonType::Number => {
                // sonic-rs gives the number's text only as an owned copy. The copy is read inside
                // the `Option`, because moving it out stalled on the call's stores as above.
                let number = value.as_raw_number();
                let number = number.as_ref()?.as_str();
                // serde_json writes an exponent as `e` and a sign: `1E3` becomes `1e+3`.
                let text = if number.bytes().any(|byte| byte == b'e' || byte == b'E') {
                    let written: Number = number.parse().ok()?;
                    arena.alloc_str(written.as_str())
                } else {
                    arena.alloc_str(number)
                };
                *slot = BorrowedValue::Number(text);
            }
            JsonType::String => *slot = BorrowedValue::String(value.as_str()?),
            JsonType::Array | JsonType::Object => *slot = BorrowedValue::from_tree_container(value, arena, depth)?,
        }
        Some(())
    }

    /// Borrows an array or object of a sonic-rs tree as [`BorrowedValue::from_tree`] does.
    #[inline(never)]
    fn from_tree_container(value: &'a sonic_rs::Value, arena: &'a Bump, depth: usize) -> Option<BorrowedValue<'a>> {
        use sonic_rs::JsonContainerTrait;
        if depth == MAX_DEPTH {
            return None;
        }
        if let Some(array) = value.as_array() {
            let mut items = ArenaVec::with_capacity_in(array.len(), arena);
            for item in array.iter() {
                items.push(BorrowedValue::Null);
                let slot = items.last_mut()?;
                BorrowedValue::from_tree(item, arena, depth + 1, slot)?;
            }
            return Some(BorrowedValue::Array(items.into_bump_slice()));
        }
        let object = value.as_object()?;
        let mut members = ArenaVec::with_capacity_in(object.len(), arena);
        for (key, item) in object.iter() {
            // serde_json reads an object with this key as a number.
            if key == NUMBER_TOKEN {
                return None;
            }
            members.push((key, BorrowedValue::Null));
            let (_, slot) = members.last_mut()?;
            BorrowedValue::from_tree(item, arena, depth + 1, slot)?;
        }
        Some(BorrowedValue::Object(BorrowedObject::from_members(members, arena)))
    }

    /// Borrows a `serde_json::Value` without copying its strings, with the slices of its arrays and
    /// objects in `arena`.
    pub fn from_value(value: &'a Value, arena: &'a Bump) -> BorrowedValue<'a> {
        match value {
            Value::Null => BorrowedValue::Null,
            Value::Bool(boolean) => BorrowedValue::Bool(*boolean),
            Value::Number(number) => BorrowedValue::Number(number.as_str()),
            Value::String(text) => BorrowedValue::String(text),
            Value::Array(items) => BorrowedValue::Array(
                arena.alloc_slice_fill_iter(items.iter().map(|item| BorrowedValue::from_value(item, arena))),
            ),
            Value::Object(map) => {
                let members = map.iter().map(|(key, item)| (key.as_str(), BorrowedValue::from_value(item, arena)));
                BorrowedValue::Object(BorrowedObject { members: arena.alloc_slice_fill_iter(members) })
            }
        }
    }

    /// Builds the `serde_json::Value` with the same content.
    pub fn to_value(&self) -> Value {
        match self {
            BorrowedValue::Null => Value::Null,
            BorrowedValue::Bool(boolean) => Value::Bool(*boolean),
            // Both parsers accept only the JSON number grammar, and serde_json's `Number` accepts
            // every number of it, so the text parses. A text that did not would stay a string.
            BorrowedValue::Number(text) => match text.parse::<Number>() {
                Ok(number) => Value::Number(number),
                Err(_) => Value::String((*text).to_owned()),
            },
            BorrowedValue::String(text) => Value::String((*text).to_owned()),
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
    pub fn as_str(&self) -> Option<&'a str> {
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
    pub fn element(&self, index: usize) -> Option<&'a BorrowedValue<'a>> {
        match self {
            BorrowedValue::Array(items) => items.get(index),
            _ => None,
        }
    }
}

impl<'a> BorrowedObject<'a> {
    /// Returns the value of member `key`.
    pub fn get(&self, key: &str) -> Option<&'a BorrowedValue<'a>> {
        self.members.iter().find(|(name, _)| *name == key).map(|(_, value)| value)
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
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a BorrowedValue<'a>)> {
        self.members.iter().map(|(key, value)| (*key, value))
    }

    /// Builds an object from members in input order, merging repeated keys as `serde_json::Map` does.
    fn from_members(members: ArenaVec<'a, (&'a str, BorrowedValue<'a>)>, arena: &'a Bump) -> BorrowedObject<'a> {
        if !has_repeated_key(&members) {
            return BorrowedObject { members: members.into_bump_slice() };
        }
        let mut merged: ArenaVec<'a, (&'a str, BorrowedValue<'a>)> = ArenaVec::with_capacity_in(members.len(), arena);
        for (key, value) in members {
            match merged.iter_mut().find(|(earlier, _)| *earlier == key) {
                Some((_, earlier_value)) => *earlier_value = value,
                None => merged.push((key, value)),
            }
        }
        BorrowedObject { members: merged.into_bump_slice() }
    }
}

/// Returns whether two members share a key.
///
/// Each key sets one bit of a 256-bit filter chosen by its hash. Only a key whose bit is already set
/// is compared with the keys before it, so objects with distinct keys cost one hash per key instead
/// of a comparison per pair of keys.
fn has_repeated_key(members: &[(&str, BorrowedValue<'_>)]) -> bool {
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

/// Serializes as the `serde_json::Value` of [`BorrowedValue::to_value`] does, without building it.
impl Serialize for BorrowedValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            BorrowedValue::Null => serializer.serialize_unit(),
            BorrowedValue::Bool(boolean) => serializer.serialize_bool(*boolean),
            BorrowedValue::Number(text) => match text.parse::<Number>() {
                Ok(number) => number.serialize(serializer),
                Err(error) => Err(serde::ser::Error::custom(error)),
            },
            BorrowedValue::String(text) => serializer.serialize_str(text),
            BorrowedValue::Array(items) => serializer.collect_seq(items.iter()),
            BorrowedValue::Object(object) => serializer.collect_map(object.iter()),
        }
    }
}

/// Deserializes a [`BorrowedValue`] as `serde_json::Value` does, with its slices and unborrowed
/// strings in `arena`.
#[derive(Clone, Copy)]
struct ValueSeed<'a> {
    arena: &'a Bump,
}

impl<'a> DeserializeSeed<'a> for ValueSeed<'a> {
    type Value = BorrowedValue<'a>;

    fn deserialize<D: Deserializer<'a>>(self, deserializer: D) -> Result<BorrowedValue<'a>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'a> Visitor<'a> for ValueSeed<'a> {
    type Value = BorrowedValue<'a>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<BorrowedValue<'a>, E> {
        Ok(BorrowedValue::Null)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<BorrowedValue<'a>, E> {
        Ok(BorrowedValue::Bool(value))
    }

    // serde_json with `arbitrary_precision` passes numbers to `visit_map`; these cover other
    // deserializers.
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<BorrowedValue<'a>, E> {
        Ok(BorrowedValue::Number(self.arena.alloc_str(&value.to_string())))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<BorrowedValue<'a>, E> {
        Ok(BorrowedValue::Number(self.arena.alloc_str(&value.to_string())))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<BorrowedValue<'a>, E> {
        match Number::from_f64(value) {
            Some(number) => Ok(BorrowedValue::Number(self.arena.alloc_str(&number.to_string()))),
            None => Err(E::custom("a number is not finite")),
        }
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'a str) -> Result<BorrowedValue<'a>, E> {
        Ok(BorrowedValue::String(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<BorrowedValue<'a>, E> {
        Ok(BorrowedValue::String(self.arena.alloc_str(value)))
    }

    fn visit_seq<A: SeqAccess<'a>>(self, mut sequence: A) -> Result<BorrowedValue<'a>, A::Error> {
        let mut items = ArenaVec::with_capacity_in(sequence.size_hint().unwrap_or(0), self.arena);
        while let Some(item) = sequence.next_element_seed(self)? {
            items.push(item);
        }
        Ok(BorrowedValue::Array(items.into_bump_slice()))
    }

    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<BorrowedValue<'a>, A::Error> {
        let key_seed = KeySeed { arena: self.arena };
        let Some(first_key) = map.next_key_seed(key_seed)? else {
            return Ok(BorrowedValue::Object(BorrowedObject::default()));
        };
        if first_key == NUMBER_TOKEN {
            // The text is serde_json's scan of a number, or the value of this key in the input, which
            // serde_json's `Value` also parses as a number.
            let text: String = map.next_value()?;
            let number: Number = text.parse().map_err(de::Error::custom)?;
            return Ok(BorrowedValue::Number(self.arena.alloc_str(number.as_str())));
        }

        let mut members = ArenaVec::new_in(self.arena);
        members.push((first_key, map.next_value_seed(self)?));
        while let Some(key) = map.next_key_seed(key_seed)? {
            members.push((key, map.next_value_seed(self)?));
        }
        Ok(BorrowedValue::Object(BorrowedObject::from_members(members, self.arena)))
    }
}

/// Deserializes an object key, borrowed from the text or copied into `arena`.
#[derive(Clone, Copy)]
struct KeySeed<'a> {
    arena: &'a Bump,
}

impl<'a> DeserializeSeed<'a> for KeySeed<'a> {
    type Value = &'a str;

    fn deserialize<D: Deserializer<'a>>(self, deserializer: D) -> Result<&'a str, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'a> Visitor<'a> for KeySeed<'a> {
    type Value = &'a str;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a string key")
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'a str) -> Result<&'a str, E> {
        Ok(value)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<&'a str, E> {
        Ok(self.arena.alloc_str(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the parse against serde_json's, with this build's bracket limit and with none, as in
    /// optimized builds.
    fn round_trip(text: &str) {
        round_trip_with_limit(text, MAX_TREE_OPENINGS);
        round_trip_with_limit(text, None);
    }

    fn round_trip_with_limit(text: &str, max_openings: Option<usize>) {
        let expected: Value = serde_json::from_str(text).expect("test input is JSON");
        let mut buffer = ParseBuffer::default();
        let borrowed = BorrowedValue::parse_with_limit(text.as_bytes(), &mut buffer, max_openings).expect("parses");
        assert_eq!(borrowed.to_value(), expected, "{text}");
        let arena = Bump::new();
        assert_eq!(BorrowedValue::from_value(&expected, &arena), borrowed, "{text}");
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
        let mut buffer = ParseBuffer::default();
        let borrowed = BorrowedValue::parse(text.as_bytes(), &mut buffer).unwrap();
        let object = borrowed.as_object().unwrap();
        let keys: Vec<&str> = object.iter().map(|(key, _)| key).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(object.get("a").map(BorrowedValue::to_value), Some(Value::from(3)));
    }

    #[test]
    fn many_distinct_keys_kept() {
        let members: Vec<String> = (0..300).map(|index| format!("\"k{index}\":{index}")).collect();
        let text = format!("{{{}}}", members.join(","));
        round_trip(&text);
        assert_eq!(
            BorrowedValue::parse(text.as_bytes(), &mut ParseBuffer::default()).unwrap().as_object().unwrap().len(),
            300
        );
    }

    #[test]
    fn many_brackets_same_as_value() {
        let items: Vec<String> = (0..150).map(|index| format!("{{\"i\":[{index}]}}")).collect();
        round_trip(&format!("{{\"items\":[{}],\"text\":\"{{[\"}}", items.join(",")));
    }

    /// Returns whether sonic-rs parsed `text`: a buffer's tree stays `null` when serde_json parses.
    fn parsed_by_sonic(text: &str, max_openings: Option<usize>) -> bool {
        let mut buffer = ParseBuffer::default();
        BorrowedValue::parse_with_limit(text.as_bytes(), &mut buffer, max_openings).expect("valid JSON");
        !sonic_rs::JsonValueTrait::is_null(&buffer.tree)
    }

    #[test]
    fn bracket_limit_picks_parser() {
        let nested = |brackets: usize| format!("{}\"caf\\u00e9\"{}", "[".repeat(brackets), "]".repeat(brackets));
        assert!(parsed_by_sonic(&nested(8), Some(8)), "sonic-rs parses text at the limit");
        assert!(!parsed_by_sonic(&nested(9), Some(8)), "serde_json parses text past the limit");
        assert!(parsed_by_sonic(&nested(MAX_DEPTH), None), "sonic-rs parses the deepest text with no limit");
        round_trip(&nested(9));
        round_trip(&nested(MAX_DEPTH));
    }

    #[test]
    fn escaped_strings_read_from_the_tree() {
        let text = r#"{"escaped":"caf\u00e9","raw":"café","n":1E3}"#;
        assert!(parsed_by_sonic(text, None));
        let mut buffer = ParseBuffer::default();
        let borrowed = BorrowedValue::parse(text.as_bytes(), &mut buffer).unwrap();
        let object = borrowed.as_object().unwrap();
        assert_eq!(object.get("raw"), Some(&BorrowedValue::String("café")));
        assert_eq!(object.get("escaped"), Some(&BorrowedValue::String("café")));
        assert_eq!(object.get("n"), Some(&BorrowedValue::Number("1e+3")));
    }

    #[test]
    fn buffer_serves_parses_in_turn() {
        let mut buffer = ParseBuffer::default();
        for index in 0..50 {
            let text = format!(r#"{{"i":{index},"s":"caf\u00e9 {index}","a":[{index},{{"k":"v"}}]}}"#);
            let borrowed = BorrowedValue::parse(text.as_bytes(), &mut buffer).unwrap();
            assert_eq!(borrowed.to_value(), serde_json::from_str::<Value>(&text).unwrap(), "{text}");
        }
    }

    #[test]
    fn nesting_limit_same_as_value() {
        let nested = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        for levels in [8, 9, 100, 101, 127] {
            round_trip(&nested(levels));
        }
        for levels in [128, 129, 5000] {
            let text = nested(levels);
            let expected = serde_json::from_str::<Value>(&text).expect_err("too deep").to_string();
            for max_openings in [MAX_TREE_OPENINGS, None] {
                let mut buffer = ParseBuffer::default();
                let error =
                    BorrowedValue::parse_with_limit(text.as_bytes(), &mut buffer, max_openings).expect_err("too deep");
                assert_eq!(error.to_string(), expected, "{levels} levels, limit {max_openings:?}");
            }
        }
    }

    #[test]
    fn escapes_and_numbers_same_as_value() {
        let cases = [
            r#"{"e":[1E3,1e3,2.5E-3,-1e+2,0E0]}"#,
            r#"{"p":{"$serde_json::private::Number":"5"}}"#,
            r#"{"a":"\ud83d\ude00 \/ \b\f\n\r\t \u0000 \"","\u00e9":-0.0,"b":1e400,"c":-1.5E-400}"#,
            r#"{"n":[0,-0,1.0,1.50,12345678901234567890123,1E+2,1e-2]}"#,
            "  {\"a\" : [ 1 , 2 ] }\t\n",
        ];
        for text in cases {
            round_trip(text);
        }
    }

    #[test]
    fn same_errors_as_value() {
        let nested = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let cases = [
            r#"{"p":{"$serde_json::private::Number":"x"}}"#,
            r#"{"a": tru}"#,
            r#"{"a":"\ud800"}"#,
            "{\"a\":1",
            &nested,
            "[1,]",
            "01",
        ];
        for text in cases {
            let expected = serde_json::from_str::<Value>(text).expect_err(text).to_string();
            let error = BorrowedValue::parse(text.as_bytes(), &mut ParseBuffer::default()).expect_err(text).to_string();
            assert_eq!(error, expected, "{text}");
        }
    }

    #[test]
    fn invalid_utf8_same_error_as_value() {
        let cases: [&[u8]; 4] = [b"{\"a\":\"\xff\"}", b"{\"\xc3\":1}", b"{\"a\":\"caf\xc3\"}", b"{\"a\":1}\xff"];
        for text in cases {
            let expected = serde_json::from_slice::<Value>(text).expect_err("invalid UTF-8").to_string();
            for max_openings in [MAX_TREE_OPENINGS, None] {
                let mut buffer = ParseBuffer::default();
                let error =
                    BorrowedValue::parse_with_limit(text, &mut buffer, max_openings).expect_err("invalid UTF-8");
                assert_eq!(error.to_string(), expected, "{}", String::from_utf8_lossy(text));
            }
        }
    }
}
