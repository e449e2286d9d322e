//! Runs a whole pipeline in-process from a TOML string, with a shutdown handle, and prints its report.
//!
//!     cargo run --example pipeline_from_toml

use std::path::Path;

use optimizely_relay::config::Config;
use optimizely_relay::topology;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config_examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("config-examples");
    let text = r#"
        [sources.events]
        type = "file"
        include = ["quickstart-events.ndjson"]
        mode = "once"

        [transforms.opt]
        type = "optimizely"
        inputs = ["events"]
        revenue_unit = "dollars"
        [transforms.opt.datafile]
        path = "quickstart-datafile.json"
        [transforms.opt.event_keys]
        "Order Completed" = "order_completed"
        "Signed Up" = "signed_up"

        [sinks.out]
        type = "console"
        inputs = ["opt"]
    "#;
    // Relative paths resolve against the second argument; variables come from the lookup function.
    let config = Config::from_toml(text, &config_examples, &|name| std::env::var(name).ok())?;
    let pipeline = topology::build(&config).await.map_err(|errors| format!("{errors:?}"))?;

    // Cancelling the token stops the sources and drains the rest; a read-once run also ends by itself.
    let shutdown = CancellationToken::new();
    let report = pipeline.run(shutdown.clone()).await;
    eprintln!("summary: {}", report.summary);
    Ok(())
}
