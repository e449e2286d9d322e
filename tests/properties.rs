//! Property tests of revenue conversion and timestamp parsing, each against a result computed here
//! independently: revenue with big-integer arithmetic on the digits, timestamps with a civil-calendar
//! day count.

use num_bigint::BigInt;
use optimizely_relay::transforms::optimizely::number::{parse_revenue, NumberError, RevenueUnit};
use optimizely_relay::transforms::optimizely::timestamp::{parse_timestamp, TimestampUnit};
use proptest::prelude::*;
use serde_json::Value;

/// A decimal number as parts of its text: `-`, integer digits, fraction digits and an exponent.
#[derive(Debug, Clone)]
struct DecimalText {
    negative: bool,
    integer: String,
    fraction: String,
    exponent: i32,
}

impl DecimalText {
    /// Returns the JSON number text, such as `-19.99` or `1999e-2`.
    fn json(&self) -> String {
        let mut text = String::new();
        if self.negative {
            text.push('-');
        }
        text.push_str(&self.integer);
        if !self.fraction.is_empty() {
            text.push('.');
            text.push_str(&self.fraction);
        }
        if self.exponent != 0 {
            text.push_str(&format!("e{}", self.exponent));
        }
        text
    }

    /// Returns the value × 10^`shift` as a fraction `numerator / denominator` of big integers.
    fn scaled(&self, shift: i32) -> (BigInt, BigInt) {
        let digits = format!("{}{}", self.integer, self.fraction);
        let mut numerator: BigInt = digits.parse().expect("digits");
        if self.negative {
            numerator = -numerator;
        }
        let power = self.exponent + shift - self.fraction.len() as i32;
        let ten = BigInt::from(10);
        if power >= 0 {
            (numerator * ten.pow(power as u32), BigInt::from(1))
        } else {
            (numerator, ten.pow(power.unsigned_abs()))
        }
    }
}

/// Integer digits as JSON writes them: `0`, or no leading zero.
fn integer_digits() -> impl Strategy<Value = String> {
    prop_oneof![Just("0".to_owned()), "[1-9][0-9]{0,21}"]
}

fn decimal_text(max_exponent: i32) -> impl Strategy<Value = DecimalText> {
    (any::<bool>(), integer_digits(), "[0-9]{0,24}", -max_exponent..=max_exponent)
        .prop_map(|(negative, integer, fraction, exponent)| DecimalText { negative, integer, fraction, exponent })
}

/// Rounds `numerator / denominator` to an integer, a half away from zero.
fn round_half_away_from_zero(numerator: &BigInt, denominator: &BigInt) -> BigInt {
    let magnitude = numerator.magnitude();
    let denominator = denominator.magnitude();
    let (quotient, remainder) = (magnitude / denominator, magnitude % denominator);
    let rounded = if remainder * 2u32 >= *denominator { quotient + 1u32 } else { quotient };
    let rounded = BigInt::from(rounded);
    if *numerator < BigInt::from(0) {
        -rounded
    } else {
        rounded
    }
}

fn in_i64(value: &BigInt) -> Option<i64> {
    i64::try_from(value).ok()
}

fn expected_dollars(text: &DecimalText) -> Option<i64> {
    let (numerator, denominator) = text.scaled(2);
    in_i64(&round_half_away_from_zero(&numerator, &denominator))
}

/// The outcome expected in cents: the integer, or which errors apply.
#[derive(Debug)]
enum Cents {
    Whole(i64),
    Fraction,
    OutOfRange,
    /// A number with a fraction outside the i64 range, where either error is right.
    FractionOutOfRange,
}

fn expected_cents(text: &DecimalText) -> Cents {
    let (numerator, denominator) = text.scaled(0);
    let fraction = &numerator % &denominator != BigInt::from(0);
    match (in_i64(&(numerator / denominator)), fraction) {
        (Some(cents), false) => Cents::Whole(cents),
        (Some(_), true) => Cents::Fraction,
        (None, false) => Cents::OutOfRange,
        (None, true) => Cents::FractionOutOfRange,
    }
}

fn json_number(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("{text} is a JSON number: {error}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn dollars_convert_exactly(text in decimal_text(25)) {
        let result = parse_revenue(&json_number(&text.json()), RevenueUnit::Dollars);
        match expected_dollars(&text) {
            Some(cents) => prop_assert_eq!(result, Ok(cents), "{}", text.json()),
            None => prop_assert!(matches!(result, Err(NumberError::OutOfRange { .. })), "{}: {:?}", text.json(), result),
        }
    }

    #[test]
    fn dollar_strings_convert_exactly(text in decimal_text(0), left in " {0,3}", right in " {0,3}", zeros in "0{0,3}") {
        // Decimal strings may have leading zeros and surrounding spaces, but no exponent.
        let plain = DecimalText { integer: format!("{zeros}{}", text.integer), ..text.clone() };
        let string = Value::String(format!("{left}{}{right}", plain.json()));
        let result = parse_revenue(&string, RevenueUnit::Dollars);
        match expected_dollars(&plain) {
            Some(cents) => prop_assert_eq!(result, Ok(cents), "{}", string),
            None => prop_assert!(matches!(result, Err(NumberError::OutOfRange { .. })), "{}: {:?}", string, result),
        }
    }

    #[test]
    fn cents_accept_whole_numbers_only(text in decimal_text(25)) {
        let result = parse_revenue(&json_number(&text.json()), RevenueUnit::Cents);
        let json = text.json();
        match expected_cents(&text) {
            Cents::Whole(cents) => prop_assert_eq!(result, Ok(cents), "{}", json),
            Cents::Fraction => prop_assert!(matches!(result, Err(NumberError::FractionalCents { .. })), "{}: {:?}", json, result),
            Cents::OutOfRange => prop_assert!(matches!(result, Err(NumberError::OutOfRange { .. })), "{}: {:?}", json, result),
            Cents::FractionOutOfRange => prop_assert!(
                matches!(result, Err(NumberError::OutOfRange { .. } | NumberError::FractionalCents { .. })),
                "{}: {:?}", json, result
            ),
        }
    }
}

/// A date-time and the text form to write it in.
#[derive(Debug, Clone)]
struct DateTimeText {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    fraction: String,
    separator: char,
    /// `None` for `Z` or `z`, else the offset east of UTC in minutes.
    offset_minutes: Option<i64>,
    zone_form: u8,
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the date, by counting whole years and months.
fn days_since_epoch(year: i64, month: i64, day: i64) -> i64 {
    let mut days = 0;
    if year >= 1970 {
        days += (1970..year).map(|y| if is_leap_year(y) { 366 } else { 365 }).sum::<i64>();
    } else {
        days -= (year..1970).map(|y| if is_leap_year(y) { 366 } else { 365 }).sum::<i64>();
    }
    days += (1..month).map(|m| days_in_month(year, m)).sum::<i64>();
    days + day - 1
}

impl DateTimeText {
    fn text(&self) -> String {
        let mut text = format!(
            "{:04}-{:02}-{:02}{}{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.separator, self.hour, self.minute, self.second
        );
        if !self.fraction.is_empty() {
            text.push('.');
            text.push_str(&self.fraction);
        }
        match self.offset_minutes {
            None => text.push(if self.zone_form % 2 == 0 { 'Z' } else { 'z' }),
            Some(offset) => {
                let sign = if offset < 0 { '-' } else { '+' };
                let (hours, minutes) = (offset.abs() / 60, offset.abs() % 60);
                match self.zone_form % 3 {
                    0 => text.push_str(&format!("{sign}{hours:02}:{minutes:02}")),
                    1 => text.push_str(&format!("{sign}{hours:02}{minutes:02}")),
                    _ => text.push_str(&format!("{sign}{hours:02}")),
                }
            }
        }
        text
    }

    /// Returns the epoch milliseconds of the text, with the fraction truncated to the millisecond.
    fn epoch_ms(&self) -> i64 {
        let milliseconds: i64 = format!("{:0<3}", self.fraction)[..3].parse().expect("digits");
        let offset = match (self.offset_minutes, self.zone_form % 3) {
            (None, _) => 0,
            // The `±HH` form carries whole hours only.
            (Some(offset), 2) => offset / 60 * 60,
            (Some(offset), _) => offset,
        };
        let seconds = days_since_epoch(self.year, self.month, self.day) * 86_400
            + self.hour * 3600
            + self.minute * 60
            + self.second
            - offset * 60;
        seconds * 1000 + milliseconds
    }
}

fn date_time_text() -> impl Strategy<Value = DateTimeText> {
    let date = (0i64..=9999, 1i64..=12)
        .prop_flat_map(|(year, month)| (Just(year), Just(month), 1..=days_in_month(year, month)));
    let time = (0i64..24, 0i64..60, 0i64..60, "[0-9]{0,12}");
    let zone = (prop::option::of(-(23 * 60 + 59)..=(23 * 60 + 59i64)), any::<u8>());
    (date, time, prop::sample::select(vec!['T', 't', ' ']), zone).prop_map(
        |((year, month, day), (hour, minute, second, fraction), separator, (offset_minutes, zone_form))| DateTimeText {
            year,
            month,
            day,
            hour,
            minute,
            second,
            fraction,
            separator,
            offset_minutes,
            zone_form,
        },
    )
}

/// Epoch milliseconds of 0000-01-01T00:00:00Z and of 9999-12-31T23:59:59.999Z.
const MIN_EPOCH_MS: i64 = -62_167_219_200_000;
const MAX_EPOCH_MS: i64 = 253_402_300_799_999;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn date_times_parse_to_epoch_ms(date_time in date_time_text()) {
        let text = date_time.text();
        let result = parse_timestamp(&Value::String(text.clone()), TimestampUnit::Milliseconds);
        prop_assert_eq!(result, Ok(date_time.epoch_ms()), "{}", text);
    }

    #[test]
    fn epoch_ms_numbers_round_trip(milliseconds in MIN_EPOCH_MS..=MAX_EPOCH_MS) {
        let number = json_number(&milliseconds.to_string());
        prop_assert_eq!(parse_timestamp(&number, TimestampUnit::Milliseconds), Ok(milliseconds));
    }

    #[test]
    fn epoch_seconds_floor_to_ms(
        seconds in (MIN_EPOCH_MS / 1000)..(MAX_EPOCH_MS / 1000),
        fraction in "[0-9]{1,9}",
    ) {
        // `seconds.fraction`, read toward the earlier millisecond: for negative seconds the fraction
        // moves the time further back.
        let text = if seconds < 0 { format!("-{}.{fraction}", -seconds) } else { format!("{seconds}.{fraction}") };
        let thousandths: i64 = format!("{fraction:0<3}")[..3].parse().expect("digits");
        let rest_is_zero = fraction.chars().skip(3).all(|digit| digit == '0');
        let expected = if seconds < 0 {
            seconds * 1000 - thousandths - i64::from(!rest_is_zero)
        } else {
            seconds * 1000 + thousandths
        };
        let result = parse_timestamp(&json_number(&text), TimestampUnit::Seconds);
        if (MIN_EPOCH_MS..=MAX_EPOCH_MS).contains(&expected) {
            prop_assert_eq!(result, Ok(expected), "{}", text);
        } else {
            prop_assert!(result.is_err(), "{}: {:?}", text, result);
        }
    }
}
