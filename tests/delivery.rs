//! Delivery guarantees of a running relay: shutdown on signals, the shutdown timeout, and buffers that
//! keep a failing sink from stalling its siblings.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{fixture, write_file, RecordingServer, Reply};
use tokio::io::AsyncWriteExt;

fn track_line(message_id: usize) -> String {
    format!(
        r#"{{"type":"track","event":"item_bought","userId":"user-{message_id}","messageId":"m-{message_id}","timestamp":"2026-01-01T00:00:00Z"}}"#
    ) + "\n"
}

/// Writes a stdin → optimizely → optimizely_events config; `sink_extra` is added to the sink's table
/// and `extra` after it.
fn write_config(
    directory: &std::path::Path,
    api: &RecordingServer,
    global: &str,
    sink_extra: &str,
    extra: &str,
) -> String {
    let text = format!(
        r#"
{global}

[sources.in]
type = "stdin"

[transforms.opt]
type = "optimizely"
inputs = ["in"]

[transforms.opt.datafile]
path = "{datafile}"

[sinks.api]
type = "optimizely_events"
inputs = ["opt"]
endpoint = "{endpoint}"
{sink_extra}

{extra}
"#,
        datafile = fixture("datafiles/go-typed-audience-datafile.json").display(),
        endpoint = api.url("/v1/events"),
    );
    write_file(directory, "relay.toml", &text).to_string_lossy().into_owned()
}

fn spawn_relay(config: &str) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_optimizely-relay"))
        .args(["run", "--config", config])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn optimizely-relay")
}

async fn finish(child: tokio::process::Child) -> (std::process::ExitStatus, String) {
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the relay exits within 60 seconds")
        .expect("wait for the relay");
    (output.status, String::from_utf8_lossy(&output.stderr).into_owned())
}

fn summary_line(stderr: &str) -> &str {
    stderr.lines().find(|line| line.starts_with("summary: ")).unwrap_or_else(|| panic!("no summary in:\n{stderr}"))
}

#[tokio::test]
async fn signals_flush_partial_batch() {
    for signal in ["-TERM", "-INT"] {
        let api = RecordingServer::start().await;
        let directory = tempfile::tempdir().unwrap();
        let config = write_config(directory.path(), &api, "", "batch.timeout_secs = 60", "");
        let mut child = spawn_relay(&config);
        let mut stdin = child.stdin.take().unwrap();
        for message_id in 0..3 {
            stdin.write_all(track_line(message_id).as_bytes()).await.unwrap();
        }
        stdin.flush().await.unwrap();
        // The input stays open: only the signal can end the run. The pause lets the relay read the lines.
        tokio::time::sleep(Duration::from_millis(1500)).await;

        let pid = child.id().expect("the relay is running").to_string();
        let killed = std::process::Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(killed.success());
        let (status, stderr) = finish(child).await;
        drop(stdin);

        assert!(status.success(), "{signal}: stderr:\n{stderr}");
        assert_eq!(summary_line(&stderr), "summary: received=3 sent=3 dead_lettered=0 skipped=0 undelivered=0");
        let requests = api.requests();
        assert_eq!(requests.len(), 1, "{signal}: the partial batch is sent once at shutdown");
        assert_eq!(requests[0].json()["visitors"].as_array().unwrap().len(), 3);
    }
}

#[tokio::test]
async fn shutdown_timeout_counts_undelivered() {
    let api = RecordingServer::start().await;
    api.reply_always(Reply::Stall(Duration::from_secs(30)));
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(
        directory.path(),
        &api,
        "shutdown_timeout_secs = 1",
        "batch.timeout_secs = 0.05\nrequest.timeout_secs = 20",
        "",
    );
    let mut child = spawn_relay(&config);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all((track_line(1) + &track_line(2)).as_bytes()).await.unwrap();
    drop(stdin);

    let started = std::time::Instant::now();
    let (status, stderr) = finish(child).await;

    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert_eq!(summary_line(&stderr), "summary: received=2 sent=0 dead_lettered=0 skipped=0 undelivered=2");
    assert!(stderr.contains("shutdown timeout"), "stderr:\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(15), "the relay waited for the stalled request");
}

#[tokio::test]
async fn failing_sink_does_not_stall_sibling() {
    let api = RecordingServer::start().await;
    api.reply_always(Reply::status(503));
    let directory = tempfile::tempdir().unwrap();
    let archive = directory.path().join("archive.ndjson");
    let config = write_config(
        directory.path(),
        &api,
        "shutdown_timeout_secs = 1",
        "batch.max_events = 5\nbatch.timeout_secs = 0.01\nrequest.concurrency = 1\nrequest.retry_initial_backoff_secs = 30\nrequest.retry_max_backoff_secs = 30\nbuffer.max_events = 20\nbuffer.when_full = \"drop_newest\"",
        &format!("[sinks.archive]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"{}\"\n", archive.display()),
    );
    let input: String = (0..3000).map(track_line).collect();
    let mut child = spawn_relay(&config);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);

    let (status, stderr) = finish(child).await;

    let archived = std::fs::read_to_string(&archive).unwrap();
    assert_eq!(archived.lines().count(), 3000, "the sibling sink received every message");
    let last: serde_json::Value = serde_json::from_str(archived.lines().last().unwrap()).unwrap();
    assert_eq!(last["userId"], json!("user-2999"));
    // Every event reached the archive, but none reached the Event API, so none counts as sent.
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert_eq!(summary_line(&stderr), "summary: received=3000 sent=0 dead_lettered=0 skipped=0 undelivered=3000");
    assert!(stderr.contains("input buffer is full"), "stderr:\n{stderr}");
}
