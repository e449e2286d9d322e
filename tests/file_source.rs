//! The `file` source against real files: tailing, rotation, truncation, limits and checkpoints.

mod support;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use optimizely_relay::config::Config;
use optimizely_relay::topology::{self, RunReport};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// A pipeline running in the background.
struct Running {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<RunReport>,
}

impl Running {
    async fn stop(self) -> RunReport {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task).await.expect("the pipeline stops").unwrap()
    }
}

async fn start(directory: &Path, source_options: &str) -> Running {
    let text = format!(
        r#"
data_dir = "state"

[sources.logs]
type = "file"
glob_interval_secs = 0.05
poll_interval_secs = 0.02
rotate_wait_secs = 0.3
checkpoint_interval_secs = 0.05
{source_options}

[sinks.out]
type = "file"
inputs = ["logs"]
path = "out.ndjson"
"#
    );
    let config = Config::from_toml(&text, directory, &|_| None).expect("valid configuration");
    let topology = topology::build(&config).await.expect("the pipeline builds");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(topology.run(shutdown.clone()));
    Running { shutdown, task }
}

fn line(number: usize) -> String {
    format!("{{\"type\":\"track\",\"n\":{number}}}\n")
}

fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

fn output_numbers(directory: &Path) -> Vec<Value> {
    support::read_json_lines(&directory.join("out.ndjson")).into_iter().map(|message| message["n"].clone()).collect()
}

/// Waits until the output contains `count` messages, at most 10 seconds.
async fn wait_for_output(directory: &Path, count: usize) -> Vec<Value> {
    for _ in 0..500 {
        let numbers = output_numbers(directory);
        if numbers.len() >= count {
            return numbers;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the output has {:?}, expected {count} messages", output_numbers(directory));
}

fn numbers(range: std::ops::RangeInclusive<usize>) -> Vec<Value> {
    range.map(|number| json!(number)).collect()
}

fn sorted(mut values: Vec<Value>) -> Vec<Value> {
    values.sort_by_key(|value| value.as_u64());
    values
}

fn include(directory: &Path, pattern: &str) -> String {
    format!("include = [\"{}\"]", directory.join(pattern).display())
}

#[tokio::test]
async fn new_files_picked_up() {
    let directory = tempfile::tempdir().unwrap();
    append(&directory.path().join("a.ndjson"), &(line(1) + &line(2)));
    let running = start(directory.path(), &include(directory.path(), "*.ndjson")).await;
    wait_for_output(directory.path(), 2).await;

    append(&directory.path().join("b.ndjson"), &(line(3) + &line(4)));
    let output = wait_for_output(directory.path(), 4).await;
    running.stop().await;

    assert_eq!(sorted(output), numbers(1..=4));
}

#[tokio::test]
async fn rename_rotation_loses_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let active = directory.path().join("app.ndjson");
    append(&active, &(line(1) + &line(2) + &line(3)));
    let running = start(directory.path(), &include(directory.path(), "app.ndjson")).await;
    wait_for_output(directory.path(), 3).await;

    // The writer appends, the file is renamed away from the include pattern, and a new file takes its
    // place: the renamed file is read to its end through the open handle.
    append(&active, &line(4));
    std::fs::rename(&active, directory.path().join("app.ndjson.1")).unwrap();
    append(&directory.path().join("app.ndjson.1"), &line(5));
    append(&active, &(line(6) + &line(7)));
    let output = wait_for_output(directory.path(), 7).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;

    assert_eq!(sorted(output), numbers(1..=7));
    assert_eq!(output_numbers(directory.path()).len(), 7, "a line was read twice");
}

#[tokio::test]
async fn copy_truncate_rotation_loses_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let active = directory.path().join("app.ndjson");
    append(&active, &(line(1) + &line(2) + &line(3)));
    let running = start(directory.path(), &include(directory.path(), "app.ndjson*")).await;
    wait_for_output(directory.path(), 3).await;

    append(&active, &line(4));
    std::fs::copy(&active, directory.path().join("app.ndjson.1")).unwrap();
    std::fs::OpenOptions::new().write(true).truncate(true).open(&active).unwrap();
    append(&active, &line(5));
    let output = wait_for_output(directory.path(), 5).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;

    assert_eq!(sorted(output), numbers(1..=5));
    assert_eq!(output_numbers(directory.path()).len(), 5, "a line was read twice");
}

#[tokio::test]
async fn truncated_file_read_again() {
    let directory = tempfile::tempdir().unwrap();
    let active = directory.path().join("app.ndjson");
    append(&active, &(line(1) + &line(2) + &line(3)));
    let running = start(directory.path(), &include(directory.path(), "app.ndjson")).await;
    wait_for_output(directory.path(), 3).await;

    std::fs::OpenOptions::new().write(true).truncate(true).open(&active).unwrap();
    append(&active, &line(9));
    let output = wait_for_output(directory.path(), 4).await;
    running.stop().await;

    assert_eq!(output, vec![json!(1), json!(2), json!(3), json!(9)]);
}

#[tokio::test]
async fn partial_line_waits_for_newline() {
    let directory = tempfile::tempdir().unwrap();
    let active = directory.path().join("app.ndjson");
    append(&active, &line(1));
    let running = start(directory.path(), &include(directory.path(), "app.ndjson")).await;
    wait_for_output(directory.path(), 1).await;

    append(&active, "{\"type\":\"track\",");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(output_numbers(directory.path()).len(), 1, "half a line was emitted");
    append(&active, "\"n\":2}\n");
    let output = wait_for_output(directory.path(), 2).await;
    running.stop().await;

    assert_eq!(output, numbers(1..=2));
}

#[tokio::test]
async fn long_line_dead_lettered_in_order() {
    let directory = tempfile::tempdir().unwrap();
    let active = directory.path().join("app.ndjson");
    let long_line = format!("{{\"type\":\"track\",\"pad\":\"{}\"}}\n", "x".repeat(5000));
    append(&active, &(line(1) + &long_line + &line(3)));
    let text = format!(
        r#"
[sources.logs]
type = "file"
{include}
mode = "once"
max_line_bytes = 100

[transforms.opt]
type = "optimizely"
inputs = ["logs"]
[transforms.opt.datafile]
path = "{datafile}"

[sinks.out]
type = "file"
inputs = ["opt"]
path = "out.ndjson"

[sinks.dead_letters]
type = "file"
inputs = ["opt.dropped"]
path = "dead.ndjson"
"#,
        include = include(directory.path(), "app.ndjson"),
        datafile = support::crate_root().join("config-examples/quickstart-datafile.json").display(),
    );
    let config = Config::from_toml(&text, directory.path(), &|_| None).unwrap();
    let report = topology::build(&config).await.unwrap().run(CancellationToken::new()).await;

    assert_eq!(report.summary.received, 3);
    assert_eq!(report.summary.dead_lettered, 3, "the two short lines lack an event name; the long one is too long");
    let records = support::read_json_lines(&directory.path().join("dead.ndjson"));
    let reasons: Vec<&str> = records.iter().map(|record| record["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, vec!["missing_event_key", "line_too_long", "missing_event_key"]);
    assert_eq!(records[1]["event"].as_str().unwrap().len(), 100);
    assert!(records[1]["message"].as_str().unwrap().contains("5025 bytes"), "{}", records[1]["message"]);
}

#[tokio::test]
async fn restart_resumes_from_checkpoint() {
    let directory = tempfile::tempdir().unwrap();
    let active = directory.path().join("app.ndjson");
    append(&active, &(line(1) + &line(2) + &line(3)));
    let first = start(directory.path(), &include(directory.path(), "app.ndjson")).await;
    wait_for_output(directory.path(), 3).await;
    let report = first.stop().await;
    assert_eq!(report.summary.sent, 3);

    let checkpoint: Value =
        serde_json::from_slice(&std::fs::read(directory.path().join("state/checkpoints/logs.json")).unwrap()).unwrap();
    assert_eq!(checkpoint["files"][0]["offset"], json!(3 * line(1).len()));
    assert_eq!(checkpoint["files"][0]["path"], json!(active.display().to_string()));

    append(&active, &(line(4) + &line(5)));
    let second = start(directory.path(), &include(directory.path(), "app.ndjson")).await;
    let output = wait_for_output(directory.path(), 5).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    second.stop().await;

    assert_eq!(output, numbers(1..=5));
    assert_eq!(output_numbers(directory.path()).len(), 5, "the restart read a line again");
}

#[tokio::test]
async fn read_from_end_skips_existing_lines() {
    let directory = tempfile::tempdir().unwrap();
    let active = directory.path().join("app.ndjson");
    append(&active, &(line(1) + &line(2) + "{\"type\":\"track\",\"n\":"));
    let running = start(directory.path(), &(include(directory.path(), "app.ndjson") + "\nread_from = \"end\"")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    append(&active, &("3}\n".to_owned() + &line(4)));
    let output = wait_for_output(directory.path(), 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.stop().await;

    // Reading starts at the last line boundary, so the line being written at startup is read whole.
    assert_eq!(output, numbers(3..=4));
    assert_eq!(output_numbers(directory.path()).len(), 2);
}

#[tokio::test]
async fn once_mode_reads_to_end_and_stops() {
    let directory = tempfile::tempdir().unwrap();
    append(&directory.path().join("a.ndjson"), &(line(1) + "{\"type\":\"track\",\"n\":2}"));
    let running = start(directory.path(), &(include(directory.path(), "*.ndjson") + "\nmode = \"once\"")).await;

    let report =
        tokio::time::timeout(Duration::from_secs(10), running.task).await.expect("a read-once run ends").unwrap();

    assert!(report.is_success());
    assert_eq!(report.summary.sent, 2);
    assert_eq!(output_numbers(directory.path()), numbers(1..=2));
}
