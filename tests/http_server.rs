//! The `http_server` source through the real binary, with a local Event API stand-in.

mod support;

use std::io::Write;
use std::time::Duration;

use serde_json::{json, Value};
use support::{free_port, read_json_lines, wait_for_port, write_file, RecordingServer, Reply};

const WRITE_KEY: &str = "wk-test-5Rt8-secret";
const BEARER: &str = "shipper-token-Q2x7";

/// A relay with an `http_server` source, the `optimizely` transform and the Event API sink.
struct Relay {
    child: tokio::process::Child,
    port: u16,
    directory: tempfile::TempDir,
    client: reqwest::Client,
}

impl Relay {
    async fn start(api: &RecordingServer, source_options: &str, sink_options: &str) -> Relay {
        let port = free_port();
        let directory = tempfile::tempdir().unwrap();
        let config = write_file(
            directory.path(),
            "relay.toml",
            &format!(
                r#"
shutdown_timeout_secs = 5

[sources.http]
type = "http_server"
address = "127.0.0.1:{port}"
write_keys = ["{WRITE_KEY}"]
{source_options}

[transforms.opt]
type = "optimizely"
inputs = ["http"]
revenue_unit = "dollars"
[transforms.opt.datafile]
path = "{datafile}"
[transforms.opt.event_keys]
"Order Completed" = "order_completed"

[sinks.api]
type = "optimizely_events"
inputs = ["opt"]
endpoint = "{endpoint}"
batch.timeout_secs = 0.05
request.retry_initial_backoff_secs = 0.01
{sink_options}

[sinks.dead_letters]
type = "file"
inputs = ["opt.dropped", "api.dropped"]
path = "dead.ndjson"
"#,
                datafile = support::crate_root().join("config-examples/quickstart-datafile.json").display(),
                endpoint = api.url("/v1/events"),
            ),
        );
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_optimizely-relay"))
            .args(["--log-level", "debug", "run", "--config", config.to_str().unwrap()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        wait_for_port(port).await;
        Relay { child, port, directory, client: reqwest::Client::new() }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response =
            self.client.post(self.url(path)).basic_auth(WRITE_KEY, None::<&str>).body(body).send().await.unwrap();
        read_response(response).await
    }

    async fn post_plain(&self, body: impl Into<reqwest::Body>, gzip: bool) -> (u16, Value) {
        let mut request = self.client.post(self.url("/events")).bearer_auth(BEARER).body(body);
        if gzip {
            request = request.header("content-encoding", "gzip");
        }
        read_response(request.send().await.unwrap()).await
    }

    /// Stops the relay with SIGTERM and returns its standard error. The relay's directory is removed.
    async fn stop(self) -> String {
        self.stop_keeping_directory().await.0
    }

    /// Stops the relay with SIGTERM and returns its standard error and its directory.
    async fn stop_keeping_directory(self) -> (String, tempfile::TempDir) {
        let pid = self.child.id().unwrap().to_string();
        std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let output =
            tokio::time::timeout(Duration::from_secs(30), self.child.wait_with_output()).await.unwrap().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "the relay failed:\n{stderr}");
        assert!(!stderr.contains(WRITE_KEY), "the write key leaked into the log:\n{stderr}");
        assert!(!stderr.contains(BEARER), "the bearer token leaked into the log:\n{stderr}");
        (stderr, self.directory)
    }
}

async fn read_response(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap_or_default();
    let body = serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null);
    (status, body)
}

fn track(user: &str, message_id: &str) -> Value {
    json!({"type": "track", "event": "Order Completed", "userId": user, "messageId": message_id,
           "timestamp": "2026-12-01T10:00:00Z", "properties": {"revenue": "4.35"}})
}

/// Waits until the Event API stand-in has `count` conversions; returns them by uuid order.
async fn conversions(api: &RecordingServer, count: usize) -> Vec<Value> {
    for _ in 0..500 {
        let mut visitors: Vec<Value> = api
            .requests()
            .iter()
            .flat_map(|request| request.json()["visitors"].as_array().cloned().unwrap_or_default())
            .collect();
        if visitors.len() >= count {
            visitors
                .sort_by_key(|visitor| visitor["snapshots"][0]["events"][0]["uuid"].as_str().unwrap_or("").to_owned());
            return visitors;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the Event API received fewer than {count} conversions");
}

fn uuids(visitors: &[Value]) -> Vec<String> {
    visitors.iter().map(|visitor| visitor["snapshots"][0]["events"][0]["uuid"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn segment_calls_delivered() {
    let api = RecordingServer::start().await;
    let relay = Relay::start(&api, "", "").await;

    let mut without_type = track("u-1", "m-1");
    without_type.as_object_mut().unwrap().remove("type");
    let (status, body) = relay.post("/v1/track", without_type.to_string()).await;
    assert_eq!((status, body), (200, json!({"success": true, "accepted": 1})));

    let batch = json!({"batch": [track("u-2", "m-2"), {"type": "identify", "userId": "u-2"}, track("u-3", "m-3")],
                       "context": {"userAgent": "batch-agent"}, "writeKey": WRITE_KEY});
    let (status, _) = relay.post("/v1/batch", batch.to_string()).await;
    assert_eq!(status, 200);

    let visitors = conversions(&api, 3).await;
    relay.stop().await;
    assert_eq!(uuids(&visitors), vec!["m-1", "m-2", "m-3"]);
    assert_eq!(visitors[0]["snapshots"][0]["events"][0]["revenue"], json!(435));
    assert_eq!(
        visitors[1]["attributes"][0],
        json!({"entity_id": "$opt_user_agent", "key": "$opt_user_agent", "type": "custom", "value": "batch-agent"})
    );
}

#[tokio::test]
async fn unknown_write_key_rejected() {
    let api = RecordingServer::start().await;
    let relay = Relay::start(&api, "", "").await;
    let client = reqwest::Client::new();

    let wrong =
        client.post(relay.url("/v1/track")).basic_auth("wrong-key", None::<&str>).body(track("u", "m").to_string());
    let (status, body) = read_response(wrong.send().await.unwrap()).await;
    assert_eq!((status, body), (401, json!({"success": false})));

    let missing = client.post(relay.url("/v1/track")).body(track("u", "m").to_string());
    assert_eq!(read_response(missing.send().await.unwrap()).await.0, 401);

    let in_body = json!({"type": "track", "event": "Order Completed", "userId": "u-9", "messageId": "m-9",
                         "timestamp": "2026-12-01T10:00:00Z", "writeKey": WRITE_KEY});
    let accepted = client.post(relay.url("/v1/track")).body(in_body.to_string());
    assert_eq!(read_response(accepted.send().await.unwrap()).await.0, 200, "a write key in the body is accepted");

    let unknown_call = relay.post("/v1/purchase", "{}").await;
    assert_eq!(unknown_call.0, 404);

    conversions(&api, 1).await;
    relay.stop().await;
    assert_eq!(api.requests().len(), 1);
}

#[tokio::test]
async fn plain_path_takes_ndjson_arrays_and_gzip() {
    let api = RecordingServer::start().await;
    let relay = Relay::start(&api, &format!("auth.bearer_token = \"{BEARER}\""), "").await;

    let ndjson = format!("{}\n\n{}\n", track("u-1", "m-1"), track("u-2", "m-2"));
    assert_eq!(relay.post_plain(ndjson, false).await, (200, json!({"success": true, "accepted": 2})));

    let array = json!([track("u-3", "m-3"), track("u-4", "m-4")]).to_string();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(array.as_bytes()).unwrap();
    assert_eq!(relay.post_plain(encoder.finish().unwrap(), true).await.0, 200);

    let malformed = format!("{}\n{{\"type\": tr\n{}\n", track("u-5", "m-5"), track("u-6", "m-6"));
    let (status, body) = relay.post_plain(malformed, false).await;
    assert_eq!(status, 400);
    assert_eq!(body["accepted"], json!(3));
    assert_eq!(body["errors"][0]["line"], json!(2));
    assert!(body["errors"][0]["message"].as_str().unwrap().starts_with("invalid JSON"), "{body}");

    let unauthorized = reqwest::Client::new().post(relay.url("/events")).body("{}").send().await.unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);

    let visitors = conversions(&api, 6).await;
    let (_, directory) = relay.stop_keeping_directory().await;
    assert_eq!(uuids(&visitors), vec!["m-1", "m-2", "m-3", "m-4", "m-5", "m-6"]);
    let dead_letters = read_json_lines(&directory.path().join("dead.ndjson"));
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(dead_letters[0]["reason"], json!("invalid_json"));
    assert_eq!(dead_letters[0]["event"], json!("{\"type\": tr"));
}

#[tokio::test]
async fn oversized_body_rejected() {
    let api = RecordingServer::start().await;
    let relay = Relay::start(&api, "max_body_bytes = 1000", "").await;

    let large = format!("{}\n", track("u", "m")).repeat(20);
    let (status, _) = relay.post_plain(large.clone(), false).await;
    assert_eq!(status, 413);

    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(large.as_bytes()).unwrap();
    let compressed = encoder.finish().unwrap();
    assert!(compressed.len() < 1000, "the compressed body fits the limit");
    let (status, body) = relay.post_plain(compressed, true).await;
    assert_eq!(status, 413);
    assert!(body["message"].as_str().unwrap().contains("after decompression"), "{body}");

    relay.stop().await;
    assert!(api.requests().is_empty());
}

#[tokio::test]
async fn full_pipeline_answers_503() {
    let api = RecordingServer::start().await;
    api.reply_always(Reply::Stall(Duration::from_secs(3)));
    let relay = Relay::start(
        &api,
        "max_body_bytes = 10000000",
        "batch.max_events = 1\nrequest.concurrency = 1\nrequest.timeout_secs = 20\nbuffer.max_events = 2",
    )
    .await;

    // The sink takes the first request and waits for its only request slot. The second fills the
    // sink's buffer, so the third blocks the transform. The fourth fills the transform's input buffer
    // of 1024 events, and the fifth finds no room.
    let lines = |prefix: &str, count: usize| -> String {
        (0..count).map(|index| format!("{}\n", track("u", &format!("{prefix}-{index}")))).collect()
    };
    for (prefix, count) in [("a", 10), ("b", 5), ("c", 1), ("d", 1024)] {
        assert_eq!(relay.post_plain(lines(prefix, count), false).await.0, 200, "request {prefix}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let response = reqwest::Client::new()
        .post(relay.url("/events"))
        .bearer_auth(BEARER)
        .body(format!("{}\n", track("u", "e-0")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "1");

    let mut child = relay.child;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

#[tokio::test]
async fn acknowledgements_report_each_event() {
    let api = RecordingServer::start().await;
    // 100 retries at most 0.2 s apart take about 10 s on average, and less than 2 s with a
    // negligible chance, so the event failing with 503 is still pending at the 2 s timeout.
    let retries = "request.retry_attempts = 100\nrequest.retry_max_backoff_secs = 0.2";
    let relay = Relay::start(&api, "acknowledgements = true\nack_timeout_secs = 2", retries).await;

    let (status, body) = relay.post("/v1/track", track("u-1", "m-1").to_string()).await;
    assert_eq!((status, body), (200, json!({"success": true, "accepted": 1})), "delivered");

    let unknown =
        json!({"type": "track", "event": "Refund Issued", "userId": "u-2", "timestamp": "2026-12-01T10:00:00Z"});
    let batch = json!({"batch": [track("u-3", "m-3"), unknown, {"type": "page", "userId": "u"}]});
    let (status, body) = relay.post("/v1/batch", batch.to_string()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["events"], json!([{"index": 1, "status": "dead_lettered", "reason": "unknown_event_key"}]));

    api.script([Reply::status(400)]);
    let (status, body) = relay.post("/v1/track", track("u-4", "m-4").to_string()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["events"], json!([{"index": 0, "status": "dead_lettered", "reason": "event_rejected"}]));

    api.reply_always(Reply::status(503));
    let response = relay
        .client
        .post(relay.url("/v1/track"))
        .basic_auth(WRITE_KEY, None::<&str>)
        .body(track("u-5", "m-5").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["events"][0]["status"], json!("pending"));

    api.reply_always(Reply::status(204));
    relay.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_request_in_flight() {
    let api = RecordingServer::start().await;
    api.script([Reply::Stall(Duration::from_millis(800))]);
    let relay = Relay::start(&api, "acknowledgements = true", "").await;

    let client = relay.client.clone();
    let url = relay.url("/v1/track");
    let request = tokio::spawn(async move {
        let response = client
            .post(url)
            .basic_auth(WRITE_KEY, None::<&str>)
            .body(track("u-1", "m-1").to_string())
            .send()
            .await
            .unwrap();
        read_response(response).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let port = relay.port;
    let stderr = relay.stop().await;

    assert_eq!(request.await.unwrap(), (200, json!({"success": true, "accepted": 1})));
    assert!(stderr.contains("summary: received=1 sent=1"), "{stderr}");
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err(), "the port is still open");
}

#[tokio::test]
async fn segment_python_library_delivers() {
    let library = support::segment_python_library();
    let api = RecordingServer::start().await;
    let relay = Relay::start(&api, "", "").await;

    for gzip in ["0", "1"] {
        let output = tokio::process::Command::new("python3")
            .arg(support::crate_root().join("tests/segment_client/send_events.py"))
            .args([relay.url(""), WRITE_KEY.to_owned(), gzip.to_owned()])
            .env("PYTHONPATH", &library)
            .output()
            .await
            .unwrap();
        assert!(output.status.success(), "the Segment client failed: {}", String::from_utf8_lossy(&output.stderr));
    }

    let visitors = conversions(&api, 6).await;
    relay.stop().await;
    let mut users: Vec<&str> = visitors.iter().map(|visitor| visitor["visitor_id"].as_str().unwrap()).collect();
    users.sort();
    assert_eq!(
        users,
        vec!["python-user-0", "python-user-0", "python-user-1", "python-user-1", "python-user-2", "python-user-2"]
    );
    for visitor in &visitors {
        let event = &visitor["snapshots"][0]["events"][0];
        assert_eq!(event["key"], json!("order_completed"));
        assert_eq!(event["revenue"], json!(1999));
        assert_eq!(event["tags"], json!({"plan": "pro"}));
        assert_eq!(
            visitor["attributes"][0],
            json!({"entity_id": "40000001", "key": "plan", "type": "custom", "value": "pro"})
        );
    }
}
