//! Parses revenue and value from JSON numbers and decimal strings. A plain decimal must convert the
//! same way whether it arrives as a number or as a string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use optimizely_relay::transforms::optimizely::number::{parse_numeric_value, parse_revenue, RevenueUnit};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let as_string = Value::String(text.to_owned());
    let as_json = serde_json::from_str::<Value>(text).ok();

    for unit in [RevenueUnit::Cents, RevenueUnit::Dollars] {
        let from_string = parse_revenue(&as_string, unit);
        if let Some(value) = &as_json {
            let from_json = parse_revenue(value, unit);
            // JSON allows any whitespace around a number, decimal strings only spaces.
            let plain_decimal = value.is_number() && !text.contains(['e', 'E', '\t', '\r', '\n']);
            if plain_decimal {
                assert_eq!(from_json.is_ok(), from_string.is_ok(), "{unit:?} {text:?}");
                if let (Ok(left), Ok(right)) = (&from_json, &from_string) {
                    assert_eq!(left, right, "{unit:?} {text:?}");
                }
            }
        }
    }

    let _ = parse_numeric_value(&as_string);
    if let Some(value) = &as_json {
        if let Ok(number) = parse_numeric_value(value) {
            let encoded = serde_json::to_string(&number).expect("a number encodes");
            let decoded: Value = serde_json::from_str(&encoded).expect("an encoded number is JSON");
            assert!(decoded.is_number(), "{text:?} encoded as {encoded}");
        }
    }
});
