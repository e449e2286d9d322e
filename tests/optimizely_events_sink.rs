//! Tests of the `optimizely_events` sink against a scripted HTTP server on 127.0.0.1.
//!
//! The server records every request (method, path, headers, body bytes, arrival time) and responds as
//! the test's script returns: a status, a status with a header or a body, a stall, or a closed connection.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flate2::read::GzDecoder;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use optimizely_relay::ack::{AckReceiver, EventFinalizer, EventStatus};
use optimizely_relay::event::{
    BatchKey, Conversion, Event, Payload, Snapshot, SnapshotEvent, Tags, Visitor, VisitorAttribute,
};
use optimizely_relay::sinks::optimizely_events::{BuildError, OptimizelyEventsConfig, OptimizelyEventsSink};
use optimizely_relay::topology::{buffer, BufferConfig, BufferSender, Output, Unconnected};

const COMPONENT_ID: &str = "events_out";

/// Retry settings that keep failing tests fast.
const FAST_RETRIES: &str = r#"
[request]
timeout_secs = 5
retry_initial_backoff_secs = 0.01
retry_max_backoff_secs = 0.05
"#;

// ---------------------------------------------------------------------------------------------------
// Scripted HTTP server
// ---------------------------------------------------------------------------------------------------

/// One request as the server received it.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
    received_at: Instant,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Returns the body with any gzip encoding removed.
    fn decoded_body(&self) -> Vec<u8> {
        if self.header("content-encoding") != Some("gzip") {
            return self.body.clone();
        }
        let mut decoded = Vec::new();
        GzDecoder::new(&self.body[..]).read_to_end(&mut decoded).expect("body is valid gzip");
        decoded
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.decoded_body()).expect("body is JSON")
    }

    fn visitor_ids(&self) -> Vec<String> {
        visitor_ids(&self.json())
    }
}

/// The server's response to one request.
enum Reply {
    Status(u16),
    StatusWithHeader(u16, &'static str, String),
    StatusWithBody(u16, String),
    /// Closes the connection without any response.
    Close,
    /// Waits this long, then responds with 204.
    Stall(Duration),
}

type Script = dyn Fn(&Recorded, usize) -> Reply + Send + Sync;

struct ServerState {
    script: Box<Script>,
    requests: Mutex<Vec<Recorded>>,
    active: AtomicUsize,
    max_active: AtomicUsize,
}

struct TestServer {
    url: String,
    state: Arc<ServerState>,
}

impl TestServer {
    /// Starts a server on 127.0.0.1 that responds to request number `index` (from 0) with
    /// `script(request, index)`.
    async fn start(script: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
        let address = listener.local_addr().expect("local address");
        let state = Arc::new(ServerState {
            script: Box::new(script),
            requests: Mutex::new(Vec::new()),
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(0),
        });

        let accept_state = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_connection(stream, accept_state.clone()));
            }
        });
        TestServer { url: format!("http://{address}/v1/events"), state }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().expect("not poisoned").clone()
    }

    fn max_active(&self) -> usize {
        self.state.max_active.load(Ordering::SeqCst)
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, state: Arc<ServerState>) {
    // A handler requests the connection to be closed through this channel. Dropping the connection
    // future below closes the socket with no response written.
    let (close_sender, close_receiver) = oneshot::channel::<()>();
    let close_sender = Arc::new(Mutex::new(Some(close_sender)));
    let service = service_fn(move |request| handle(state.clone(), close_sender.clone(), request));
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        _ = close_receiver => {}
    }
}

async fn handle(
    state: Arc<ServerState>,
    close_sender: Arc<Mutex<Option<oneshot::Sender<()>>>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let active = state.active.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_active.fetch_max(active, Ordering::SeqCst);

    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    let body = request.into_body().collect().await.map(|body| body.to_bytes().to_vec()).unwrap_or_default();
    let recorded = Recorded { method, path, headers, body, received_at: Instant::now() };
    let index = {
        let mut requests = state.requests.lock().expect("not poisoned");
        requests.push(recorded.clone());
        requests.len() - 1
    };

    let reply = (state.script)(&recorded, index);
    let response = match reply {
        Reply::Status(status) => response(status, None, String::new()),
        Reply::StatusWithHeader(status, name, value) => response(status, Some((name, value)), String::new()),
        Reply::StatusWithBody(status, body) => response(status, None, body),
        Reply::Stall(duration) => {
            tokio::time::sleep(duration).await;
            response(204, None, String::new())
        }
        Reply::Close => {
            if let Some(sender) = close_sender.lock().expect("not poisoned").take() {
                let _ = sender.send(());
            }
            state.active.fetch_sub(1, Ordering::SeqCst);
            return std::future::pending().await;
        }
    };
    state.active.fetch_sub(1, Ordering::SeqCst);
    Ok(response)
}

fn response(status: u16, header: Option<(&'static str, String)>, body: String) -> Response<Full<Bytes>> {
    let mut builder = Response::builder().status(status);
    if let Some((name, value)) = header {
        builder = builder.header(name, value);
    }
    builder.body(Full::new(Bytes::from(body))).expect("valid response")
}

// ---------------------------------------------------------------------------------------------------
// Events, acknowledgements and the sink under test
// ---------------------------------------------------------------------------------------------------

/// Records the final status of each event by cookie.
#[derive(Default)]
struct Acks(Mutex<BTreeMap<u64, EventStatus>>);

impl AckReceiver for Acks {
    fn acknowledge(&self, cookie: u64, status: EventStatus) {
        self.0.lock().expect("not poisoned").insert(cookie, status);
    }
}

impl Acks {
    fn statuses(&self) -> BTreeMap<u64, EventStatus> {
        self.0.lock().expect("not poisoned").clone()
    }
}

fn key(revision: &str, endpoint: &str) -> Arc<BatchKey> {
    Arc::new(BatchKey {
        endpoint: endpoint.to_owned(),
        account_id: "1001".to_owned(),
        project_id: "2002".to_owned(),
        revision: revision.to_owned(),
        client_name: "optimizely-relay".to_owned(),
        client_version: "0.1.0".to_owned(),
        anonymize_ip: Some(true),
        enrich_decisions: true,
    })
}

fn visitor(id: &str, currency: &str) -> Visitor {
    let mut tags = Map::new();
    tags.insert("currency".to_owned(), json!(currency));
    Visitor {
        visitor_id: id.to_owned(),
        attributes: vec![VisitorAttribute {
            entity_id: "301".to_owned(),
            key: "plan".to_owned(),
            kind: "custom".into(),
            value: json!("pro"),
        }],
        snapshots: vec![Snapshot {
            decisions: Vec::new(),
            events: vec![SnapshotEvent {
                entity_id: "501".to_owned(),
                key: "purchase".to_owned(),
                timestamp: 1_700_000_000_000,
                uuid: format!("uuid-{id}"),
                revenue: Some(1999),
                value: None,
                tags: Tags::from_map(&tags),
            }],
        }],
    }
}

/// Creates a conversion for visitor `id` whose acknowledgement goes to `acks` with the given cookie.
fn conversion(acks: &Arc<Acks>, cookie: u64, key: &Arc<BatchKey>, id: &str) -> Event {
    let payload = Payload::Conversion(Conversion { batch_key: key.clone(), visitor: visitor(id, "EUR") });
    Event::with_finalizer(payload, EventFinalizer::new(acks.clone(), cookie))
}

/// The visitor entry that `visitor(id, "EUR")` must become on the wire.
fn expected_visitor(id: &str) -> Value {
    json!({
        "visitor_id": id,
        "attributes": [{"entity_id": "301", "key": "plan", "type": "custom", "value": "pro"}],
        "snapshots": [{
            "decisions": [],
            "events": [{
                "entity_id": "501",
                "key": "purchase",
                "timestamp": 1_700_000_000_000_i64,
                "uuid": format!("uuid-{id}"),
                "revenue": 1999,
                "tags": {"currency": "EUR"}
            }]
        }]
    })
}

/// The request body for the visitors `ids` under revision `revision`.
fn expected_body(revision: &str, ids: &[&str]) -> Value {
    let visitors: Vec<Value> = ids.iter().map(|id| expected_visitor(id)).collect();
    json!({
        "account_id": "1001",
        "project_id": "2002",
        "revision": revision,
        "client_name": "optimizely-relay",
        "client_version": "0.1.0",
        "anonymize_ip": true,
        "enrich_decisions": true,
        "visitors": visitors
    })
}

/// Returns the encoded length of a body; it does not depend on key order.
fn encoded_len(body: &Value) -> usize {
    serde_json::to_vec(body).expect("encodable").len()
}

fn visitor_ids(body: &Value) -> Vec<String> {
    body["visitors"]
        .as_array()
        .expect("visitors is an array")
        .iter()
        .map(|visitor| visitor["visitor_id"].as_str().expect("visitor_id is a string").to_owned())
        .collect()
}

/// A running sink with its input and the records it sent to its dead-letter output.
struct Harness {
    input: BufferSender,
    sink: tokio::task::JoinHandle<()>,
    dead_letters: tokio::task::JoinHandle<Vec<Event>>,
}

impl Harness {
    fn start(config_toml: &str) -> Harness {
        let config: OptimizelyEventsConfig = toml::from_str(config_toml).expect("valid sink configuration");
        let sink = OptimizelyEventsSink::new(COMPONENT_ID.to_owned(), config).expect("sink builds");

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

fn all_delivered(count: u64) -> BTreeMap<u64, EventStatus> {
    (0..count).map(|cookie| (cookie, EventStatus::Delivered)).collect()
}

/// Creates one conversion per id, with cookies 0, 1, 2, ... in order.
fn conversions(acks: &Arc<Acks>, key: &Arc<BatchKey>, ids: &[&str]) -> Vec<Event> {
    (0..).zip(ids).map(|(cookie, id)| conversion(acks, cookie, key, id)).collect()
}

// ---------------------------------------------------------------------------------------------------
// Requests and batching
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn batch_sent_as_one_request() {
    let server = TestServer::start(|_, _| Reply::Status(204)).await;
    let acks = Arc::new(Acks::default());
    let key = key("42", &server.url);

    let dead_letters = run_sink("", vec![conversions(&acks, &key, &["a", "b", "c"])]).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1/events");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("x-optimizely-strict"), Some("true"));
    assert_eq!(request.header("content-encoding"), None);
    assert_eq!(request.json(), expected_body("42", &["a", "b", "c"]));
    assert!(dead_letters.is_empty(), "{dead_letters:#?}");
    assert_eq!(acks.statuses(), all_delivered(3));
}

#[tokio::test]
async fn strict_false_omits_header() {
    let server = TestServer::start(|_, _| Reply::Status(200)).await;
    let acks = Arc::new(Acks::default());
    let key = key("42", &server.url);

    run_sink("strict = false", vec![conversions(&acks, &key, &["a"])]).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].header("x-optimizely-strict"), None);
    assert_eq!(acks.statuses(), all_delivered(1));
}

#[tokio::test]
async fn gzip_body_round_trips() {
    let server = TestServer::start(|_, _| Reply::Status(204)).await;
    let acks = Arc::new(Acks::default());
    let key = key("42", &server.url);

    run_sink(r#"compression = "gzip""#, vec![conversions(&acks, &key, &["a", "b"])]).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].header("content-encoding"), Some("gzip"));
    assert_eq!(&requests[0].body[..2], &[0x1f, 0x8b], "gzip magic bytes");
    assert_eq!(requests[0].json(), expected_body("42", &["a", "b"]));
    assert_eq!(acks.statuses(), all_delivered(2));
}

#[tokio::test]
async fn batches_split_by_max_events() {
    let server = TestServer::start(|_, _| Reply::Status(204)).await;
    let acks = Arc::new(Acks::default());
    let key = key("42", &server.url);
    let config = "[batch]\nmax_events = 2\n[request]\nconcurrency = 1";

    run_sink(config, vec![conversions(&acks, &key, &["a", "b", "c", "d", "e"])]).await;

    let bodies: Vec<Value> = server.requests().iter().map(Recorded::json).collect();
    assert_eq!(
        bodies,
        [expected_body("42", &["a", "b"]), expected_body("42", &["c", "d"]), expected_body("42", &["e"])]
    );
    assert_eq!(acks.statuses(), all_delivered(5));
}

#[tokio::test]
async fn batches_split_by_max_bytes() {
    let two_visitors = encoded_len(&expected_body("42", &["a", "b"]));
    // At exactly the size of a two-visitor body, two visitors fit; one byte less, only one does.
    let cases =
        [(two_visitors, vec![vec!["a", "b"], vec!["c"]]), (two_visitors - 1, vec![vec!["a"], vec!["b"], vec!["c"]])];
    for (max_bytes, expected_batches) in cases {
        let server = TestServer::start(|_, _| Reply::Status(204)).await;
        let acks = Arc::new(Acks::default());
        let key = key("42", &server.url);
        let config = format!("[batch]\nmax_bytes = {max_bytes}\n[request]\nconcurrency = 1");

        run_sink(&config, vec![conversions(&acks, &key, &["a", "b", "c"])]).await;

        let requests = server.requests();
        let batches: Vec<Vec<String>> = requests.iter().map(Recorded::visitor_ids).collect();
        assert_eq!(batches, expected_batches, "max_bytes {max_bytes}");
        assert!(requests.iter().all(|request| request.body.len() <= max_bytes), "max_bytes {max_bytes}");
        assert_eq!(requests[0].body.len(), encoded_len(&requests[0].json()), "body is compact JSON");
        assert_eq!(acks.statuses(), all_delivered(3));
    }
}

#[tokio::test]
async fn batches_split_by_revision() {
    let server = TestServer::start(|_, _| Reply::Status(204)).await;
    let acks = Arc::new(Acks::default());
    let old = key("42", &server.url);
    let new = key("43", &server.url);
    let events = vec![
        conversion(&acks, 0, &old, "a"),
        conversion(&acks, 1, &new, "b"),
        conversion(&acks, 2, &old, "c"),
        conversion(&acks, 3, &new, "d"),
    ];

    run_sink("", vec![events]).await;

    let mut bodies: Vec<Value> = server.requests().iter().map(Recorded::json).collect();
    bodies.sort_by_key(|body| body["revision"].as_str().map(str::to_owned));
    assert_eq!(bodies, [expected_body("42", &["a", "c"]), expected_body("43", &["b", "d"])]);
    assert_eq!(acks.statuses(), all_delivered(4));
}

#[tokio::test]
async fn equal_keys_share_request() {
    let server = TestServer::start(|_, _| Reply::Status(204)).await;
    let acks = Arc::new(Acks::default());
    let first = key("42", &server.url);
    let second = key("42", &server.url);
    assert!(!Arc::ptr_eq(&first, &second));
    let events = vec![conversion(&acks, 0, &first, "a"), conversion(&acks, 1, &second, "b")];

    run_sink("", vec![events]).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].json(), expected_body("42", &["a", "b"]));
}

#[tokio::test]
async fn endpoint_setting_overrides_keys() {
    let ignored = TestServer::start(|_, _| Reply::Status(204)).await;
    let target = TestServer::start(|_, _| Reply::Status(204)).await;
    let acks = Arc::new(Acks::default());
    let us = key("42", &ignored.url);
    let eu = key("42", &format!("{}/eu", ignored.url));
    let events = vec![conversion(&acks, 0, &us, "a"), conversion(&acks, 1, &eu, "b")];
    let config = format!("endpoint = \"{}\"", target.url);

    run_sink(&config, vec![events]).await;

    assert!(ignored.requests().is_empty());
    let requests = target.requests();
    assert_eq!(requests.len(), 1, "keys that differ only in endpoint share a request");
    assert_eq!(requests[0].path, "/v1/events");
    assert_eq!(requests[0].json(), expected_body("42", &["a", "b"]));
    assert_eq!(acks.statuses(), all_delivered(2));
}

#[tokio::test]
async fn shutdown_flushes_partial_batch() {
    let server = TestServer::start(|_, _| Reply::Status(204)).await;
    let acks = Arc::new(Acks::default());
    let key = key("42", &server.url);
    let started = Instant::now();

    run_sink("[batch]\ntimeout_secs = 3600", vec![conversions(&acks, &key, &["a", "b"])]).await;

    assert!(started.elapsed() < Duration::from_secs(5), "flushed without waiting for the timeout");
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].json(), expected_body("42", &["a", "b"]));
    assert_eq!(acks.statuses(), all_delivered(2));
}

#[tokio::test]
async fn batch_timeout_sends_request() {
    let server = TestServer::start(|_, _| Reply::Status(204)).await;
    let acks = Arc::new(Acks::default());
    let key = key("42", &server.url);
    let harness = Harness::start("[batch]\ntimeout_secs = 0.2");
    let sent_at = Instant::now();

    harness.send(conversions(&acks, &key, &["a", "b"])).await;
    while server.requests().is_empty() && sent_at.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let requests = server.requests();
    assert_eq!(requests.len(), 1, "sent while the input is still open");
    let waited = requests[0].received_at - sent_at;
    assert!(waited >= Duration::from_millis(190), "sent after {waited:?}, before the batch timeout");
    assert_eq!(requests[0].json(), expected_body("42", &["a", "b"]));
    // The server records the request before the sink reads the response, so the statuses are final
    // only once the sink has returned.
    harness.finish().await;
    assert_eq!(acks.statuses(), all_delivered(2));
}

#[tokio::test]
async fn full_batch_sent_at_once() {
    let server = TestServer::start(|_, _| Reply::Status(204)).await;
    let acks = Arc::new(Acks::default());
    let key = key("42", &server.url);
    let harness = Harness::start("[batch]\nmax_events = 2\ntimeout_secs = 3600");
    let sent_at = Instant::now();

    harness.send(conversions(&acks, &key, &["a", "b"])).await;
    while server.requests().is_empty() && sent_at.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let requests = server.requests();
    assert_eq!(requests.len(), 1, "sent while the input is still open");
    assert_eq!(requests[0].json(), expected_body("42", &["a", "b"]));
    harness.finish().await;
    assert_eq!(server.requests().len(), 1, "no empty request at shutdown");
    assert_eq!(acks.statuses(), all_delivered(2));
}

#[tokio::test]
async fn concurrency_limits_requests() {
    let server = TestServer::start(|_, _| Reply::Stall(Duration::from_millis(200))).await;
    let acks = Arc::new(Acks::default());
    let key = key("42", &server.url);
    let config = "[batch]\nmax_events = 1\n[request]\nconcurrency = 2";

    run_sink(config, vec![conversions(&acks, &key, &["a", "b", "c", "d", "e", "f"])]).await;

    assert_eq!(server.requests().len(), 6);
    assert_eq!(server.max_active(), 2);
    assert_eq!(acks.statuses(), all_delivered(6));
}

// ---------------------------------------------------------------------------------------------------
// Retries
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn retry_503_resends_same_bytes() {
    let server = TestServer::start(|_, index| if index < 2 { Reply::Status(503) } else { Reply::Status(204) }).await;
    let acks = Arc::new(Acks::default());
    let key = key("42", &server.url);
    let config = format!("compression = \"gzip\"\n{FAST_RETRIES}");

    let dead_letters = run_sink(&config, vec![conversions(&acks, &key, &["a", "b"])]).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[1].body, requests[0].body);
    assert_eq!(requests[2].body, requests[0].body);
    assert!(dead_letters.is_empty(), "{dead_letters:#?}");
    assert_eq!(acks.statuses(), all_delivered(2));
}

#[tokio::test]
async fn retry_after_connection_close() {
    let server = TestServer::start(|_, index| if index == 0 { Reply::Close } else { Reply::Status(204) }).await;
    let acks = Arc::new(Acks::default());
    let key = key("42", &server.url);

    let dead_letters = run_sink(FAST_RETRIES, vec![conversions(&acks, &key, &["a"])]).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].body, requests[0].body);
    assert!(dead_letters.is_empty(), "{dead_letters:#?}");
    assert_eq!(acks.statuses(), all_delivered(1));
}

#[tokio::test]
async fn retry_after_attempt_timeout() {
    let server = TestServer::start(
        |_, index| {
            if index == 0 {
                Reply::Stall(Duration::from_secs(3))
            } else {
                Reply::Status(204)
            }
        },
    )
    .await;
    let acks = Arc::new(Acks::default());
    let key = key("42", &server.url);
    let config = "[request]\ntimeout_secs = 0.3\nretry_initial_backoff_secs = 0.01\nretry_max_backoff_secs = 0.05";
    let started = Instant::now();

    let dead_letters = run_sink(config, vec![conversions(&acks, &key, &["a"])]).await;

    assert!(started.elapsed() < Duration::from_secs(3), "the stalled attempt was abandoned");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].body, requests[0].body);
    assert!(dead_letters.is_empty(), "{dead_letters:#?}");
    assert_eq!(acks.statuses(), all_delivered(1));
}

#[tokio::test]
async fn retry_after_header_sets_wait() {
    let server = TestServer::start(|_, index| {
        if index == 0 {
            Reply::StatusWithHeader(429, "retry-after", "1".to_owned())
        } else {
            Reply::Status(204)
        }
    })
    .await;
    let acks = Arc::new(Acks::default());
    let key = key("42", &server.url);
    let config = "[request]\nretry_initial_backoff_secs = 0.01\nretry_max_backoff_secs = 5";

    run_sink(config, vec![conversions(&acks, &key, &["a"])]).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let wait = requests[1].received_at - requests[0].received_at;
    assert!(wait >= Duration::from_millis(950), "retried after {wait:?}, before Retry-After");
    assert!(wait < Duration::from_secs(3), "retried after {wait:?}");
    assert_eq!(acks.statuses(), all_delivered(1));
}

#[tokio::test]
async fn retry_after_capped_by_max_backoff() {
    let server = TestServer::start(|_, index| {
        if index == 0 {
            Reply::StatusWithHeader(503, "retry-after", "30".to_owned())
        } else {
            Reply::Status(204)
        }
    })
    .await;
    let acks = Arc::new(Acks::default());
    let key = key("42", &server.url);
    let config = "[request]\nretry_initial_backoff_secs = 0.01\nretry_max_backoff_secs = 0.2";

    run_sink(config, vec![conversions(&acks, &key, &["a"])]).await;

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let wait = requests[1].received_at - requests[0].received_at;
    assert!(wait >= Duration::from_millis(190), "retried after {wait:?}");
    assert!(wait < Duration::from_secs(2), "retried after {wait:?}, not capped at 0.2 s");
}

#[tokio::test]
async fn exhausted_retries_dead_letter() {
    let server = TestServer::start(|_, _| Reply::StatusWithBody(503, "overloaded".to_owned())).await;
    let acks = Arc::new(Acks::default());
    let key = key("42", &server.url);
    let config = format!("{FAST_RETRIES}retry_attempts = 2");

    let dead_letters = run_sink(&config, vec![conversions(&acks, &key, &["a", "b"])]).await;

    assert_eq!(server.requests().len(), 3);
    assert_eq!(dead_letters.len(), 2);
    for (record, id) in dead_letters.iter().zip(["a", "b"]) {
        assert_eq!(record["reason"], json!("retries_exhausted"));
        assert_eq!(record["component"], json!(COMPONENT_ID));
        assert_eq!(record["status"], json!(503));
        assert_eq!(record["attempts"], json!(3));
        assert_eq!(record["response"], json!("overloaded"));
        assert_eq!(record.get("error"), None);
        assert_eq!(record["event"], expected_body("42", &[id]));
        let message = record["message"].as_str().expect("message is a string");
        assert!(message.contains("3 attempts"), "{message}");
        assert!(message.contains("HTTP status 503"), "{message}");
    }
    let expected: BTreeMap<u64, EventStatus> = [(0, EventStatus::DeadLettered), (1, EventStatus::DeadLettered)].into();
    assert_eq!(acks.statuses(), expected);
}

#[tokio::test]
async fn exhausted_connection_errors_dead_letter() {
    let server = TestServer::start(|_, _| Reply::Close).await;
    let acks = Arc::new(Acks::default());
    let key = key("42", &server.url);
    let config = format!("{FAST_RETRIES}retry_attempts = 1");

    let dead_letters = run_sink(&config, vec![conversions(&acks, &key, &["a"])]).await;

    assert_eq!(server.requests().len(), 2);
    assert_eq!(dead_letters.len(), 1);
    let record = &dead_letters[0];
    assert_eq!(record["reason"], json!("retries_exhausted"));
    assert_eq!(record["status"], Value::Null);
    assert_eq!(record["attempts"], json!(2));
    assert_eq!(record.get("response"), None);
    let error = record["error"].as_str().expect("error is a string");
    assert!(error.starts_with("request failed") || error.starts_with("connection failed"), "{error}");
    assert_eq!(acks.statuses(), [(0, EventStatus::DeadLettered)].into());
}

#[tokio::test]
async fn max_duration_ends_retries() {
    let server = TestServer::start(|_, _| Reply::Status(503)).await;
    let acks = Arc::new(Acks::default());
    let key = key("42", &server.url);
    let config = "[request]\nretry_attempts = 1000\nretry_initial_backoff_secs = 0.05\n\
                  retry_max_backoff_secs = 0.05\nretry_max_duration_secs = 0.5";
    let started = Instant::now();

    let dead_letters = run_sink(config, vec![conversions(&acks, &key, &["a"])]).await;

    assert!(started.elapsed() < Duration::from_secs(5));
    let attempts = server.requests().len();
    assert!((2..100).contains(&attempts), "{attempts} attempts");
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(dead_letters[0]["reason"], json!("retries_exhausted"));
    assert_eq!(dead_letters[0]["attempts"], json!(attempts));
}

// ---------------------------------------------------------------------------------------------------
// Rejections and splitting
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn split_isolates_rejected_event() {
    let server = TestServer::start(|request, _| {
        if request.visitor_ids().iter().any(|id| id == "bad") {
            Reply::StatusWithBody(400, r#"{"error":"invalid visitor"}"#.to_owned())
        } else {
            Reply::Status(204)
        }
    })
    .await;
    let acks = Arc::new(Acks::default());
    let key = key("42", &server.url);
    let config = format!("{FAST_RETRIES}concurrency = 1");

    let dead_letters = run_sink(&config, vec![conversions(&acks, &key, &["a", "b", "bad", "d", "e"])]).await;

    let batches: Vec<Vec<String>> = server.requests().iter().map(Recorded::visitor_ids).collect();
    let expected_batches: Vec<Vec<&str>> =
        vec![vec!["a", "b", "bad", "d", "e"], vec!["a", "b"], vec!["bad", "d", "e"], vec!["bad"], vec!["d", "e"]];
    assert_eq!(batches, expected_batches);

    assert_eq!(dead_letters.len(), 1);
    let record = &dead_letters[0];
    assert_eq!(record["reason"], json!("event_rejected"));
    assert_eq!(record["component"], json!(COMPONENT_ID));
    assert_eq!(record["status"], json!(400));
    assert_eq!(record["attempts"], json!(1));
    assert_eq!(record["response"], json!(r#"{"error":"invalid visitor"}"#));
    assert_eq!(record["event"], expected_body("42", &["bad"]));

    let expected: BTreeMap<u64, EventStatus> = [
        (0, EventStatus::Delivered),
        (1, EventStatus::Delivered),
        (2, EventStatus::DeadLettered),
        (3, EventStatus::Delivered),
        (4, EventStatus::Delivered),
    ]
    .into();
    assert_eq!(acks.statuses(), expected);
}

#[tokio::test]
async fn rejection_response_truncated() {
    let server = TestServer::start(|_, _| Reply::StatusWithBody(422, "x".repeat(3000))).await;
    let acks = Arc::new(Acks::default());
    let key = key("42", &server.url);

    let dead_letters = run_sink(FAST_RETRIES, vec![conversions(&acks, &key, &["a"])]).await;

    assert_eq!(server.requests().len(), 1, "422 is not retried");
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(dead_letters[0]["reason"], json!("event_rejected"));
    assert_eq!(dead_letters[0]["status"], json!(422));
    assert_eq!(dead_letters[0]["response"], json!("x".repeat(1024)));
}

#[tokio::test]
async fn status_501_not_retried() {
    let server = TestServer::start(|_, _| Reply::Status(501)).await;
    let acks = Arc::new(Acks::default());
    let key = key("42", &server.url);

    let dead_letters = run_sink(FAST_RETRIES, vec![conversions(&acks, &key, &["a"])]).await;

    assert_eq!(server.requests().len(), 1);
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(dead_letters[0]["reason"], json!("event_rejected"));
    assert_eq!(dead_letters[0]["status"], json!(501));
    assert_eq!(acks.statuses(), [(0, EventStatus::DeadLettered)].into());
}

#[tokio::test]
async fn status_413_splits_request() {
    let threshold = encoded_len(&expected_body("42", &["a", "b"]));
    let server =
        TestServer::start(
            move |request, _| {
                if request.body.len() > threshold {
                    Reply::Status(413)
                } else {
                    Reply::Status(204)
                }
            },
        )
        .await;
    let acks = Arc::new(Acks::default());
    let key = key("42", &server.url);
    let config = format!("{FAST_RETRIES}concurrency = 1");

    let dead_letters = run_sink(&config, vec![conversions(&acks, &key, &["a", "b", "c", "d"])]).await;

    let batches: Vec<Vec<String>> = server.requests().iter().map(Recorded::visitor_ids).collect();
    let expected_batches: Vec<Vec<&str>> = vec![vec!["a", "b", "c", "d"], vec!["a", "b"], vec!["c", "d"]];
    assert_eq!(batches, expected_batches);
    assert!(dead_letters.is_empty(), "{dead_letters:#?}");
    assert_eq!(acks.statuses(), all_delivered(4));
}

#[tokio::test]
async fn status_413_single_event_dead_lettered() {
    let server = TestServer::start(|_, _| Reply::Status(413)).await;
    let acks = Arc::new(Acks::default());
    let key = key("42", &server.url);

    let dead_letters = run_sink(FAST_RETRIES, vec![conversions(&acks, &key, &["a"])]).await;

    assert_eq!(server.requests().len(), 1);
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(dead_letters[0]["reason"], json!("event_too_large"));
    assert_eq!(dead_letters[0]["status"], json!(413));
    assert_eq!(dead_letters[0]["attempts"], json!(1));
    assert_eq!(dead_letters[0]["event"], expected_body("42", &["a"]));
    assert_eq!(acks.statuses(), [(0, EventStatus::DeadLettered)].into());
}

// ---------------------------------------------------------------------------------------------------
// Events refused before sending
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn oversized_event_never_sent() {
    let server = TestServer::start(|_, _| Reply::Status(204)).await;
    let acks = Arc::new(Acks::default());
    let key = key("42", &server.url);
    let max_bytes = encoded_len(&expected_body("42", &["a"])) + 10;
    let huge = Event::with_finalizer(
        Payload::Conversion(Conversion { batch_key: key.clone(), visitor: visitor("huge", &"X".repeat(100)) }),
        EventFinalizer::new(acks.clone(), 1),
    );
    let events = vec![conversion(&acks, 0, &key, "a"), huge, conversion(&acks, 2, &key, "c")];
    let config = format!("[batch]\nmax_bytes = {max_bytes}\n[request]\nconcurrency = 1");

    let dead_letters = run_sink(&config, vec![events]).await;

    let batches: Vec<Vec<String>> = server.requests().iter().map(Recorded::visitor_ids).collect();
    assert_eq!(batches, [vec!["a"], vec!["c"]]);
    assert_eq!(dead_letters.len(), 1);
    let record = &dead_letters[0];
    assert_eq!(record["reason"], json!("event_too_large"));
    assert_eq!(record["status"], Value::Null);
    assert_eq!(record["attempts"], json!(0));
    assert_eq!(record["event"]["visitors"][0]["visitor_id"], json!("huge"));
    let expected: BTreeMap<u64, EventStatus> =
        [(0, EventStatus::Delivered), (1, EventStatus::DeadLettered), (2, EventStatus::Delivered)].into();
    assert_eq!(acks.statuses(), expected);
}

#[tokio::test]
async fn non_conversion_dead_lettered() {
    let server = TestServer::start(|_, _| Reply::Status(204)).await;
    let acks = Arc::new(Acks::default());
    let key = key("42", &server.url);
    let message = json!({"type": "identify", "userId": "u1"});
    let events = vec![
        conversion(&acks, 0, &key, "a"),
        Event::with_finalizer(Payload::Message(message.clone()), EventFinalizer::new(acks.clone(), 1)),
    ];

    let dead_letters = run_sink("", vec![events]).await;

    assert_eq!(server.requests().len(), 1);
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(dead_letters[0]["reason"], json!("unsupported_event"));
    assert_eq!(dead_letters[0]["component"], json!(COMPONENT_ID));
    assert_eq!(dead_letters[0]["event"], message);
    let expected: BTreeMap<u64, EventStatus> = [(0, EventStatus::Delivered), (1, EventStatus::DeadLettered)].into();
    assert_eq!(acks.statuses(), expected);
}

#[tokio::test]
async fn invalid_key_endpoint_dead_lettered() {
    let acks = Arc::new(Acks::default());
    let key = key("42", "logx.optimizely.com/v1/events");

    let dead_letters = run_sink("", vec![conversions(&acks, &key, &["a"])]).await;

    assert_eq!(dead_letters.len(), 1);
    assert_eq!(dead_letters[0]["reason"], json!("invalid_endpoint"));
    assert_eq!(dead_letters[0]["attempts"], json!(0));
    assert_eq!(acks.statuses(), [(0, EventStatus::DeadLettered)].into());
}

// ---------------------------------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------------------------------

#[test]
fn build_rejects_invalid_settings() {
    let config: OptimizelyEventsConfig =
        toml::from_str("[batch]\nmax_bytes = 4000000\n[request]\nconcurrency = 0").expect("valid TOML");

    let error = OptimizelyEventsSink::new(COMPONENT_ID.to_owned(), config).expect_err("invalid settings");

    let BuildError::InvalidConfig { component_id, problems } = &error else {
        panic!("expected InvalidConfig, got {error:?}");
    };
    assert_eq!(component_id, COMPONENT_ID);
    assert_eq!(problems.len(), 2, "{problems:?}");
    let message = error.to_string();
    assert!(message.contains("`batch.max_bytes` is 4000000"), "{message}");
    assert!(message.contains("`request.concurrency` is 0"), "{message}");
}
