//! Parses arbitrary bytes as a datafile and looks up the keys it lists.
#![no_main]

use libfuzzer_sys::fuzz_target;
use optimizely_relay::transforms::optimizely::datafile::Datafile;

fuzz_target!(|data: &[u8]| {
    let Ok(datafile) = Datafile::parse(data) else { return };
    let keys: Vec<String> = datafile.event_keys().map(str::to_owned).collect();
    for key in keys {
        assert!(datafile.event_id(&key).is_some(), "listed key {key:?} has an id");
    }
    let _ = datafile.event_api_endpoint();
});
