//! Parses timestamps as strings and as JSON numbers, in both units. Where the `time` crate's RFC 3339
//! parser also accepts a string, both must give the same millisecond.
#![no_main]

use libfuzzer_sys::fuzz_target;
use optimizely_relay::transforms::optimizely::timestamp::{parse_timestamp, TimestampUnit};
use serde_json::Value;

/// Epoch milliseconds of 0000-01-01T00:00:00Z and of 9999-12-31T23:59:59.999Z.
const RANGE: std::ops::RangeInclusive<i64> = -62_167_219_200_000..=253_402_300_799_999;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };

    for unit in [TimestampUnit::Milliseconds, TimestampUnit::Seconds] {
        let parsed = parse_timestamp(&Value::String(text.to_owned()), unit);
        if let Ok(milliseconds) = parsed {
            assert!(RANGE.contains(&milliseconds), "{text:?} gave {milliseconds}");
            compare_with_time_crate(text, milliseconds);
        }

        if let Ok(number @ Value::Number(_)) = serde_json::from_str::<Value>(text) {
            if let Ok(milliseconds) = parse_timestamp(&number, unit) {
                assert!(RANGE.contains(&milliseconds), "{text:?} gave {milliseconds}");
            }
        }
    }
});

fn compare_with_time_crate(text: &str, milliseconds: i64) {
    let format = time::format_description::well_known::Rfc3339;
    let Ok(date_time) = time::OffsetDateTime::parse(text, &format) else { return };
    let expected = date_time.unix_timestamp() * 1000 + i64::from(date_time.millisecond());
    assert_eq!(milliseconds, expected, "{text:?}");
}
