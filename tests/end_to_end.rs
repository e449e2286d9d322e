//! End-to-end runs of the real binary: stdin or files in, a local Event API stand-in out.

mod support;

use serde_json::json;
use support::{fixture, read_json_lines, run_binary, write_file, RecordingServer, Reply};

const JAVA_V4_EVENT_KEYS: &str = r#"
[transforms.opt.event_keys]
"User Registered" = "basic_event"
"Course Clicked" = "basic_event"
"Button Clicked" = "basic_event"
"Report Submitted" = "basic_event"
"Registered" = "basic_event"
"Purchased an Item" = "basic_event"
"Segment Consent Preference Updated" = "basic_event"
"#;

/// Writes a stdin → optimizely → optimizely_events config with a dead-letter file into `directory`.
fn write_config(directory: &std::path::Path, server: &RecordingServer, batch: &str, extra: &str) -> std::path::PathBuf {
    let datafile = fixture("datafiles/java-valid-project-config-v4.json");
    let text = format!(
        r#"
shutdown_timeout_secs = 20

[sources.in]
type = "stdin"

[transforms.opt]
type = "optimizely"
inputs = ["in"]
revenue_unit = "dollars"

[transforms.opt.datafile]
path = "{datafile}"
{extra}

[sinks.api]
type = "optimizely_events"
inputs = ["opt"]
endpoint = "{endpoint}"

[sinks.api.batch]
{batch}

[sinks.api.request]
retry_initial_backoff_secs = 0.01
retry_max_backoff_secs = 0.05

[sinks.dead_letters]
type = "file"
inputs = ["opt.dropped", "api.dropped"]
path = "dead-letters.ndjson"
"#,
        datafile = datafile.display(),
        endpoint = server.url("/v1/events"),
    );
    write_file(directory, "relay.toml", &text)
}

fn java_v4_top_level(visitors: serde_json::Value) -> serde_json::Value {
    json!({
        "account_id": "2360254204",
        "project_id": "3918735994",
        "revision": "1480511547",
        "client_name": "optimizely-relay",
        "client_version": env!("CARGO_PKG_VERSION"),
        "anonymize_ip": true,
        "enrich_decisions": true,
        "visitors": visitors,
    })
}

#[tokio::test]
async fn stdin_events_reach_event_api() {
    let server = RecordingServer::start().await;
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(directory.path(), &server, "max_events = 2\ntimeout_secs = 0.2", JAVA_V4_EVENT_KEYS);

    let input = concat!(
        r#"{"type":"track","event":"Course Clicked","userId":"u-1","messageId":"m-1","timestamp":"2026-01-02T03:04:05.678+01:00","properties":{"revenue":"19.99","plan":"pro","nested":{"a":1}},"context":{"traits":{"house":"Gryffindor","email":"x@example.com"},"userAgent":"curl/8.0"}}"#,
        "\n",
        "not json at all\n",
        r#"{"type":"track","event":"Unknown Thing","userId":"u-2","timestamp":"2026-01-02T00:00:00Z"}"#,
        "\n",
        r#"{"type":"track","event":"Registered","timestamp":"2026-01-02T00:00:00Z"}"#,
        "\n",
        r#"{"type":"identify","userId":"u-3"}"#,
        "\n",
        r#"{"type":"track","event":"Registered","userId":42,"messageId":"m-3","timestamp":1767225600000}"#,
        "\n",
        r#"{"type":"track","event":"Registered","anonymousId":"anon-4","messageId":"m-4","timestamp":"2026-01-01T00:00:00.999999Z","properties":{"value":"3.5"}}"#,
        "\n",
    );
    let output = run_binary(&["run", "--config", config.to_str().unwrap()], input.as_bytes(), &[]).await;

    assert!(output.status.success(), "stderr:\n{}", output.stderr);
    assert_eq!(output.summary_line(), "summary: received=7 sent=3 dead_lettered=3 skipped=1 undelivered=0");

    // Requests are sent concurrently, so they arrive in any order: the larger one first here.
    let mut requests = server.requests();
    requests.sort_by_key(|request| std::cmp::Reverse(request.json()["visitors"].as_array().map_or(0, Vec::len)));
    assert_eq!(requests.len(), 2, "three conversions with max_events = 2 make two requests");
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/v1/events");
    assert_eq!(requests[0].header("content-type").as_deref(), Some("application/json"));
    assert_eq!(requests[0].header("x-optimizely-strict").as_deref(), Some("true"));

    let first_visitor = json!({
        "visitor_id": "u-1",
        "attributes": [
            {"entity_id": "553339214", "key": "house", "type": "custom", "value": "Gryffindor"},
            {"entity_id": "$opt_user_agent", "key": "$opt_user_agent", "type": "custom", "value": "curl/8.0"},
            {"entity_id": "$opt_bot_filtering", "key": "$opt_bot_filtering", "type": "custom", "value": true}
        ],
        "snapshots": [{"decisions": [], "events": [{
            "entity_id": "3785620495", "key": "basic_event", "timestamp": 1767319445678_i64,
            "uuid": "m-1", "revenue": 1999, "tags": {"plan": "pro"}
        }]}]
    });
    let second_visitor = json!({
        "visitor_id": "42",
        "attributes": [
            {"entity_id": "$opt_bot_filtering", "key": "$opt_bot_filtering", "type": "custom", "value": true}
        ],
        "snapshots": [{"decisions": [], "events": [{
            "entity_id": "3785620495", "key": "basic_event", "timestamp": 1767225600000_i64, "uuid": "m-3", "tags": {}
        }]}]
    });
    let third_visitor = json!({
        "visitor_id": "anon-4",
        "attributes": [
            {"entity_id": "$opt_bot_filtering", "key": "$opt_bot_filtering", "type": "custom", "value": true}
        ],
        "snapshots": [{"decisions": [], "events": [{
            "entity_id": "3785620495", "key": "basic_event", "timestamp": 1767225600999_i64, "uuid": "m-4", "value": 3.5, "tags": {}
        }]}]
    });
    assert_eq!(requests[0].json(), java_v4_top_level(json!([first_visitor, second_visitor])));
    assert_eq!(requests[1].json(), java_v4_top_level(json!([third_visitor])));

    let dead_letters = read_json_lines(&directory.path().join("dead-letters.ndjson"));
    let reasons: Vec<&str> = dead_letters.iter().map(|record| record["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, vec!["invalid_json", "unknown_event_key", "missing_user_id"]);
    assert_eq!(dead_letters[0]["event"], json!("not json at all"));
    assert_eq!(dead_letters[0]["component"], json!("opt"));
    assert_eq!(dead_letters[1]["event"]["event"], json!("Unknown Thing"));
    assert!(dead_letters[1]["message"].as_str().unwrap().contains("`Unknown Thing`"), "{}", dead_letters[1]["message"]);
    assert!(
        dead_letters[1]["message"].as_str().unwrap().contains("revision 1480511547"),
        "{}",
        dead_letters[1]["message"]
    );
    assert_eq!(
        dead_letters[2]["event"],
        json!({"type":"track","event":"Registered","timestamp":"2026-01-02T00:00:00Z"})
    );
}

#[tokio::test]
async fn retry_after_503_resends_same_body() {
    let server = RecordingServer::start().await;
    server.script([Reply::status(503)]);
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(directory.path(), &server, "max_events = 10\ntimeout_secs = 0.1", JAVA_V4_EVENT_KEYS);

    let input =
        r#"{"type":"track","event":"Registered","userId":"u-1","messageId":"m-1","timestamp":"2026-01-01T00:00:00Z"}"#;
    let output = run_binary(&["run", "--config", config.to_str().unwrap()], input.as_bytes(), &[]).await;

    assert!(output.status.success(), "stderr:\n{}", output.stderr);
    assert_eq!(output.summary_line(), "summary: received=1 sent=1 dead_lettered=0 skipped=0 undelivered=0");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body, requests[1].body);
    assert_eq!(requests[1].json()["visitors"][0]["snapshots"][0]["events"][0]["uuid"], json!("m-1"));
}

#[tokio::test]
async fn exhausted_retries_dead_letter_events() {
    let server = RecordingServer::start().await;
    server.script((0..10).map(|_| Reply::status(500)));
    let directory = tempfile::tempdir().unwrap();
    let extra_request = "";
    let config = write_config(directory.path(), &server, "max_events = 10\ntimeout_secs = 0.1", extra_request);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("retry_initial_backoff_secs = 0.01", "retry_initial_backoff_secs = 0.01\nretry_attempts = 2");
    std::fs::write(&config, text).unwrap();

    let input =
        r#"{"type":"track","event":"basic_event","userId":"u-1","messageId":"m-1","timestamp":"2026-01-01T00:00:00Z"}"#;
    let output = run_binary(&["run", "--config", config.to_str().unwrap()], input.as_bytes(), &[]).await;

    assert!(output.status.success(), "stderr:\n{}", output.stderr);
    assert_eq!(output.summary_line(), "summary: received=1 sent=0 dead_lettered=1 skipped=0 undelivered=0");
    assert_eq!(server.requests().len(), 3, "the first attempt and two retries");
    let dead_letters = read_json_lines(&directory.path().join("dead-letters.ndjson"));
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(dead_letters[0]["reason"], json!("retries_exhausted"));
    assert_eq!(dead_letters[0]["component"], json!("api"));
    assert_eq!(dead_letters[0]["status"], json!(500));
    assert_eq!(dead_letters[0]["event"]["visitors"][0]["visitor_id"], json!("u-1"));
}

#[tokio::test]
async fn segment_track_examples_delivered() {
    let server = RecordingServer::start().await;
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(directory.path(), &server, "max_events = 500\ntimeout_secs = 0.2", JAVA_V4_EVENT_KEYS);
    let input = std::fs::read(fixture("segment-events/all-track.ndjson")).unwrap();

    let output = run_binary(&["run", "--config", config.to_str().unwrap()], &input, &[]).await;

    assert!(output.status.success(), "stderr:\n{}", output.stderr);
    // Six examples are renamed to a datafile key and carry a user id and a timestamp. Of the other 21,
    // one has no user id, one has no event name, and 19 use event names the datafile lacks.
    assert_eq!(output.summary_line(), "summary: received=27 sent=6 dead_lettered=21 skipped=0 undelivered=0");

    let requests = server.requests();
    assert_eq!(requests.len(), 1, "all six conversions share one datafile revision and fit one request");
    let body = requests[0].json();
    let visitor_ids: Vec<&str> =
        body["visitors"].as_array().unwrap().iter().map(|visitor| visitor["visitor_id"].as_str().unwrap()).collect();
    assert_eq!(visitor_ids, vec!["AiUGstSDIg", "AiUGstSDIg", "97980cfea0067", "97980cfea0067", "019mr8mf4r", "u123"]);

    let purchase = &body["visitors"][4];
    assert_eq!(
        purchase["snapshots"][0]["events"][0],
        json!({
            "entity_id": "3785620495", "key": "basic_event", "timestamp": 1354408208276_i64,
            "uuid": "6119aa6a-fa59-5c9e-87b9-0ec8f20a9164", "revenue": 3995, "tags": {"shippingMethod": "2-day"}
        })
    );
    let consent = &body["visitors"][5]["snapshots"][0]["events"][0];
    assert_eq!(consent["uuid"], json!("e1dadbef-578a-5733-9a69-e2551a647650"));
    assert_eq!(consent["timestamp"], json!(1672531200000_i64));

    let dead_letters = read_json_lines(&directory.path().join("dead-letters.ndjson"));
    let count = |reason: &str| dead_letters.iter().filter(|record| record["reason"] == json!(reason)).count();
    assert_eq!(count("unknown_event_key"), 19);
    assert_eq!(count("missing_user_id"), 1);
    assert_eq!(count("missing_event_key"), 1);
}

#[tokio::test]
async fn validate_names_misspelled_key() {
    let directory = tempfile::tempdir().unwrap();
    let config = write_file(
        directory.path(),
        "bad.toml",
        r#"
[sources.in]
type = "stdin"

[transforms.opt]
type = "optimizely"
inputs = ["in"]
revenue_unt = "dollars"

[transforms.opt.datafile]
path = "missing.json"

[sinks.out]
type = "console"
inputs = ["opt"]
"#,
    );

    let output = run_binary(&["validate", "--config", config.to_str().unwrap()], b"", &[]).await;

    assert_eq!(output.status.code(), Some(2), "stderr:\n{}", output.stderr);
    assert!(
        output.stderr.contains("transforms.opt: unknown option `revenue_unt`; did you mean `revenue_unit`?"),
        "stderr:\n{}",
        output.stderr
    );
}

#[tokio::test]
async fn validate_accepts_bundled_examples() {
    for example in [
        "quickstart.toml",
        "stdin-to-event-api.toml",
        "sdk-key-with-access-token.toml",
        "http-sidecar.toml",
        "kafka.toml",
    ] {
        let path = support::crate_root().join("config-examples").join(example);
        let envs = [
            ("OPTIMIZELY_ACCOUNT_ID", "10000001"),
            ("OPTIMIZELY_SDK_KEY", "ExampleSdkKey"),
            ("OPTIMIZELY_DATAFILE_TOKEN", "example-token"),
            ("SEGMENT_WRITE_KEY", "example-write-key"),
            ("SHIPPER_TOKEN", "example-shipper-token"),
            ("OPTIMIZELY_PERSONAL_ACCESS_TOKEN", "example-personal-token"),
            ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            ("KAFKA_USERNAME", "example-user"),
            ("KAFKA_PASSWORD", "example-password"),
        ];
        let output = run_binary(&["validate", "--config", path.to_str().unwrap()], b"", &envs).await;
        assert!(output.status.success(), "{example}: stderr:\n{}", output.stderr);
    }
}

#[tokio::test]
async fn quickstart_prints_request_bodies() {
    let path = support::crate_root().join("config-examples/quickstart.toml");

    let output = run_binary(&["run", "--config", path.to_str().unwrap()], b"", &[]).await;
    let second_run = run_binary(&["run", "--config", path.to_str().unwrap()], b"", &[]).await;

    assert!(output.status.success(), "stderr:\n{}", output.stderr);
    assert_eq!(output.summary_line(), "summary: received=8 sent=3 dead_lettered=3 skipped=2 undelivered=0");
    let lines: Vec<serde_json::Value> = output.stdout.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let conversions: Vec<&serde_json::Value> = lines.iter().filter(|line| line.get("visitors").is_some()).collect();
    assert_eq!(conversions.len(), 3);
    assert_eq!(
        conversions[0]["visitors"][0]["snapshots"][0]["events"][0],
        json!({
            "entity_id": "30000001", "key": "order_completed", "timestamp": 1796047407512_i64, "uuid": "msg-0001",
            "revenue": 1999, "tags": {"order_id": "A-1001", "currency": "USD", "coupon": "WINTER"}
        })
    );

    // The add_to_cart message has no messageId: its uuid is derived from its content, so a second run
    // over the same input yields the same uuid.
    let generated_uuid = &conversions[2]["visitors"][0]["snapshots"][0]["events"][0]["uuid"];
    assert_eq!(generated_uuid, &json!("cc60468f-36a2-52cd-b6c2-69b24164caa6"));
    let second_conversions: Vec<serde_json::Value> = second_run
        .stdout
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|line| line.get("visitors").is_some())
        .collect();
    assert_eq!(second_conversions[2]["visitors"][0]["snapshots"][0]["events"][0]["uuid"], *generated_uuid);
}

/// Writes a config whose datafile comes by SDK key with an access token from a local CDN stand-in.
fn write_sdk_key_config(
    directory: &std::path::Path,
    cdn: &RecordingServer,
    api: &RecordingServer,
    account_id: &str,
) -> std::path::PathBuf {
    let text = format!(
        r#"
[sources.in]
type = "stdin"

[transforms.opt]
type = "optimizely"
inputs = ["in"]
account_id = "{account_id}"

[transforms.opt.datafile]
sdk_key = "SdkKey123"
access_token = "${{DATAFILE_TOKEN}}"
authenticated_cdn_url = "{cdn}"

[sinks.api]
type = "optimizely_events"
inputs = ["opt"]
endpoint = "{endpoint}"
batch.timeout_secs = 0.1
"#,
        cdn = cdn.url(""),
        endpoint = api.url("/v1/events"),
    );
    write_file(directory, "relay.toml", &text)
}

const TOKEN: &str = "tok-e2e-secret-7Qx9";

#[tokio::test]
async fn datafile_fetched_by_sdk_key_with_token() {
    let cdn = RecordingServer::start().await;
    let datafile = std::fs::read_to_string(fixture("datafiles/go-typed-audience-datafile.json")).unwrap();
    cdn.script([Reply::Status(200, vec![("last-modified".into(), "Wed, 02 Dec 2026 10:00:00 GMT".into())], datafile)]);
    let api = RecordingServer::start().await;
    let directory = tempfile::tempdir().unwrap();
    let config = write_sdk_key_config(directory.path(), &cdn, &api, "4879520872");

    let input =
        r#"{"type":"track","event":"item_bought","userId":"u-1","messageId":"m-1","timestamp":"2026-01-01T00:00:00Z"}"#;
    let output =
        run_binary(&["run", "--config", config.to_str().unwrap()], input.as_bytes(), &[("DATAFILE_TOKEN", TOKEN)])
            .await;

    assert!(output.status.success(), "stderr:\n{}", output.stderr);
    let fetches = cdn.requests();
    assert_eq!(fetches.len(), 1);
    assert_eq!(fetches[0].method, "GET");
    assert_eq!(fetches[0].path, "/datafiles/auth/SdkKey123.json");
    assert_eq!(fetches[0].header("authorization"), Some(format!("Bearer {TOKEN}")));
    let body = api.requests()[0].json();
    assert_eq!(body["project_id"], json!("11624721371"));
    assert_eq!(body["visitors"][0]["snapshots"][0]["events"][0]["entity_id"], json!("594089"));
    assert!(!output.stderr.contains(TOKEN), "the token leaked into the log:\n{}", output.stderr);
}

#[tokio::test]
async fn forbidden_datafile_fails_startup_without_token() {
    let cdn = RecordingServer::start().await;
    cdn.script([Reply::status(403)]);
    let api = RecordingServer::start().await;
    let directory = tempfile::tempdir().unwrap();
    let config = write_sdk_key_config(directory.path(), &cdn, &api, "4879520872");

    let output = run_binary(&["run", "--config", config.to_str().unwrap()], b"", &[("DATAFILE_TOKEN", TOKEN)]).await;

    assert_eq!(output.status.code(), Some(3), "stderr:\n{}", output.stderr);
    assert!(output.stderr.contains("transforms.opt:"), "stderr:\n{}", output.stderr);
    assert!(output.stderr.contains("403"), "stderr:\n{}", output.stderr);
    assert!(output.stderr.contains("/datafiles/auth/SdkKey123.json"), "stderr:\n{}", output.stderr);
    assert!(!output.stderr.contains(TOKEN), "the token leaked into an error:\n{}", output.stderr);
    assert!(api.requests().is_empty());
}

#[tokio::test]
async fn account_mismatch_fails_startup() {
    let cdn = RecordingServer::start().await;
    let datafile = std::fs::read_to_string(fixture("datafiles/go-typed-audience-datafile.json")).unwrap();
    cdn.script([Reply::Status(200, vec![], datafile)]);
    let api = RecordingServer::start().await;
    let directory = tempfile::tempdir().unwrap();
    let config = write_sdk_key_config(directory.path(), &cdn, &api, "999");

    let output = run_binary(&["run", "--config", config.to_str().unwrap()], b"", &[("DATAFILE_TOKEN", TOKEN)]).await;

    assert_eq!(output.status.code(), Some(3), "stderr:\n{}", output.stderr);
    assert!(output.stderr.contains("4879520872"), "stderr:\n{}", output.stderr);
    assert!(output.stderr.contains("999"), "stderr:\n{}", output.stderr);
}

#[tokio::test]
async fn validate_reports_missing_datafile() {
    let directory = tempfile::tempdir().unwrap();
    let config = write_file(
        directory.path(),
        "relay.toml",
        "[sources.in]\ntype = \"stdin\"\n[transforms.opt]\ntype = \"optimizely\"\ninputs = [\"in\"]\n[transforms.opt.datafile]\npath = \"nowhere.json\"\n[sinks.out]\ntype = \"console\"\ninputs = [\"opt\"]\n",
    );

    let output = run_binary(&["validate", "--config", config.to_str().unwrap()], b"", &[]).await;

    assert_eq!(output.status.code(), Some(2), "stderr:\n{}", output.stderr);
    assert!(output.stderr.contains("nowhere.json"), "stderr:\n{}", output.stderr);
}

#[tokio::test]
async fn missing_environment_variable_named() {
    let directory = tempfile::tempdir().unwrap();
    let cdn = RecordingServer::start().await;
    let api = RecordingServer::start().await;
    let config = write_sdk_key_config(directory.path(), &cdn, &api, "1");

    let output = run_binary(&["run", "--config", config.to_str().unwrap()], b"", &[]).await;

    assert_eq!(output.status.code(), Some(2), "stderr:\n{}", output.stderr);
    assert!(output.stderr.contains("environment variable `DATAFILE_TOKEN` is not set"), "stderr:\n{}", output.stderr);
    assert!(cdn.requests().is_empty(), "no network call before the configuration is valid");
}

#[tokio::test]
async fn sigterm_stops_stdin_left_open() {
    use tokio::io::AsyncWriteExt;

    let server = RecordingServer::start().await;
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(directory.path(), &server, "max_events = 1", JAVA_V4_EVENT_KEYS);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_optimizely-relay"))
        .args(["run", "--config", config.to_str().unwrap()])
        .current_dir(directory.path())
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let line =
        r#"{"type":"track","event":"Registered","userId":"u-1","messageId":"m-1","timestamp":"2026-01-02T00:00:00Z"}"#;
    input.write_all(format!("{line}\n").as_bytes()).await.unwrap();

    // The conversion is sent while standard input stays open, then SIGTERM stops the relay.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.requests().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(server.requests().len(), 1, "the conversion reached the Event API before SIGTERM");
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the relay stopped within 30 seconds of SIGTERM")
        .unwrap();
    drop(input);

    let output = support::RunOutput {
        status: output.status,
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(output.status.success(), "stderr:\n{}", output.stderr);
    assert_eq!(output.summary_line(), "summary: received=1 sent=1 dead_lettered=0 skipped=0 undelivered=0");
}
