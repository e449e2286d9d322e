//! The datafile's life while a pipeline runs: refreshes, conditional requests, failures, and the copy
//! saved under `data_dir`, against a local server playing the CDN.

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use optimizely_relay::transforms::optimizely::datafile::DatafileError;
use optimizely_relay::transforms::optimizely::datafile_refresh::{
    load_initial_datafile, ConfiguredFetcher, DatafileFetcher, DatafileRefresher, RefreshOutcome,
};
use optimizely_relay::transforms::optimizely::datafile_source::{DatafileConfig, FetchResult, LoadedDatafile};
use optimizely_relay::transforms::optimizely::datafile_store::DatafileStore;
use optimizely_relay::transforms::optimizely::{MapOutcome, OptimizelyTransform, OptimizelyTransformConfig};
use serde_json::{json, Value};
use support::{capture_logs, fixture, RecordingServer, Reply};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "tok-lifecycle-9Zq2-secret";
const FIRST_MODIFIED: &str = "Wed, 02 Dec 2026 10:00:00 GMT";
const SECOND_MODIFIED: &str = "Thu, 03 Dec 2026 08:30:00 GMT";

/// Revision 3 of the typed-audience datafile: `item_bought` has the id 594089.
fn revision_three() -> String {
    std::fs::read_to_string(fixture("datafiles/go-typed-audience-datafile.json")).unwrap()
}

/// Revision 4: `item_bought` gets the id 777001 and `user_signed_up` is removed.
fn revision_four() -> String {
    let mut document: Value = serde_json::from_str(&revision_three()).unwrap();
    document["revision"] = json!("4");
    let events = document["events"].as_array_mut().unwrap();
    events.retain(|event| event["key"] != json!("user_signed_up"));
    for event in events.iter_mut() {
        if event["key"] == json!("item_bought") {
            event["id"] = json!("777001");
        }
    }
    document.to_string()
}

fn ok_with(body: String, last_modified: &str) -> Reply {
    Reply::Status(200, vec![("last-modified".to_owned(), last_modified.to_owned())], body)
}

fn transform_config(cdn: &RecordingServer) -> OptimizelyTransformConfig {
    let text = format!(
        "[datafile]\nsdk_key = \"Key1\"\naccess_token = \"{TOKEN}\"\nauthenticated_cdn_url = \"{}\"\ntimeout_secs = 0.5\n",
        cdn.url("")
    );
    toml::from_str(&text).unwrap()
}

async fn start(
    cdn: &RecordingServer,
    store: Option<DatafileStore>,
) -> (Arc<OptimizelyTransform>, DatafileRefresher, LoadedDatafile) {
    let config = transform_config(cdn);
    let fetcher = Arc::new(ConfiguredFetcher::new(config.datafile.clone(), reqwest::Client::new()));
    let loaded = load_initial_datafile("opt", &config.datafile, fetcher.as_ref(), store.as_ref()).await.unwrap();
    let transform = Arc::new(OptimizelyTransform::new("opt", &config, loaded.datafile.clone()));
    let refresher = DatafileRefresher::new(transform.clone(), fetcher, Duration::from_secs(300), store, &loaded);
    (transform, refresher, loaded)
}

/// Maps an `item_bought` conversion and returns its revision and event id.
fn map_item_bought(transform: &OptimizelyTransform) -> (String, String) {
    let message = json!({"type": "track", "event": "item_bought", "userId": "u", "messageId": "m", "timestamp": 0});
    match transform.map_message(&message) {
        MapOutcome::Conversion(conversion, _) => {
            (conversion.batch_key.revision.clone(), conversion.visitor.snapshots[0].events[0].entity_id.clone())
        }
        other => panic!("expected a conversion, got {other:?}"),
    }
}

fn failed_message(outcome: RefreshOutcome) -> String {
    match outcome {
        RefreshOutcome::Failed(error) => error.to_string(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn refresh_sequence_keeps_last_good_datafile() {
    let (_guard, logs) = capture_logs();
    let cdn = RecordingServer::start().await;
    cdn.script([
        ok_with(revision_three(), FIRST_MODIFIED),
        Reply::status(304),
        Reply::status(500),
        Reply::Stall(Duration::from_secs(2)),
        Reply::status(403),
        Reply::Status(200, vec![], "// This Optimizely project has been deactivated.".to_owned()),
        Reply::Status(200, vec![], "<html><body>Service Unavailable</body></html>".to_owned()),
        Reply::Status(200, vec![], revision_three().replace("\"version\": \"4\"", "\"version\": \"5\"")),
        ok_with(revision_four(), SECOND_MODIFIED),
        Reply::status(304),
    ]);
    let (transform, mut refresher, loaded) = start(&cdn, None).await;
    assert_eq!(loaded.last_modified.as_deref(), Some(FIRST_MODIFIED));
    assert_eq!(map_item_bought(&transform), ("3".to_owned(), "594089".to_owned()));

    assert!(matches!(refresher.refresh_once().await, RefreshOutcome::NotModified));
    let server_error = failed_message(refresher.refresh_once().await);
    assert!(server_error.contains("500"), "{server_error}");
    let timeout = failed_message(refresher.refresh_once().await);
    assert!(timeout.contains("timed out"), "{timeout}");
    let forbidden = failed_message(refresher.refresh_once().await);
    assert!(forbidden.contains("403"), "{forbidden}");
    assert!(forbidden.contains("access token"), "{forbidden}");
    let deactivated = failed_message(refresher.refresh_once().await);
    assert!(deactivated.contains("deactivated"), "{deactivated}");
    let html = failed_message(refresher.refresh_once().await);
    assert!(html.contains("<html>"), "{html}");
    let version = failed_message(refresher.refresh_once().await);
    assert!(version.contains("unsupported datafile version \"5\""), "{version}");

    assert_eq!(refresher.status().lock().unwrap().consecutive_failures, 6);
    assert_eq!(map_item_bought(&transform), ("3".to_owned(), "594089".to_owned()), "failures keep revision 3");

    match refresher.refresh_once().await {
        RefreshOutcome::Updated { previous, revision } => {
            assert_eq!(previous, "3");
            assert_eq!(revision, "4");
        }
        other => panic!("expected an update, got {other:?}"),
    }
    assert_eq!(map_item_bought(&transform), ("4".to_owned(), "777001".to_owned()));
    assert_eq!(refresher.status().lock().unwrap().consecutive_failures, 0);
    assert_eq!(refresher.status().lock().unwrap().revision, "4");
    assert!(matches!(refresher.refresh_once().await, RefreshOutcome::NotModified));

    let requests = cdn.requests();
    assert_eq!(requests.len(), 10);
    for request in &requests {
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/datafiles/auth/Key1.json");
        assert_eq!(request.header("authorization"), Some(format!("Bearer {TOKEN}")));
    }
    assert_eq!(requests[0].header("if-modified-since"), None, "the first load is unconditional");
    for request in &requests[1..9] {
        assert_eq!(request.header("if-modified-since").as_deref(), Some(FIRST_MODIFIED));
    }
    assert_eq!(requests[9].header("if-modified-since").as_deref(), Some(SECOND_MODIFIED));

    let log = logs.text();
    let failure_lines: Vec<&str> = log.lines().filter(|line| line.contains("datafile refresh failed")).collect();
    assert_eq!(failure_lines.len(), 6, "one line per failed attempt:\n{log}");
    assert!(failure_lines[0].contains("/datafiles/auth/Key1.json"), "{}", failure_lines[0]);
    assert!(failure_lines[0].contains("500"), "{}", failure_lines[0]);
    assert!(failure_lines[0].contains("revision=3"), "{}", failure_lines[0]);
    assert!(log.contains("datafile updated"), "{log}");
    assert!(log.contains("previous_revision=3"), "{log}");
    assert!(!log.contains(TOKEN), "the token leaked into the log:\n{log}");
}

#[tokio::test]
async fn same_revision_replaces_nothing() {
    let cdn = RecordingServer::start().await;
    cdn.script([
        ok_with(revision_three(), FIRST_MODIFIED),
        ok_with(revision_three(), SECOND_MODIFIED),
        Reply::status(304),
    ]);
    let (transform, mut refresher, _) = start(&cdn, None).await;
    let before = transform.datafile();

    assert!(matches!(refresher.refresh_once().await, RefreshOutcome::SameRevision));
    assert!(Arc::ptr_eq(&before, &transform.datafile()), "the datafile in use was replaced");

    refresher.refresh_once().await;
    assert_eq!(cdn.requests()[2].header("if-modified-since").as_deref(), Some(SECOND_MODIFIED));
}

#[tokio::test]
async fn vanished_event_key_dead_lettered() {
    let cdn = RecordingServer::start().await;
    cdn.script([ok_with(revision_three(), FIRST_MODIFIED), ok_with(revision_four(), SECOND_MODIFIED)]);
    let (transform, mut refresher, _) = start(&cdn, None).await;
    let message = json!({"type": "track", "event": "user_signed_up", "userId": "u", "timestamp": 0});
    assert!(matches!(transform.map_message(&message), MapOutcome::Conversion(..)));

    refresher.refresh_once().await;

    match transform.map_message(&message) {
        MapOutcome::Rejected(rejection) => {
            assert_eq!(rejection.reason, "unknown_event_key");
            assert!(rejection.message.contains("revision 4"), "{}", rejection.message);
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// A fetcher that replays scripted results and records when it was called.
struct ScriptedFetcher {
    results: Mutex<VecDeque<Result<FetchResult, DatafileError>>>,
    calls: Mutex<Vec<tokio::time::Instant>>,
    done: CancellationToken,
}

#[async_trait]
impl DatafileFetcher for ScriptedFetcher {
    async fn fetch(&self, _if_modified_since: Option<&str>) -> Result<FetchResult, DatafileError> {
        self.calls.lock().unwrap().push(tokio::time::Instant::now());
        let next = self.results.lock().unwrap().pop_front();
        if self.results.lock().unwrap().is_empty() {
            self.done.cancel();
        }
        next.unwrap_or(Ok(FetchResult::NotModified))
    }
}

fn server_error() -> Result<FetchResult, DatafileError> {
    Err(DatafileError::HttpStatus { url: "https://cdn.test/d.json".to_owned(), status: 503, hint: "try again later" })
}

#[tokio::test(start_paused = true)]
async fn refresh_interval_backs_off_after_failures() {
    let body = revision_three();
    let datafile =
        Arc::new(optimizely_relay::transforms::optimizely::datafile::Datafile::parse(body.as_bytes()).unwrap());
    let config: OptimizelyTransformConfig = toml::from_str("[datafile]\nsdk_key = \"K\"").unwrap();
    let transform = Arc::new(OptimizelyTransform::new("opt", &config, datafile.clone()));
    let initial = LoadedDatafile { datafile, last_modified: None, source: "test".to_owned(), body: body.into() };
    let done = CancellationToken::new();
    let fetcher = Arc::new(ScriptedFetcher {
        results: Mutex::new(VecDeque::from([
            Ok(FetchResult::NotModified),
            server_error(),
            server_error(),
            server_error(),
            Ok(FetchResult::NotModified),
            Ok(FetchResult::NotModified),
        ])),
        calls: Mutex::new(Vec::new()),
        done: done.clone(),
    });
    let refresher = DatafileRefresher::new(transform, fetcher.clone(), Duration::from_secs(300), None, &initial);
    let started = tokio::time::Instant::now();

    refresher.run(done).await;

    let offsets: Vec<u64> =
        fetcher.calls.lock().unwrap().iter().map(|call| call.duration_since(started).as_secs()).collect();
    // 300 s apart while healthy; after failures 600, 1200, 1200 s; back to 300 s after a success.
    assert_eq!(offsets, vec![300, 600, 1200, 2400, 3600, 3900]);
}

#[tokio::test]
async fn restart_during_outage_uses_saved_copy() {
    let (_guard, logs) = capture_logs();
    let data_dir = tempfile::tempdir().unwrap();
    let cdn = RecordingServer::start().await;
    cdn.script([ok_with(revision_three(), FIRST_MODIFIED), Reply::status(503), Reply::status(304)]);

    start(&cdn, Some(DatafileStore::new(data_dir.path(), "opt"))).await;
    let (transform, mut refresher, loaded) = start(&cdn, Some(DatafileStore::new(data_dir.path(), "opt"))).await;

    assert_eq!(loaded.datafile.revision, "3");
    assert_eq!(map_item_bought(&transform), ("3".to_owned(), "594089".to_owned()));
    let log = logs.text();
    assert!(log.contains("cannot download the datafile; starting from the copy saved"), "{log}");
    assert!(log.contains("503"), "{log}");
    refresher.refresh_once().await;
    assert_eq!(cdn.requests()[2].header("if-modified-since").as_deref(), Some(FIRST_MODIFIED));
}

#[tokio::test]
async fn corrupt_saved_copy_ignored() {
    let (_guard, logs) = capture_logs();
    let data_dir = tempfile::tempdir().unwrap();
    let cdn = RecordingServer::start().await;
    cdn.script([ok_with(revision_three(), FIRST_MODIFIED), Reply::status(503)]);
    let store = DatafileStore::new(data_dir.path(), "opt");
    start(&cdn, Some(store.clone())).await;
    std::fs::write(store.datafile_path(), b"{ not json").unwrap();

    let config = transform_config(&cdn);
    let fetcher = ConfiguredFetcher::new(config.datafile.clone(), reqwest::Client::new());
    let error = load_initial_datafile("opt", &config.datafile, &fetcher, Some(&store)).await.unwrap_err();

    assert!(error.to_string().contains("503"), "{error}");
    assert!(logs.text().contains("ignoring the saved datafile"), "{}", logs.text());
}

#[tokio::test]
async fn bad_download_never_overwrites_saved_copy() {
    let data_dir = tempfile::tempdir().unwrap();
    let cdn = RecordingServer::start().await;
    cdn.script([
        ok_with(revision_three(), FIRST_MODIFIED),
        Reply::Status(200, vec![], "<html>maintenance</html>".to_owned()),
        ok_with(revision_four(), SECOND_MODIFIED),
    ]);
    let store = DatafileStore::new(data_dir.path(), "opt");
    let (_, mut refresher, _) = start(&cdn, Some(store.clone())).await;
    let saved_first = std::fs::read(store.datafile_path()).unwrap();
    assert_eq!(saved_first, revision_three().into_bytes());

    refresher.refresh_once().await;
    assert_eq!(std::fs::read(store.datafile_path()).unwrap(), saved_first, "a bad download replaced the copy");

    refresher.refresh_once().await;
    let source = transform_config(&cdn).datafile.source_description();
    let saved = store.load(&source).unwrap().unwrap();
    assert_eq!(saved.loaded.datafile.revision, "4");
    assert_eq!(saved.loaded.last_modified.as_deref(), Some(SECOND_MODIFIED));
}

#[test]
fn datafile_config_debug_hides_token() {
    let config: DatafileConfig = toml::from_str(&format!("sdk_key = \"K\"\naccess_token = \"{TOKEN}\"")).unwrap();
    assert!(!format!("{config:?}").contains(TOKEN));
}

/// Polls `condition` every 20 ms for at most 10 seconds.
async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn binary_maps_each_event_with_current_revision() {
    use tokio::io::AsyncWriteExt;

    let cdn = RecordingServer::start().await;
    cdn.script([ok_with(revision_three(), FIRST_MODIFIED), ok_with(revision_four(), SECOND_MODIFIED)]);
    cdn.script((0..200).map(|_| Reply::status(304)));
    let api = RecordingServer::start().await;
    let directory = tempfile::tempdir().unwrap();
    let config = support::write_file(
        directory.path(),
        "relay.toml",
        &format!(
            r#"
[sources.in]
type = "stdin"

[transforms.opt]
type = "optimizely"
inputs = ["in"]

[transforms.opt.datafile]
sdk_key = "Key1"
cdn_url = "{cdn}"
refresh_interval_secs = 0.2

[sinks.api]
type = "optimizely_events"
inputs = ["opt"]
endpoint = "{endpoint}"
batch.timeout_secs = 0.05
"#,
            cdn = cdn.url(""),
            endpoint = api.url("/v1/events"),
        ),
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_optimizely-relay"))
        .args(["run", "--config", config.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let line = |id: &str| {
        format!(r#"{{"type":"track","event":"item_bought","userId":"u","messageId":"{id}","timestamp":0}}"#) + "\n"
    };

    stdin.write_all(line("before").as_bytes()).await.unwrap();
    wait_until("the first conversion", || api.requests().len() == 1).await;
    // The third CDN request starts only after the second, which served revision 4, was applied.
    wait_until("the refresh to revision 4", || cdn.requests().len() >= 3).await;
    stdin.write_all(line("after").as_bytes()).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr:\n{stderr}");
    assert!(stderr.contains("datafile updated"), "stderr:\n{stderr}");
    let bodies: Vec<Value> = api.requests().iter().map(|request| request.json()).collect();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["revision"], json!("3"));
    assert_eq!(bodies[0]["visitors"][0]["snapshots"][0]["events"][0]["entity_id"], json!("594089"));
    assert_eq!(bodies[1]["revision"], json!("4"));
    assert_eq!(bodies[1]["visitors"][0]["snapshots"][0]["events"][0]["entity_id"], json!("777001"));
}
