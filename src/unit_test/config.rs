//! The `[[tests]]` tables of a configuration file and of the files given with `--tests`.
//!
//! Each test feeds messages to one transform and states the events expected on one of its outputs:
//!
//! ```toml
//! [[tests]]
//! name = "order in dollars"
//! output = "opt"                      # or "opt.dropped", "opt.deletions"
//! input = ['''{"type":"track","event":"Order Completed","userId":"u-1","timestamp":"2026-11-30T14:03:27Z"}''']
//! snapshot = "snapshots/order.json"   # or expected = ['''{...}''', ...]
//! ```
//!
//! Test tables are read as written: `${VAR}` is not replaced in them, so messages stay literal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::config::{did_you_mean, parse_typed, resolve_path, Config, ConfigError, TESTS_KEY};

/// One loaded test.
#[derive(Debug, Clone)]
pub struct TestCase {
    /// The name printed with `PASS` or `FAIL`, unique among the tests of a run.
    pub name: String,
    /// The file that declares the test.
    pub declared_in: PathBuf,
    /// The messages fed to the transform.
    pub input: TestInput,
    /// The transform whose output is read.
    pub transform: String,
    /// The output read: `None` for conversions, else `dropped` or `deletions`.
    pub output: Option<&'static str>,
    /// The events expected on the output.
    pub expectation: Expectation,
}

impl TestCase {
    /// Returns the output's full id, such as `opt.dropped`.
    pub fn output_id(&self) -> String {
        crate::config::graph::output_id(&self.transform, self.output)
    }
}

/// The messages of a test.
#[derive(Debug, Clone)]
pub enum TestInput {
    /// Messages written in the test: each a JSON message or a batch envelope.
    Inline(Vec<Value>),
    /// A newline-delimited JSON file, read line by line as the `file` source reads it.
    File(PathBuf),
}

/// The events a test expects.
#[derive(Debug, Clone)]
pub enum Expectation {
    /// Events written in the test.
    Inline(Vec<Value>),
    /// A JSON file containing an array of events, which `--update` writes.
    Snapshot(PathBuf),
}

/// The keys of one `[[tests]]` table as written. `input` and `expected` are checked by hand, so that
/// their errors can show the expected form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestTable {
    name: String,
    output: String,
    #[serde(default)]
    input: Option<toml::Value>,
    #[serde(default)]
    input_file: Option<PathBuf>,
    #[serde(default)]
    expected: Option<toml::Value>,
    #[serde(default)]
    snapshot: Option<PathBuf>,
}

/// Loads the tests of the configuration file `config_path` and of every file matching `tests_pattern`,
/// in that order, checking each against `config`. Returns every problem found.
pub fn load_tests(
    config_path: &Path,
    config: &Config,
    tests_pattern: Option<&str>,
) -> Result<Vec<TestCase>, Vec<ConfigError>> {
    let mut loader =
        Loader { config, tests: Vec::new(), errors: Vec::new(), names: BTreeMap::new(), snapshots: BTreeMap::new() };

    match read_toml(config_path) {
        Ok(mut root) => {
            if let Some(tables) = root.remove(TESTS_KEY) {
                loader.load_array(config_path, tables);
            }
        }
        Err(error) => loader.errors.push(error),
    }

    if let Some(pattern) = tests_pattern {
        match tests_files(pattern) {
            Ok(files) => {
                for file in files {
                    loader.load_tests_file(&file);
                }
            }
            Err(error) => loader.errors.push(error),
        }
    }

    if loader.errors.is_empty() {
        Ok(loader.tests)
    } else {
        Err(loader.errors)
    }
}

/// Returns the files that match the `--tests` pattern, sorted, or an error when none does.
fn tests_files(pattern: &str) -> Result<Vec<PathBuf>, ConfigError> {
    let paths = glob::glob(pattern)
        .map_err(|error| ConfigError::global(format!("invalid `--tests` pattern `{pattern}`: {error}")))?;
    let mut files: Vec<PathBuf> = paths.flatten().filter(|path| path.is_file()).collect();
    files.sort();
    if files.is_empty() {
        return Err(ConfigError::global(format!(
            "the `--tests` pattern `{pattern}` matches no file; relative patterns are resolved against the \
             current directory"
        )));
    }
    Ok(files)
}

fn read_toml(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| ConfigError::global(format!("cannot read `{}`: {error}", path.display())))?;
    toml::from_str(&text).map_err(|error| {
        ConfigError::global(format!("`{}`: {}", path.display(), crate::config::error::invalid_toml(&text, &error)))
    })
}

struct Loader<'a> {
    config: &'a Config,
    tests: Vec<TestCase>,
    errors: Vec<ConfigError>,
    /// Test names, with the file of the test that first used each.
    names: BTreeMap<String, PathBuf>,
    /// Snapshot files, with the name of the test that first used each.
    snapshots: BTreeMap<PathBuf, String>,
}

impl Loader<'_> {
    fn load_tests_file(&mut self, path: &Path) {
        let mut root = match read_toml(path) {
            Ok(root) => root,
            Err(error) => return self.errors.push(error),
        };
        let tables = root.remove(TESTS_KEY);
        for key in root.keys() {
            let hint = did_you_mean(key, [TESTS_KEY]);
            self.errors.push(ConfigError::component(
                path.display().to_string(),
                format!("unknown key `{key}`; a tests file contains only `[[tests]]` tables{hint}"),
            ));
        }
        match tables {
            Some(tables) => self.load_array(path, tables),
            None => self
                .errors
                .push(ConfigError::component(path.display().to_string(), "the file contains no `[[tests]]` table")),
        }
    }

    fn load_array(&mut self, file: &Path, tables: toml::Value) {
        let toml::Value::Array(tables) = tables else {
            self.errors.push(ConfigError::component(
                file.display().to_string(),
                format!("`tests` must be an array of tables written `[[tests]]`, not a TOML {}", tables.type_str()),
            ));
            return;
        };
        for (index, table) in tables.into_iter().enumerate() {
            self.load_table(file, index, table);
        }
    }

    fn load_table(&mut self, file: &Path, index: usize, table: toml::Value) {
        let fallback_label = format!("{}: tests[{index}]", file.display());
        let toml::Value::Table(table) = table else {
            let message = format!("must be a table written `[[tests]]`, not a TOML {}", table.type_str());
            return self.errors.push(ConfigError::component(fallback_label, message));
        };
        let label = match table.get("name") {
            Some(toml::Value::String(name)) => format!("{}: test `{name}`", file.display()),
            _ => fallback_label,
        };

        let raw: TestTable = match parse_typed(table, |raw| raw) {
            Ok(raw) => raw,
            Err(messages) => {
                let errors = messages.into_iter().map(|message| ConfigError::component(&label, message));
                return self.errors.extend(errors);
            }
        };

        let mut problems = Vec::new();
        let test = self.build(file, raw, &mut problems);
        if let Some(test) = test.filter(|_| problems.is_empty()) {
            self.tests.push(test);
        }
        self.errors.extend(problems.into_iter().map(|message| ConfigError::component(&label, message)));
    }

    /// Builds a test from its table, adding a message to `problems` for each invalid key.
    fn build(&mut self, file: &Path, raw: TestTable, problems: &mut Vec<String>) -> Option<TestCase> {
        let base = file.parent().unwrap_or(Path::new(""));
        self.check_name(file, &raw.name, problems);
        let output = check_output(&raw.output, self.config).map_err(|message| problems.push(message)).ok();

        let input = match (raw.input, raw.input_file) {
            (Some(input), None) => json_strings("input", "message", input).and_then(inline_input),
            (None, Some(path)) => Ok(TestInput::File(resolve_path(base, &path))),
            (None, None) => Err("missing input; set `input` (a list of JSON messages) or `input_file`".to_owned()),
            (Some(_), Some(_)) => Err("`input` and `input_file` are both set; set only one of them".to_owned()),
        };
        let expectation = match (raw.expected, raw.snapshot) {
            (Some(expected), None) => json_strings("expected", "event", expected).map(Expectation::Inline),
            (None, Some(path)) => self.claim_snapshot(resolve_path(base, &path), &raw.name).map(Expectation::Snapshot),
            (None, None) => Err("missing expectation; set `expected` (a list of JSON events) or `snapshot`".to_owned()),
            (Some(_), Some(_)) => Err("`expected` and `snapshot` are both set; set only one of them".to_owned()),
        };

        let input = input.map_err(|message| problems.push(message)).ok();
        let expectation = expectation.map_err(|message| problems.push(message)).ok();
        let ((transform, output), input, expectation) = (output?, input?, expectation?);
        Some(TestCase { name: raw.name, declared_in: file.to_path_buf(), input, transform, output, expectation })
    }

    /// Records that the test `name` reads the snapshot `path`. Two tests cannot share one, because
    /// `--update` would write both outputs into it and one of the tests would always fail.
    fn claim_snapshot(&mut self, path: PathBuf, name: &str) -> Result<PathBuf, String> {
        if let Some(first) = self.snapshots.get(&path) {
            return Err(format!(
                "snapshot `{}` is also used by test `{first}`; give each test its own snapshot file",
                path.display()
            ));
        }
        self.snapshots.insert(path.clone(), name.to_owned());
        Ok(path)
    }

    fn check_name(&mut self, file: &Path, name: &str, problems: &mut Vec<String>) {
        if name.trim().is_empty() {
            problems.push("`name` is empty; give the test a name to print with PASS or FAIL".to_owned());
            return;
        }
        if let Some(first) = self.names.get(name) {
            problems
                .push(format!("the name is also used by a test in `{}`; test names must be unique", first.display()));
            return;
        }
        self.names.insert(name.to_owned(), file.to_path_buf());
    }
}

fn inline_input(messages: Vec<Value>) -> Result<TestInput, String> {
    if messages.is_empty() {
        return Err("`input` is empty; give at least one message".to_owned());
    }
    Ok(TestInput::Inline(messages))
}

/// Checks that `output` names an output of a transform, returning the transform id and output name.
pub fn check_output(output: &str, config: &Config) -> Result<(String, Option<&'static str>), String> {
    let mut known: Vec<(String, &str, Option<&'static str>)> = Vec::new();
    for (id, transform) in &config.transforms {
        for spec in transform.config.outputs() {
            known.push((crate::config::graph::output_id(id, spec.name), id, spec.name));
        }
    }
    if let Some((_, id, name)) = known.iter().find(|(full_id, _, _)| full_id == output) {
        return Ok((id.to_string(), *name));
    }

    let component = output.split('.').next().unwrap_or(output);
    let names: Vec<&str> = known.iter().map(|(full_id, _, _)| full_id.as_str()).collect();
    let listed = if names.is_empty() { "none".to_owned() } else { names.join(", ") };
    let kind = if config.sources.contains_key(component) {
        Some("a source")
    } else if config.sinks.contains_key(component) {
        Some("a sink")
    } else {
        None
    };
    Err(match kind {
        Some(kind) => format!(
            "`output` `{output}` belongs to {kind}; tests read the outputs of a transform (known outputs: {listed})"
        ),
        None => {
            let hint = did_you_mean(output, names.iter().copied());
            format!("`output` `{output}` is not an output of any transform{hint} (known outputs: {listed})")
        }
    })
}

/// Parses a TOML array of strings that each contain one JSON document. `noun` names a document in
/// messages, such as `message`.
fn json_strings(key: &str, noun: &str, value: toml::Value) -> Result<Vec<Value>, String> {
    let toml::Value::Array(items) = value else {
        return Err(format!(
            "`{key}` must be an array of strings that each contain one JSON {noun}, such as \
             {key} = ['''{{\"type\":\"track\"}}'''], not a TOML {}",
            value.type_str()
        ));
    };

    let mut documents = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let toml::Value::String(text) = item else {
            return Err(format!(
                "`{key}[{index}]` is a TOML {}; write each {noun} as a string of JSON, such as '''{{\"type\":\"track\"}}'''",
                item.type_str()
            ));
        };
        match serde_json::from_str::<Value>(&text) {
            Ok(document) => documents.push(document),
            Err(error) => return Err(format!("`{key}[{index}]` is not valid JSON: {error}")),
        }
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIPELINE: &str = r#"
[sources.in]
type = "stdin"

[transforms.opt]
type = "optimizely"
inputs = ["in"]
[transforms.opt.datafile]
path = "datafile.json"

[sinks.out]
type = "console"
inputs = ["opt"]
"#;

    /// Writes a configuration with `tests` appended into a new directory and loads its tests.
    fn load(tests: &str) -> (tempfile::TempDir, Result<Vec<TestCase>, Vec<String>>) {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("relay.toml");
        std::fs::write(&path, format!("{PIPELINE}\n{tests}")).unwrap();
        let config = Config::from_file(&path).unwrap();
        let result = load_tests(&path, &config, None)
            .map_err(|errors| errors.iter().map(|error| error.message.clone()).collect());
        (directory, result)
    }

    fn errors_of(tests: &str) -> Vec<String> {
        load(tests).1.unwrap_err()
    }

    #[test]
    fn inline_test_loaded() {
        let (_directory, result) = load(
            r#"
[[tests]]
name = "deletion"
output = "opt.deletions"
input = ['''{"type":"delete","userId":"u-1","properties":{"price":7.50}}''']
expected = ['{"identifier":"u-1"}']
"#,
        );
        let tests = result.unwrap();

        assert_eq!(tests.len(), 1);
        assert_eq!(tests[0].name, "deletion");
        assert_eq!(tests[0].transform, "opt");
        assert_eq!(tests[0].output, Some("deletions"));
        assert_eq!(tests[0].output_id(), "opt.deletions");
        let TestInput::Inline(messages) = &tests[0].input else { panic!("expected inline input") };
        assert_eq!(messages[0].to_string(), r#"{"type":"delete","userId":"u-1","properties":{"price":7.50}}"#);
        let Expectation::Inline(events) = &tests[0].expectation else { panic!("expected inline events") };
        assert_eq!(events, &vec![serde_json::json!({"identifier": "u-1"})]);
    }

    #[test]
    fn file_paths_resolved_against_declaring_file() {
        let (directory, result) = load(
            "[[tests]]\nname = \"t\"\noutput = \"opt\"\ninput_file = \"in/events.ndjson\"\nsnapshot = \"snap/t.json\"\n",
        );
        let tests = result.unwrap();

        let TestInput::File(input) = &tests[0].input else { panic!("expected an input file") };
        assert_eq!(input, &directory.path().join("in/events.ndjson"));
        let Expectation::Snapshot(snapshot) = &tests[0].expectation else { panic!("expected a snapshot") };
        assert_eq!(snapshot, &directory.path().join("snap/t.json"));
    }

    #[test]
    fn variables_not_interpolated_in_tests() {
        let (_directory, result) = load(
            "[[tests]]\nname = \"t\"\noutput = \"opt\"\ninput = ['{\"type\":\"track\",\"event\":\"${NOT_SET}\"}']\nexpected = []\n",
        );
        let TestInput::Inline(messages) = &result.unwrap()[0].input else { panic!("expected inline input") };
        assert_eq!(messages[0]["event"], "${NOT_SET}");
    }

    #[test]
    fn both_input_forms_rejected() {
        let errors = errors_of(
            "[[tests]]\nname = \"t\"\noutput = \"opt\"\ninput = ['{}']\ninput_file = \"a\"\nexpected = []\nsnapshot = \"s\"\n",
        );
        assert_eq!(
            errors,
            vec![
                "`input` and `input_file` are both set; set only one of them",
                "`expected` and `snapshot` are both set; set only one of them",
            ]
        );
    }

    #[test]
    fn missing_input_and_expectation_rejected() {
        let errors = errors_of("[[tests]]\nname = \"t\"\noutput = \"opt\"\n");
        assert_eq!(
            errors,
            vec![
                "missing input; set `input` (a list of JSON messages) or `input_file`",
                "missing expectation; set `expected` (a list of JSON events) or `snapshot`",
            ]
        );
    }

    #[test]
    fn toml_table_input_rejected_with_form() {
        let errors =
            errors_of("[[tests]]\nname = \"t\"\noutput = \"opt\"\ninput = [{type = \"track\"}]\nexpected = []\n");
        assert_eq!(
            errors,
            vec![
            "`input[0]` is a TOML table; write each message as a string of JSON, such as '''{\"type\":\"track\"}'''"
        ]
        );
    }

    #[test]
    fn invalid_json_rejected() {
        let errors = errors_of("[[tests]]\nname = \"t\"\noutput = \"opt\"\ninput = ['{}']\nexpected = ['{\"a\":']\n");
        assert_eq!(errors, vec!["`expected[0]` is not valid JSON: EOF while parsing a value at line 1 column 5"]);
    }

    #[test]
    fn empty_input_rejected() {
        let errors = errors_of("[[tests]]\nname = \"t\"\noutput = \"opt\"\ninput = []\nexpected = []\n");
        assert_eq!(errors, vec!["`input` is empty; give at least one message"]);
    }

    #[test]
    fn unknown_output_gets_hint() {
        let errors = errors_of("[[tests]]\nname = \"t\"\noutput = \"opt.droped\"\ninput = ['{}']\nexpected = []\n");
        assert_eq!(errors, vec![
            "`output` `opt.droped` is not an output of any transform; did you mean `opt.dropped`? (known outputs: opt, opt.dropped, opt.deletions)"
        ]);
    }

    #[test]
    fn source_and_sink_outputs_rejected() {
        for (output, kind) in [("in", "a source"), ("out", "a sink")] {
            let errors = errors_of(&format!(
                "[[tests]]\nname = \"t\"\noutput = \"{output}\"\ninput = ['{{}}']\nexpected = []\n"
            ));
            assert_eq!(errors, vec![format!(
                "`output` `{output}` belongs to {kind}; tests read the outputs of a transform (known outputs: opt, opt.dropped, opt.deletions)"
            )]);
        }
    }

    #[test]
    fn unknown_key_gets_hint() {
        let errors = errors_of("[[tests]]\nname = \"t\"\noutput = \"opt\"\ninputs = ['{}']\nexpected = []\n");
        assert_eq!(errors, vec!["unknown option `inputs`; did you mean `input`?"]);
    }

    #[test]
    fn duplicate_and_empty_names_rejected() {
        let test =
            |name: &str| format!("[[tests]]\nname = \"{name}\"\noutput = \"opt\"\ninput = ['{{}}']\nexpected = []\n");
        let (directory, result) = load(&format!("{}{}{}", test("a"), test("a"), test(" ")));
        let first_file = directory.path().join("relay.toml");

        assert_eq!(
            result.unwrap_err(),
            vec![
                format!("the name is also used by a test in `{}`; test names must be unique", first_file.display()),
                "`name` is empty; give the test a name to print with PASS or FAIL".to_owned(),
            ]
        );
    }

    #[test]
    fn shared_snapshot_rejected() {
        let test = |name: &str| {
            format!("[[tests]]\nname = \"{name}\"\noutput = \"opt\"\ninput = ['{{}}']\nsnapshot = \"s.json\"\n")
        };
        let (directory, result) = load(&format!("{}{}", test("a"), test("b")));

        assert_eq!(
            result.unwrap_err(),
            vec![format!(
                "snapshot `{}` is also used by test `a`; give each test its own snapshot file",
                directory.path().join("s.json").display()
            )]
        );
    }

    #[test]
    fn errors_labelled_with_file_and_test() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("relay.toml");
        std::fs::write(
            &path,
            format!("{PIPELINE}\n[[tests]]\nname = \"orders\"\noutput = \"x\"\n[[tests]]\noutput = \"opt\"\n"),
        )
        .unwrap();
        let config = Config::from_file(&path).unwrap();

        let labels: Vec<String> =
            load_tests(&path, &config, None).unwrap_err().into_iter().filter_map(|error| error.component).collect();

        let file = path.display();
        assert!(labels.contains(&format!("{file}: test `orders`")), "{labels:?}");
        assert!(labels.contains(&format!("{file}: tests[1]")), "{labels:?}");
    }

    #[test]
    fn tests_files_loaded_in_path_order() {
        let directory = tempfile::tempdir().unwrap();
        let config_path = directory.path().join("relay.toml");
        std::fs::write(&config_path, PIPELINE).unwrap();
        std::fs::create_dir(directory.path().join("tests")).unwrap();
        for name in ["b", "a"] {
            let text = format!(
                "[[tests]]\nname = \"{name}\"\noutput = \"opt\"\ninput_file = \"{name}.ndjson\"\nexpected = []\n"
            );
            std::fs::write(directory.path().join(format!("tests/{name}.toml")), text).unwrap();
        }
        let config = Config::from_file(&config_path).unwrap();
        let pattern = format!("{}/tests/*.toml", directory.path().display());

        let tests = load_tests(&config_path, &config, Some(&pattern)).unwrap();

        let names: Vec<&str> = tests.iter().map(|test| test.name.as_str()).collect();
        assert_eq!(names, vec!["a", "b"]);
        let TestInput::File(input) = &tests[0].input else { panic!("expected an input file") };
        assert_eq!(input, &directory.path().join("tests/a.ndjson"));
    }

    #[test]
    fn tests_file_with_other_keys_rejected() {
        let directory = tempfile::tempdir().unwrap();
        let config_path = directory.path().join("relay.toml");
        std::fs::write(&config_path, PIPELINE).unwrap();
        std::fs::write(directory.path().join("extra.toml"), "[test]\nname = \"x\"\n").unwrap();
        let config = Config::from_file(&config_path).unwrap();
        let pattern = format!("{}/extra.toml", directory.path().display());

        let messages: Vec<String> = load_tests(&config_path, &config, Some(&pattern))
            .unwrap_err()
            .into_iter()
            .map(|error| error.message)
            .collect();

        assert_eq!(
            messages,
            vec![
                "unknown key `test`; a tests file contains only `[[tests]]` tables; did you mean `tests`?",
                "the file contains no `[[tests]]` table",
            ]
        );
    }

    #[test]
    fn pattern_without_match_rejected() {
        let directory = tempfile::tempdir().unwrap();
        let config_path = directory.path().join("relay.toml");
        std::fs::write(&config_path, PIPELINE).unwrap();
        let config = Config::from_file(&config_path).unwrap();
        let pattern = format!("{}/none/*.toml", directory.path().display());

        let errors = load_tests(&config_path, &config, Some(&pattern)).unwrap_err();

        assert_eq!(errors[0].message, format!(
            "the `--tests` pattern `{pattern}` matches no file; relative patterns are resolved against the current directory"
        ));
    }
}
