//! Maps Segment messages with the `optimizely` transform alone, without a pipeline, and prints each
//! outcome: the Event API body of a conversion, a deletion request, a dead-letter reason, or a skip.
//!
//!     cargo run --example map_messages

use std::sync::Arc;

use optimizely_relay::transforms::optimizely::datafile::Datafile;
use optimizely_relay::transforms::optimizely::{MapOutcome, OptimizelyTransform};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let datafile_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config-examples/quickstart-datafile.json");
    let datafile = Datafile::parse(&std::fs::read(datafile_path)?)?;

    // The settings are those of a `[transforms.ID]` table; the datafile is given directly.
    let settings = r#"
        revenue_unit = "dollars"
        [datafile]
        path = "quickstart-datafile.json"
        [event_keys]
        "Order Completed" = "order_completed"
    "#;
    let transform = OptimizelyTransform::from_toml("opt", settings, Arc::new(datafile))?;

    let messages: [&[u8]; 4] = [
        br#"{"type":"track","event":"Order Completed","userId":"user-1","messageId":"m-1","timestamp":"2026-12-01T10:00:00Z","properties":{"revenue":"19.99","coupon":"WINTER"}}"#,
        br#"{"type":"track","event":"Newsletter Opened","userId":"user-2","timestamp":"2026-12-01T10:00:00Z"}"#,
        br#"{"type":"delete","userId":"user-3"}"#,
        br#"{"type":"identify","userId":"user-4"}"#,
    ];
    for message in messages {
        match transform.map_bytes(message) {
            MapOutcome::Conversion(conversion, _) => {
                println!("conversion to {}: {}", conversion.batch_key.endpoint, conversion.to_body())
            }
            MapOutcome::Deletion(request) => println!("deletion: {}", request.to_json()),
            MapOutcome::Rejected(rejection) => println!("dead-lettered ({}): {}", rejection.reason, rejection.message),
            MapOutcome::Skipped(reason) => println!("skipped: {reason:?}"),
        }
    }
    Ok(())
}
