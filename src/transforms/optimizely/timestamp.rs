//! Conversion timestamps: RFC 3339 date-times and epoch numbers, read as epoch milliseconds.
//!
//! The timestamp is the time the user converted. It is never replaced by the current time, so a
//! conversion sent twice carries the same timestamp.

use serde_json::{Number, Value};
use time::macros::datetime;
use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};

use super::excerpt::excerpt;
use super::number::{json_kind, Decimal, Rounding, ScaleError};

/// The unit of timestamps that arrive as JSON numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimestampUnit {
    /// Epoch milliseconds: the number must be whole.
    #[default]
    Milliseconds,
    /// Epoch seconds: a fraction is kept down to the millisecond.
    Seconds,
}

impl TimestampUnit {
    fn name(self) -> &'static str {
        match self {
            TimestampUnit::Milliseconds => "milliseconds",
            TimestampUnit::Seconds => "seconds",
        }
    }

    /// Describes the timestamp formats accepted with this unit, for error messages.
    fn accepted_formats(self) -> &'static str {
        match self {
            TimestampUnit::Milliseconds => {
                "the accepted forms are an RFC 3339 date-time with a time zone, such as \"2024-01-31T09:30:00.123Z\" \
                 or \"2024-01-31 09:30:00+05:30\", and a JSON integer of epoch milliseconds"
            }
            TimestampUnit::Seconds => {
                "the accepted forms are an RFC 3339 date-time with a time zone, such as \"2024-01-31T09:30:00.123Z\" \
                 or \"2024-01-31 09:30:00+05:30\", and a JSON number of epoch seconds"
            }
        }
    }
}

/// A timestamp that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// A string that is not an RFC 3339 date-time with a time zone.
    #[error("invalid timestamp {value}: {reason}; {}", .unit.accepted_formats())]
    InvalidDateTime {
        /// An excerpt of the offending value.
        value: String,
        /// The problem with the string, with its character position where one applies.
        reason: String,
        /// The configured unit for numeric timestamps.
        unit: TimestampUnit,
    },

    /// A number that is not a whole number of milliseconds.
    #[error(
        "invalid timestamp {value}: epoch milliseconds must be a whole number (set timestamp_unit = \
         \"seconds\" for epoch seconds); {}",
        .unit.accepted_formats()
    )]
    FractionalMilliseconds {
        /// An excerpt of the offending value.
        value: String,
        /// The configured unit for numeric timestamps.
        unit: TimestampUnit,
    },

    /// A JSON value that is neither a string nor a number.
    #[error("invalid timestamp {value}: a JSON {kind} is not a timestamp; {}", .unit.accepted_formats())]
    InvalidType {
        /// An excerpt of the offending value.
        value: String,
        /// The JSON type of the value, such as `boolean`.
        kind: &'static str,
        /// The configured unit for numeric timestamps.
        unit: TimestampUnit,
    },

    /// A number outside 0000-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z.
    #[error(
        "invalid timestamp {value}: outside the years 0000 to 9999 as epoch {}; {}",
        .unit.name(),
        .unit.accepted_formats()
    )]
    OutOfRange {
        /// An excerpt of the offending value.
        value: String,
        /// The configured unit for numeric timestamps.
        unit: TimestampUnit,
    },
}

/// Epoch milliseconds of 0000-01-01T00:00:00Z, the earliest time a numeric timestamp may have.
const MIN_EPOCH_MS: i64 = datetime!(0000-01-01 0:00 UTC).unix_timestamp() * 1000;

/// Epoch milliseconds of 9999-12-31T23:59:59.999Z, the latest time a numeric timestamp may have.
const MAX_EPOCH_MS: i64 = datetime!(9999-12-31 23:59:59 UTC).unix_timestamp() * 1000 + 999;

/// Reads a conversion timestamp as epoch milliseconds.
///
/// A string must be an RFC 3339 date-time: `YYYY-MM-DD`, then `T`, `t` or a space, then `HH:MM:SS`
/// (seconds are required), an optional fraction with any number of digits, and a zone: `Z`, `z`,
/// `±HH:MM`, `±HHMM` or `±HH`. The fraction is truncated, not rounded, to the millisecond. The
/// calendar is checked, so February 30 is invalid. A leap second (`:60`) is rejected, because epoch
/// time has no place for it. Surrounding whitespace is rejected.
///
/// A JSON number is epoch milliseconds and must be whole (`1700000000000.0` is accepted), or with
/// [`TimestampUnit::Seconds`] epoch seconds, whose fraction is truncated to the millisecond on the
/// number's decimal text. Truncation goes toward the earlier millisecond, which for negative epoch
/// seconds means away from zero, as for date-time strings. Numbers must lie within the years 0000 to
/// 9999. Strings of digits, booleans, `null`, arrays and objects are rejected.
pub fn parse_timestamp(value: &Value, unit: TimestampUnit) -> Result<i64, TimestampError> {
    match value {
        Value::String(text) => parse_timestamp_text(text, unit),
        Value::Number(number) => parse_epoch_number(number, unit),
        other => Err(TimestampError::InvalidType { value: excerpt(other), kind: json_kind(other), unit }),
    }
}

/// Parses a timestamp given as a JSON string, as [`parse_timestamp`] parses `Value::String(text)`.
pub fn parse_timestamp_text(text: &str, unit: TimestampUnit) -> Result<i64, TimestampError> {
    parse_date_time(text).map_err(|reason| TimestampError::InvalidDateTime {
        value: excerpt(&Value::String(text.to_owned())),
        reason,
        unit,
    })
}

/// Reads epoch milliseconds, or epoch seconds scaled to milliseconds, from a JSON number's text.
fn parse_epoch_number(number: &Number, unit: TimestampUnit) -> Result<i64, TimestampError> {
    let out_of_range = || TimestampError::OutOfRange { value: number.to_string(), unit };

    // A serde_json number always has valid number text, so `None` cannot occur in practice.
    let decimal = Decimal::from_json_number(number).ok_or_else(out_of_range)?;

    let (scale, rounding) = match unit {
        TimestampUnit::Milliseconds => (0, Rounding::Exact),
        TimestampUnit::Seconds => (3, Rounding::Floor),
    };
    let milliseconds = decimal.to_scaled_i64(scale, rounding).map_err(|error| match error {
        ScaleError::Fraction => TimestampError::FractionalMilliseconds { value: number.to_string(), unit },
        ScaleError::Overflow => out_of_range(),
    })?;

    if !(MIN_EPOCH_MS..=MAX_EPOCH_MS).contains(&milliseconds) {
        return Err(out_of_range());
    }
    Ok(milliseconds)
}

/// The fields of a date-time string, before calendar checks.
struct DateTimeFields {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millisecond: u32,
    /// The zone's offset east of UTC in minutes.
    offset_minutes: i32,
}

/// Parses an RFC 3339 date-time string into epoch milliseconds, or returns why it is invalid.
fn parse_date_time(text: &str) -> Result<i64, String> {
    if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err("a string of digits is not a timestamp; send epoch time as a JSON number".to_owned());
    }

    let fields = scan_date_time(&mut Cursor::new(text))?;

    let month = u8::try_from(fields.month)
        .ok()
        .and_then(|month| Month::try_from(month).ok())
        .ok_or_else(|| format!("month {:02} does not exist", fields.month))?;
    let date = Date::from_calendar_date(fields.year as i32, month, fields.day as u8)
        .map_err(|_| format!("{:04}-{:02}-{:02} is not a calendar date", fields.year, fields.month, fields.day))?;

    let time = checked_time(&fields)?;
    let offset = checked_offset(fields.offset_minutes)?;

    let seconds = PrimitiveDateTime::new(date, time).assume_offset(offset).unix_timestamp();
    Ok(seconds * 1000 + i64::from(fields.millisecond))
}

fn checked_time(fields: &DateTimeFields) -> Result<Time, String> {
    if fields.second == 60 {
        return Err("second 60 (a leap second) is not supported".to_owned());
    }

    let hour = u8::try_from(fields.hour).unwrap_or(u8::MAX);
    let minute = u8::try_from(fields.minute).unwrap_or(u8::MAX);
    let second = u8::try_from(fields.second).unwrap_or(u8::MAX);
    Time::from_hms(hour, minute, second)
        .map_err(|_| format!("{:02}:{:02}:{:02} is not a time of day", fields.hour, fields.minute, fields.second))
}

fn checked_offset(offset_minutes: i32) -> Result<UtcOffset, String> {
    let hours = (offset_minutes / 60) as i8;
    let minutes = (offset_minutes % 60) as i8;
    UtcOffset::from_hms(hours, minutes, 0).map_err(|error| format!("invalid offset: {error}"))
}

/// Scans `YYYY-MM-DD[Tt ]HH:MM:SS[.fraction]zone` without checking the ranges of the fields.
fn scan_date_time(cursor: &mut Cursor) -> Result<DateTimeFields, String> {
    let year = cursor.digits(4, "a 4-digit year")?;
    cursor.expect(b'-', "'-' after the year")?;
    let month = cursor.digits(2, "a 2-digit month")?;
    cursor.expect(b'-', "'-' after the month")?;
    let day = cursor.digits(2, "a 2-digit day")?;

    if !matches!(cursor.peek(), Some(b'T' | b't' | b' ')) {
        return Err(cursor.problem("'T' or a space between the date and the time"));
    }
    cursor.next();

    let hour = cursor.digits(2, "a 2-digit hour")?;
    cursor.expect(b':', "':' after the hour")?;
    let minute = cursor.digits(2, "a 2-digit minute")?;
    cursor.expect(b':', "':' and seconds after the minute (seconds are required)")?;
    let second = cursor.digits(2, "2-digit seconds")?;

    let millisecond = scan_fraction(cursor)?;
    let offset_minutes = scan_zone(cursor)?;
    if cursor.peek().is_some() {
        return Err(cursor.problem("the end of the text after the time zone"));
    }

    Ok(DateTimeFields { year, month, day, hour, minute, second, millisecond, offset_minutes })
}

/// Scans an optional `.digits` and returns its first three digits as milliseconds.
fn scan_fraction(cursor: &mut Cursor) -> Result<u32, String> {
    if cursor.peek() != Some(b'.') {
        return Ok(0);
    }
    cursor.next();

    let start = cursor.position;
    while cursor.peek().is_some_and(|byte| byte.is_ascii_digit()) {
        cursor.next();
    }
    let fraction = &cursor.bytes[start..cursor.position];
    if fraction.is_empty() {
        return Err(cursor.problem("digits after the decimal point"));
    }

    // Digits past the third are dropped: truncation, not rounding.
    let millisecond = (0..3).fold(0, |total, index| {
        let digit = fraction.get(index).map_or(0, |byte| u32::from(byte - b'0'));
        total * 10 + digit
    });
    Ok(millisecond)
}

/// Scans the zone `Z`, `z`, `±HH:MM`, `±HHMM` or `±HH` and returns its offset in minutes.
fn scan_zone(cursor: &mut Cursor) -> Result<i32, String> {
    let sign = match cursor.peek() {
        Some(b'Z' | b'z') => {
            cursor.next();
            return Ok(0);
        }
        Some(b'+') => 1,
        Some(b'-') => -1,
        None => return Err("missing time zone; add Z or an offset such as +01:00".to_owned()),
        Some(_) => return Err(cursor.problem("a time zone (Z or an offset such as +01:00)")),
    };
    cursor.next();

    let hours = cursor.digits(2, "2-digit offset hours")?;
    if cursor.peek() == Some(b':') {
        cursor.next();
    }
    let minutes = match cursor.peek() {
        Some(byte) if byte.is_ascii_digit() => cursor.digits(2, "2-digit offset minutes")?,
        _ => 0,
    };

    if hours > 23 || minutes > 59 {
        let sign = if sign < 0 { '-' } else { '+' };
        return Err(format!("offset {sign}{hours:02}:{minutes:02} is out of range"));
    }
    Ok(sign * (hours * 60 + minutes) as i32)
}

/// A position in the bytes of a date-time string.
struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Cursor<'a> {
        Cursor { bytes: text.as_bytes(), position: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek();
        if byte.is_some() {
            self.position += 1;
        }
        byte
    }

    fn expect(&mut self, byte: u8, expected: &str) -> Result<(), String> {
        if self.peek() != Some(byte) {
            return Err(self.problem(expected));
        }
        self.next();
        Ok(())
    }

    /// Reads exactly `count` ASCII digits as a number. An error names the position of the first one.
    fn digits(&mut self, count: usize, expected: &str) -> Result<u32, String> {
        let start = self.position;
        let mut value = 0;
        for _ in 0..count {
            match self.peek() {
                Some(byte) if byte.is_ascii_digit() => value = value * 10 + u32::from(byte - b'0'),
                _ => return Err(self.problem_at(start, expected)),
            }
            self.next();
        }
        Ok(value)
    }

    /// Describes what was expected at the current position.
    fn problem(&self, expected: &str) -> String {
        self.problem_at(self.position, expected)
    }

    /// Describes what was expected at the byte offset `position`, counting characters from 1.
    fn problem_at(&self, position: usize, expected: &str) -> String {
        // Count characters, not bytes, so the position is right for non-ASCII input too.
        let consumed = position.min(self.bytes.len());
        let characters = String::from_utf8_lossy(&self.bytes[..consumed]).chars().count();
        format!("expected {expected} at character {}", characters + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamp_text_matches_string_value() {
        for text in ["2024-01-31T12:00:00Z", "2024-01-31T13:00:00+01:00", "2024-02-30T00:00:00Z", "yesterday", ""] {
            let expected = parse_timestamp(&Value::String(text.to_owned()), TimestampUnit::Milliseconds);
            assert_eq!(parse_timestamp_text(text, TimestampUnit::Milliseconds), expected, "{text:?}");
        }
        assert_eq!(parse_timestamp_text("2024-01-31T12:00:00Z", TimestampUnit::Milliseconds), Ok(NOON_2024_01_31));
    }

    /// 2024-01-31T12:00:00Z in epoch milliseconds, computed outside this crate.
    const NOON_2024_01_31: i64 = 1_706_702_400_000;

    fn json_value(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_else(|error| panic!("test input {text} is not JSON: {error}"))
    }

    #[test]
    fn date_times_convert_to_epoch_ms() {
        let cases = [
            ("2024-01-31T12:00:00Z", NOON_2024_01_31),
            ("2024-01-31T12:00:00z", NOON_2024_01_31),
            ("2024-01-31t12:00:00Z", NOON_2024_01_31),
            ("2024-01-31 12:00:00Z", NOON_2024_01_31),
            ("2024-01-31T17:30:00+05:30", NOON_2024_01_31),
            ("2024-01-31T17:30:00+0530", NOON_2024_01_31),
            ("2024-01-31T04:00:00-0800", NOON_2024_01_31),
            ("2024-01-31T04:00:00-08:00", NOON_2024_01_31),
            ("2024-01-31T13:00:00+01", NOON_2024_01_31),
            ("2024-01-31T12:00:00+00:00", NOON_2024_01_31),
            ("2024-01-31T12:00:00-00:00", NOON_2024_01_31),
            ("2024-02-01T11:00:00+23:00", NOON_2024_01_31),
            ("1970-01-01T00:00:00Z", 0),
            ("2015-02-02T00:30:08.276Z", 1_422_837_008_276),
            ("2024-12-31T23:59:59.999Z", 1_735_689_599_999),
            ("0000-01-01T00:00:00Z", -62_167_219_200_000),
            ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_timestamp(&json!(text), TimestampUnit::Milliseconds), Ok(expected), "{text}");
        }
    }

    #[test]
    fn fractions_truncate_to_millisecond() {
        let cases = [
            ("2024-01-31T12:00:00.1Z", NOON_2024_01_31 + 100),
            ("2024-01-31T12:00:00.12Z", NOON_2024_01_31 + 120),
            ("2024-01-31T12:00:00.123Z", NOON_2024_01_31 + 123),
            ("2024-01-31T12:00:00.123456789Z", NOON_2024_01_31 + 123),
            ("2024-01-31T12:00:00.999999999Z", NOON_2024_01_31 + 999),
            ("2024-01-31T12:00:00.0009Z", NOON_2024_01_31),
            ("2024-01-31T12:00:00.1234567890123456789012345Z", NOON_2024_01_31 + 123),
            ("1969-12-31T23:59:59.9995Z", -1),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_timestamp(&json!(text), TimestampUnit::Milliseconds), Ok(expected), "{text}");
        }
    }

    #[test]
    fn february_29_needs_leap_year() {
        let valid = [("2024-02-29T00:00:00Z", 1_709_164_800_000), ("2000-02-29T00:00:00Z", 951_782_400_000)];
        for (text, expected) in valid {
            assert_eq!(parse_timestamp(&json!(text), TimestampUnit::Milliseconds), Ok(expected), "{text}");
        }

        for text in ["2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2024-02-30T00:00:00Z", "2024-04-31T00:00:00Z"] {
            let error = parse_timestamp(&json!(text), TimestampUnit::Milliseconds).unwrap_err();
            assert!(error.to_string().contains("is not a calendar date"), "{text}: {error}");
        }
    }

    #[test]
    fn invalid_strings_are_rejected() {
        let cases = [
            ("2024-01-31T12:00:00", "missing time zone"),
            ("2024-01-31 12:00:00.123", "missing time zone"),
            ("2024-01-31T12:00Z", "seconds are required"),
            ("2024-01-31", "'T' or a space"),
            ("2015-2-02T00:30:08.276Z", "2-digit month at character 6"),
            ("1700000000000", "a string of digits is not a timestamp"),
            ("2024", "a string of digits is not a timestamp"),
            ("2024x", "'-' after the year at character 5"),
            ("", "4-digit year at character 1"),
            ("garbage", "4-digit year at character 1"),
            (" 2024-01-31T12:00:00Z", "4-digit year at character 1"),
            ("2024-01-31T12:00:00Z ", "end of the text"),
            ("2024-01-31T12:00:00Z UTC", "end of the text"),
            ("2024-01-31_12:00:00Z", "'T' or a space"),
            ("2024-01-31T12:00:00.Z", "digits after the decimal point"),
            ("2024-01-31T12:00:00,5Z", "a time zone"),
            ("2024-01-31T12:00:00+5:30", "2-digit offset hours"),
            ("2024-01-31T12:00:00+05:3", "2-digit offset minutes"),
            ("2024-01-31T12:00:00+24:00", "offset +24:00 is out of range"),
            ("2024-01-31T12:00:00+05:60", "offset +05:60 is out of range"),
            ("2024-01-31T12:00:00-0575", "offset -05:75 is out of range"),
            ("2024-13-01T00:00:00Z", "month 13 does not exist"),
            ("2024-00-01T00:00:00Z", "month 00 does not exist"),
            ("2024-01-00T00:00:00Z", "is not a calendar date"),
            ("2024-01-31T24:00:00Z", "is not a time of day"),
            ("2024-01-31T12:60:00Z", "is not a time of day"),
            ("2016-12-31T23:59:60Z", "leap second"),
            ("2020-05-09 23:54:49.209808489 +0000 UTC m=+70366.298768264", "a time zone"),
            ("２０２４-01-31T12:00:00Z", "4-digit year at character 1"),
        ];
        for (text, reason) in cases {
            let result = parse_timestamp(&json!(text), TimestampUnit::Milliseconds);
            let Err(TimestampError::InvalidDateTime { reason: actual, .. }) = &result else {
                panic!("{text:?} should be an invalid date-time, got {result:?}");
            };
            assert!(actual.contains(reason), "{text:?}: reason {actual:?} should contain {reason:?}");
        }
    }

    #[test]
    fn integer_milliseconds_are_read() {
        let cases = [
            ("1706702400000", NOON_2024_01_31),
            ("1706702400000.0", NOON_2024_01_31),
            ("1706702400000.000", NOON_2024_01_31),
            ("1.7067024e12", NOON_2024_01_31),
            ("0", 0),
            ("-1", -1),
            ("253402300799999", 253_402_300_799_999),
            ("-62167219200000", -62_167_219_200_000),
        ];
        for (text, expected) in cases {
            let result = parse_timestamp(&json_value(text), TimestampUnit::Milliseconds);
            assert_eq!(result, Ok(expected), "milliseconds {text}");
        }
    }

    #[test]
    fn fractional_milliseconds_are_rejected() {
        for text in ["1706702400000.5", "1.5", "1e-1"] {
            let result = parse_timestamp(&json_value(text), TimestampUnit::Milliseconds);
            assert!(matches!(result, Err(TimestampError::FractionalMilliseconds { .. })), "{text}: {result:?}");
        }
    }

    #[test]
    fn seconds_unit_scales_numbers() {
        let cases = [
            ("1706702400", NOON_2024_01_31),
            ("1706702400.0", NOON_2024_01_31),
            ("1706702400.123456", NOON_2024_01_31 + 123),
            ("1706702400.9999", NOON_2024_01_31 + 999),
            ("1.7067024e9", NOON_2024_01_31),
            ("1706702400123e-3", NOON_2024_01_31 + 123),
            ("0.0015", 1),
            ("-0.0005", -1),
            ("-1.5", -1500),
        ];
        for (text, expected) in cases {
            let result = parse_timestamp(&json_value(text), TimestampUnit::Seconds);
            assert_eq!(result, Ok(expected), "seconds {text}");
        }
    }

    #[test]
    fn seconds_unit_still_reads_strings() {
        let result = parse_timestamp(&json!("2024-01-31T12:00:00Z"), TimestampUnit::Seconds);
        assert_eq!(result, Ok(NOON_2024_01_31));
    }

    #[test]
    fn numbers_out_of_range_are_rejected() {
        let cases = [
            ("253402300800000", TimestampUnit::Milliseconds),
            ("-62167219200001", TimestampUnit::Milliseconds),
            ("99999999999999999999", TimestampUnit::Milliseconds),
            ("1e400", TimestampUnit::Milliseconds),
            ("253402300800", TimestampUnit::Seconds),
            ("9223372036854775807", TimestampUnit::Seconds),
            ("1e400", TimestampUnit::Seconds),
        ];
        for (text, unit) in cases {
            let result = parse_timestamp(&json_value(text), unit);
            assert!(matches!(result, Err(TimestampError::OutOfRange { .. })), "{unit:?} {text}: {result:?}");
        }
    }

    #[test]
    fn other_json_types_are_rejected() {
        let cases = [(json!(true), "boolean"), (json!(null), "null"), (json!({}), "object"), (json!([1]), "array")];
        for (value, kind) in cases {
            let result = parse_timestamp(&value, TimestampUnit::Milliseconds);
            let Err(TimestampError::InvalidType { kind: actual, .. }) = result else {
                panic!("{value} should be rejected as a {kind}, got {result:?}");
            };
            assert_eq!(actual, kind, "{value}");
        }
    }

    #[test]
    fn error_names_value_and_formats() {
        let message =
            parse_timestamp(&json!("2024-01-31T12:00:00"), TimestampUnit::Milliseconds).unwrap_err().to_string();
        assert!(message.contains("\"2024-01-31T12:00:00\""), "{message}");
        assert!(message.contains("missing time zone"), "{message}");
        assert!(message.contains("the accepted forms are an RFC 3339 date-time"), "{message}");
        assert!(message.contains("epoch milliseconds"), "{message}");

        let seconds = parse_timestamp(&json!(false), TimestampUnit::Seconds).unwrap_err().to_string();
        assert!(seconds.contains("epoch seconds"), "{seconds}");

        let fraction = parse_timestamp(&json_value("1.5"), TimestampUnit::Milliseconds).unwrap_err().to_string();
        assert!(fraction.contains("timestamp_unit = \"seconds\""), "{fraction}");
    }

    #[test]
    fn error_truncates_long_value() {
        let long = format!("2024-01-31T12:00:00{}", "x".repeat(500));
        let message = parse_timestamp(&json!(long), TimestampUnit::Milliseconds).unwrap_err().to_string();
        assert!(message.contains('…'), "{message}");
        assert!(message.len() < 500, "message has {} bytes: {message}", message.len());
    }
}
