//! Loads arbitrary text as a configuration. Every `${VAR}` resolves to a fixed value, so that
//! interpolation runs too.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use optimizely_relay::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lookup = |name: &str| (name.len() % 2 == 0).then(|| format!("value-of-{name}"));
    if let Err(errors) = Config::from_toml(text, Path::new("/etc/relay"), &lookup) {
        assert!(!errors.to_string().is_empty());
    }
});
