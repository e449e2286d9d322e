//! At-least-once delivery across crashes: the relay tails a file that is being appended to, is killed
//! with SIGKILL at random points and restarted, and every event still reaches the Event API.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use support::{write_file, RecordingServer};

const EVENTS: usize = 3000;
const KILL_ROUNDS: usize = 5;

fn spawn_relay(config: &str) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_optimizely-relay"))
        .args(["run", "--config", config])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn optimizely-relay")
}

/// Returns the uuids of every conversion in `requests`, with the index of the request it came in.
fn received_uuids(requests: &[support::RecordedRequest]) -> Vec<(usize, String)> {
    let mut uuids = Vec::new();
    for (index, request) in requests.iter().enumerate() {
        for visitor in request.json()["visitors"].as_array().unwrap() {
            let uuid = visitor["snapshots"][0]["events"][0]["uuid"].as_str().unwrap().to_owned();
            uuids.push((index, uuid));
        }
    }
    uuids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_relay_loses_no_event() {
    let seed: u64 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut random = rand::rngs::StdRng::seed_from_u64(seed);
    let api = RecordingServer::start().await;
    let directory = tempfile::tempdir().unwrap();
    let log_path = directory.path().join("events.ndjson");
    std::fs::File::create(&log_path).unwrap();
    let config = write_file(
        directory.path(),
        "relay.toml",
        &format!(
            r#"
data_dir = "state"

[sources.logs]
type = "file"
include = ["{log}"]
glob_interval_secs = 0.1
poll_interval_secs = 0.02
checkpoint_interval_secs = 0.1

[transforms.opt]
type = "optimizely"
inputs = ["logs"]
[transforms.opt.datafile]
path = "{datafile}"

[sinks.api]
type = "optimizely_events"
inputs = ["opt"]
endpoint = "{endpoint}"
batch.max_events = 50
batch.timeout_secs = 0.05
"#,
            log = log_path.display(),
            datafile = support::crate_root().join("config-examples/quickstart-datafile.json").display(),
            endpoint = api.url("/v1/events"),
        ),
    );
    let config = config.to_str().unwrap().to_owned();

    // The writer appends 3000 conversions in bursts of 30 every 20 ms, about 2 seconds in all.
    let writer_path = log_path.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let mut file = std::fs::OpenOptions::new().append(true).open(writer_path).unwrap();
        for burst in 0..EVENTS / 30 {
            let mut text = String::new();
            for index in burst * 30..(burst + 1) * 30 {
                text.push_str(&format!(
                    "{{\"type\":\"track\",\"event\":\"order_completed\",\"userId\":\"u-{index}\",\"messageId\":\"m-{index}\",\"timestamp\":\"2026-12-01T00:00:00Z\"}}\n"
                ));
            }
            file.write_all(text.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    });

    // Requests with an index below this boundary arrived while a relay that was later killed ran.
    let mut killed_boundary = 0;
    for _ in 0..KILL_ROUNDS {
        let mut relay = spawn_relay(&config);
        let lifetime = random.random_range(200..800);
        tokio::time::sleep(Duration::from_millis(lifetime)).await;
        relay.start_kill().unwrap();
        relay.wait().await.unwrap();
        killed_boundary = api.requests().len();
    }
    writer.await.unwrap();

    let mut relay = spawn_relay(&config);
    for _ in 0..1500 {
        let distinct: std::collections::HashSet<String> =
            received_uuids(&api.requests()).into_iter().map(|(_, uuid)| uuid).collect();
        if distinct.len() >= EVENTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = relay.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), relay.wait()).await.unwrap().unwrap();
    assert!(status.success(), "seed {seed}: the last relay did not exit cleanly");

    let mut first_seen: HashMap<String, usize> = HashMap::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for (request_index, uuid) in received_uuids(&api.requests()) {
        first_seen.entry(uuid.clone()).or_insert(request_index);
        *counts.entry(uuid).or_default() += 1;
    }
    let missing: Vec<String> =
        (0..EVENTS).map(|index| format!("m-{index}")).filter(|uuid| !counts.contains_key(uuid)).collect();
    assert!(
        missing.is_empty(),
        "seed {seed}: {} events were lost, such as {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );

    // A duplicate is an event delivered before a kill but not yet checkpointed, so its first copy
    // arrived while a relay that was later killed ran.
    let duplicates: Vec<(&String, &usize)> = counts.iter().filter(|(_, count)| **count > 1).collect();
    for (uuid, _) in &duplicates {
        assert!(
            first_seen[*uuid] < killed_boundary,
            "seed {seed}: {uuid} was delivered twice although its first delivery came after the last kill"
        );
    }
    // Re-reading from the start after each kill would repeat most events; checkpoints keep the repeats
    // to what was in flight.
    assert!(
        duplicates.len() < EVENTS / 2,
        "seed {seed}: {} of {EVENTS} events were delivered more than once",
        duplicates.len()
    );

    // After the graceful stop, the checkpoint covers the whole file.
    let checkpoint: serde_json::Value =
        serde_json::from_slice(&std::fs::read(directory.path().join("state/checkpoints/logs.json")).unwrap()).unwrap();
    let length = std::fs::metadata(&log_path).unwrap().len();
    assert_eq!(checkpoint["files"][0]["offset"], serde_json::json!(length), "seed {seed}: the final checkpoint");
    println!("seed {seed}: {} events, {} duplicates over {KILL_ROUNDS} kills", EVENTS, duplicates.len());
}
