//! Tests of the `optimizely_user_deletion` sink against a local server on 127.0.0.1 that plays the
//! Subject Access Request API.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{RecordingServer, Reply};

use optimizely_relay::ack::{AckReceiver, EventFinalizer, EventStatus};
use optimizely_relay::event::{DeletionRequest, Event, Payload};
use optimizely_relay::sinks::optimizely_user_deletion::{
    DeletionClient, DeletionOutcome, OptimizelyUserDeletionConfig, OptimizelyUserDeletionSink, Reason,
};
use optimizely_relay::topology::{buffer, BufferConfig, BufferSender, Output, Unconnected};

const COMPONENT_ID: &str = "del";
const TOKEN: &str = "pat-SINK-TEST-9d2e7Kq";
const PATH: &str = "/v2/subject-access-requests";

/// Records the final status of each event by cookie.
#[derive(Default)]
struct Acks(Mutex<BTreeMap<u64, EventStatus>>);

impl AckReceiver for Acks {
    fn acknowledge(&self, cookie: u64, status: EventStatus) {
        self.0.lock().unwrap().insert(cookie, status);
    }
}

impl Acks {
    fn statuses(&self) -> BTreeMap<u64, EventStatus> {
        self.0.lock().unwrap().clone()
    }
}

fn deletion(acks: &Arc<Acks>, cookie: u64, identifier: &str) -> Event {
    let message = json!({"type": "delete", "userId": identifier, "messageId": format!("m-{cookie}")});
    let payload = Payload::Deletion(DeletionRequest { identifier: identifier.to_owned(), message });
    Event::with_finalizer(payload, EventFinalizer::new(acks.clone(), cookie))
}

/// Creates one deletion per identifier, with cookies 0, 1, 2, ... in order.
fn deletions(acks: &Arc<Acks>, identifiers: &[&str]) -> Vec<Event> {
    (0..).zip(identifiers).map(|(cookie, identifier)| deletion(acks, cookie, identifier)).collect()
}

/// Returns a sink configuration for `server` with fast retries; `extra` adds top-level settings.
fn config_toml(server: &RecordingServer, extra: &str) -> String {
    config_with_request(server, extra, "")
}

/// Returns a sink configuration for `server` with fast retries. `extra` adds top-level settings and
/// `request` adds settings to the `[request]` table.
fn config_with_request(server: &RecordingServer, extra: &str, request: &str) -> String {
    format!(
        r#"
endpoint = "{endpoint}"
personal_access_token = "{TOKEN}"
{extra}

[request]
timeout_secs = 5
retry_initial_backoff_secs = 0.01
{request}
"#,
        endpoint = server.url(PATH),
    )
}

fn expected_body(identifier: &str, identifier_type: &str) -> String {
    format!(
        r#"{{"data_type":"visitor","identifier":"{identifier}","identifier_type":"{identifier_type}","request_type":"delete"}}"#
    )
}

/// A running sink with its input and the records it sent to its dead-letter output.
struct Harness {
    input: BufferSender,
    sink: tokio::task::JoinHandle<()>,
    dead_letters: tokio::task::JoinHandle<Vec<Event>>,
}

impl Harness {
    fn start(config_toml: &str) -> Harness {
        let config: OptimizelyUserDeletionConfig = toml::from_str(config_toml).expect("valid sink configuration");
        let sink = OptimizelyUserDeletionSink::new(COMPONENT_ID.to_owned(), &config).expect("sink builds");

        let (input, input_receiver) = buffer(COMPONENT_ID, BufferConfig::default());
        let (dropped_sender, mut dropped_receiver) = buffer("dead_letters", BufferConfig::default());
        let dropped = Output::new(
            format!("{COMPONENT_ID}.dropped"),
            vec![dropped_sender],
            Unconnected::Finalize(EventStatus::DeadLettered),
        );
        let sink = tokio::spawn(sink.run(input_receiver, dropped));
        let dead_letters = tokio::spawn(async move {
            let mut records = Vec::new();
            while let Some(chunk) = dropped_receiver.recv().await {
                records.extend(chunk);
            }
            records
        });
        Harness { input, sink, dead_letters }
    }

    async fn send(&self, events: Vec<Event>) {
        assert!(self.input.send(events).await.is_ok(), "sink is running");
    }

    /// Closes the input, waits for the sink to return and returns the dead-letter records as JSON.
    ///
    /// Each record is finalized as `Delivered`, as the sink writing the dead-letter output would.
    async fn finish(self) -> Vec<Value> {
        drop(self.input);
        tokio::time::timeout(Duration::from_secs(20), self.sink)
            .await
            .expect("sink returns within 20 seconds")
            .expect("sink task does not panic");
        let records = self.dead_letters.await.expect("collector does not panic");
        records
            .into_iter()
            .map(|event| {
                let record = event.payload.to_json();
                event.finalize(EventStatus::Delivered);
                record
            })
            .collect()
    }
}

/// Runs the sink over `chunks` until the input closes; returns the dead-letter records.
async fn run_sink(config_toml: &str, chunks: Vec<Vec<Event>>) -> Vec<Value> {
    let harness = Harness::start(config_toml);
    for chunk in chunks {
        harness.send(chunk).await;
    }
    harness.finish().await
}

/// Waits until `server` has received `count` requests, for at most 10 seconds.
async fn wait_for_requests(server: &RecordingServer, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.requests().len() < count {
        assert!(Instant::now() < deadline, "the server received {} of {count} requests", server.requests().len());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn statuses(pairs: &[(u64, EventStatus)]) -> BTreeMap<u64, EventStatus> {
    pairs.iter().copied().collect()
}

// ---------------------------------------------------------------------------------------------------
// Requests and outcomes
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn created_request_has_api_shape() {
    let server = RecordingServer::start().await;
    server.script([Reply::status(201)]);
    let acks = Arc::new(Acks::default());

    let dead_letters = run_sink(&config_toml(&server, ""), vec![deletions(&acks, &["user-1"])]).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, PATH);
    assert_eq!(request.header("authorization"), Some(format!("Bearer {TOKEN}")));
    assert_eq!(request.header("content-type").as_deref(), Some("application/json"));
    assert_eq!(String::from_utf8(request.body.clone()).unwrap(), expected_body("user-1", "fullstack_id"));
    assert!(dead_letters.is_empty(), "{dead_letters:#?}");
    assert_eq!(acks.statuses(), statuses(&[(0, EventStatus::Delivered)]));
}

#[tokio::test]
async fn identifier_type_setting_sent() {
    let server = RecordingServer::start().await;
    server.reply_always(Reply::status(201));
    let acks = Arc::new(Acks::default());

    run_sink(&config_toml(&server, "identifier_type = \"email\""), vec![deletions(&acks, &["ada@example.com"])]).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(String::from_utf8(requests[0].body.clone()).unwrap(), expected_body("ada@example.com", "email"));
}

#[tokio::test]
async fn any_2xx_counts_as_delivered() {
    let server = RecordingServer::start().await;
    server.script([Reply::status(200), Reply::status(202), Reply::status(204)]);
    let acks = Arc::new(Acks::default());

    let dead_letters =
        run_sink(&config_with_request(&server, "", "concurrency = 1"), vec![deletions(&acks, &["a", "b", "c"])]).await;

    assert_eq!(server.requests().len(), 3);
    assert!(dead_letters.is_empty(), "{dead_letters:#?}");
    let delivered = statuses(&[(0, EventStatus::Delivered), (1, EventStatus::Delivered), (2, EventStatus::Delivered)]);
    assert_eq!(acks.statuses(), delivered);
}

#[tokio::test]
async fn bad_request_dead_lettered_with_body() {
    let server = RecordingServer::start().await;
    let body = format!(r#"{{"code":"invalid_identifier","message":"bad"}}{}"#, "x".repeat(2000));
    server.script([Reply::Status(400, Vec::new(), body.clone())]);
    let acks = Arc::new(Acks::default());

    let dead_letters = run_sink(&config_toml(&server, ""), vec![deletions(&acks, &["user-2"])]).await;

    assert_eq!(server.requests().len(), 1, "a 400 is not retried");
    assert_eq!(dead_letters.len(), 1);
    let record = &dead_letters[0];
    assert_eq!(record["reason"], json!("request_rejected"));
    assert_eq!(record["component"], json!(COMPONENT_ID));
    assert_eq!(record["event"], json!({"identifier": "user-2"}));
    assert_eq!(record["status"], json!(400));
    assert_eq!(record["attempts"], json!(1));
    assert_eq!(record["response"], json!(body[..1024]), "the response is truncated to 1 KiB");
    let message = record["message"].as_str().unwrap();
    assert!(message.starts_with("400 Bad Request from the Subject Access Request API"), "{message}");
    assert!(message.contains(r#"{"code":"invalid_identifier","message":"bad"}"#), "{message}");
    assert_eq!(acks.statuses(), statuses(&[(0, EventStatus::DeadLettered)]));
}

#[tokio::test]
async fn unauthorized_statuses_name_the_check() {
    for (status, phrase, check) in
        [(401, "401 Unauthorized", "`personal_access_token`"), (403, "403 Forbidden", "permissions")]
    {
        let server = RecordingServer::start().await;
        server.reply_always(Reply::status(status));
        let acks = Arc::new(Acks::default());

        let dead_letters = run_sink(&config_toml(&server, ""), vec![deletions(&acks, &["user-3"])]).await;

        assert_eq!(server.requests().len(), 1, "{status} is not retried");
        assert_eq!(dead_letters.len(), 1);
        let record = &dead_letters[0];
        assert_eq!(record["reason"], json!("request_unauthorized"), "{status}");
        assert_eq!(record["status"], json!(status));
        assert_eq!(record["event"], json!({"identifier": "user-3"}));
        let message = record["message"].as_str().unwrap();
        assert!(message.starts_with(phrase), "{message}");
        assert!(message.contains(check), "{message}");
        assert!(!record.to_string().contains(TOKEN), "{record}");
        assert_eq!(acks.statuses(), statuses(&[(0, EventStatus::DeadLettered)]));
    }
}

#[tokio::test]
async fn too_many_requests_honours_retry_after() {
    let server = RecordingServer::start().await;
    let retry_after = vec![("retry-after".to_owned(), "1".to_owned())];
    server.script([Reply::Status(429, retry_after, String::new()), Reply::status(201)]);
    let acks = Arc::new(Acks::default());

    let started = Instant::now();
    let dead_letters = run_sink(&config_toml(&server, ""), vec![deletions(&acks, &["user-4"])]).await;
    let elapsed = started.elapsed();

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body, requests[1].body, "a retry sends the same body");
    // The backoff alone waits at most 0.01 seconds, so a wait of about a second is the Retry-After.
    assert!(elapsed >= Duration::from_millis(950), "retried after {elapsed:?}");
    assert!(dead_letters.is_empty(), "{dead_letters:#?}");
    assert_eq!(acks.statuses(), statuses(&[(0, EventStatus::Delivered)]));
}

#[tokio::test]
async fn server_error_retried_then_delivered() {
    let server = RecordingServer::start().await;
    server.script([Reply::status(500), Reply::status(201)]);
    let acks = Arc::new(Acks::default());

    let dead_letters = run_sink(&config_toml(&server, ""), vec![deletions(&acks, &["user-5"])]).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(String::from_utf8(requests[1].body.clone()).unwrap(), expected_body("user-5", "fullstack_id"));
    assert_eq!(requests[1].header("authorization"), Some(format!("Bearer {TOKEN}")));
    assert!(dead_letters.is_empty(), "{dead_letters:#?}");
    assert_eq!(acks.statuses(), statuses(&[(0, EventStatus::Delivered)]));
}

#[tokio::test]
async fn not_implemented_not_retried() {
    let server = RecordingServer::start().await;
    server.reply_always(Reply::status(501));
    let acks = Arc::new(Acks::default());

    let dead_letters = run_sink(&config_toml(&server, ""), vec![deletions(&acks, &["user-6"])]).await;

    assert_eq!(server.requests().len(), 1);
    assert_eq!(dead_letters[0]["reason"], json!("request_rejected"));
    assert_eq!(dead_letters[0]["status"], json!(501));
}

#[tokio::test]
async fn exhausted_retries_dead_lettered() {
    let server = RecordingServer::start().await;
    server.reply_always(Reply::status(503));
    let acks = Arc::new(Acks::default());
    let config = config_with_request(&server, "", "retry_attempts = 2");

    let dead_letters = run_sink(&config, vec![deletions(&acks, &["user-7"])]).await;

    assert_eq!(server.requests().len(), 3, "the first attempt and 2 retries");
    assert_eq!(dead_letters.len(), 1);
    let record = &dead_letters[0];
    assert_eq!(record["reason"], json!("retries_exhausted"));
    assert_eq!(record["status"], json!(503));
    assert_eq!(record["attempts"], json!(3));
    let message = record["message"].as_str().unwrap();
    assert!(message.starts_with("503 Service Unavailable after 3 attempts"), "{message}");
    assert_eq!(acks.statuses(), statuses(&[(0, EventStatus::DeadLettered)]));
}

#[tokio::test]
async fn connection_errors_retried_then_dead_lettered() {
    // A port that was just free on 127.0.0.1 refuses connections once its listener is closed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let acks = Arc::new(Acks::default());
    let config = format!(
        "endpoint = \"http://{address}{PATH}\"\npersonal_access_token = \"{TOKEN}\"\n[request]\nretry_attempts = 1\nretry_initial_backoff_secs = 0.01\nretry_max_backoff_secs = 0.01\n"
    );

    let dead_letters = run_sink(&config, vec![deletions(&acks, &["user-8"])]).await;

    assert_eq!(dead_letters.len(), 1);
    let record = &dead_letters[0];
    assert_eq!(record["reason"], json!("retries_exhausted"));
    assert_eq!(record["status"], Value::Null);
    assert_eq!(record["attempts"], json!(2));
    assert!(record["error"].as_str().unwrap().starts_with("connection failed"), "{record}");
    assert!(!record.to_string().contains(TOKEN), "{record}");
    assert_eq!(acks.statuses(), statuses(&[(0, EventStatus::DeadLettered)]));
}

#[tokio::test]
async fn timeout_retried_then_delivered() {
    let server = RecordingServer::start().await;
    server.script([Reply::Stall(Duration::from_secs(3)), Reply::status(201)]);
    let acks = Arc::new(Acks::default());
    let config = config_toml(&server, "").replace("timeout_secs = 5", "timeout_secs = 0.5");

    let dead_letters = run_sink(&config, vec![deletions(&acks, &["user-9"])]).await;

    assert_eq!(server.requests().len(), 2);
    assert!(dead_letters.is_empty(), "{dead_letters:#?}");
    assert_eq!(acks.statuses(), statuses(&[(0, EventStatus::Delivered)]));
}

#[tokio::test]
async fn echoed_token_removed_from_record() {
    let server = RecordingServer::start().await;
    let body = format!("invalid header: Authorization: Bearer {TOKEN}");
    server.script([Reply::Status(400, Vec::new(), body)]);
    let acks = Arc::new(Acks::default());

    let dead_letters = run_sink(&config_toml(&server, ""), vec![deletions(&acks, &["user-10"])]).await;

    let record = dead_letters[0].to_string();
    assert!(!record.contains(TOKEN), "{record}");
    assert_eq!(dead_letters[0]["response"], json!("invalid header: Authorization: Bearer [redacted]"));
}

#[tokio::test]
async fn overlong_identifier_never_sent() {
    let server = RecordingServer::start().await;
    let acks = Arc::new(Acks::default());
    let identifier = "u".repeat(356);

    let dead_letters = run_sink(&config_toml(&server, ""), vec![deletions(&acks, &[&identifier])]).await;

    assert!(server.requests().is_empty());
    assert_eq!(dead_letters[0]["reason"], json!("invalid_identifier"));
    assert_eq!(dead_letters[0]["attempts"], json!(0));
    assert_eq!(dead_letters[0]["event"], json!({"identifier": identifier}));
    assert_eq!(acks.statuses(), statuses(&[(0, EventStatus::DeadLettered)]));
}

#[tokio::test]
async fn conversion_input_dead_lettered() {
    let server = RecordingServer::start().await;
    let acks = Arc::new(Acks::default());
    let message = Event::with_finalizer(
        Payload::Message(json!({"type": "track"})),
        EventFinalizer::new(acks.clone() as Arc<dyn AckReceiver>, 0),
    );

    let dead_letters = run_sink(&config_toml(&server, ""), vec![vec![message]]).await;

    assert!(server.requests().is_empty());
    assert_eq!(dead_letters[0]["reason"], json!("unsupported_event"));
    assert_eq!(acks.statuses(), statuses(&[(0, EventStatus::DeadLettered)]));
}

// ---------------------------------------------------------------------------------------------------
// Dedupe window and concurrency
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn duplicate_in_flight_shares_success() {
    let server = RecordingServer::start().await;
    server.reply_always(Reply::status(201));
    let acks = Arc::new(Acks::default());

    let dead_letters =
        run_sink(&config_toml(&server, ""), vec![deletions(&acks, &["user-1", "user-1", "user-2"])]).await;

    let mut bodies: Vec<String> =
        server.requests().iter().map(|request| String::from_utf8(request.body.clone()).unwrap()).collect();
    bodies.sort();
    assert_eq!(bodies, vec![expected_body("user-1", "fullstack_id"), expected_body("user-2", "fullstack_id")]);
    assert!(dead_letters.is_empty(), "{dead_letters:#?}");
    let expected = statuses(&[(0, EventStatus::Delivered), (1, EventStatus::Skipped), (2, EventStatus::Delivered)]);
    assert_eq!(acks.statuses(), expected);
}

#[tokio::test]
async fn duplicate_after_success_skipped() {
    let server = RecordingServer::start().await;
    server.reply_always(Reply::status(201));
    let acks = Arc::new(Acks::default());
    let harness = Harness::start(&config_toml(&server, ""));

    harness.send(vec![deletion(&acks, 0, "user-1")]).await;
    wait_for_requests(&server, 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    harness.send(vec![deletion(&acks, 1, "user-1")]).await;
    let dead_letters = harness.finish().await;

    assert_eq!(server.requests().len(), 1);
    assert!(dead_letters.is_empty(), "{dead_letters:#?}");
    assert_eq!(acks.statuses(), statuses(&[(0, EventStatus::Delivered), (1, EventStatus::Skipped)]));
}

#[tokio::test]
async fn duplicate_in_flight_shares_failure() {
    let server = RecordingServer::start().await;
    server.reply_always(Reply::status(403));
    let acks = Arc::new(Acks::default());

    let dead_letters = run_sink(&config_toml(&server, ""), vec![deletions(&acks, &["user-1", "user-1"])]).await;

    assert_eq!(server.requests().len(), 1);
    assert_eq!(dead_letters.len(), 2, "each event gets its own record");
    for record in &dead_letters {
        assert_eq!(record["reason"], json!("request_unauthorized"));
        assert_eq!(record["event"], json!({"identifier": "user-1"}));
    }
    assert_eq!(acks.statuses(), statuses(&[(0, EventStatus::DeadLettered), (1, EventStatus::DeadLettered)]));
}

#[tokio::test]
async fn failed_identifier_sent_again() {
    let server = RecordingServer::start().await;
    server.script([Reply::status(403), Reply::status(201)]);
    let acks = Arc::new(Acks::default());
    let harness = Harness::start(&config_toml(&server, ""));

    harness.send(vec![deletion(&acks, 0, "user-1")]).await;
    wait_for_requests(&server, 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    harness.send(vec![deletion(&acks, 1, "user-1")]).await;
    let dead_letters = harness.finish().await;

    assert_eq!(server.requests().len(), 2, "a failed deletion is not remembered, so a replay is sent");
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(acks.statuses(), statuses(&[(0, EventStatus::DeadLettered), (1, EventStatus::Delivered)]));
}

#[tokio::test]
async fn window_expiry_sends_again() {
    let server = RecordingServer::start().await;
    server.reply_always(Reply::status(201));
    let acks = Arc::new(Acks::default());
    let harness = Harness::start(&config_toml(&server, "dedupe_window_secs = 0.3"));

    harness.send(vec![deletion(&acks, 0, "user-1")]).await;
    wait_for_requests(&server, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    harness.send(vec![deletion(&acks, 1, "user-1")]).await;
    harness.finish().await;

    assert_eq!(server.requests().len(), 2);
    assert_eq!(acks.statuses(), statuses(&[(0, EventStatus::Delivered), (1, EventStatus::Delivered)]));
}

#[tokio::test]
async fn zero_window_sends_every_request() {
    let server = RecordingServer::start().await;
    server.reply_always(Reply::status(201));
    let acks = Arc::new(Acks::default());

    run_sink(&config_toml(&server, "dedupe_window_secs = 0"), vec![deletions(&acks, &["user-1", "user-1"])]).await;

    assert_eq!(server.requests().len(), 2);
    assert_eq!(acks.statuses(), statuses(&[(0, EventStatus::Delivered), (1, EventStatus::Delivered)]));
}

#[tokio::test]
async fn concurrency_bounds_requests_in_flight() {
    let server = RecordingServer::start().await;
    server.reply_always(Reply::Stall(Duration::from_millis(300)));
    let acks = Arc::new(Acks::default());

    let started = Instant::now();
    run_sink(&config_with_request(&server, "", "concurrency = 1"), vec![deletions(&acks, &["a", "b", "c"])]).await;
    let one_at_a_time = started.elapsed();

    let started = Instant::now();
    run_sink(&config_with_request(&server, "", "concurrency = 3"), vec![deletions(&acks, &["d", "e", "f"])]).await;
    let three_at_a_time = started.elapsed();

    assert_eq!(server.requests().len(), 6);
    assert!(one_at_a_time >= Duration::from_millis(900), "three stalled requests took {one_at_a_time:?}");
    assert!(three_at_a_time < Duration::from_millis(900), "three parallel requests took {three_at_a_time:?}");
}

// ---------------------------------------------------------------------------------------------------
// The client without the sink
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn client_returns_status_and_attempts() {
    let server = RecordingServer::start().await;
    server.script([Reply::status(502), Reply::status(201)]);
    let config: OptimizelyUserDeletionConfig = toml::from_str(&config_toml(&server, "")).unwrap();
    let client = DeletionClient::new(COMPONENT_ID.to_owned(), &config).unwrap();

    let outcome = client.delete("user-1").await;

    assert_eq!(outcome, DeletionOutcome::Deleted { status: 201, attempts: 2 });
    assert!(!format!("{client:?}").contains(TOKEN), "{client:?}");
}

#[tokio::test]
async fn client_failure_names_reason() {
    let server = RecordingServer::start().await;
    server.script([Reply::status(403)]);
    let config: OptimizelyUserDeletionConfig = toml::from_str(&config_toml(&server, "")).unwrap();
    let client = DeletionClient::new(COMPONENT_ID.to_owned(), &config).unwrap();

    let DeletionOutcome::Failed(failure) = client.delete("user-1").await else { panic!("a 403 is a failure") };

    assert_eq!(failure.reason, Reason::Unauthorized);
    assert_eq!(failure.status, Some(403));
    assert_eq!(failure.attempts, 1);
}
