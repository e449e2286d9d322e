//! A parsed JSON message that borrows its strings instead of copying them.
//!
//! The transform maps messages that sources pass on as text ([`crate::event::Payload::RawMessage`]).
//! Parsing them into a `serde_json::Value` allocated a string for every string and number and an
//! `IndexMap`, hashed with SipHash, for every object. [`BorrowedValue`] borrows strings and keeps
//! objects as slices of members. With the source passing lines on as text, the whole stdin-to-file
//! pipeline took 98,500 instead of 112,700 instructions per event (`valgrind --tool=callgrind`, 5,000
//! messages of the `end_to_end` benchmark's workload).
//!
//! At first the parse read the text with sonic-rs's SIMD parser and borrowed its strings. Against
//! serde_json with a visitor, sonic-rs's parse into its own tree, which this module then converted,
//! cut the same pipeline from 61,100 to 52,300 instructions per event, and the relay's CPU time end
//! to end by 22%. The parse now builds the value in one pass over the text, with no tree in between
//! (`TokenReader`), and leaves strings with escapes to sonic-rs. The slices of arrays and objects,
//! and the few strings that are not borrowed, live in an arena of the [`ParseBuffer`], so a value
//! needs no allocation of its own and no drop. Against vectors and owned strings, the arena cut the
//! stdin-to-Event-API pipeline from 45,600 to 42,900 instructions per event.
//!
//! serde_json parses, through `deserialize_any` as `Value` does, the text that the token reader does
//! not take: text that is not JSON or not UTF-8, or that nests deeper than serde_json allows. So the
//! parse accepts and rejects the same input as serde_json, with serde_json's errors.
//! [`BorrowedValue::to_value`] builds the `Value` that serde_json would have parsed from the same
//! text, for dead-letter records and other rare paths.

use std::fmt;

use bumpalo::collections::Vec as ArenaVec;
use bumpalo::Bump;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, Serializer};
use serde_json::{Map, Number, Value};
use sonic_rs::parser::{Parser, Reference};
use sonic_rs::reader::Reader;
use sonic_rs::Read;

use crate::event::json::escaped_bytes;

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
    /// An object, which lives in the arena. A value then takes 24 bytes instead of 40, and that
    /// cut `borrowed_parse_map_encoded` from 1.46 to 1.42 µs a message.
    Object(&'a BorrowedObject<'a>),
}

/// The members of a JSON object in input order, each key once.
///
/// A key that appears twice keeps the position of its first occurrence and the value of its last,
/// as in a `serde_json::Map` built with `preserve_order`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BorrowedObject<'a> {
    members: &'a [(&'a str, BorrowedValue<'a>)],
    /// The object's text when serde_json writes the object as that same text: no whitespace, no
    /// escapes, no exponents and no repeated keys. Empty when the text is unknown or differs.
    text: &'a str,
}

/// Objects are equal when their members are, whether or not their text is known.
impl PartialEq for BorrowedObject<'_> {
    fn eq(&self, other: &BorrowedObject<'_>) -> bool {
        self.members == other.members
    }
}

/// The deepest nesting that serde_json parses: it rejects 128 levels of arrays and objects. The token
/// reader leaves deeper text to serde_json, which returns its error.
const MAX_DEPTH: usize = 127;

/// The arena that a [`BorrowedValue`] from [`BorrowedValue::parse`] borrows from, and the buffer in
/// which escaped strings are read. One buffer serves many parses in turn: each parse empties the
/// arena and keeps its memory.
#[derive(Default)]
pub struct ParseBuffer {
    arena: Bump,
    escaped: Vec<u8>,
    stacks: Stacks,
}

/// The token reader's empty stacks, kept between parses for their memory.
#[derive(Default)]
struct Stacks {
    members: Vec<(&'static str, BorrowedValue<'static>)>,
    items: Vec<BorrowedValue<'static>>,
}

/// Empties `vector` and returns its memory as a vector of `U`, a type of the same size and
/// alignment such as the same type with another lifetime. The standard library collects such an
/// iterator in place, an optimisation it does not promise, so the test `buffer_keeps_stack_memory`
/// checks that the memory is kept.
fn recycle<T, U>(mut vector: Vec<T>) -> Vec<U> {
    vector.clear();
    vector.into_iter().filter_map(|_| None).collect()
}

impl<'a> BorrowedValue<'a> {
    /// Parses JSON text, with the same acceptance and error messages as parsing a `serde_json::Value`.
    pub fn parse(text: &'a [u8], buffer: &'a mut ParseBuffer) -> Result<BorrowedValue<'a>, serde_json::Error> {
        buffer.arena.reset();
        let ParseBuffer { arena, escaped, stacks } = buffer;
        let arena: &'a Bump = arena;
        if let Some(value) = TokenReader::read(text, arena, escaped, stacks) {
            return Ok(value);
        }
        // As `serde_json::from_slice` does: the value, then nothing but whitespace.
        let mut deserializer = serde_json::Deserializer::from_slice(text);
        let value = ValueSeed { arena }.deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(value)
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
                BorrowedValue::Object(
                    arena.alloc(BorrowedObject { members: arena.alloc_slice_fill_iter(members), text: "" }),
                )
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

    /// Returns the text of members `first` to `last`, `"key":value` pairs separated by commas, or
    /// `None` when the object's text is unknown.
    pub fn members_text(&self, first: usize, last: usize) -> Option<&'a str> {
        if self.text.is_empty() || last >= self.members.len() {
            return None;
        }
        // The text is known only when every key is borrowed from it, so a key's offset in the
        // text is the difference of their addresses.
        let offset = |key: &str| (key.as_ptr() as usize).checked_sub(self.text.as_ptr() as usize);
        let (first_key, _) = self.members.get(first)?;
        let start = offset(first_key)?.checked_sub(1)?;
        let end = match self.members.get(last + 1) {
            Some((next, _)) => offset(next)?.checked_sub(2)?,
            None => self.text.len().checked_sub(1)?,
        };
        self.text.get(start..end).filter(|text| !text.is_empty())
    }

    /// Returns the object's text when serde_json writes the object as that same text, or an empty
    /// string.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// Builds an object from a copy of members in input order. When `repeated` is true, some key
    /// comes twice, and repeated keys are merged as `serde_json::Map` merges them. `text` is the
    /// object's text when serde_json writes the object as that same text, else empty.
    fn from_slice(
        members: &[(&'a str, BorrowedValue<'a>)],
        repeated: bool,
        text: &'a str,
        arena: &'a Bump,
    ) -> &'a BorrowedObject<'a> {
        if !repeated {
            return arena.alloc(BorrowedObject { members: arena.alloc_slice_copy(members), text });
        }
        BorrowedObject::merged(members, arena)
    }

    /// Builds an object from members in input order, merging repeated keys as `serde_json::Map` does.
    fn from_members(members: ArenaVec<'a, (&'a str, BorrowedValue<'a>)>, arena: &'a Bump) -> &'a BorrowedObject<'a> {
        if !has_repeated_key(&members) {
            return arena.alloc(BorrowedObject { members: members.into_bump_slice(), text: "" });
        }
        BorrowedObject::merged(&members, arena)
    }

    /// Builds an object from members with repeated keys: each key keeps the position of its first
    /// occurrence and the value of its last.
    fn merged(members: &[(&'a str, BorrowedValue<'a>)], arena: &'a Bump) -> &'a BorrowedObject<'a> {
        let mut merged: ArenaVec<'a, (&'a str, BorrowedValue<'a>)> = ArenaVec::with_capacity_in(members.len(), arena);
        for (key, value) in members {
            match merged.iter_mut().find(|(earlier, _)| earlier == key) {
                Some((_, earlier_value)) => *earlier_value = *value,
                None => merged.push((key, *value)),
            }
        }
        arena.alloc(BorrowedObject { members: merged.into_bump_slice(), text: "" })
    }
}

/// Returns whether two members share a key.
fn has_repeated_key(members: &[(&str, BorrowedValue<'_>)]) -> bool {
    let mut filter = KeyFilter::default();
    members.iter().enumerate().any(|(index, (key, _))| filter.repeats(key, &members[..index]))
}

/// The keys read so far of one object, as a 256-bit filter in which each key sets the bit that
/// [`key_bit`] picks.
///
/// Only a key whose bit is already set is compared with the keys before it, so objects with
/// distinct keys cost one bit per key instead of a comparison per pair of keys.
#[derive(Default)]
struct KeyFilter([u64; 4]);

impl KeyFilter {
    /// Adds `key` and returns whether it is one of `earlier`, the members whose keys were added.
    #[inline(always)]
    fn repeats(&mut self, key: &str, earlier: &[(&str, BorrowedValue<'_>)]) -> bool {
        let bit = key_bit(key);
        let (word, mask) = (bit / 64, 1u64 << (bit % 64));
        let seen = self.0[word] & mask != 0;
        self.0[word] |= mask;
        seen && earlier.iter().any(|(earlier_key, _)| *earlier_key == key)
    }
}

/// Returns the filter bit of `key`, from its length and its last eight bytes (all of a shorter key),
/// where the keys of one object usually differ (`property_12`, `property_13`).
///
/// Equal keys get equal bits, and keys that differ only further left share a bit and are then
/// compared. Against hashing the whole key with FxHash, it cut `has_repeated_key` from 1,879 to
/// 1,577 instructions per event end to end (`valgrind --tool=callgrind`, 5,000 messages).
fn key_bit(key: &str) -> usize {
    let bytes = key.as_bytes();
    let tail = match bytes.len().checked_sub(8) {
        Some(start) => {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[start..]);
            u64::from_le_bytes(word)
        }
        None => bytes.iter().fold(0u64, |word, &byte| word << 8 | u64::from(byte)),
    };
    let mixed = (tail ^ bytes.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 56) as usize
}

/// Returns the length of the string at the start of `rest`, which follows a string's opening quote,
/// when its closing quote comes before any backslash or control character. Returns `None` for a
/// string with an escape, a control character or no end, which sonic-rs then reads or rejects. It
/// reads eight bytes at a time with [`escaped_bytes`], the test of the entry writer's escape check.
fn plain_string_length(rest: &[u8]) -> Option<usize> {
    let mut words = rest.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let special = escaped_bytes(word);
        if special != 0 {
            let index = offset + (special.trailing_zeros() / 8) as usize;
            return (rest.get(index) == Some(&b'"')).then_some(index);
        }
        offset += 8;
    }
    // The last bytes one at a time: the same test on a word padded with spaces made
    // `borrowed_parse_map_encoded` 3% slower (1.70 against 1.64 to 1.65 µs).
    for (index, &byte) in words.remainder().iter().enumerate() {
        match byte {
            b'"' => return Some(offset + index),
            b'\\' | 0..=0x1f => return None,
            _ => {}
        }
    }
    None
}

/// Returns whether `byte` is JSON whitespace.
fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// Returns the number of ASCII digits in `bytes` from `index` on.
#[inline(always)]
fn digits_at(bytes: &[u8], index: usize) -> usize {
    bytes.get(index..).map_or(0, |rest| rest.iter().take_while(|byte| byte.is_ascii_digit()).count())
}

/// Reads the string, number, `true`, `false` or `null` that starts with `$first` with the
/// [`TokenReader`] `$reader` and evaluates `$put` with it as `$value`, or returns `None` from the
/// enclosing function.
///
/// Each kind of value gets its own copy of `$put`, so the compiler writes the value's fields where
/// `$put` keeps it. A value returned from a call was built on the stack and copied with wider loads
/// than its stores, which waited for them: `perf annotate` put 23% of the reader's samples there.
macro_rules! read_scalar {
    ($reader:expr, $first:expr, |$value:ident| $put:expr) => {
        match $first {
            b'"' => {
                let $value = BorrowedValue::String($reader.string()?);
                $put
            }
            b'-' | b'0'..=b'9' => {
                let $value = BorrowedValue::Number($reader.number($first)?);
                $put
            }
            b't' => {
                $reader.literal(b"rue")?;
                let $value = BorrowedValue::Bool(true);
                $put
            }
            b'f' => {
                $reader.literal(b"alse")?;
                let $value = BorrowedValue::Bool(false);
                $put
            }
            b'n' => {
                $reader.literal(b"ull")?;
                let $value = BorrowedValue::Null;
                $put
            }
            _ => return None,
        }
    };
}

/// Builds a [`BorrowedValue`] from JSON text in one pass, with no tree in between.
///
/// The reader takes the tokens in the order JSON allows and checks a number's syntax itself.
/// Strings without escapes, most of them, are found by [`plain_string_length`], and sonic-rs
/// unescapes the others with SIMD. Strings and numbers borrow the text. The members and items of
/// open containers wait on two stacks, and a container that ends copies its own into a slice in
/// the arena.
///
/// Parsing sonic-rs's tree and converting it took 3.04 to 3.29 µs a message, reading sonic-rs's
/// tokens 2.30 to 2.41 µs on the same machine (`cargo bench --bench transform`, `borrowed_parse`),
/// because no tree is built and numbers are borrowed instead of copied twice. This reader reads
/// the structure, literals and numbers itself, because each of sonic-rs's reads of the input was a
/// call. On a faster machine that cut `borrowed_parse` from 1.07 to 0.91 µs a message. It raised
/// end-to-end throughput there from 451,000-468,000 to 524,000 events/s.
///
/// Any text it does not take goes to serde_json: text that is not JSON, deeper than serde_json
/// allows, or that has serde_json's number key. serde_json then returns its value or its error.
struct TokenReader<'a, 'b> {
    /// The whole text, checked as UTF-8 once.
    text: &'a str,
    /// The index in `text` of the next byte to read.
    position: usize,
    /// sonic-rs's parser over the same text, which reads strings with escapes. Its index trails
    /// `position` and catches up before each such string.
    parser: Parser<Read<'a>>,
    arena: &'a Bump,
    escaped: &'b mut Vec<u8>,
    /// The members of the open objects. The arena's vector had an outlined `push` whose reload of
    /// the member waited for its stores, and this vector's inlined `push` cut
    /// `borrowed_parse_map_encoded` from 1.78 to 1.71 µs a message.
    members: Vec<(&'a str, BorrowedValue<'a>)>,
    /// The items of the open arrays.
    items: Vec<BorrowedValue<'a>>,
    /// The index in `text` after the last place read where serde_json would write other text than
    /// the input: whitespace, a string with escapes or a number with an exponent. 0 before any.
    rewritten_at: usize,
}

impl<'a> TokenReader<'a, '_> {
    /// Reads `text` as one JSON value followed by nothing but whitespace, or returns `None`.
    fn read(text: &'a [u8], arena: &'a Bump, escaped: &mut Vec<u8>, stacks: &mut Stacks) -> Option<BorrowedValue<'a>> {
        // Checked once here: sonic-rs does not check text that it gets as a `str` again.
        let text = simdutf8::basic::from_utf8(text).ok()?;
        let mut reader = TokenReader {
            text,
            position: 0,
            parser: Parser::new(Read::from(text)),
            arena,
            escaped,
            members: recycle(std::mem::take(&mut stacks.members)),
            items: recycle(std::mem::take(&mut stacks.items)),
            rewritten_at: 0,
        };
        let value = reader.document();
        stacks.members = recycle(reader.members);
        stacks.items = recycle(reader.items);
        value
    }

    /// Reads the one value of the text, followed by nothing but whitespace.
    fn document(&mut self) -> Option<BorrowedValue<'a>> {
        let first = self.next_token()?;
        let value = self.value(first, 0)?;
        match self.next_token() {
            None => Some(value),
            Some(_) => None,
        }
    }

    /// Reads the value that starts with `first`, nested `depth` levels deep.
    fn value(&mut self, first: u8, depth: usize) -> Option<BorrowedValue<'a>> {
        match first {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            _ => Some(read_scalar!(self, first, |value| value)),
        }
    }

    /// Reads a string whose opening quote was read. An escaped string is copied to the arena.
    ///
    /// A string with no backslash, the common case, is found by [`plain_string_length`] and borrowed
    /// from the text, and sonic-rs reads the others. With sonic-rs reading every string, the
    /// end-to-end pipeline took 31,566 instructions per event, and with this scan 29,999
    /// (`valgrind --tool=callgrind`, 5,000 messages).
    #[inline(always)]
    fn string(&mut self) -> Option<&'a str> {
        let start = self.position;
        if let Some(length) = plain_string_length(&self.text.as_bytes()[start..]) {
            self.position += length + 1;
            // The string starts after a quote and ends before one, so both are character boundaries.
            return self.text.get(start..start + length);
        }
        self.escaped_string()
    }

    /// Reads a string with an escape or a control character, or one with no end, with sonic-rs.
    /// Kept out of line, so that only strings with escapes pay for sonic-rs's read.
    #[inline(never)]
    fn escaped_string(&mut self) -> Option<&'a str> {
        self.rewritten_at = self.position;
        let behind = self.position - self.parser.read.index();
        self.parser.read.eat(behind);
        let text = match self.parser.parse_str(self.escaped).ok()? {
            Reference::Borrowed(text) => text,
            Reference::Copied(text) => self.arena.alloc_str(text),
        };
        self.position = self.parser.read.index();
        Some(text)
    }

    /// Returns the next byte that is not JSON whitespace and reads past it, or `None` at the end.
    #[inline(always)]
    fn next_token(&mut self) -> Option<u8> {
        let byte = *self.text.as_bytes().get(self.position)?;
        self.position += 1;
        if !is_whitespace(byte) {
            return Some(byte);
        }
        self.token_after_whitespace()
    }

    /// Reads past the whitespace that follows the byte just read, then as [`TokenReader::next_token`]
    /// does. Out of line, because with the whitespace loop and its count inlined `borrowed_parse` took
    /// 0.87 instead of 0.83 µs a message.
    #[cold]
    #[inline(never)]
    fn token_after_whitespace(&mut self) -> Option<u8> {
        self.rewritten_at = self.position;
        let bytes = self.text.as_bytes();
        loop {
            let byte = *bytes.get(self.position)?;
            self.position += 1;
            if !is_whitespace(byte) {
                return Some(byte);
            }
        }
    }

    /// Reads the rest of `true`, `false` or `null` after its first letter.
    #[inline(always)]
    fn literal(&mut self, rest: &[u8]) -> Option<()> {
        let end = self.position + rest.len();
        if self.text.as_bytes().get(self.position..end)? != rest {
            return None;
        }
        self.position = end;
        Some(())
    }

    /// Reads a number that starts with `first`, as the text serde_json keeps: an optional minus, an
    /// integer part without leading zeros, an optional fraction and an optional exponent, each
    /// with at least one digit.
    fn number(&mut self, first: u8) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        let start = self.position - 1;
        let mut end = self.position;
        let leading = if first == b'-' {
            let digit = *bytes.get(end).filter(|byte| byte.is_ascii_digit())?;
            end += 1;
            digit
        } else {
            first
        };
        let integer_digits = digits_at(bytes, end);
        if leading == b'0' && integer_digits > 0 {
            return None;
        }
        end += integer_digits;
        if bytes.get(end) == Some(&b'.') {
            let fraction_digits = digits_at(bytes, end + 1);
            if fraction_digits == 0 {
                return None;
            }
            end += 1 + fraction_digits;
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = bytes.get(end) {
            end += 1;
            if let Some(b'+' | b'-') = bytes.get(end) {
                end += 1;
            }
            let exponent_digits = digits_at(bytes, end);
            if exponent_digits == 0 {
                return None;
            }
            end += exponent_digits;
            exponent = true;
            self.rewritten_at = end;
        }
        self.position = end;
        let text = self.text.get(start..end)?;
        // serde_json writes an exponent as `e` and a sign: `1E3` becomes `1e+3`.
        if exponent {
            let written: Number = text.parse().ok()?;
            return Some(self.arena.alloc_str(written.as_str()));
        }
        Some(text)
    }

    /// Reads an object whose `{` was read.
    fn object(&mut self, depth: usize) -> Option<BorrowedValue<'a>> {
        if depth == MAX_DEPTH {
            return None;
        }
        let start = self.members.len();
        let open = self.position - 1;
        // Checking keys for repeats as they are read, while they are in the cache, instead of in a
        // second pass over the members cut `borrowed_parse_map_encoded` from 1.72 to 1.63 µs.
        let mut filter = KeyFilter::default();
        let mut repeated = false;
        let mut next = self.next_token()?;
        if next != b'}' {
            loop {
                if next != b'"' {
                    return None;
                }
                let key = self.string()?;
                // serde_json reads an object with this key as a number.
                if key == NUMBER_TOKEN || self.next_token()? != b':' {
                    return None;
                }
                repeated |= filter.repeats(key, &self.members[start..]);
                let first = self.next_token()?;
                if let b'{' | b'[' = first {
                    let value = self.value(first, depth + 1)?;
                    self.members.push((key, value));
                } else {
                    read_scalar!(self, first, |value| self.members.push((key, value)));
                }
                match self.next_token()? {
                    b',' => next = self.next_token()?,
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        let text = if self.rewritten_at <= open { self.text.get(open..self.position).unwrap_or_default() } else { "" };
        let object = BorrowedObject::from_slice(&self.members[start..], repeated, text, self.arena);
        self.members.truncate(start);
        Some(BorrowedValue::Object(object))
    }

    /// Reads an array whose `[` was read.
    fn array(&mut self, depth: usize) -> Option<BorrowedValue<'a>> {
        if depth == MAX_DEPTH {
            return None;
        }
        let start = self.items.len();
        let mut next = self.next_token()?;
        if next != b']' {
            loop {
                if let b'{' | b'[' = next {
                    let item = self.value(next, depth + 1)?;
                    self.items.push(item);
                } else {
                    read_scalar!(self, next, |item| self.items.push(item));
                }
                match self.next_token()? {
                    b',' => next = self.next_token()?,
                    b']' => break,
                    _ => return None,
                }
            }
        }
        let items = self.arena.alloc_slice_copy(&self.items[start..]);
        self.items.truncate(start);
        Some(BorrowedValue::Array(items))
    }
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
            return Ok(BorrowedValue::Object(self.arena.alloc(BorrowedObject::default())));
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
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    use super::*;

    /// Returns whether the token reader took `text`, rather than serde_json.
    fn read_by_tokens(text: &[u8]) -> bool {
        TokenReader::read(text, &Bump::new(), &mut Vec::new(), &mut Stacks::default()).is_some()
    }

    /// Checks the parse against serde_json's.
    fn round_trip(text: &str) {
        let expected: Value = serde_json::from_str(text).expect("test input is JSON");
        let mut buffer = ParseBuffer::default();
        let borrowed = BorrowedValue::parse(text.as_bytes(), &mut buffer).expect("parses");
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

    #[test]
    fn plain_string_length_cases() {
        let cases: [(&[u8], Option<usize>); 12] = [
            (b"\"", Some(0)),
            (b"abc\"", Some(3)),
            (b"abcdefg\"", Some(7)),
            (b"abcdefgh\"", Some(8)),
            (b"property_12\":1}", Some(11)),
            ("東京\"".as_bytes(), Some(6)),
            (b"ab\\\"c\"", None),
            (b"abcdefghij\\n\"", None),
            (b"abcdefghij\nk\"", None),
            (b"abc\x1f\"", None),
            (b"no end", None),
            (b"", None),
        ];
        for (rest, expected) in cases {
            assert_eq!(plain_string_length(rest), expected, "{:?}", String::from_utf8_lossy(rest));
        }
    }

    #[test]
    fn plain_string_length_each_position() {
        for length in 0..=19 {
            for position in 0..length {
                for byte in [b'"', b'\\', b'\n', 0x1f, b' ', 0x7f, 0x80, 0xff] {
                    let mut rest = vec![b'a'; length];
                    rest[position] = byte;
                    rest.push(b'"');
                    // A quote ends the string, a backslash or control byte leaves it to sonic-rs,
                    // and any other byte is part of a string that ends at the last quote.
                    let expected = match byte {
                        b'"' => Some(position),
                        b'\\' | b'\n' | 0x1f => None,
                        _ => Some(length),
                    };
                    assert_eq!(plain_string_length(&rest), expected, "byte {byte:#04x} at {position} of {length}");
                }
            }
        }
    }

    #[test]
    fn token_reader_depth_limit() {
        let nested = |brackets: usize| format!("{}\"caf\\u00e9\"{}", "[".repeat(brackets), "]".repeat(brackets));
        // serde_json parses 127 levels of arrays and rejects 128.
        assert!(read_by_tokens(nested(127).as_bytes()), "the deepest text serde_json parses");
        assert!(!read_by_tokens(nested(128).as_bytes()), "one level deeper goes to serde_json");
        round_trip(&nested(127));
    }

    #[test]
    fn escaped_strings_read_by_tokens() {
        let text = r#"{"escaped":"caf\u00e9","raw":"café","n":1E3}"#;
        assert!(read_by_tokens(text.as_bytes()));
        let mut buffer = ParseBuffer::default();
        let borrowed = BorrowedValue::parse(text.as_bytes(), &mut buffer).unwrap();
        let object = borrowed.as_object().unwrap();
        assert_eq!(object.get("raw"), Some(&BorrowedValue::String("café")));
        assert_eq!(object.get("escaped"), Some(&BorrowedValue::String("café")));
        assert_eq!(object.get("n"), Some(&BorrowedValue::Number("1e+3")));
    }

    /// Returns the text of `value`, an object, and the texts of its members.
    fn object_texts<'a>(value: &BorrowedValue<'a>) -> (&'a str, Vec<Option<&'a str>>) {
        let object = value.as_object().expect("an object");
        let members = (0..object.len()).map(|index| object.members_text(index, index));
        (object.text(), members.collect())
    }

    #[test]
    fn compact_object_keeps_its_text() {
        let text = r#"{"a":1,"b":"Straße","c":{"d":[true,null]},"e":-0.5}"#;
        let mut buffer = ParseBuffer::default();
        let value = BorrowedValue::parse(text.as_bytes(), &mut buffer).unwrap();
        let (object_text, members) = object_texts(&value);
        assert_eq!(object_text, text);
        assert_eq!(
            members,
            [Some(r#""a":1"#), Some(r#""b":"Straße""#), Some(r#""c":{"d":[true,null]}"#), Some(r#""e":-0.5"#)]
        );
        let (inner_text, inner_members) = object_texts(value.as_object().unwrap().get("c").unwrap());
        assert_eq!(inner_text, r#"{"d":[true,null]}"#);
        assert_eq!(inner_members, [Some(r#""d":[true,null]"#)]);
        let object = value.as_object().unwrap();
        assert_eq!(object.members_text(1, 3), Some(r#""b":"Straße","c":{"d":[true,null]},"e":-0.5"#));
        assert_eq!(object.members_text(0, 4), None);
        assert_eq!(object.members_text(2, 1), None);
    }

    #[test]
    fn rewritten_object_has_no_text() {
        let texts = [
            r#"{"a": 1}"#,
            r#"{"a":[1, 2]}"#,
            r#"{"a":"\n"}"#,
            r#"{"\u0061":1}"#,
            r#"{"a":1E3}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a":{"b":1e-3}}"#,
        ];
        for text in texts {
            let mut buffer = ParseBuffer::default();
            let value = BorrowedValue::parse(text.as_bytes(), &mut buffer).unwrap();
            assert_eq!(object_texts(&value), ("", vec![None; value.as_object().unwrap().len()]), "{text}");
        }
        // Whitespace around an object is outside its text, and an inner object keeps its own.
        let mut buffer = ParseBuffer::default();
        let value = BorrowedValue::parse(br#" {"a":{"b":1}, "c":2} "#, &mut buffer).unwrap();
        assert_eq!(object_texts(&value).0, "");
        assert_eq!(object_texts(value.as_object().unwrap().get("a").unwrap()).0, r#"{"b":1}"#);
        let value = BorrowedValue::parse(b"\n{\"a\":1}\t", &mut buffer).unwrap();
        assert_eq!(object_texts(&value).0, r#"{"a":1}"#);
    }

    #[test]
    fn buffer_keeps_stack_memory() {
        let members: Vec<String> = (0..100).map(|index| format!("\"k{index}\":[{index}]")).collect();
        let text = format!("{{{}}}", members.join(","));
        let mut buffer = ParseBuffer::default();
        let value = BorrowedValue::parse(text.as_bytes(), &mut buffer).unwrap();
        assert_eq!(value.as_object().map(BorrowedObject::len), Some(100));
        assert!(buffer.stacks.members.is_empty());
        assert!(buffer.stacks.members.capacity() >= 100, "{}", buffer.stacks.members.capacity());
        assert!(buffer.stacks.items.capacity() >= 1);
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
            let error = BorrowedValue::parse(text.as_bytes(), &mut ParseBuffer::default()).expect_err("too deep");
            assert_eq!(error.to_string(), expected, "{levels} levels");
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
    fn numbers_checked_by_token_reader() {
        for number in ["0", "-0", "7", "-12", "0.5", "-0.05", "10.25", "1e9", "2E-3", "-4.5e+10", "0e0"] {
            let text = format!("[{number}, {number}]");
            assert!(read_by_tokens(text.as_bytes()), "{text}");
            round_trip(&text);
        }
        // Not JSON numbers: serde_json reads the text and returns its error.
        for number in ["01", "-01", "-", "1.", ".5", "1.e3", "+1", "1e", "1e+", "--1", "0x10"] {
            let text = format!("[{number}]");
            assert!(!read_by_tokens(text.as_bytes()), "{text}");
            assert!(BorrowedValue::parse(text.as_bytes(), &mut ParseBuffer::default()).is_err(), "{text}");
        }
    }

    #[test]
    fn whitespace_and_literals_read_by_tokens() {
        let text = " \t{ \"a\" :\r\n[ true ,false,\tnull ] , \"b\":{ } }\n ";
        assert!(read_by_tokens(text.as_bytes()));
        round_trip(text);
        for broken in ["[tru]", "[nul", "[falsy]", "{\"a\":1 2}", "[1] x"] {
            assert!(!read_by_tokens(broken.as_bytes()), "{broken}");
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
            let error = BorrowedValue::parse(text, &mut ParseBuffer::default()).expect_err("invalid UTF-8");
            assert_eq!(error.to_string(), expected, "{}", String::from_utf8_lossy(text));
        }
    }

    /// Pieces of JSON text, valid and not, that the property tests join at random.
    const PIECES: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        " ",
        "\n",
        "\"a\"",
        "\"b\"",
        "\"caf\\u00e9\"",
        "\"x\\\"y\"",
        "\"\\ud800\"",
        "\"$serde_json::private::Number\"",
        "\"\\q\"",
        "\"\t\"",
        "0",
        "-0",
        "12",
        "01",
        "1.",
        "1.5",
        "-",
        "2e",
        "1E+3",
        "3e-2",
        "true",
        "tru",
        "false",
        "null",
        "nul",
        "x",
        "\u{e9}",
    ];

    /// Returns JSON text nested at most `depth` levels deep, with whitespace between its tokens.
    fn json_text(depth: u32) -> impl Strategy<Value = String> {
        let leaf = proptest::sample::select(
            &[
                "null",
                "true",
                "false",
                "0",
                "-0",
                "17",
                "1.50",
                "-2.5E+3",
                "1e400",
                "123456789012345678901234567890",
                "\"\"",
                "\"plain\"",
                "\"caf\u{e9} \u{1f600}\"",
                "\"esc\\n\\u00e9\\\"\"",
                "\"\\ud83d\\ude00\"",
            ][..],
        )
        .prop_map(str::to_owned);
        let space = proptest::sample::select(&["", " ", "\n\t", "  \r\n"][..]);
        leaf.prop_recursive(depth, 64, 6, move |inner| {
            let member =
                (proptest::sample::select(&["a", "b", "a", "k\\u00e9", "\u{e9}"][..]), inner.clone(), space.clone())
                    .prop_map(|(key, value, space)| format!("{space}\"{key}\"{space}:{space}{value}{space}"));
            prop_oneof![
                proptest::collection::vec(inner, 0..6).prop_map(|items| format!("[{}]", items.join(" , "))),
                proptest::collection::vec(member, 0..6).prop_map(|members| format!("{{{}}}", members.join(","))),
            ]
        })
    }

    /// Checks that the parse returns serde_json's value or serde_json's error for `text`, and that
    /// the token reader takes no text that serde_json rejects.
    fn same_as_serde_json(text: &[u8]) -> Result<(), TestCaseError> {
        let expected = serde_json::from_slice::<Value>(text);
        let mut buffer = ParseBuffer::default();
        let parsed = BorrowedValue::parse(text, &mut buffer);
        match (&expected, parsed) {
            (Ok(expected), Ok(parsed)) => prop_assert_eq!(&parsed.to_value(), expected),
            (Err(expected), Err(error)) => prop_assert_eq!(error.to_string(), expected.to_string()),
            (expected, parsed) => prop_assert!(false, "serde_json: {:?}, parse: {:?}", expected, parsed),
        }
        if read_by_tokens(text) {
            prop_assert!(expected.is_ok(), "the token reader took text serde_json rejects");
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn generated_json_matches_serde_json(text in json_text(5)) {
            prop_assert!(read_by_tokens(text.as_bytes()), "the token reader takes valid JSON: {}", text);
            same_as_serde_json(text.as_bytes())?;
        }

        #[test]
        fn joined_pieces_match_serde_json(pieces in proptest::collection::vec(proptest::sample::select(PIECES), 1..24)) {
            same_as_serde_json(pieces.concat().as_bytes())?;
        }

        #[test]
        fn number_like_text_matches_serde_json(number in "[-+.eE0-9]{1,8}", space in "[ ,\\]]{0,2}") {
            same_as_serde_json(format!("[{number}{space}]").as_bytes())?;
            same_as_serde_json(format!("{{\"n\":{number}{space}}}").as_bytes())?;
            same_as_serde_json(number.as_bytes())?;
        }

        #[test]
        fn changed_bytes_match_serde_json(
            text in json_text(3),
            changes in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = text.into_bytes();
            for (index, byte) in changes {
                let position = index.index(bytes.len());
                bytes[position] = byte;
            }
            same_as_serde_json(&bytes)?;
        }
    }
}
