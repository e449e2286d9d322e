//! Metrics, health, logs and the summary of a running relay.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::{free_port, wait_for_port, write_file, RecordingServer, Reply};
use tokio::io::AsyncWriteExt;

const DATAFILE_TOKEN: &str = "tok-observability-Zx81";
const WRITE_KEY: &str = "wk-observability-Lm47";
const SHIPPER_TOKEN: &str = "shipper-observability-Ha52";
const PERSONAL_TOKEN: &str = "pat-observability-Qe93";

/// Parses Prometheus text into `name{labels sorted}` → value.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut metrics = BTreeMap::new();
    for line in text.lines().filter(|line| !line.starts_with('#') && !line.trim().is_empty()) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let key = match series.split_once('{') {
            Some((name, labels)) => {
                let mut labels: Vec<&str> =
                    labels.trim_end_matches('}').split("\",").map(|label| label.trim_end_matches('"')).collect();
                labels.sort();
                format!("{name}{{{}}}", labels.join(","))
            }
            None => series.to_owned(),
        };
        metrics.insert(key, value.parse().unwrap_or(f64::NAN));
    }
    metrics
}

fn metric(metrics: &BTreeMap<String, f64>, key: &str) -> f64 {
    *metrics.get(key).unwrap_or_else(|| {
        let known: Vec<&String> =
            metrics.keys().filter(|name| name.starts_with(key.split('{').next().unwrap())).collect();
        panic!("no series {key}; series of that name: {known:#?}")
    })
}

fn labels(id: &str, kind: &str, component_type: &str, extra: &[&str]) -> String {
    let mut labels = vec![
        format!("component_id=\"{id}"),
        format!("component_kind=\"{kind}"),
        format!("component_type=\"{component_type}"),
    ];
    labels.extend(extra.iter().map(|label| label.to_string()));
    labels.sort();
    labels.join(",")
}

/// Starts a relay whose datafile comes by SDK key from `cdn`, with the API server on `api_port`.
fn spawn_relay(
    directory: &std::path::Path,
    cdn: &RecordingServer,
    api: &RecordingServer,
    api_port: u16,
    log_level: &str,
) -> tokio::process::Child {
    let config = write_file(
        directory,
        "relay.toml",
        &format!(
            r#"
shutdown_timeout_secs = 10

[api]
address = "127.0.0.1:{api_port}"

[sources.in]
type = "stdin"

[transforms.opt]
type = "optimizely"
inputs = ["in"]
[transforms.opt.datafile]
sdk_key = "Key1"
access_token = "${{DATAFILE_TOKEN}}"
authenticated_cdn_url = "{cdn}"
[transforms.opt.event_keys]
"Order Completed" = "order_completed"

[sinks.api]
type = "optimizely_events"
inputs = ["opt"]
endpoint = "{endpoint}"
batch.timeout_secs = 0.05

[sinks.deletions]
type = "optimizely_user_deletion"
inputs = ["opt.deletions"]
personal_access_token = "${{PERSONAL_TOKEN}}"
endpoint = "{endpoint}"

[sinks.dead_letters]
type = "file"
inputs = ["opt.dropped", "api.dropped", "deletions.dropped"]
path = "dead.ndjson"
"#,
            cdn = cdn.url(""),
            endpoint = api.url("/v1/events"),
        ),
    );
    tokio::process::Command::new(env!("CARGO_BIN_EXE_optimizely-relay"))
        .args(["--log-level", log_level, "run", "--config", config.to_str().unwrap()])
        .env("DATAFILE_TOKEN", DATAFILE_TOKEN)
        .env("PERSONAL_TOKEN", PERSONAL_TOKEN)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn cdn_with_datafile() -> RecordingServer {
    let cdn = RecordingServer::start().await;
    let datafile =
        std::fs::read_to_string(support::crate_root().join("config-examples/quickstart-datafile.json")).unwrap();
    cdn.script([Reply::Status(200, vec![], datafile)]);
    cdn.reply_always(Reply::status(304));
    cdn
}

fn track(index: usize) -> String {
    format!(
        "{{\"type\":\"track\",\"event\":\"Order Completed\",\"userId\":\"u-{index}\",\"messageId\":\"m-{index}\",\"timestamp\":\"2026-12-01T00:00:00Z\"}}\n"
    )
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn metrics_count_events_and_requests() {
    let cdn = cdn_with_datafile().await;
    let api = RecordingServer::start().await;
    let directory = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut relay = spawn_relay(directory.path(), &cdn, &api, port, "info");
    wait_for_port(port).await;
    let mut stdin = relay.stdin.take().unwrap();

    let mut input: String = (0..5).map(track).collect();
    input.push_str(
        "{\"type\":\"track\",\"event\":\"Refund\",\"userId\":\"u\",\"timestamp\":\"2026-12-01T00:00:00Z\"}\n",
    );
    input.push_str("not json\n{\"type\":\"identify\",\"userId\":\"u\"}\n");
    stdin.write_all(input.as_bytes()).await.unwrap();
    stdin.flush().await.unwrap();
    for _ in 0..500 {
        if !api.requests().is_empty() && support::read_json_lines(&directory.path().join("dead.ndjson")).len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (status, health) = get(&format!("http://127.0.0.1:{port}/health")).await;
    assert_eq!((status, health.as_str()), (200, "{\"status\":\"ok\"}"));
    let (status, text) = get(&format!("http://127.0.0.1:{port}/metrics")).await;
    assert_eq!(status, 200);
    let metrics = parse_metrics(&text);

    let source = labels("in", "source", "stdin", &[]);
    assert_eq!(metric(&metrics, &format!("component_received_events_total{{{source}}}")), 8.0);
    assert_eq!(metric(&metrics, &format!("component_received_bytes_total{{{source}}}")), input.len() as f64);
    let transform = labels("opt", "transform", "optimizely", &[]);
    assert_eq!(metric(&metrics, &format!("component_received_events_total{{{transform}}}")), 8.0);
    assert_eq!(metric(&metrics, &format!("component_sent_events_total{{{transform}}}")), 5.0);
    let dropped = labels("opt", "transform", "optimizely", &["output=\"dropped"]);
    assert_eq!(metric(&metrics, &format!("component_sent_events_total{{{dropped}}}")), 2.0);
    let unknown = labels("opt", "transform", "optimizely", &["intentional=\"false", "reason=\"unknown_event_key"]);
    assert_eq!(metric(&metrics, &format!("component_discarded_events_total{{{unknown}}}")), 1.0);
    let invalid = labels("opt", "transform", "optimizely", &["intentional=\"false", "reason=\"invalid_json"]);
    assert_eq!(metric(&metrics, &format!("component_discarded_events_total{{{invalid}}}")), 1.0);
    let skipped = labels("opt", "transform", "optimizely", &["intentional=\"true", "reason=\"message_type"]);
    assert_eq!(metric(&metrics, &format!("component_discarded_events_total{{{skipped}}}")), 1.0);

    let sink = labels("api", "sink", "optimizely_events", &[]);
    assert_eq!(metric(&metrics, &format!("component_sent_events_total{{{sink}}}")), 5.0);
    let body_bytes: usize = api.requests().iter().map(|request| request.body.len()).sum();
    assert_eq!(metric(&metrics, &format!("component_sent_bytes_total{{{sink}}}")), body_bytes as f64);
    let requests = api.requests().len() as f64;
    assert_eq!(metric(&metrics, "http_client_responses_total{component_id=\"api,status=\"204}"), requests);
    assert_eq!(metric(&metrics, "http_client_rtt_seconds_count{component_id=\"api}"), requests);
    assert_eq!(metric(&metrics, &format!("component_batch_events_count{{{sink}}}")), requests);
    assert_eq!(metric(&metrics, "datafile_revision{component_id=\"opt}"), 42.0);
    assert!(metric(&metrics, "datafile_age_seconds{component_id=\"opt}") < 60.0);
    assert_eq!(metric(&metrics, "pipeline_events{outcome=\"sent}"), 5.0);
    assert_eq!(metric(&metrics, "pipeline_events{outcome=\"dead_lettered}"), 2.0);
    assert_eq!(metric(&metrics, "pipeline_events{outcome=\"skipped}"), 1.0);

    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(30), relay.wait_with_output()).await.unwrap().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test]
async fn health_reports_draining() {
    let cdn = cdn_with_datafile().await;
    let api = RecordingServer::start().await;
    api.reply_always(Reply::Stall(Duration::from_secs(2)));
    let directory = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut relay = spawn_relay(directory.path(), &cdn, &api, port, "info");
    wait_for_port(port).await;
    let mut stdin = relay.stdin.take().unwrap();
    stdin.write_all(track(1).as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(&format!("http://127.0.0.1:{port}/health")).await.0, 200);

    drop(stdin);
    let mut draining = None;
    for _ in 0..100 {
        let (status, body) = get(&format!("http://127.0.0.1:{port}/health")).await;
        if status == 503 {
            draining = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(draining.as_deref(), Some("{\"status\":\"draining\"}"));
    let output = tokio::time::timeout(Duration::from_secs(30), relay.wait_with_output()).await.unwrap().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test]
async fn secrets_never_logged() {
    let cdn = cdn_with_datafile().await;
    let api = RecordingServer::start().await;
    let directory = tempfile::tempdir().unwrap();
    let port = free_port();
    let http_port = free_port();
    let config = write_file(
        directory.path(),
        "relay.toml",
        &format!(
            r#"
[api]
address = "127.0.0.1:{port}"

[sources.http]
type = "http_server"
address = "127.0.0.1:{http_port}"
write_keys = ["{WRITE_KEY}"]
auth.bearer_token = "{SHIPPER_TOKEN}"

[transforms.opt]
type = "optimizely"
inputs = ["http"]
[transforms.opt.datafile]
sdk_key = "Key1"
access_token = "{DATAFILE_TOKEN}"
authenticated_cdn_url = "{cdn}"
refresh_interval_secs = 0.2

[sinks.api]
type = "optimizely_events"
inputs = ["opt"]
endpoint = "{endpoint}"

[sinks.deletions]
type = "optimizely_user_deletion"
inputs = ["opt.deletions"]
personal_access_token = "{PERSONAL_TOKEN}"
endpoint = "{endpoint}"
"#,
            cdn = cdn.url(""),
            endpoint = api.url("/v1/sar"),
        ),
    );
    let relay = tokio::process::Command::new(env!("CARGO_BIN_EXE_optimizely-relay"))
        .args(["--log-level", "trace", "run", "--config", config.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for_port(http_port).await;
    let client = reqwest::Client::new();
    let segment = format!("http://127.0.0.1:{http_port}/v1/batch");
    let body = r#"{"batch":[{"type":"track","event":"order_completed","userId":"u","timestamp":"2026-12-01T00:00:00Z"},{"type":"delete","userId":"u"}]}"#;
    client.post(&segment).basic_auth(WRITE_KEY, None::<&str>).body(body).send().await.unwrap();
    client.post(&segment).basic_auth("wrong", None::<&str>).body(body).send().await.unwrap();
    client
        .post(format!("http://127.0.0.1:{http_port}/events"))
        .bearer_auth(SHIPPER_TOKEN)
        .body("{}")
        .send()
        .await
        .unwrap();
    client.post(format!("http://127.0.0.1:{http_port}/events")).bearer_auth("wrong").body("{}").send().await.unwrap();
    let metrics = client.get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap().text().await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;

    let pid = relay.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let output = tokio::time::timeout(Duration::from_secs(30), relay.wait_with_output()).await.unwrap().unwrap();
    let log = String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout);

    assert!(cdn.requests().len() >= 2, "the datafile was refreshed with the token");
    assert!(api.requests().len() >= 2, "the conversion and the deletion were sent");
    for secret in [DATAFILE_TOKEN, WRITE_KEY, SHIPPER_TOKEN, PERSONAL_TOKEN] {
        assert!(!log.contains(secret), "{secret} appears in the trace log");
        assert!(!metrics.contains(secret), "{secret} appears in the metrics");
    }
}

#[tokio::test]
async fn json_log_format_ends_with_json_summary() {
    let path = support::crate_root().join("config-examples/quickstart.toml");
    let output =
        support::run_binary(&["--log-format", "json", "run", "--config", path.to_str().unwrap()], b"", &[]).await;

    assert!(output.status.success());
    let last = output.stderr.lines().last().unwrap();
    let summary: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(
        summary,
        serde_json::json!({"summary": {"received": 8, "sent": 3, "dead_lettered": 3, "skipped": 2, "undelivered": 0}})
    );
    for line in output.stderr.lines() {
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "not a JSON line: {line}");
    }
}

#[tokio::test]
async fn log_lines_carry_component_span() {
    let path = support::crate_root().join("config-examples/quickstart.toml");
    let output =
        support::run_binary(&["--log-format", "json", "run", "--config", path.to_str().unwrap()], b"", &[]).await;

    let reading = output
        .stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["fields"]["message"] == "reading file")
        .expect("a `reading file` log line");
    assert_eq!(reading["span"]["component_id"], "events");
    assert_eq!(reading["span"]["component_kind"], "source");
    assert_eq!(reading["span"]["component_type"], "file");
}

#[tokio::test]
async fn progress_line_on_terminal() {
    // `script` runs the relay with a pseudo-terminal as standard error, as an operator's shell would.
    let config = support::crate_root().join("config-examples/quickstart.toml");
    let command = format!(
        "{} --log-level error run --config {} > /dev/null",
        env!("CARGO_BIN_EXE_optimizely-relay"),
        config.display()
    );
    let output = tokio::process::Command::new("script").args(["-qfec", &command, "/dev/null"]).output().await.unwrap();

    let terminal = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{terminal}");
    assert!(
        terminal.contains(" events/s | received 8 sent 3 dead-lettered 3 skipped 2 | read 1.1 KiB of 1.1 KiB (100%)"),
        "{terminal:?}"
    );
    let summary_position = terminal.find("summary: received=8").expect("the summary line");
    assert!(terminal.find("events/s").unwrap() < summary_position, "the progress line precedes the summary");
}

#[tokio::test]
async fn no_progress_line_without_terminal() {
    let path = support::crate_root().join("config-examples/quickstart.toml");
    let output =
        support::run_binary(&["--log-level", "error", "run", "--config", path.to_str().unwrap()], b"", &[]).await;
    assert!(!output.stderr.contains("events/s"), "{}", output.stderr);
}
