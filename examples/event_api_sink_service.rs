//! A tokio service that produces conversions on its own channel and delivers them with the Event API
//! sink, learning the final outcome of each one.
//!
//!     cargo run --example event_api_sink_service [ENDPOINT]
//!
//! Without an endpoint, the example starts a stand-in Event API on 127.0.0.1 that answers 204, so
//! it sends nothing beyond this machine.

use std::sync::{Arc, Mutex};

use optimizely_relay::ack::{AckReceiver, EventFinalizer, EventStatus};
use optimizely_relay::event::{Event, Payload};
use optimizely_relay::sinks::optimizely_events::{OptimizelyEventsConfig, OptimizelyEventsSink};
use optimizely_relay::topology::{buffer, BufferConfig, Output, Unconnected};
use optimizely_relay::transforms::optimizely::datafile::Datafile;
use optimizely_relay::transforms::optimizely::{MapOutcome, OptimizelyTransform};

/// Collects the outcome of each conversion, by the cookie given to its finalizer.
#[derive(Default)]
struct Outcomes(Mutex<Vec<(u64, EventStatus)>>);

impl AckReceiver for Outcomes {
    fn acknowledge(&self, cookie: u64, status: EventStatus) {
        self.0.lock().unwrap().push((cookie, status));
    }
}

/// Starts a server on 127.0.0.1 that responds 204 to every request, and returns its events URL.
async fn start_stand_in() -> Result<String, Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/events", listener.local_addr()?);
    let app = axum::Router::new().fallback(|body: axum::body::Bytes| async move {
        println!("stand-in Event API received {} bytes", body.len());
        axum::http::StatusCode::NO_CONTENT
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = match std::env::args().nth(1) {
        Some(endpoint) => endpoint,
        None => start_stand_in().await?,
    };

    let datafile_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config-examples/quickstart-datafile.json");
    let datafile = Arc::new(Datafile::parse(&std::fs::read(datafile_path)?)?);
    let transform = OptimizelyTransform::from_toml("opt", "[datafile]\npath = \"unused.json\"", datafile)?;

    // The sink is built from the same settings as a `[sinks.ID]` table.
    let settings: OptimizelyEventsConfig =
        toml::from_str(&format!("endpoint = \"{endpoint}\"\nbatch.timeout_secs = 0.1"))?;
    let sink = OptimizelyEventsSink::new("events".to_owned(), settings)?;
    let (sender, input) = buffer("events", BufferConfig::default());
    let dropped = Output::new("events.dropped", Vec::new(), Unconnected::Finalize(EventStatus::DeadLettered));
    let sink_task = tokio::spawn(sink.run(input, dropped));

    // The service's own channel of messages, and a task that maps them and feeds the sink.
    let (messages, mut receiver) = tokio::sync::mpsc::channel::<serde_json::Value>(100);
    let outcomes = Arc::new(Outcomes::default());
    let feeder_outcomes = outcomes.clone();
    let feeder = tokio::spawn(async move {
        let mut cookie = 0;
        while let Some(message) = receiver.recv().await {
            if let MapOutcome::Conversion(conversion, _) = transform.map_message(&message) {
                let finalizer = EventFinalizer::new(feeder_outcomes.clone(), cookie);
                cookie += 1;
                let event = Event::with_finalizer(Payload::Conversion(conversion), finalizer);
                if sender.send(vec![event]).await.is_err() {
                    break;
                }
            }
        }
        // Dropping the sender closes the sink's input: it flushes and returns.
    });

    for index in 0..3 {
        let message = serde_json::json!({
            "type": "track", "event": "order_completed", "userId": format!("user-{index}"),
            "messageId": format!("message-{index}"), "timestamp": "2026-12-01T10:00:00Z"
        });
        messages.send(message).await?;
    }
    drop(messages);
    feeder.await?;
    sink_task.await?;

    for (cookie, status) in outcomes.0.lock().unwrap().iter() {
        println!("conversion {cookie}: {}", status.as_str());
    }
    Ok(())
}
