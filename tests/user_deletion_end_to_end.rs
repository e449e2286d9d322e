//! End-to-end runs of the real binary with an `optimizely_user_deletion` sink: `validate`, the
//! `delete-user` command, and a pipeline from standard input, against local servers on 127.0.0.1 that
//! play the Subject Access Request API and the Event API.

mod support;

use serde_json::json;
use support::{fixture, read_json_lines, run_binary, write_file, RecordingServer, Reply};

/// A distinctive token, so that any leak into output is found by a plain substring search.
const TOKEN: &str = "pat-E2E-7fQ2-do-not-print";
const TOKEN_VARIABLE: &str = "RELAY_TEST_OPTIMIZELY_PAT";
const PATH: &str = "/v2/subject-access-requests";

/// Returns the deletion sink table `[sinks.ID]` for `server`, reading the token from the environment.
fn deletion_sink(id: &str, server: &RecordingServer, extra: &str) -> String {
    format!(
        r#"
[sinks.{id}]
type = "optimizely_user_deletion"
inputs = ["opt.deletions"]
endpoint = "{endpoint}"
personal_access_token = "${{{TOKEN_VARIABLE}}}"
{extra}

[sinks.{id}.request]
concurrency = 1
retry_initial_backoff_secs = 0.01
retry_max_backoff_secs = 0.05
"#,
        endpoint = server.url(PATH),
    )
}

/// Writes a stdin → optimizely → (Event API sink, `sinks` tables) configuration and returns its path.
fn write_config(directory: &std::path::Path, events_api: &RecordingServer, sinks: &str) -> String {
    let text = format!(
        r#"
shutdown_timeout_secs = 20

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
endpoint = "{events_endpoint}"
batch.timeout_secs = 0.1

{sinks}
"#,
        datafile = fixture("datafiles/go-typed-audience-datafile.json").display(),
        events_endpoint = events_api.url("/v1/events"),
    );
    write_file(directory, "relay.toml", &text).to_string_lossy().into_owned()
}

fn assert_no_token(label: &str, text: &str) {
    assert!(!text.contains(TOKEN), "the token leaked into {label}:\n{text}");
}

fn body_text(request: &support::RecordedRequest) -> String {
    String::from_utf8(request.body.clone()).expect("UTF-8 body")
}

fn expected_body(identifier: &str) -> String {
    format!(
        r#"{{"data_type":"visitor","identifier":"{identifier}","identifier_type":"fullstack_id","request_type":"delete"}}"#
    )
}

// ---------------------------------------------------------------------------------------------------
// validate
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn validate_rejects_missing_token() {
    let events_api = RecordingServer::start().await;
    let deletion_api = RecordingServer::start().await;
    let directory = tempfile::tempdir().unwrap();
    let sink = deletion_sink("del", &deletion_api, "")
        .replace(&format!("personal_access_token = \"${{{TOKEN_VARIABLE}}}\"\n"), "");
    let config = write_config(directory.path(), &events_api, &sink);

    let output = run_binary(&["validate", "--config", &config], b"", &[]).await;

    assert_eq!(output.status.code(), Some(2), "stderr:\n{}", output.stderr);
    assert!(
        output.stderr.contains("sinks.del: missing required option `personal_access_token`"),
        "stderr:\n{}",
        output.stderr
    );
}

#[tokio::test]
async fn validate_rejects_empty_token() {
    let events_api = RecordingServer::start().await;
    let deletion_api = RecordingServer::start().await;
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(directory.path(), &events_api, &deletion_sink("del", &deletion_api, ""));

    let output = run_binary(&["validate", "--config", &config], b"", &[(TOKEN_VARIABLE, "")]).await;

    assert_eq!(output.status.code(), Some(2), "stderr:\n{}", output.stderr);
    assert!(output.stderr.contains("sinks.del: `personal_access_token` is empty"), "stderr:\n{}", output.stderr);
}

#[tokio::test]
async fn validate_rejects_unset_token_variable() {
    let events_api = RecordingServer::start().await;
    let deletion_api = RecordingServer::start().await;
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(directory.path(), &events_api, &deletion_sink("del", &deletion_api, ""));

    let output = run_binary(&["validate", "--config", &config], b"", &[]).await;

    assert_eq!(output.status.code(), Some(2), "stderr:\n{}", output.stderr);
    assert!(
        output.stderr.contains(&format!("environment variable `{TOKEN_VARIABLE}` is not set")),
        "stderr:\n{}",
        output.stderr
    );
}

#[tokio::test]
async fn validate_accepts_token_from_environment() {
    let events_api = RecordingServer::start().await;
    let deletion_api = RecordingServer::start().await;
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(directory.path(), &events_api, &deletion_sink("del", &deletion_api, ""));

    let output =
        run_binary(&["--log-level", "debug", "validate", "--config", &config], b"", &[(TOKEN_VARIABLE, TOKEN)]).await;

    assert!(output.status.success(), "stderr:\n{}", output.stderr);
    assert_no_token("stdout", &output.stdout);
    assert_no_token("stderr", &output.stderr);
    assert!(deletion_api.requests().is_empty(), "validate sends nothing");
}

#[tokio::test]
async fn deletion_sink_rejects_conversions() {
    let events_api = RecordingServer::start().await;
    let deletion_api = RecordingServer::start().await;
    let directory = tempfile::tempdir().unwrap();
    let sink = deletion_sink("del", &deletion_api, "").replace("inputs = [\"opt.deletions\"]", "inputs = [\"opt\"]");
    let config = write_config(directory.path(), &events_api, &sink);

    let output = run_binary(&["validate", "--config", &config], b"", &[(TOKEN_VARIABLE, TOKEN)]).await;

    assert_eq!(output.status.code(), Some(2), "stderr:\n{}", output.stderr);
    assert!(
        output.stderr.contains(
            "sinks.del: input `opt` carries Event API conversions but this component accepts deletion requests"
        ),
        "stderr:\n{}",
        output.stderr
    );
}

// ---------------------------------------------------------------------------------------------------
// delete-user
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn delete_user_prints_each_outcome() {
    let events_api = RecordingServer::start().await;
    let deletion_api = RecordingServer::start().await;
    deletion_api.script([
        Reply::status(201),
        Reply::Status(403, Vec::new(), r#"{"message":"Forbidden"}"#.to_owned()),
        Reply::status(201),
    ]);
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(directory.path(), &events_api, &deletion_sink("del", &deletion_api, ""));
    let ids = write_file(directory.path(), "ids.txt", "user-2\n\n  user-3\nuser-1\n\n");

    let args = [
        "--log-level",
        "debug",
        "delete-user",
        "--config",
        &config,
        "--user-id",
        "user-1",
        "--from",
        ids.to_str().unwrap(),
    ];
    let output = run_binary(&args, b"", &[(TOKEN_VARIABLE, TOKEN)]).await;

    assert_eq!(output.status.code(), Some(1), "a failed deletion exits 1; stderr:\n{}", output.stderr);
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "one line per distinct user:\n{}", output.stdout);
    assert_eq!(lines[0], "deleted user-1 (201)");
    assert!(lines[1].starts_with("failed user-2: 403 Forbidden from the Subject Access Request API"), "{}", lines[1]);
    assert!(lines[1].contains("permissions"), "{}", lines[1]);
    assert_eq!(lines[2], "deleted user-3 (201)");
    assert!(output.stderr.contains("summary: deleted=2 failed=1"), "stderr:\n{}", output.stderr);

    let requests = deletion_api.requests();
    let bodies: Vec<String> = requests.iter().map(body_text).collect();
    assert_eq!(bodies, vec![expected_body("user-1"), expected_body("user-2"), expected_body("user-3")]);
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, PATH);
        assert_eq!(request.header("authorization"), Some(format!("Bearer {TOKEN}")));
        assert_eq!(request.header("content-type").as_deref(), Some("application/json"));
    }
    assert!(events_api.requests().is_empty());
    assert_no_token("stdout", &output.stdout);
    assert_no_token("stderr", &output.stderr);
}

#[tokio::test]
async fn delete_user_success_exits_zero() {
    let events_api = RecordingServer::start().await;
    let deletion_api = RecordingServer::start().await;
    deletion_api.script([Reply::status(500), Reply::status(201)]);
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(directory.path(), &events_api, &deletion_sink("del", &deletion_api, ""));

    let args = ["delete-user", "--config", &config, "--user-id", "user-9"];
    let output = run_binary(&args, b"", &[(TOKEN_VARIABLE, TOKEN)]).await;

    assert!(output.status.success(), "stderr:\n{}", output.stderr);
    assert_eq!(output.stdout, "deleted user-9 (201)\n");
    assert_eq!(deletion_api.requests().len(), 2, "the 500 is retried");
    assert!(output.stderr.contains("request failed; retrying"), "stderr:\n{}", output.stderr);
}

#[tokio::test]
async fn delete_user_reads_standard_input() {
    let events_api = RecordingServer::start().await;
    let deletion_api = RecordingServer::start().await;
    deletion_api.reply_always(Reply::status(201));
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(directory.path(), &events_api, &deletion_sink("del", &deletion_api, ""));

    let args = ["delete-user", "--config", &config, "--from", "-"];
    let output = run_binary(&args, b"anon-1\r\nanon-2\n", &[(TOKEN_VARIABLE, TOKEN)]).await;

    assert!(output.status.success(), "stderr:\n{}", output.stderr);
    assert_eq!(output.stdout, "deleted anon-1 (201)\ndeleted anon-2 (201)\n");
}

#[tokio::test]
async fn delete_user_invalid_config_exits_2() {
    let events_api = RecordingServer::start().await;
    let deletion_api = RecordingServer::start().await;
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(directory.path(), &events_api, &deletion_sink("del", &deletion_api, ""));

    let args = ["delete-user", "--config", &config, "--user-id", "user-1"];
    let output = run_binary(&args, b"", &[(TOKEN_VARIABLE, "  ")]).await;

    assert_eq!(output.status.code(), Some(2), "stderr:\n{}", output.stderr);
    assert!(output.stderr.contains("`personal_access_token` is empty"), "stderr:\n{}", output.stderr);
    assert!(deletion_api.requests().is_empty());
}

#[tokio::test]
async fn delete_user_without_deletion_sink() {
    let events_api = RecordingServer::start().await;
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(directory.path(), &events_api, "");

    let output = run_binary(&["delete-user", "--config", &config, "--user-id", "user-1"], b"", &[]).await;

    assert_eq!(output.status.code(), Some(2), "stderr:\n{}", output.stderr);
    assert!(
        output.stderr.contains("the configuration has no sink of type `optimizely_user_deletion`"),
        "stderr:\n{}",
        output.stderr
    );
}

#[tokio::test]
async fn delete_user_without_ids() {
    let events_api = RecordingServer::start().await;
    let deletion_api = RecordingServer::start().await;
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(directory.path(), &events_api, &deletion_sink("del", &deletion_api, ""));
    let empty = write_file(directory.path(), "ids.txt", "\n\n");

    let args = ["delete-user", "--config", &config, "--from", empty.to_str().unwrap()];
    let output = run_binary(&args, b"", &[(TOKEN_VARIABLE, TOKEN)]).await;

    assert_eq!(output.status.code(), Some(2), "stderr:\n{}", output.stderr);
    assert!(output.stderr.contains("no user ids given"), "stderr:\n{}", output.stderr);
}

#[tokio::test]
async fn delete_user_sink_option_chooses() {
    let events_api = RecordingServer::start().await;
    let first_api = RecordingServer::start().await;
    let second_api = RecordingServer::start().await;
    second_api.reply_always(Reply::status(201));
    let directory = tempfile::tempdir().unwrap();
    let sinks = deletion_sink("del_a", &first_api, "") + &deletion_sink("del_b", &second_api, "");
    let config = write_config(directory.path(), &events_api, &sinks);
    let envs = [(TOKEN_VARIABLE, TOKEN)];

    let ambiguous = run_binary(&["delete-user", "--config", &config, "--user-id", "user-1"], b"", &envs).await;
    let unknown =
        run_binary(&["delete-user", "--config", &config, "--user-id", "user-1", "--sink", "api"], b"", &envs).await;
    let chosen =
        run_binary(&["delete-user", "--config", &config, "--user-id", "user-1", "--sink", "del_b"], b"", &envs).await;

    assert_eq!(ambiguous.status.code(), Some(2), "stderr:\n{}", ambiguous.stderr);
    assert!(ambiguous.stderr.contains("(del_a, del_b); choose one with --sink"), "stderr:\n{}", ambiguous.stderr);
    assert_eq!(unknown.status.code(), Some(2), "stderr:\n{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("sink `api` is not of type `optimizely_user_deletion`; choose one of: del_a, del_b"),
        "stderr:\n{}",
        unknown.stderr
    );
    assert!(chosen.status.success(), "stderr:\n{}", chosen.stderr);
    assert_eq!(chosen.stdout, "deleted user-1 (201)\n");
    assert!(first_api.requests().is_empty());
    assert_eq!(second_api.requests().len(), 1);
}

// ---------------------------------------------------------------------------------------------------
// run
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn pipeline_sends_deletions_and_dead_letters() {
    let events_api = RecordingServer::start().await;
    let deletion_api = RecordingServer::start().await;
    deletion_api.script([Reply::status(201), Reply::status(403)]);
    let directory = tempfile::tempdir().unwrap();
    let sinks = deletion_sink("del", &deletion_api, "")
        + r#"
[sinks.dead_letters]
type = "file"
inputs = ["opt.dropped", "api.dropped", "del.dropped"]
path = "dead-letters.ndjson"
"#;
    let config = write_config(directory.path(), &events_api, &sinks);
    let input = concat!(
        r#"{"type":"track","event":"item_bought","userId":"u-1","messageId":"m-1","timestamp":"2026-01-01T00:00:00Z"}"#,
        "\n",
        r#"{"type":"delete","userId":"u-del-1","messageId":"m-2"}"#,
        "\n",
        r#"{"type":"delete","userId":"u-del-1","messageId":"m-3"}"#,
        "\n",
        r#"{"type":"delete","anonymousId":"anon-del-2","messageId":"m-4"}"#,
        "\n",
    );

    let args = ["--log-level", "debug", "run", "--config", &config];
    let output = run_binary(&args, input.as_bytes(), &[(TOKEN_VARIABLE, TOKEN)]).await;

    assert!(output.status.success(), "stderr:\n{}", output.stderr);
    // The conversion and the first deletion are sent, the repeated deletion is skipped within the
    // dedupe window, and the 403 is dead-lettered.
    assert_eq!(output.summary_line(), "summary: received=4 sent=2 dead_lettered=1 skipped=1 undelivered=0");
    assert_eq!(events_api.requests().len(), 1);

    let requests = deletion_api.requests();
    let bodies: Vec<String> = requests.iter().map(body_text).collect();
    assert_eq!(bodies, vec![expected_body("u-del-1"), expected_body("anon-del-2")]);
    assert_eq!(requests[0].header("authorization"), Some(format!("Bearer {TOKEN}")));

    let dead_letters_path = directory.path().join("dead-letters.ndjson");
    let dead_letters = read_json_lines(&dead_letters_path);
    assert_eq!(dead_letters.len(), 1, "{dead_letters:#?}");
    let record = &dead_letters[0];
    assert_eq!(record["reason"], json!("request_unauthorized"));
    assert_eq!(record["component"], json!("del"));
    assert_eq!(record["event"], json!({"identifier": "anon-del-2"}));
    assert_eq!(record["status"], json!(403));
    assert_eq!(record["attempts"], json!(1));
    assert!(record["message"].as_str().unwrap().starts_with("403 Forbidden"), "{record}");

    assert_no_token("the dead-letter file", &std::fs::read_to_string(&dead_letters_path).unwrap());
    assert_no_token("stdout", &output.stdout);
    assert_no_token("stderr", &output.stderr);
}

#[tokio::test]
async fn stalled_deletion_does_not_delay_conversions() {
    let events_api = RecordingServer::start().await;
    let deletion_api = RecordingServer::start().await;
    deletion_api.reply_always(Reply::Stall(std::time::Duration::from_secs(3)));
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(directory.path(), &events_api, &deletion_sink("del", &deletion_api, ""));
    let input = concat!(
        r#"{"type":"delete","userId":"u-del-1","messageId":"m-1"}"#,
        "\n",
        r#"{"type":"track","event":"item_bought","userId":"u-1","messageId":"m-2","timestamp":"2026-01-01T00:00:00Z"}"#,
        "\n",
    );

    let started = std::time::Instant::now();
    let relay = tokio::spawn(async move {
        let args = ["run", "--config", config.as_str()];
        run_binary(&args, input.as_bytes(), &[(TOKEN_VARIABLE, TOKEN)]).await
    });
    while events_api.requests().is_empty() && started.elapsed() < std::time::Duration::from_secs(10) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let conversion_sent_after = started.elapsed();
    let output = relay.await.unwrap();

    assert!(output.status.success(), "stderr:\n{}", output.stderr);
    assert_eq!(deletion_api.requests().len(), 1);
    // The deletion's response takes 3 seconds, so a conversion sent sooner did not wait for it.
    assert!(
        conversion_sent_after < std::time::Duration::from_secs(2),
        "the conversion waited {conversion_sent_after:?} for a deletion that stalls 3 seconds"
    );
    assert_eq!(output.summary_line(), "summary: received=2 sent=2 dead_lettered=0 skipped=0 undelivered=0");
}

#[tokio::test]
async fn deletion_example_validates() {
    let path = support::crate_root().join("config-examples/gdpr-deletion.toml");

    let output = run_binary(
        &["validate", "--config", path.to_str().unwrap()],
        b"",
        &[("OPTIMIZELY_PERSONAL_ACCESS_TOKEN", TOKEN)],
    )
    .await;

    assert!(output.status.success(), "stderr:\n{}", output.stderr);
    assert_no_token("stdout", &output.stdout);
    assert_no_token("stderr", &output.stderr);
}
