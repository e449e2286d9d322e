//! Runs tests: feeds each test's messages through the transform's run loop, the code the pipeline
//! runs, and compares the events of one output with the expectation.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::config::{Expectation, TestCase, TestInput};
use super::datafile::load_offline_datafile;
use super::diff::{diff, Difference};
use super::snapshot;
use crate::ack::EventStatus;
use crate::config::graph::output_id;
use crate::config::Config;
use crate::event::{Event, Payload};
use crate::sources::decode::{decode_line, decode_value, too_long};
use crate::sources::lines::{Line, LineReader};
use crate::sources::{CHUNK_EVENTS, DEFAULT_MAX_LINE_BYTES};
use crate::topology::{buffer, BufferConfig, Input, Output, Unconnected, WhenFull};
use crate::transforms::optimizely::datafile::Datafile;
use crate::transforms::optimizely::{OptimizelyTransform, OptimizelyTransformConfig, TransformOutputs};
use crate::transforms::TransformConfig;

/// The handling of events on an output without consumers. Every output of a test transform has one,
/// so this never applies.
const UNCONNECTED: Unconnected = Unconnected::Finalize(EventStatus::Undelivered);

/// Maximum number of differences printed for one test. The rest are counted.
const MAX_PRINTED_DIFFERENCES: usize = 50;

/// The counts of a run of tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Tests whose output matched, or whose snapshot `--update` wrote.
    pub passed: usize,
    /// Tests whose output differed or that could not run.
    pub failed: usize,
}

/// The events a transform wrote to each of its outputs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectedOutputs {
    /// The default output: Event API request bodies.
    pub conversions: Vec<Value>,
    /// The `dropped` output: dead-letter records.
    pub dropped: Vec<Value>,
    /// The `deletions` output: deletion requests.
    pub deletions: Vec<Value>,
}

impl CollectedOutputs {
    /// Returns the events of the output `name` (`None` for the default output).
    pub fn output(&self, name: Option<&str>) -> &[Value] {
        match name {
            Some("dropped") => &self.dropped,
            Some("deletions") => &self.deletions,
            _ => &self.conversions,
        }
    }
}

/// The result of one test.
#[derive(Debug)]
enum TestResult {
    /// The output matched, or `--update` wrote the snapshot file named in the note.
    Passed { note: Option<String> },
    /// The output differs from the expectation.
    Differs { differences: Vec<Difference>, note: Option<String> },
    /// The test could not run, such as when its datafile or input file is unavailable.
    Error(String),
}

/// Runs `tests` in order, printing `PASS name` or `FAIL name` with the differences to `out`, then a
/// summary line. With `update`, writes the actual events into the snapshot file of each test whose
/// snapshot is missing, unusable or different.
pub async fn run_tests(
    config: &Config,
    tests: &[TestCase],
    update: bool,
    out: &mut dyn Write,
) -> std::io::Result<Summary> {
    let mut datafiles: HashMap<&str, Result<Arc<Datafile>, String>> = HashMap::new();
    let mut summary = Summary::default();

    for test in tests {
        let Some(TransformConfig::Optimizely(settings)) =
            config.transforms.get(&test.transform).map(|transform| &transform.config)
        else {
            let result = TestResult::Error(format!("the configuration has no transform `{}`", test.transform));
            print_result(out, &test.name, &result)?;
            summary.failed += 1;
            continue;
        };
        let datafile = datafiles.entry(test.transform.as_str()).or_insert_with(|| {
            let loaded = load_offline_datafile(&test.transform, settings, config.global.data_dir.as_deref());
            loaded.map(|loaded| loaded.datafile)
        });
        let result = match datafile.clone() {
            Ok(datafile) => run_test(test, settings, datafile, update).await,
            Err(message) => TestResult::Error(message),
        };
        print_result(out, &test.name, &result)?;
        match result {
            TestResult::Passed { .. } => summary.passed += 1,
            TestResult::Differs { .. } | TestResult::Error(_) => summary.failed += 1,
        }
    }

    writeln!(out, "\n{} passed, {} failed", summary.passed, summary.failed)?;
    Ok(summary)
}

async fn run_test(
    test: &TestCase,
    settings: &OptimizelyTransformConfig,
    datafile: Arc<Datafile>,
    update: bool,
) -> TestResult {
    let payloads = match read_input(&test.input).await {
        Ok(payloads) => payloads,
        Err(message) => return TestResult::Error(message),
    };
    let outputs = match collect_outputs(&test.transform, settings, datafile, payloads).await {
        Ok(outputs) => outputs,
        Err(message) => return TestResult::Error(message),
    };
    let actual = outputs.output(test.output);

    match &test.expectation {
        Expectation::Inline(expected) => {
            let differences = differences(expected, actual);
            if differences.is_empty() {
                return TestResult::Passed { note: None };
            }
            let note = update.then(|| {
                format!("--update rewrites snapshot files only; edit `expected` in `{}`", test.declared_in.display())
            });
            TestResult::Differs { differences, note }
        }
        Expectation::Snapshot(path) => compare_snapshot(path, actual, update),
    }
}

fn compare_snapshot(path: &Path, actual: &[Value], update: bool) -> TestResult {
    let write = |verb: &str| match snapshot::write(path, actual) {
        Ok(()) => TestResult::Passed { note: Some(format!("{verb} snapshot `{}`", path.display())) },
        Err(message) => TestResult::Error(message),
    };

    match snapshot::read(path) {
        Ok(Some(expected)) => {
            let differences = differences(&expected, actual);
            if differences.is_empty() {
                TestResult::Passed { note: None }
            } else if update {
                write("updated")
            } else {
                TestResult::Differs { differences, note: None }
            }
        }
        Ok(None) if update => write("created"),
        Ok(None) => TestResult::Error(format!(
            "snapshot `{}` does not exist; run `optimizely-relay test --update` to create it from the actual \
             output, then review it",
            path.display()
        )),
        Err(_) if update => write("replaced"),
        Err(problem) => TestResult::Error(format!("{problem}; fix it, or replace it with `--update`")),
    }
}

/// Returns the differences between expected and actual events, where the `client_version`
/// placeholder matches the running version.
fn differences(expected: &[Value], actual: &[Value]) -> Vec<Difference> {
    let actual = snapshot::match_placeholders(expected, actual);
    diff(&Value::Array(expected.to_vec()), &Value::Array(actual))
}

fn print_result(out: &mut dyn Write, name: &str, result: &TestResult) -> std::io::Result<()> {
    match result {
        TestResult::Passed { note: None } => writeln!(out, "PASS {name}"),
        TestResult::Passed { note: Some(note) } => writeln!(out, "PASS {name} ({note})"),
        TestResult::Error(message) => {
            writeln!(out, "FAIL {name}")?;
            writeln!(out, "    error: {message}")
        }
        TestResult::Differs { differences, note } => {
            writeln!(out, "FAIL {name}")?;
            for difference in differences.iter().take(MAX_PRINTED_DIFFERENCES) {
                writeln!(out, "    {difference}")?;
            }
            if differences.len() > MAX_PRINTED_DIFFERENCES {
                writeln!(out, "    … and {} more differences", differences.len() - MAX_PRINTED_DIFFERENCES)?;
            }
            if let Some(note) = note {
                writeln!(out, "    note: {note}")?;
            }
            Ok(())
        }
    }
}

/// Reads a test's messages as a source would: inline messages and every line of an input file are
/// decoded by the sources' decoder, so batch envelopes expand and `writeKey` is removed.
async fn read_input(input: &TestInput) -> Result<Vec<Payload>, String> {
    let mut payloads = Vec::new();
    match input {
        TestInput::Inline(messages) => {
            for message in messages {
                decode_value(message.clone(), &mut payloads);
            }
        }
        TestInput::File(path) => {
            let cannot_read = |error: std::io::Error| format!("cannot read input file `{}`: {error}", path.display());
            let file = tokio::fs::File::open(path).await.map_err(cannot_read)?;
            let mut lines = LineReader::new(file, 64 * 1024, DEFAULT_MAX_LINE_BYTES);
            while let Some(line) = lines.next_line().await.map_err(cannot_read)? {
                match line {
                    Line::Complete(bytes) => decode_line(&bytes, &mut payloads),
                    Line::TooLong { prefix, length } => {
                        payloads.push(too_long(&prefix, length, DEFAULT_MAX_LINE_BYTES))
                    }
                }
            }
        }
    }
    Ok(payloads)
}

/// Runs `payloads` through a new transform `id` with `datafile` and returns what it wrote to each
/// output, encoded as the `console` and `file` sinks encode events.
///
/// The transform's own run loop routes the outcomes, so dead-letter records and deletion requests are
/// the ones sinks receive. Every buffer has room for all the events at once, so no send waits and
/// the outputs are read after the loop ends.
pub async fn collect_outputs(
    id: &str,
    settings: &OptimizelyTransformConfig,
    datafile: Arc<Datafile>,
    payloads: Vec<Payload>,
) -> Result<CollectedOutputs, String> {
    let transform = Arc::new(OptimizelyTransform::new(id, settings, datafile));
    let capacity = BufferConfig { max_events: payloads.len().max(1), when_full: WhenFull::Block };

    let (input_sender, input) = buffer(id, capacity);
    let (conversions_sender, conversions) = buffer(&output_id(id, None), capacity);
    let (dropped_sender, dropped) = buffer(&output_id(id, Some("dropped")), capacity);
    let (deletions_sender, deletions) = buffer(&output_id(id, Some("deletions")), capacity);
    let outputs = TransformOutputs {
        conversions: Output::new(output_id(id, None), vec![conversions_sender], UNCONNECTED),
        dropped: Output::new(output_id(id, Some("dropped")), vec![dropped_sender], UNCONNECTED),
        deletions: Output::new(output_id(id, Some("deletions")), vec![deletions_sender], UNCONNECTED),
    };

    let mut events = payloads.into_iter().map(Event::new).peekable();
    while events.peek().is_some() {
        let chunk: Vec<Event> = events.by_ref().take(CHUNK_EVENTS).collect();
        if input_sender.send(chunk).await.is_err() {
            return Err(format!("the input buffer of transform `{id}` closed before the test's messages were sent"));
        }
    }
    drop(input_sender);
    transform.run(input, outputs).await;

    Ok(CollectedOutputs {
        conversions: drain(conversions).await,
        dropped: drain(dropped).await,
        deletions: drain(deletions).await,
    })
}

/// Takes every event left in a closed buffer, encoded as JSON.
async fn drain(mut input: Input) -> Vec<Value> {
    let mut values = Vec::new();
    while let Some(events) = input.recv().await {
        for event in events {
            values.push(event.payload.to_json());
            event.finalize(EventStatus::Delivered);
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Unparsed;
    use serde_json::json;

    fn quickstart_datafile() -> Arc<Datafile> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config-examples/quickstart-datafile.json");
        Arc::new(Datafile::parse(&std::fs::read(path).unwrap()).unwrap())
    }

    fn settings() -> OptimizelyTransformConfig {
        toml::from_str("revenue_unit = \"dollars\"\n[datafile]\npath = \"unused.json\"\n").unwrap()
    }

    fn message(text: &str) -> Payload {
        Payload::Message(serde_json::from_str(text).unwrap())
    }

    #[tokio::test]
    async fn outcomes_routed_to_their_outputs() {
        let payloads = vec![
            message(
                r#"{"type":"track","event":"signed_up","userId":"u-1","messageId":"m-1","timestamp":"2026-01-01T00:00:00Z","properties":{"revenue":"0.29"}}"#,
            ),
            message(r#"{"type":"delete","anonymousId":"a-2"}"#),
            message(r#"{"type":"identify","userId":"u-3"}"#),
            message(r#"{"type":"track","event":"signed_up","timestamp":"2026-01-01T00:00:00Z"}"#),
            Payload::Unparsed(Unparsed {
                text: "{x".to_owned(),
                error: "invalid JSON: bad".to_owned(),
                reason: "invalid_json",
                bytes: None,
            }),
        ];

        let outputs = collect_outputs("opt", &settings(), quickstart_datafile(), payloads).await.unwrap();

        assert_eq!(outputs.conversions.len(), 1);
        let event = &outputs.conversions[0]["visitors"][0]["snapshots"][0]["events"][0];
        assert_eq!(event["revenue"], json!(29));
        assert_eq!(event["timestamp"], json!(1767225600000_i64));
        assert_eq!(outputs.deletions, vec![json!({"identifier": "a-2"})]);
        assert_eq!(
            outputs.dropped,
            vec![
                json!({
                    "reason": "missing_user_id",
                    "message": "the message has no usable user id at $.userId or $.anonymousId; give userId or anonymousId as a non-empty string or an integer",
                    "component": "opt",
                    "event": {"type": "track", "event": "signed_up", "timestamp": "2026-01-01T00:00:00Z"}
                }),
                json!({"reason": "invalid_json", "message": "invalid JSON: bad", "component": "opt", "event": "{x"}),
            ]
        );
    }

    #[tokio::test]
    async fn more_messages_than_one_chunk_kept_in_order() {
        let payloads: Vec<Payload> =
            (0..600).map(|index| message(&format!(r#"{{"type":"delete","userId":"u-{index}"}}"#))).collect();

        let outputs = collect_outputs("opt", &settings(), quickstart_datafile(), payloads).await.unwrap();

        assert_eq!(outputs.deletions.len(), 600);
        assert_eq!(outputs.deletions[0], json!({"identifier": "u-0"}));
        assert_eq!(outputs.deletions[599], json!({"identifier": "u-599"}));
    }

    #[test]
    fn missing_snapshot_created_only_with_update() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("snapshots/deletions.json");
        let actual = vec![json!({"identifier": "u-1"})];

        let TestResult::Error(message) = compare_snapshot(&path, &actual, false) else { panic!("expected an error") };
        assert!(message.ends_with("does not exist; run `optimizely-relay test --update` to create it from the actual output, then review it"), "{message}");
        assert!(!path.exists());

        let TestResult::Passed { note: Some(note) } = compare_snapshot(&path, &actual, true) else {
            panic!("expected a pass")
        };
        assert_eq!(note, format!("created snapshot `{}`", path.display()));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[\n  {\n    \"identifier\": \"u-1\"\n  }\n]\n");
    }

    #[test]
    fn unusable_snapshot_fails_without_update() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("broken.json");
        std::fs::write(&path, "{\"identifier\": \"u-1\"}").unwrap();

        let TestResult::Error(message) = compare_snapshot(&path, &[], false) else { panic!("expected an error") };
        assert_eq!(message, format!(
            "snapshot `{}` is unusable: it contains a JSON object, not an array of events; fix it, or replace it with `--update`",
            path.display()
        ));

        assert!(matches!(compare_snapshot(&path, &[], true), TestResult::Passed { .. }));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[]\n");
    }

    #[test]
    fn many_differences_cut_in_output() {
        let differences: Vec<Difference> = (0..60)
            .map(|index| Difference {
                path: format!("$[{index}]"),
                kind: crate::unit_test::diff::DifferenceKind::MissingElement(json!(index)),
            })
            .collect();
        let mut out = Vec::new();

        print_result(&mut out, "long", &TestResult::Differs { differences, note: None }).unwrap();

        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "FAIL long");
        assert_eq!(lines[1], "    $[0]: missing element, expected 0");
        assert_eq!(lines.len(), 52);
        assert_eq!(lines[51], "    … and 10 more differences");
    }
}
