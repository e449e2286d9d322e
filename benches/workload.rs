//! Generates realistic Segment messages for the benchmarks: mixed sizes, 5 to 30 properties, traits,
//! non-ASCII text, and about 2% invalid lines.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The Segment event names, renamed by the benchmark configuration to the quickstart datafile's keys.
pub const EVENT_NAMES: &[&str] = &["Order Completed", "Signed Up", "add_to_cart"];

const WORDS: &[&str] =
    &["alpha", "Straße", "café", "東京", "naïve", "señor", "plan", "pro", "basic", "😀 party", "données"];

/// Returns `count` NDJSON lines generated from `seed`.
pub fn generate(count: usize, seed: u64) -> Vec<u8> {
    let mut random = StdRng::seed_from_u64(seed);
    let mut output = Vec::with_capacity(count * 700);
    for index in 0..count {
        output.extend_from_slice(line(index, &mut random).as_bytes());
        output.push(b'\n');
    }
    output
}

fn line(index: usize, random: &mut StdRng) -> String {
    let roll = random.random_range(0..100);
    if roll == 0 {
        return format!(
            "{{\"type\":\"track\",\"event\":\"Order Completed\",\"userId\":\"u-{index}\",\"timestamp\": broken"
        );
    }
    if roll == 1 {
        return format!(
            "{{\"type\":\"track\",\"event\":\"Unknown Event {index}\",\"userId\":\"u-{index}\",\"timestamp\":\"2026-12-01T10:00:00Z\"}}"
        );
    }

    let event = EVENT_NAMES[random.random_range(0..EVENT_NAMES.len())];
    let mut properties = Vec::new();
    for number in 0..random.random_range(5..=30) {
        let value = match random.random_range(0..4) {
            0 => format!("\"{}\"", WORDS[random.random_range(0..WORDS.len())]),
            1 => format!("{}", random.random_range(0..100_000)),
            2 => format!("{:.2}", random.random_range(0.0..1000.0)),
            _ => (random.random_range(0..2) == 1).to_string(),
        };
        properties.push(format!("\"property_{number}\":{value}"));
    }
    properties.push(format!("\"revenue\":\"{}.{:02}\"", random.random_range(1..500), random.random_range(0..100)));
    let traits = format!(
        "{{\"plan\":\"{}\",\"country\":\"{}\",\"email\":\"user{index}@example.com\",\"beta_tester\":{}}}",
        WORDS[random.random_range(0..WORDS.len())],
        ["DE", "FR", "US", "JP"][random.random_range(0..4)],
        random.random_range(0..2) == 1
    );
    format!(
        concat!(
            "{{\"type\":\"track\",\"event\":\"{event}\",\"userId\":\"user-{index}\",\"anonymousId\":\"anon-{index}\",",
            "\"messageId\":\"message-{index}\",\"timestamp\":\"2026-12-01T10:{minute:02}:{second:02}.{millis:03}Z\",",
            "\"properties\":{{{properties}}},",
            "\"context\":{{\"traits\":{traits},\"userAgent\":\"Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0\",",
            "\"library\":{{\"name\":\"analytics.js\",\"version\":\"2.11.1\"}},\"ip\":\"203.0.113.7\"}}}}"
        ),
        event = event,
        index = index,
        minute = index % 60,
        second = (index / 60) % 60,
        millis = index % 1000,
        properties = properties.join(","),
        traits = traits,
    )
}
