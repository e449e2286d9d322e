//! Decodes one input line and maps every message in it with a fixed datafile, then encodes each
//! conversion as the Event API sink does. A line that the sources pass on as text is also mapped
//! through the borrowed parse, which must give the same outcome as mapping the parsed `Value`.
//!
//! The first byte picks one of four transform settings; the rest is the line.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use optimizely_relay::event::Payload;
use optimizely_relay::sources::decode::{decode_line, decode_owned_line};
use optimizely_relay::transforms::optimizely::datafile::Datafile;
use optimizely_relay::transforms::optimizely::{MapOutcome, OptimizelyTransform, OptimizelyTransformConfig};

const DATAFILE: &[u8] = include_bytes!("../../config-examples/quickstart-datafile.json");

/// Transform settings that change which code paths the mapping takes.
const SETTINGS: [&str; 4] = [
    "",
    "revenue_unit = \"dollars\"\nnested_tags = \"json_string\"\n",
    "timestamp_unit = \"seconds\"\nunknown_event_keys = \"skip\"\n[event_keys]\n\"Order Completed\" = \"order_completed\"\n",
    "[mapping]\nuser_id = [\"$.userId\", \"$.anonymousId\", \"$.context.traits['user id']\"]\nrevenue = \"$.properties.total\"\ntags = \"$.properties.items[0]\"\n",
];

fn transforms() -> &'static [OptimizelyTransform] {
    static TRANSFORMS: OnceLock<Vec<OptimizelyTransform>> = OnceLock::new();
    TRANSFORMS.get_or_init(|| {
        let datafile = Arc::new(Datafile::parse(DATAFILE).expect("the quickstart datafile parses"));
        SETTINGS
            .iter()
            .map(|settings| {
                let text = format!("{settings}\n[datafile]\npath = \"datafile.json\"\n");
                let config: OptimizelyTransformConfig = toml::from_str(&text).expect("valid transform settings");
                OptimizelyTransform::new("fuzz", &config, datafile.clone())
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((selector, line)) = data.split_first() else { return };
    let transform = &transforms()[usize::from(*selector) % SETTINGS.len()];

    let mut raw = Vec::new();
    decode_owned_line(line.to_vec().into(), &mut raw);
    if let [Payload::RawMessage(text)] = &raw[..] {
        if let Ok(message) = serde_json::from_slice::<serde_json::Value>(text) {
            assert_eq!(transform.map_bytes(text), transform.map_message(&message), "borrowed and Value mapping differ");
        }
    }

    let mut payloads = Vec::new();
    decode_line(line, &mut payloads);
    for payload in payloads {
        let Payload::Message(message) = payload else { continue };
        match transform.map_message(&message) {
            MapOutcome::Conversion(conversion, _) => {
                assert!(!conversion.visitor.visitor_id.trim().is_empty(), "a conversion has a visitor id");
                let visitor = serde_json::to_vec(&conversion.visitor).expect("a visitor encodes as JSON");
                let decoded: serde_json::Value = serde_json::from_slice(&visitor).expect("an encoded visitor is JSON");
                assert!(decoded.is_object());
                let _ = conversion.to_body();
            }
            MapOutcome::Deletion(deletion) => assert!(!deletion.identifier.trim().is_empty()),
            MapOutcome::Skipped(_) => {}
            MapOutcome::Rejected(rejection) => assert!(!rejection.message.is_empty()),
        }
    }
});
