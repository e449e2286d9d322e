//! Exact decimal numbers: conversion revenue in cents and the numeric `value` of a conversion.
//!
//! Every conversion works on the decimal text of a number (a JSON number's text as written, or a
//! decimal string), never through `f64`: `19.99 × 100` in `f64` is `1998.9999…`, which would lose a
//! cent.

use serde_json::{Number, Value};

use super::excerpt::excerpt;

/// The unit of the incoming revenue amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevenueUnit {
    /// The amount is already a whole number of cents (1/100 of the currency unit), as Segment's
    /// Optimizely destination expects.
    #[default]
    Cents,
    /// The amount is in currency units, as in Segment's e-commerce spec. It is multiplied by 100 and
    /// rounded half away from zero.
    Dollars,
}

/// A revenue amount or numeric value that cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// A JSON value that is neither a number nor a string.
    #[error(
        "invalid {field} {value}: a JSON {kind} is not a number; expected a JSON number or a decimal \
         string such as \"19.99\""
    )]
    WrongType {
        /// The field being read: `revenue` or `value`.
        field: &'static str,
        /// An excerpt of the offending value.
        value: String,
        /// The JSON type of the value, such as `boolean`.
        kind: &'static str,
    },

    /// A string that does not hold a plain decimal number.
    #[error(
        "invalid {field} {value}: not a decimal number; expected an optional '-', digits and an \
         optional fraction, such as \"19.99\", with no exponent and no thousands separators"
    )]
    InvalidString {
        /// The field being read: `revenue` or `value`.
        field: &'static str,
        /// An excerpt of the offending value.
        value: String,
    },

    /// A number beyond the largest finite double-precision float (about 1.8e308).
    #[error("invalid {field} {value}: the number is too large to be a finite double-precision float")]
    NotFinite {
        /// The field being read: `revenue` or `value`.
        field: &'static str,
        /// An excerpt of the offending value.
        value: String,
    },

    /// A revenue amount with a fraction while `revenue_unit` is `cents`.
    #[error(
        "invalid revenue {value}: revenue_unit = \"cents\" requires a whole number of cents; set \
         revenue_unit = \"dollars\" if revenue is in currency units"
    )]
    FractionalCents {
        /// An excerpt of the offending value.
        value: String,
    },

    /// A revenue amount whose value in cents is outside the signed 64-bit integer range.
    #[error("invalid revenue {value}: the amount in cents is outside the signed 64-bit integer range")]
    OutOfRange {
        /// An excerpt of the offending value.
        value: String,
    },
}

/// Converts a revenue amount to integer cents.
///
/// `value` is a JSON number or a decimal string (see [`parse_numeric_value`] for the string rules).
/// With [`RevenueUnit::Cents`] the amount must be a whole number (`4200`, `4200.0`, `"4200"`). With
/// [`RevenueUnit::Dollars`] it is multiplied by 100 exactly and rounded half away from zero, so
/// `19.99` becomes `1999` and `1.005` becomes `101`.
pub fn parse_revenue(value: &Value, unit: RevenueUnit) -> Result<i64, NumberError> {
    let decimal = read_decimal(value, "revenue")?;
    scale_revenue(&decimal, unit).map_err(|error| scale_error(error, value))
}

/// Parses a revenue given as a JSON string, as [`parse_revenue`] parses `Value::String(text)`.
pub fn parse_revenue_text(text: &str, unit: RevenueUnit) -> Result<i64, NumberError> {
    match Decimal::from_decimal_string(text).map(|decimal| scale_revenue(&decimal, unit)) {
        Some(Ok(cents)) => Ok(cents),
        // The `Value` for the error's excerpt is built only here.
        _ => parse_revenue(&Value::String(text.to_owned()), unit),
    }
}

/// Converts a revenue to cents.
fn scale_revenue(decimal: &Decimal, unit: RevenueUnit) -> Result<i64, ScaleError> {
    let (scale, rounding) = match unit {
        RevenueUnit::Cents => (0, Rounding::Exact),
        RevenueUnit::Dollars => (2, Rounding::HalfAwayFromZero),
    };
    decimal.to_scaled_i64(scale, rounding)
}

fn scale_error(error: ScaleError, value: &Value) -> NumberError {
    match error {
        ScaleError::Fraction => NumberError::FractionalCents { value: excerpt(value) },
        ScaleError::Overflow => NumberError::OutOfRange { value: excerpt(value) },
    }
}

/// Reads the numeric `value` of a conversion.
///
/// A JSON number is returned as written (`7` stays an integer, `1.50` keeps its zero). A string must
/// hold a plain decimal number: an optional `-`, digits, and an optional `.` followed by digits,
/// with surrounding spaces (U+0020) ignored. The string's number is normalised to valid JSON number
/// text: leading zeros of the integer part are removed (`"007"` → `7`, `"00.5"` → `0.5`) and a zero
/// loses its minus sign (`"-0"` → `0`), because some JSON readers turn `-0` into a negative zero.
/// Booleans, `null`, arrays, objects and numbers beyond the finite range of a double-precision float
/// (such as `1e400`) are rejected.
pub fn parse_numeric_value(value: &Value) -> Result<Number, NumberError> {
    let field = "value";

    let text = match value {
        Value::Number(number) => number.to_string(),
        Value::String(text) => {
            normalise_decimal_string(text).ok_or_else(|| NumberError::InvalidString { field, value: excerpt(value) })?
        }
        other => return Err(wrong_type(field, other)),
    };

    let is_finite = text.parse::<f64>().is_ok_and(f64::is_finite);
    if !is_finite {
        return Err(NumberError::NotFinite { field, value: excerpt(value) });
    }

    text.parse::<Number>().map_err(|_| NumberError::InvalidString { field, value: excerpt(value) })
}

/// Reads a JSON number or a decimal string as an exact decimal.
fn read_decimal(value: &Value, field: &'static str) -> Result<Decimal, NumberError> {
    let decimal = match value {
        Value::Number(number) => Decimal::from_json_number(number),
        Value::String(text) => Decimal::from_decimal_string(text),
        other => return Err(wrong_type(field, other)),
    };
    decimal.ok_or_else(|| NumberError::InvalidString { field, value: excerpt(value) })
}

fn wrong_type(field: &'static str, value: &Value) -> NumberError {
    NumberError::WrongType { field, value: excerpt(value), kind: json_kind(value) }
}

/// Returns the name of a JSON value's type, as used in error messages.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Rewrites a decimal string as JSON number text, or returns `None` when it is not a plain decimal.
fn normalise_decimal_string(text: &str) -> Option<String> {
    let decimal = Decimal::from_decimal_string(text)?;

    let trimmed = text.trim_matches(' ');
    let unsigned = trimmed.strip_prefix('-').unwrap_or(trimmed);
    let (integer, fraction) = match unsigned.split_once('.') {
        Some((integer, fraction)) => (integer, Some(fraction)),
        None => (unsigned, None),
    };

    let mut normalised = String::with_capacity(trimmed.len());
    if decimal.negative && !decimal.is_zero() {
        normalised.push('-');
    }
    let integer = integer.trim_start_matches('0');
    normalised.push_str(if integer.is_empty() { "0" } else { integer });
    if let Some(fraction) = fraction {
        normalised.push('.');
        normalised.push_str(fraction);
    }
    Some(normalised)
}

/// The rounding that [`Decimal::to_scaled_i64`] applies to a fraction left after scaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rounding {
    /// A fraction is an error.
    Exact,
    /// Rounds to the nearest integer, and a fraction of exactly one half away from zero.
    HalfAwayFromZero,
    /// Rounds toward negative infinity.
    Floor,
}

/// The failure of [`Decimal::to_scaled_i64`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScaleError {
    /// The scaled number has a fraction and the rounding is [`Rounding::Exact`].
    Fraction,
    /// The scaled and rounded number is outside the `i64` range.
    Overflow,
}

/// An exact decimal number: `(-1)^negative × digits × 10^exponent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decimal {
    negative: bool,
    /// Significant ASCII digits with no leading or trailing zeros, and empty for zero.
    digits: String,
    exponent: i64,
}

/// Exponents are clamped to this magnitude while parsing. Any larger exponent has the same effect
/// on the conversions here (overflow or zero), and the clamp keeps the arithmetic far from `i64`
/// overflow.
const MAX_EXPONENT: i64 = 1_000_000_000_000_000;

impl Decimal {
    /// Reads the text of a JSON number, which may have a fraction and an exponent.
    pub(crate) fn from_json_number(number: &Number) -> Option<Decimal> {
        Decimal::parse(&number.to_string(), true)
    }

    /// Reads a decimal string: surrounding spaces (U+0020), an optional `-`, digits, and an optional
    /// `.` followed by digits. Leading zeros are allowed, but exponents, `+` and separators are not.
    pub(crate) fn from_decimal_string(text: &str) -> Option<Decimal> {
        Decimal::parse(text.trim_matches(' '), false)
    }

    /// Returns whether the number is zero.
    pub(crate) fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    fn parse(text: &str, allow_exponent: bool) -> Option<Decimal> {
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };

        let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
            Some(index) if allow_exponent => (&unsigned[..index], parse_exponent(&unsigned[index + 1..])?),
            Some(_) => return None,
            None => (unsigned, 0),
        };

        let (integer, fraction) = match mantissa.split_once('.') {
            Some((integer, fraction)) if is_digits(fraction) => (integer, fraction),
            Some(_) => return None,
            None => (mantissa, ""),
        };
        if !is_digits(integer) {
            return None;
        }

        let mut all_digits = String::with_capacity(integer.len() + fraction.len());
        all_digits.push_str(integer);
        all_digits.push_str(fraction);
        Some(Decimal::normalised(negative, all_digits, exponent - fraction.len() as i64))
    }

    /// Builds a decimal from raw digits, removing leading zeros and moving trailing zeros into the
    /// exponent. The digits are trimmed in place, so the decimal takes over their buffer.
    fn normalised(negative: bool, mut digits: String, exponent: i64) -> Decimal {
        let leading = digits.len() - digits.trim_start_matches('0').len();
        let trailing = digits.len() - leading - digits[leading..].trim_end_matches('0').len();
        digits.truncate(digits.len() - trailing);
        digits.drain(..leading);
        Decimal { negative, digits, exponent: exponent + trailing as i64 }
    }

    /// Computes `self × 10^scale` as an `i64`, applying `rounding` to any remaining fraction.
    pub(crate) fn to_scaled_i64(&self, scale: i64, rounding: Rounding) -> Result<i64, ScaleError> {
        if self.is_zero() {
            return Ok(0);
        }

        let (integer, first_fraction_digit) = self.split_magnitude(self.exponent + scale)?;

        let magnitude = match (first_fraction_digit, rounding) {
            (None, _) => integer,
            (Some(_), Rounding::Exact) => return Err(ScaleError::Fraction),
            (Some(digit), Rounding::HalfAwayFromZero) => integer + u128::from(digit >= 5),
            (Some(_), Rounding::Floor) => integer + u128::from(self.negative),
        };

        let signed = if self.negative { -(magnitude as i128) } else { magnitude as i128 };
        i64::try_from(signed).map_err(|_| ScaleError::Overflow)
    }

    /// Splits `|digits| × 10^shift` into its integer part and the first digit of its fraction.
    ///
    /// The fraction digit is `None` when there is no fraction. When there is one it is never zero as a
    /// whole, because the digits end in a nonzero digit.
    fn split_magnitude(&self, shift: i64) -> Result<(u128, Option<u8>), ScaleError> {
        let digits = self.digits.as_bytes();
        let integer_len = digits.len() as i64 + shift;

        // i64 magnitudes have at most 19 digits, so a longer integer part overflows. Checking first
        // also bounds the work for numbers such as 1e1000000.
        if integer_len > 19 {
            return Err(ScaleError::Overflow);
        }

        if shift >= 0 {
            let integer = digits_value(digits) * 10u128.pow(shift as u32);
            return Ok((integer, None));
        }

        if integer_len <= 0 {
            let first = if integer_len == 0 { digits[0] - b'0' } else { 0 };
            return Ok((0, Some(first)));
        }

        let split = integer_len as usize;
        Ok((digits_value(&digits[..split]), Some(digits[split] - b'0')))
    }
}

/// Parses the digits after `e`, with an optional sign, clamping the result to ±[`MAX_EXPONENT`].
fn parse_exponent(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if !is_digits(digits) {
        return None;
    }

    let significant = digits.trim_start_matches('0');
    let magnitude =
        if significant.len() > 16 { MAX_EXPONENT } else { significant.parse::<i64>().unwrap_or(0).min(MAX_EXPONENT) };
    Some(if negative { -magnitude } else { magnitude })
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit())
}

/// Returns the value of at most 19 ASCII digits, which always fits a `u128`.
fn digits_value(digits: &[u8]) -> u128 {
    digits.iter().fold(0, |total, digit| total * 10 + u128::from(digit - b'0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimal_trims_leading_and_trailing_zeros() {
        let decimal = |negative, digits: &str, exponent| Decimal { negative, digits: digits.to_owned(), exponent };
        let cases = [
            ("007.500", decimal(false, "75", -1)),
            ("1200", decimal(false, "12", 2)),
            ("-0.0305", decimal(true, "305", -4)),
            ("0.000", decimal(false, "", -3)),
            ("000", decimal(false, "", 0)),
            ("5", decimal(false, "5", 0)),
        ];
        for (text, expected) in cases {
            assert_eq!(Decimal::from_decimal_string(text), Some(expected), "{text}");
        }
    }

    #[test]
    fn revenue_text_matches_string_value() {
        for text in ["19.99", "1.005", "-0.5", "4200", " 12 ", "1e3", "12abc", "", "0.001", "99999999999999999999"] {
            for unit in [RevenueUnit::Dollars, RevenueUnit::Cents] {
                let expected = parse_revenue(&Value::String(text.to_owned()), unit);
                assert_eq!(parse_revenue_text(text, unit), expected, "{text:?} in {unit:?}");
            }
        }
        assert_eq!(parse_revenue_text("19.99", RevenueUnit::Dollars), Ok(1999));
    }

    /// Parses JSON text so that numbers keep their decimal text as written.
    fn json_value(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_else(|error| panic!("test input {text} is not JSON: {error}"))
    }

    #[test]
    fn dollars_convert_exactly() {
        let cases = [
            ("19.99", 1999),
            ("0.29", 29),
            ("4.35", 435),
            ("1.005", 101),
            ("-19.99", -1999),
            ("-1.005", -101),
            ("\"75.02\"", 7502),
            ("\"0.00\"", 0),
            ("\"  19.99  \"", 1999),
            ("\"-0.5\"", -50),
            ("\"007.10\"", 710),
            ("42", 4200),
            ("0", 0),
            ("0.004", 0),
            ("0.005", 1),
            ("-0.005", -1),
            ("0.00499999", 0),
            ("1.0049999999999999999999", 100),
            ("1999e-2", 1999),
            ("1999e-5", 2),
            ("1.999E1", 1999),
            ("1e2", 10000),
            ("1E+2", 10000),
            ("5e-3", 1),
            ("1e-400", 0),
            ("92233720368547758.07", 9223372036854775807),
            ("-92233720368547758.08", -9223372036854775808),
        ];
        for (input, expected) in cases {
            let result = parse_revenue(&json_value(input), RevenueUnit::Dollars);
            assert_eq!(result, Ok(expected), "dollars {input}");
        }
    }

    #[test]
    fn cents_accept_whole_numbers() {
        let cases = [
            ("4200", 4200),
            ("4200.0", 4200),
            ("4.2e3", 4200),
            ("42E2", 4200),
            ("-15", -15),
            ("0", 0),
            ("-0", 0),
            ("\"4200\"", 4200),
            ("\"4200.0\"", 4200),
            ("\" 4200 \"", 4200),
            ("\"0.00\"", 0),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
        ];
        for (input, expected) in cases {
            let result = parse_revenue(&json_value(input), RevenueUnit::Cents);
            assert_eq!(result, Ok(expected), "cents {input}");
        }
    }

    #[test]
    fn cents_reject_fractions() {
        for input in ["19.99", "\"19.99\"", "0.5", "1e-2", "-0.1"] {
            let result = parse_revenue(&json_value(input), RevenueUnit::Cents);
            assert!(matches!(result, Err(NumberError::FractionalCents { .. })), "cents {input}: {result:?}");
        }
    }

    #[test]
    fn revenue_outside_i64_is_rejected() {
        let cases = [
            ("9223372036854775808", RevenueUnit::Cents),
            ("-9223372036854775809", RevenueUnit::Cents),
            ("99999999999999999999999", RevenueUnit::Cents),
            ("1e19", RevenueUnit::Cents),
            ("1e400", RevenueUnit::Cents),
            ("92233720368547758.08", RevenueUnit::Dollars),
            ("\"92233720368547758.08\"", RevenueUnit::Dollars),
            ("1e17", RevenueUnit::Dollars),
            ("1e99999999999999999999", RevenueUnit::Dollars),
        ];
        for (input, unit) in cases {
            let result = parse_revenue(&json_value(input), unit);
            assert!(matches!(result, Err(NumberError::OutOfRange { .. })), "{unit:?} {input}: {result:?}");
        }
    }

    #[test]
    fn revenue_rejects_other_types_and_text() {
        let wrong_types = [json!(true), json!(null), json!([1]), json!({"amount": 1})];
        for value in wrong_types {
            let result = parse_revenue(&value, RevenueUnit::Dollars);
            assert!(matches!(result, Err(NumberError::WrongType { .. })), "type {value}: {result:?}");
        }

        let invalid = ["", " ", "abc", "1,000", "1 000", "1e3", "+5", ".5", "5.", "$5", "0x10", "NaN", "1.2.3", "--1"];
        for text in invalid {
            let result = parse_revenue(&json!(text), RevenueUnit::Dollars);
            assert!(matches!(result, Err(NumberError::InvalidString { .. })), "string {text:?}: {result:?}");
        }
    }

    #[test]
    fn revenue_errors_name_value_and_fix() {
        let fraction = parse_revenue(&json!(19.99), RevenueUnit::Cents).unwrap_err().to_string();
        assert!(fraction.contains("19.99"), "{fraction}");
        assert!(fraction.contains("revenue_unit = \"dollars\""), "{fraction}");

        let text = parse_revenue(&json!("12,50"), RevenueUnit::Dollars).unwrap_err().to_string();
        assert!(text.contains("\"12,50\""), "{text}");
        assert!(text.contains("no thousands separators"), "{text}");
    }

    #[test]
    fn numeric_value_keeps_numbers_as_written() {
        // serde_json stores an exponent as `e+` or `e-`, so `1E3` reads back as `1e+3`.
        let cases = [
            ("7", "7"),
            ("3.5", "3.5"),
            ("1.50", "1.50"),
            ("-2", "-2"),
            ("0", "0"),
            ("1E3", "1e+3"),
            ("1e-400", "1e-400"),
        ];
        for (input, expected) in cases {
            let number = parse_numeric_value(&json_value(input)).unwrap_or_else(|error| panic!("{input}: {error}"));
            assert_eq!(number.to_string(), expected, "number {input}");
        }
    }

    #[test]
    fn numeric_value_reads_decimal_strings() {
        let cases = [
            ("7", "7"),
            ("3.5", "3.5"),
            (" 3.50 ", "3.50"),
            ("007", "7"),
            ("00.5", "0.5"),
            ("-007.25", "-7.25"),
            ("-0", "0"),
            ("-0.00", "0.00"),
            ("0", "0"),
            ("12345678901234567890123", "12345678901234567890123"),
        ];
        for (input, expected) in cases {
            let number = parse_numeric_value(&json!(input)).unwrap_or_else(|error| panic!("{input:?}: {error}"));
            assert_eq!(number.to_string(), expected, "string {input:?}");
        }
    }

    #[test]
    fn numeric_value_integer_stays_integer_on_wire() {
        let from_string = parse_numeric_value(&json!("7")).unwrap();
        assert!(from_string.is_i64(), "\"7\" is an integer");
        assert_eq!(serde_json::to_string(&from_string).unwrap(), "7");

        let from_number = parse_numeric_value(&json_value("7")).unwrap();
        assert_eq!(serde_json::to_string(&from_number).unwrap(), "7");

        let fraction = parse_numeric_value(&json!("3.5")).unwrap();
        assert_eq!(serde_json::to_string(&fraction).unwrap(), "3.5");
    }

    #[test]
    fn numeric_value_rejects_non_numbers() {
        let wrong_types = [json!(true), json!(false), json!(null), json!([7]), json!({"v": 7})];
        for value in wrong_types {
            let result = parse_numeric_value(&value);
            assert!(matches!(result, Err(NumberError::WrongType { field: "value", .. })), "type {value}: {result:?}");
        }

        for text in ["", "seven", "1e3", "1,5", "Infinity", "NaN", "+1", "1.", ".1", "\t1"] {
            let result = parse_numeric_value(&json!(text));
            assert!(matches!(result, Err(NumberError::InvalidString { .. })), "string {text:?}: {result:?}");
        }
    }

    #[test]
    fn numeric_value_rejects_non_finite() {
        let huge_string = "9".repeat(400);
        let cases = [json_value("1e400"), json_value("-1e400"), json!(huge_string)];
        for value in cases {
            let result = parse_numeric_value(&value);
            assert!(matches!(result, Err(NumberError::NotFinite { .. })), "{value}: {result:?}");
        }
    }

    #[test]
    fn scaled_floor_rounds_down() {
        let cases = [("1.0005", 1000), ("-1.0005", -1001), ("-1.0000", -1000), ("1700000000.1239", 1700000000123)];
        for (input, expected) in cases {
            let decimal = Decimal::from_decimal_string(input).unwrap();
            assert_eq!(decimal.to_scaled_i64(3, Rounding::Floor), Ok(expected), "floor {input}");
        }
    }
}
