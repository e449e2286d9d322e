//! Field rules of the mapping: visitor id, uuid, and visitor attributes.

use std::borrow::Cow;

use serde_json::Value;

use super::borrowed::BorrowedValue;
use super::config::MappingConfig;
use super::datafile::Datafile;
use super::mapper::{first_value, MapWarnings};
use super::path::PathList;
use crate::event::json::AttributeValue;
use crate::event::VisitorAttribute;

/// The attribute that carries the user agent, used by Optimizely's bot filtering.
pub(crate) const USER_AGENT_ATTRIBUTE: &str = "$opt_user_agent";
/// The attribute that turns the Event API's bot filtering on or off. Only the datafile sets it.
pub(crate) const BOT_FILTERING_ATTRIBUTE: &str = "$opt_bot_filtering";
/// The largest integer a JSON number carries exactly in an IEEE 754 double.
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Returns whether a value counts as missing: `null`, an empty string, or an empty object or array.
pub(crate) fn is_empty(value: &BorrowedValue) -> bool {
    match value {
        BorrowedValue::Null => true,
        BorrowedValue::String(text) => text.is_empty(),
        BorrowedValue::Array(items) => items.is_empty(),
        BorrowedValue::Object(object) => object.is_empty(),
        _ => false,
    }
}

/// Returns the first non-empty string along `paths`.
pub(crate) fn first_string<'a>(message: &'a BorrowedValue, paths: &PathList) -> Option<&'a str> {
    paths.0.iter().filter_map(|path| path.lookup(message)).find_map(|value| match value {
        BorrowedValue::String(text) if !text.is_empty() => Some(*text),
        _ => None,
    })
}

/// Returns the visitor id: the first path holding a string that is not blank, or an integer as its
/// decimal text. Blank strings, floats, booleans, objects and `null` count as missing.
pub(crate) fn visitor_id(message: &BorrowedValue, paths: &PathList) -> Option<String> {
    paths.0.iter().filter_map(|path| path.lookup(message)).find_map(|value| match value {
        BorrowedValue::String(text) if !text.trim().is_empty() => Some((*text).to_owned()),
        BorrowedValue::Number(number) => integer_text(number).map(str::to_owned),
        _ => None,
    })
}

/// Returns the decimal text of an integer JSON number, or `None` for a number with a fraction or exponent.
fn integer_text(text: &str) -> Option<&str> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let is_integer = !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit());
    is_integer.then_some(text)
}

/// Reads the visitor attributes and passes each to `add` as its entity id, key and value: the
/// traits known to the datafile or starting with `$opt_`, in trait order, then the user agent, then
/// bot filtering. Only the first `max_properties` traits are read.
pub(crate) fn attributes<'a>(
    message: &BorrowedValue<'a>,
    mapping: &MappingConfig,
    datafile: &'a Datafile,
    max_properties: usize,
    warnings: &mut MapWarnings,
    mut add: impl FnMut(&'a str, &'a str, AttributeValue<'a>),
) {
    let user_agent = first_value(message, &mapping.user_agent).and_then(BorrowedValue::as_str);
    let traits = first_value(message, &mapping.attributes).and_then(BorrowedValue::as_object);

    if let Some(traits) = traits {
        warnings.excess_properties += traits.len().saturating_sub(max_properties) as u32;
        for (key, value) in traits.iter().take(max_properties) {
            // The datafile decides bot filtering, and a mapped user agent replaces a trait of that name.
            if key == BOT_FILTERING_ATTRIBUTE || (key == USER_AGENT_ATTRIBUTE && user_agent.is_some()) {
                warnings.removed_attributes += 1;
                continue;
            }
            let entity_id = match datafile.attribute_id(key) {
                Some(id) => id,
                None if key.starts_with("$opt_") => key,
                None => {
                    tracing::debug!(attribute = %key, "trait is not a datafile attribute; left out");
                    warnings.removed_attributes += 1;
                    continue;
                }
            };
            match attribute_value(value) {
                Some(value) => add(entity_id, key, value),
                None => warnings.removed_attributes += 1,
            }
        }
    }

    if let Some(user_agent) = user_agent {
        add(USER_AGENT_ATTRIBUTE, USER_AGENT_ATTRIBUTE, AttributeValue::String(user_agent));
    }
    if let Some(bot_filtering) = datafile.bot_filtering {
        add(BOT_FILTERING_ATTRIBUTE, BOT_FILTERING_ATTRIBUTE, AttributeValue::Bool(bot_filtering));
    }
}

/// Builds the visitor attributes that [`attributes`] reads.
pub(crate) fn attribute_list(
    message: &BorrowedValue,
    mapping: &MappingConfig,
    datafile: &Datafile,
    max_properties: usize,
    warnings: &mut MapWarnings,
) -> Vec<VisitorAttribute> {
    let mut list = Vec::new();
    attributes(message, mapping, datafile, max_properties, warnings, |entity_id, key, value| {
        list.push(custom_attribute(entity_id, key, value.to_value()))
    });
    list
}

fn custom_attribute(entity_id: &str, key: &str, value: Value) -> VisitorAttribute {
    VisitorAttribute { entity_id: entity_id.to_owned(), key: key.to_owned(), kind: Cow::Borrowed("custom"), value }
}

/// Returns `value` when the Event API accepts it as an attribute value: a string, a boolean, or a
/// finite number whose magnitude is at most 2^53.
fn attribute_value<'a>(value: &BorrowedValue<'a>) -> Option<AttributeValue<'a>> {
    match *value {
        BorrowedValue::String(text) => Some(AttributeValue::String(text)),
        BorrowedValue::Bool(boolean) => Some(AttributeValue::Bool(boolean)),
        BorrowedValue::Number(number) => {
            let valid = match integer_text(number) {
                // Integers are compared exactly: 2^53 + 1 rounds to 2^53 as a double.
                Some(text) => {
                    text.parse::<i128>().is_ok_and(|integer| integer.unsigned_abs() <= MAX_EXACT_INTEGER as u128)
                }
                None => number.parse::<f64>().is_ok_and(|float| float.is_finite() && float.abs() <= MAX_EXACT_INTEGER),
            };
            valid.then_some(AttributeValue::Number(number))
        }
        _ => None,
    }
}
