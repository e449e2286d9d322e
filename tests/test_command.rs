//! `optimizely-relay test` and the test checks of `validate`, run through the real binary. Expected
//! events are written out by hand from the bundled quickstart datafile (account 10000001, project
//! 20000001, revision 42, `botFiltering: true`, `anonymizeIP: true`).

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use optimizely_relay::transforms::optimizely::datafile::Datafile;
use optimizely_relay::transforms::optimizely::datafile_source::LoadedDatafile;
use optimizely_relay::transforms::optimizely::datafile_store::DatafileStore;
use support::{crate_root, run_binary, write_file, RecordingServer, Reply, RunOutput};

/// Returns the bundled datafile that the expected events below are written for.
fn quickstart_datafile() -> PathBuf {
    crate_root().join("config-examples/quickstart-datafile.json")
}

/// Returns a pipeline whose transform `opt` reads `datafile_table`, converts dollars, and renames two
/// Segment event names. Global options go in `head`, before the first table, and `extra` is appended.
fn pipeline(head: &str, datafile_table: &str, extra: &str) -> String {
    format!(
        r#"{head}
[sources.in]
type = "stdin"

[transforms.opt]
type = "optimizely"
inputs = ["in"]
revenue_unit = "dollars"

[transforms.opt.datafile]
{datafile_table}

[transforms.opt.event_keys]
"Order Completed" = "order_completed"
"Signed Up" = "signed_up"

[sinks.out]
type = "console"
inputs = ["opt", "opt.dropped"]
{extra}"#
    )
}

fn local_datafile_table() -> String {
    format!("path = {:?}", quickstart_datafile().display().to_string())
}

/// Writes `relay.toml` with the local quickstart datafile and `tests` into `directory`.
fn write_config(directory: &Path, tests: &str) -> PathBuf {
    write_file(directory, "relay.toml", &pipeline("", &local_datafile_table(), tests))
}

async fn run_tests(config: &Path, extra_args: &[&str]) -> RunOutput {
    let mut args = vec!["test", "--config", config.to_str().unwrap()];
    args.extend_from_slice(extra_args);
    run_binary(&args, b"", &[]).await
}

async fn validate(config: &Path, extra_args: &[&str]) -> RunOutput {
    let mut args = vec!["validate", "--config", config.to_str().unwrap()];
    args.extend_from_slice(extra_args);
    run_binary(&args, b"", &[]).await
}

const ORDER_MESSAGE: &str = r#"{"type":"track","event":"Order Completed","userId":"u-1","messageId":"m-1","timestamp":"2026-01-01T00:00:00Z","properties":{"revenue":19.99,"coupon":"W"}}"#;

#[tokio::test]
async fn passing_and_failing_tests_reported() {
    let directory = tempfile::tempdir().unwrap();
    let tests = format!(
        r#"
[[tests]]
name = "order in dollars"
output = "opt"
input = ['{ORDER_MESSAGE}']
expected = ['''
{{"account_id":"10000001","project_id":"20000001","revision":"42","client_name":"optimizely-relay",
  "client_version":"<current version>","anonymize_ip":true,"enrich_decisions":true,
  "visitors":[{{"visitor_id":"u-1",
    "attributes":[{{"entity_id":"$opt_bot_filtering","key":"$opt_bot_filtering","type":"custom","value":true}}],
    "snapshots":[{{"decisions":[],"events":[{{"entity_id":"30000001","key":"order_completed",
      "timestamp":1767225600000,"uuid":"m-1","revenue":1999,"tags":{{"coupon":"W"}}}}]}}]}}]}}
''']

[[tests]]
name = "order with wrong expectations"
output = "opt"
input = ['{ORDER_MESSAGE}']
expected = ['''
{{"account_id":"10000001","project_id":"20000001","revision":"42","client_name":"optimizely-relay",
  "client_version":"0.0.0","anonymize_ip":true,"enrich_decisions":true,
  "visitors":[{{"visitor_id":"u-1",
    "attributes":[{{"entity_id":"$opt_bot_filtering","key":"$opt_bot_filtering","type":"custom","value":true}}],
    "snapshots":[{{"decisions":[],"events":[{{"entity_id":"30000001","key":"order_completed",
      "timestamp":1767225600000,"uuid":"m-1","revenue":1998,"value":5,"tags":{{}}}}]}}]}}]}}
''']
"#
    );
    let config = write_config(directory.path(), &tests);

    let output = run_tests(&config, &[]).await;

    let event = "$[0].visitors[0].snapshots[0].events[0]";
    let expected_stdout = format!(
        "PASS order in dollars\n\
         FAIL order with wrong expectations\n    \
         $[0].client_version: expected \"0.0.0\", actual \"{version}\"\n    \
         {event}.revenue: expected 1998, actual 1999\n    \
         {event}.value: missing field, expected 5\n    \
         {event}.tags.coupon: unexpected field, actual \"W\"\n\
         \n\
         1 passed, 1 failed\n",
        version = env!("CARGO_PKG_VERSION"),
    );
    assert_eq!(output.stdout, expected_stdout);
    assert_eq!(output.status.code(), Some(1), "stderr:\n{}", output.stderr);
    assert_eq!(output.stderr, "");
}

#[tokio::test]
async fn all_passing_exits_zero() {
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(
        directory.path(),
        r#"
[[tests]]
name = "identify is skipped"
output = "opt"
input = ['{"type":"identify","userId":"u-1"}']
expected = []
"#,
    );

    let output = run_tests(&config, &[]).await;

    assert_eq!(output.stdout, "PASS identify is skipped\n\n1 passed, 0 failed\n");
    assert!(output.status.success(), "stderr:\n{}", output.stderr);
}

#[tokio::test]
async fn update_creates_missing_snapshot() {
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(
        directory.path(),
        r#"
[[tests]]
name = "sign-up without message id"
output = "opt"
input = ['{"type":"track","event":"Signed Up","anonymousId":"anon-1","timestamp":"2026-11-30T14:05:00+01:00","properties":{"method":"email","value":"3"}}']
snapshot = "snapshots/sign-up.json"
"#,
    );
    let snapshot = directory.path().join("snapshots/sign-up.json");

    let before = run_tests(&config, &[]).await;
    let update = run_tests(&config, &["--update"]).await;
    let after = run_tests(&config, &[]).await;

    assert_eq!(before.status.code(), Some(1));
    assert_eq!(
        before.stdout,
        format!(
            "FAIL sign-up without message id\n    error: snapshot `{}` does not exist; run `optimizely-relay test \
             --update` to create it from the actual output, then review it\n\n0 passed, 1 failed\n",
            snapshot.display()
        )
    );

    assert!(update.status.success(), "stdout:\n{}\nstderr:\n{}", update.stdout, update.stderr);
    assert_eq!(
        update.stdout,
        format!("PASS sign-up without message id (created snapshot `{}`)\n\n1 passed, 0 failed\n", snapshot.display())
    );

    // The uuid is Python's uuid.uuid5(uuid.NAMESPACE_OID, <message with sorted keys, no spaces>).
    // 2026-11-30T14:05:00+01:00 is 1796043900000 ms, and the string value "3" is sent as 3.
    let expected_snapshot = r#"[
  {
    "account_id": "10000001",
    "anonymize_ip": true,
    "client_name": "optimizely-relay",
    "client_version": "<current version>",
    "enrich_decisions": true,
    "project_id": "20000001",
    "revision": "42",
    "visitors": [
      {
        "attributes": [
          {
            "entity_id": "$opt_bot_filtering",
            "key": "$opt_bot_filtering",
            "type": "custom",
            "value": true
          }
        ],
        "snapshots": [
          {
            "decisions": [],
            "events": [
              {
                "entity_id": "30000002",
                "key": "signed_up",
                "tags": {
                  "method": "email"
                },
                "timestamp": 1796043900000,
                "uuid": "55b64d5d-685a-5d6c-961c-598273f16dbc",
                "value": 3
              }
            ]
          }
        ],
        "visitor_id": "anon-1"
      }
    ]
  }
]
"#;
    assert_eq!(std::fs::read_to_string(&snapshot).unwrap(), expected_snapshot);

    assert!(after.status.success(), "stdout:\n{}", after.stdout);
    assert_eq!(after.stdout, "PASS sign-up without message id\n\n1 passed, 0 failed\n");
}

#[tokio::test]
async fn update_rewrites_changed_snapshot() {
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(
        directory.path(),
        r#"
[[tests]]
name = "deletions"
output = "opt.deletions"
input = ['{"type":"delete","userId":"u-1"}']
snapshot = "deletions.json"
"#,
    );
    let snapshot = write_file(directory.path(), "deletions.json", "[{\"identifier\": \"u-0\"}]");

    let failing = run_tests(&config, &[]).await;
    let update = run_tests(&config, &["--update"]).await;

    assert_eq!(
        failing.stdout,
        "FAIL deletions\n    $[0].identifier: expected \"u-0\", actual \"u-1\"\n\n0 passed, 1 failed\n"
    );
    assert_eq!(
        update.stdout,
        format!("PASS deletions (updated snapshot `{}`)\n\n1 passed, 0 failed\n", snapshot.display())
    );
    assert_eq!(std::fs::read_to_string(&snapshot).unwrap(), "[\n  {\n    \"identifier\": \"u-1\"\n  }\n]\n");
}

#[tokio::test]
async fn update_leaves_inline_expectations() {
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(
        directory.path(),
        r#"
[[tests]]
name = "inline"
output = "opt.deletions"
input = ['{"type":"delete","userId":"u-1"}']
expected = ['{"identifier":"u-0"}']
"#,
    );
    let text_before = std::fs::read_to_string(&config).unwrap();

    let output = run_tests(&config, &["--update"]).await;

    assert_eq!(output.status.code(), Some(1));
    assert!(
        output.stdout.contains(&format!(
            "    note: --update rewrites snapshot files only; edit `expected` in `{}`\n",
            config.display()
        )),
        "stdout:\n{}",
        output.stdout
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text_before);
}

#[tokio::test]
async fn dead_letter_output_compared() {
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(
        directory.path(),
        r#"
[[tests]]
name = "dead letters"
output = "opt.dropped"
input = [
  '{"batch":[{"type":"track","event":"Newsletter Opened","userId":"u-2","timestamp":"2026-01-01T00:00:00Z"}],"writeKey":"wk-secret","context":{"ip":"192.0.2.1"}}',
  '{"type":"track","event":"Order Completed","timestamp":"2026-01-01T00:00:00Z"}',
  '{"type":"identify","userId":"u-3"}',
]
expected = [
  '''{"reason":"unknown_event_key","component":"opt",
      "message":"event key `Newsletter Opened` is not in datafile revision 42 of project 20000001; create the event in Optimizely, or map the name with the `event_keys` table",
      "event":{"type":"track","event":"Newsletter Opened","userId":"u-2","timestamp":"2026-01-01T00:00:00Z","context":{"ip":"192.0.2.1"}}}''',
  '''{"reason":"missing_user_id","component":"opt",
      "message":"the message has no usable user id at $.userId or $.anonymousId; give userId or anonymousId as a non-empty string or an integer",
      "event":{"type":"track","event":"Order Completed","timestamp":"2026-01-01T00:00:00Z"}}''',
]
"#,
    );

    let output = run_tests(&config, &[]).await;

    assert_eq!(output.stdout, "PASS dead letters\n\n1 passed, 0 failed\n");
    assert!(output.status.success());
}

#[tokio::test]
async fn deletion_output_compared() {
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(
        directory.path(),
        r#"
[[tests]]
name = "deletions by user and anonymous id"
output = "opt.deletions"
input = [
  '{"type":"delete","userId":"u-1","anonymousId":"a-1"}',
  '{"type":"delete","anonymousId":"a-2"}',
  '{"type":"track","event":"Signed Up","userId":"u-3","timestamp":"2026-01-01T00:00:00Z"}',
]
expected = ['{"identifier":"u-1"}', '{"identifier":"a-2"}']
"#,
    );

    let output = run_tests(&config, &[]).await;

    assert_eq!(output.stdout, "PASS deletions by user and anonymous id\n\n1 passed, 0 failed\n");
    assert!(output.status.success());
}

#[tokio::test]
async fn unknown_component_reported_by_both() {
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(
        directory.path(),
        r#"
[[tests]]
name = "misspelled transform"
output = "opx.dropped"
input = ['{"type":"identify"}']
expected = []
"#,
    );
    let expected_error = format!(
        "  - {}: test `misspelled transform`: `output` `opx.dropped` is not an output of any transform; did you \
         mean `opt.dropped`? (known outputs: opt, opt.dropped, opt.deletions)\n",
        config.display()
    );

    let validated = validate(&config, &[]).await;
    let tested = run_tests(&config, &[]).await;

    assert_eq!(validated.status.code(), Some(2));
    assert!(validated.stderr.contains(&expected_error), "stderr:\n{}", validated.stderr);
    assert_eq!(tested.status.code(), Some(2));
    assert!(tested.stderr.contains(&expected_error), "stderr:\n{}", tested.stderr);
    assert_eq!(tested.stdout, "");
}

#[tokio::test]
async fn validate_reports_missing_test_files() {
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(
        directory.path(),
        r#"
[[tests]]
name = "files"
output = "opt"
input_file = "missing.ndjson"
snapshot = "missing.json"
"#,
    );
    let input = directory.path().join("missing.ndjson");
    let snapshot = directory.path().join("missing.json");

    let output = validate(&config, &[]).await;

    assert_eq!(output.status.code(), Some(2));
    let label = format!("{}: test `files`", config.display());
    assert!(
        output.stderr.contains(&format!(
            "  - {label}: cannot read input file `{}`: No such file or directory (os error 2)\n",
            input.display()
        )),
        "stderr:\n{}",
        output.stderr
    );
    assert!(
        output.stderr.contains(&format!(
            "  - {label}: snapshot `{}` does not exist; run `optimizely-relay test --update` to create it\n",
            snapshot.display()
        )),
        "stderr:\n{}",
        output.stderr
    );
}

#[tokio::test]
async fn no_tests_is_an_error() {
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(directory.path(), "");

    let output = run_tests(&config, &[]).await;

    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        output.stderr,
        format!("error: no tests found in `{}`; add `[[tests]]` tables or give --tests\n", config.display())
    );
}

#[tokio::test]
async fn tests_glob_loads_files() {
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(directory.path(), "");
    let tests_directory = directory.path().join("tests");
    std::fs::create_dir_all(tests_directory.join("inputs")).unwrap();
    write_file(
        &tests_directory.join("inputs"),
        "deletions.ndjson",
        "{\"batch\":[{\"type\":\"delete\",\"userId\":\"u-1\"},{\"type\":\"identify\",\"userId\":\"u-1\"}]}\r\n\n\
         {\"type\":\"delete\",\"anonymousId\":\"a-2\"}\n",
    );
    write_file(&tests_directory, "deletions.json", "[{\"identifier\":\"u-1\"},{\"identifier\":\"a-2\"}]");
    write_file(
        &tests_directory,
        "a.toml",
        "[[tests]]\nname = \"from a file\"\noutput = \"opt.deletions\"\ninput_file = \"inputs/deletions.ndjson\"\nsnapshot = \"deletions.json\"\n",
    );
    write_file(
        &tests_directory,
        "b.toml",
        "[[tests]]\nname = \"inline\"\noutput = \"opt.deletions\"\ninput = ['{\"type\":\"delete\",\"userId\":\"u-9\"}']\nexpected = ['{\"identifier\":\"u-9\"}']\n",
    );
    write_file(&tests_directory, "ignored.txt", "not a tests file");
    let pattern = format!("{}/*.toml", tests_directory.display());

    let output = run_tests(&config, &["--tests", &pattern]).await;
    let validated = validate(&config, &["--tests", &pattern]).await;

    assert_eq!(output.stdout, "PASS from a file\nPASS inline\n\n2 passed, 0 failed\n");
    assert!(output.status.success(), "stderr:\n{}", output.stderr);
    assert!(validated.status.success(), "stderr:\n{}", validated.stderr);
}

#[tokio::test]
async fn url_datafile_without_copy_fails_offline() {
    // The server would serve a good datafile, so a test that fetched it would pass instead of failing.
    let server = RecordingServer::start().await;
    let datafile_text = std::fs::read_to_string(quickstart_datafile()).unwrap();
    server.reply_always(Reply::Status(200, vec![("content-type".into(), "application/json".into())], datafile_text));
    let directory = tempfile::tempdir().unwrap();
    let url = server.url("/datafiles/quickstart.json");
    let tests = r#"
[[tests]]
name = "needs the datafile"
output = "opt.deletions"
input = ['{"type":"delete","userId":"u-1"}']
expected = ['{"identifier":"u-1"}']
"#;
    let without_data_dir =
        write_file(directory.path(), "no-data-dir.toml", &pipeline("", &format!("url = {url:?}"), tests));
    let empty_data_dir = write_file(
        directory.path(),
        "empty-data-dir.toml",
        &pipeline("data_dir = \"state\"", &format!("url = {url:?}"), tests),
    );

    let first = run_tests(&without_data_dir, &[]).await;
    let second = run_tests(&empty_data_dir, &[]).await;
    let validated = validate(&without_data_dir, &[]).await;

    assert_eq!(first.status.code(), Some(1));
    assert_eq!(
        first.stdout,
        format!(
            "FAIL needs the datafile\n    error: the datafile of transform `opt` comes from {url}, and tests never use \
             the network; set `data_dir` and run the pipeline once with network access, so that it saves a copy \
             under `data_dir/datafiles/`, or give a local datafile with `datafile.path`\n\n0 passed, 1 failed\n"
        )
    );
    let saved_path = directory.path().join("state/datafiles/opt.json");
    assert!(
        second.stdout.contains(&format!(
            "    error: no saved copy of the datafile of transform `opt` (from {url}) exists at `{}`",
            saved_path.display()
        )),
        "stdout:\n{}",
        second.stdout
    );
    assert!(validated.status.success(), "stderr:\n{}", validated.stderr);
    assert!(
        validated.stderr.contains("warning: the tests of transform `opt` cannot run on this machine: the datafile"),
        "stderr:\n{}",
        validated.stderr
    );
    assert!(server.requests().is_empty(), "requests: {:?}", server.requests());
}

#[tokio::test]
async fn saved_datafile_copy_used_offline() {
    let server = RecordingServer::start().await;
    let directory = tempfile::tempdir().unwrap();
    let url = server.url("/datafiles/quickstart.json");
    let body = std::fs::read(quickstart_datafile()).unwrap();
    let store = DatafileStore::new(&directory.path().join("state"), "opt");
    store
        .save(&LoadedDatafile {
            datafile: Arc::new(Datafile::parse(&body).unwrap()),
            last_modified: None,
            source: url.clone(),
            body: body.into(),
        })
        .unwrap();
    let tests = format!(
        r#"
[[tests]]
name = "order from the saved datafile"
output = "opt"
input = ['{ORDER_MESSAGE}']
expected = ['''
{{"account_id":"10000001","project_id":"20000001","revision":"42","client_name":"optimizely-relay",
  "client_version":"<current version>","anonymize_ip":true,"enrich_decisions":true,
  "visitors":[{{"visitor_id":"u-1",
    "attributes":[{{"entity_id":"$opt_bot_filtering","key":"$opt_bot_filtering","type":"custom","value":true}}],
    "snapshots":[{{"decisions":[],"events":[{{"entity_id":"30000001","key":"order_completed",
      "timestamp":1767225600000,"uuid":"m-1","revenue":1999,"tags":{{"coupon":"W"}}}}]}}]}}]}}
''']
"#
    );
    let config = write_file(
        directory.path(),
        "relay.toml",
        &pipeline("data_dir = \"state\"", &format!("url = {url:?}"), &tests),
    );

    let output = run_tests(&config, &[]).await;
    let validated = validate(&config, &[]).await;

    assert_eq!(output.stdout, "PASS order from the saved datafile\n\n1 passed, 0 failed\n");
    assert!(output.status.success(), "stderr:\n{}", output.stderr);
    assert!(validated.status.success(), "stderr:\n{}", validated.stderr);
    assert!(!validated.stderr.contains("cannot run on this machine"), "stderr:\n{}", validated.stderr);
    assert!(server.requests().is_empty(), "requests: {:?}", server.requests());
}

#[tokio::test]
async fn bundled_examples_pass_their_tests() {
    // The SDK key example reads the copy saved under its data_dir for this key.
    let envs = [
        ("OPTIMIZELY_SDK_KEY", "ExampleSdkKey"),
        ("OPTIMIZELY_DATAFILE_TOKEN", "example-token"),
        ("SEGMENT_WRITE_KEY", "example-write-key"),
        ("SHIPPER_TOKEN", "example-shipper-token"),
        ("OPTIMIZELY_PERSONAL_ACCESS_TOKEN", "example-personal-token"),
        ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        ("KAFKA_USERNAME", "example-user"),
        ("KAFKA_PASSWORD", "example-password"),
    ];
    let mut examples: Vec<PathBuf> = std::fs::read_dir(crate_root().join("config-examples"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "toml"))
        .collect();
    examples.sort();
    assert_eq!(examples.len(), 6, "{examples:?}");

    for example in examples {
        let output = run_binary(&["test", "--config", example.to_str().unwrap()], b"", &envs).await;

        assert!(output.status.success(), "{}:\n{}{}", example.display(), output.stdout, output.stderr);
        let summary = output.stdout.lines().last().unwrap_or_default();
        assert!(summary.ends_with(" passed, 0 failed"), "{}:\n{}", example.display(), output.stdout);
        assert!(!summary.starts_with("0 passed"), "{}:\n{}", example.display(), output.stdout);
    }
}
