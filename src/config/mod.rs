//! The TOML configuration: global options, `[sources.ID]`, `[transforms.ID]` and `[sinks.ID]`.
//!
//! Loading interpolates environment variables into string values, deserializes each component by its
//! `type`, runs each component's own checks and the graph checks, and reports every problem together.
//! Nothing here touches the network.

mod deserialize;
pub(crate) mod error;
pub mod graph;
mod interpolate;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use error::{did_you_mean, suggest, ConfigError, ConfigErrors};
pub use graph::{DataKind, Node, OutputSpec};

use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;
use crate::topology::BufferConfig;
use crate::transforms::TransformConfig;

/// Options outside any component.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalOptions {
    /// Directory for state that must survive restarts, such as file checkpoints and the last good
    /// datafile. Relative paths are resolved against the configuration file's directory.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Seconds that in-flight requests and their retries get to finish once all sources have stopped.
    /// Events still undelivered then are counted as undelivered. Default 30.
    #[serde(default = "default_shutdown_timeout_secs")]
    pub shutdown_timeout_secs: f64,
    /// The API server with `/metrics` and `/health`; metrics are collected only when it is set.
    #[serde(default)]
    pub api: Option<crate::observability::api::ApiConfig>,
}

fn default_shutdown_timeout_secs() -> f64 {
    30.0
}

impl Default for GlobalOptions {
    fn default() -> GlobalOptions {
        GlobalOptions { data_dir: None, shutdown_timeout_secs: default_shutdown_timeout_secs(), api: None }
    }
}

/// A transform or sink with its inputs.
#[derive(Debug, Clone)]
pub struct WithInputs<T> {
    /// Component ids or named outputs (`opt.dropped`) this component reads from.
    pub inputs: Vec<String>,
    /// The input buffer; set with a `[sinks.ID.buffer]` table, the default for transforms.
    pub buffer: BufferConfig,
    /// The type-specific settings.
    pub config: T,
}

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Global options.
    pub global: GlobalOptions,
    /// Sources by id.
    pub sources: BTreeMap<String, SourceConfig>,
    /// Transforms by id.
    pub transforms: BTreeMap<String, WithInputs<TransformConfig>>,
    /// Sinks by id.
    pub sinks: BTreeMap<String, WithInputs<SinkConfig>>,
}

/// The section names of a configuration file, also offered as hints for misspelled keys.
const SECTIONS: &[&str] = &["sources", "transforms", "sinks", TESTS_KEY];

/// The key of the `[[tests]]` tables.
pub const TESTS_KEY: &str = "tests";

impl Config {
    /// Reads and loads a configuration file; relative paths inside it are resolved against its directory.
    pub fn from_file(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigErrors(vec![ConfigError::global(format!(
                "cannot read configuration file `{}`: {error}",
                path.display()
            ))])
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Config::from_toml(&text, &base, &|name| std::env::var(name).ok())
    }

    /// Loads a configuration from TOML text. `base` resolves relative paths; `lookup` reads environment
    /// variables for `${VAR}` interpolation.
    ///
    /// Fails with every problem found, each naming the component and the option:
    ///
    /// ```
    /// use std::path::Path;
    /// use optimizely_relay::config::Config;
    ///
    /// let text = r#"
    ///     [sources.in]
    ///     type = "stdin"
    ///     [sinks.out]
    ///     type = "console"
    ///     inputs = ["in"]
    ///     buffer.max_evnts = 10
    /// "#;
    /// let errors = Config::from_toml(text, Path::new("."), &|_| None).unwrap_err();
    /// assert_eq!(
    ///     errors.0[0].to_string(),
    ///     "sinks.out: unknown option `buffer.max_evnts`; did you mean `buffer.max_events`?"
    /// );
    /// ```
    pub fn from_toml(text: &str, base: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
        let mut root: toml::Table = toml::from_str(text)
            .map_err(|error| ConfigErrors(vec![ConfigError::global(error::invalid_toml(text, &error))]))?;

        // `[[tests]]` tables are not part of the pipeline. The `test` and `validate` commands read them
        // from the file again through `crate::unit_test`.
        root.remove(TESTS_KEY);

        let mut errors: Vec<ConfigError> = Vec::new();
        let mut root_value = toml::Value::Table(std::mem::take(&mut root));
        for message in interpolate::interpolate_value(&mut root_value, "", lookup) {
            errors.push(ConfigError::global(message));
        }
        let toml::Value::Table(mut root) = root_value else { unreachable!("the root stays a table") };

        let sources = take_section(&mut root, "sources", &mut errors);
        let transforms = take_section(&mut root, "transforms", &mut errors);
        let sinks = take_section(&mut root, "sinks", &mut errors);

        let global = load_global(root, &mut errors);
        let mut failed = Failed::default();
        let mut config = Config {
            global,
            sources: load_components(sources, "sources", Shared::None, SourceConfig::parse, &mut failed, &mut errors)
                .into_iter()
                .map(|(id, component)| (id, component.config))
                .collect(),
            transforms: load_components(
                transforms,
                "transforms",
                Shared::Inputs,
                TransformConfig::parse,
                &mut failed,
                &mut errors,
            ),
            sinks: load_components(
                sinks,
                "sinks",
                Shared::InputsAndBuffer,
                SinkConfig::parse,
                &mut failed,
                &mut errors,
            ),
        };

        // The checks run even when some components failed to load, so that every problem is reported
        // at once; they treat a failed component as present and compatible with any input.
        config.resolve_paths(base);
        errors.extend(config.check(&failed));
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        if let Some(data_dir) = &mut self.global.data_dir {
            *data_dir = resolve_path(base, data_dir);
        }
        for source in self.sources.values_mut() {
            source.resolve_paths(base);
        }
        for transform in self.transforms.values_mut() {
            transform.config.resolve_paths(base);
        }
        for sink in self.sinks.values_mut() {
            sink.config.resolve_paths(base);
        }
    }

    /// Runs the checks that need more than one option: each component's own and the graph's.
    fn check(&self, failed: &Failed) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if !(self.global.shutdown_timeout_secs.is_finite() && self.global.shutdown_timeout_secs >= 0.0) {
            errors.push(ConfigError::global(format!(
                "invalid value for `shutdown_timeout_secs`: {}; give a number of seconds, 0 or more",
                self.global.shutdown_timeout_secs
            )));
        }
        if self.sources.is_empty() && failed.sources == 0 {
            errors.push(ConfigError::global("no source is configured; add a `[sources.ID]` table"));
        }
        if self.sinks.is_empty() && failed.sinks == 0 {
            errors.push(ConfigError::global("no sink is configured; add a `[sinks.ID]` table"));
        }

        for (id, source) in &self.sources {
            for message in source.validate() {
                errors.push(ConfigError::component(format!("sources.{id}"), message));
            }
        }
        for (id, transform) in &self.transforms {
            for message in transform.config.validate() {
                errors.push(ConfigError::component(format!("transforms.{id}"), message));
            }
        }
        for (id, sink) in &self.sinks {
            for message in sink.config.validate() {
                errors.push(ConfigError::component(format!("sinks.{id}"), message));
            }
        }

        errors.extend(self.check_ids());
        let mut nodes = self.graph_nodes();
        nodes.extend(failed.nodes());
        errors.extend(graph::check_graph(&nodes, &failed.ids()));
        errors
    }

    fn check_ids(&self) -> Vec<ConfigError> {
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        let mut errors = Vec::new();
        let ids = self
            .sources
            .keys()
            .map(|id| (id, "sources"))
            .chain(self.transforms.keys().map(|id| (id, "transforms")))
            .chain(self.sinks.keys().map(|id| (id, "sinks")));
        for (id, section) in ids {
            if id.is_empty() || id.contains('.') {
                errors.push(ConfigError::component(
                    format!("{section}.{id}"),
                    "component ids must be non-empty and must not contain `.`, which separates output names",
                ));
            }
            if let Some(other) = seen.insert(id, section) {
                errors.push(ConfigError::global(format!(
                    "the id `{id}` is used in both `{other}` and `{section}`; component ids must be unique"
                )));
            }
        }
        errors
    }

    /// Runs the checks that read local files, such as a transform's datafile `path`, without any
    /// network access. Loading does not run them, so that a configuration can be checked on another
    /// machine; `validate` does.
    pub fn check_local_files(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for (id, transform) in &self.transforms {
            let TransformConfig::Optimizely(settings) = &transform.config;
            for message in settings.check_local_datafile() {
                errors.push(ConfigError::component(format!("transforms.{id}"), message));
            }
        }
        errors
    }

    /// Describes every component for the graph checks and the topology builder.
    pub fn graph_nodes(&self) -> Vec<Node> {
        let mut nodes = Vec::new();
        for (id, source) in &self.sources {
            nodes.push(Node {
                label: format!("sources.{id}"),
                id: id.clone(),
                inputs: Vec::new(),
                outputs: source.outputs(),
                accepts: Vec::new(),
            });
        }
        for (id, transform) in &self.transforms {
            nodes.push(Node {
                label: format!("transforms.{id}"),
                id: id.clone(),
                inputs: transform.inputs.clone(),
                outputs: transform.config.outputs(),
                accepts: transform.config.accepts(),
            });
        }
        for (id, sink) in &self.sinks {
            nodes.push(Node {
                label: format!("sinks.{id}"),
                id: id.clone(),
                inputs: sink.inputs.clone(),
                outputs: sink.config.outputs(),
                accepts: sink.config.accepts(),
            });
        }
        nodes
    }
}

/// Resolves `path` against `base` unless it is absolute.
pub fn resolve_path(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() || base.as_os_str().is_empty() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

fn load_global(root: toml::Table, errors: &mut Vec<ConfigError>) -> GlobalOptions {
    let mut messages = Vec::new();
    let mut global_table = toml::Table::new();
    for (key, value) in root {
        if let Some(section) = suggest(&key, SECTIONS.iter().copied()) {
            messages.push(format!("unknown option `{key}`; did you mean `{section}`?"));
        } else {
            global_table.insert(key, value);
        }
    }
    let global = match deserialize::deserialize_table::<GlobalOptions>(global_table) {
        Ok(global) => global,
        Err(found) => {
            messages.extend(found);
            GlobalOptions::default()
        }
    };
    errors.extend(messages.into_iter().map(ConfigError::global));
    global
}

fn take_section(root: &mut toml::Table, name: &str, errors: &mut Vec<ConfigError>) -> toml::Table {
    match root.remove(name) {
        None => toml::Table::new(),
        Some(toml::Value::Table(table)) => table,
        Some(other) => {
            errors.push(ConfigError::global(format!(
                "`{name}` must be a table of components such as `[{name}.ID]`, not a {}",
                other.type_str()
            )));
            toml::Table::new()
        }
    }
}

/// A parser from a component's `type` and remaining table to its typed settings.
type ParseComponent<T> = fn(&str, toml::Table) -> Result<T, Vec<String>>;

/// Components that failed to load, kept so that the graph checks can still run.
#[derive(Default)]
struct Failed {
    /// Failed transforms and sinks: label, id and inputs.
    consumers: Vec<(String, String, Vec<String>)>,
    /// Failed component ids of every section.
    all: Vec<String>,
    sources: usize,
    sinks: usize,
}

impl Failed {
    fn ids(&self) -> BTreeSet<String> {
        self.all.iter().cloned().collect()
    }

    /// Returns graph nodes that consume their inputs and accept any data.
    fn nodes(&self) -> Vec<Node> {
        let every_kind = vec![DataKind::Messages, DataKind::Conversions, DataKind::Deletions, DataKind::DeadLetters];
        self.consumers
            .iter()
            .map(|(label, id, inputs)| Node {
                label: label.clone(),
                id: id.clone(),
                inputs: inputs.clone(),
                outputs: Vec::new(),
                accepts: every_kind.clone(),
            })
            .collect()
    }
}

/// The options a section's components share, read before the type-specific ones.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shared {
    /// Sources: none.
    None,
    /// Transforms: `inputs`.
    Inputs,
    /// Sinks: `inputs` and `buffer`.
    InputsAndBuffer,
}

fn load_components<T>(
    section: toml::Table,
    name: &str,
    shared: Shared,
    parse: ParseComponent<T>,
    failed: &mut Failed,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<String, WithInputs<T>> {
    let mut components = BTreeMap::new();
    for (id, value) in section {
        let label = format!("{name}.{id}");
        let toml::Value::Table(mut table) = value else {
            errors.push(ConfigError::component(&label, format!("must be a table, not a {}", value.type_str())));
            failed.record(name, id, Vec::new());
            continue;
        };

        let inputs = if shared == Shared::None { Vec::new() } else { take_inputs(&mut table, &label, errors) };
        let component_type = match table.remove("type") {
            Some(toml::Value::String(component_type)) => component_type,
            Some(other) => {
                errors.push(ConfigError::component(
                    &label,
                    format!("`type` must be a string, not a {}", other.type_str()),
                ));
                failed.record(name, id, inputs);
                continue;
            }
            None => {
                errors.push(ConfigError::component(&label, "missing required option `type`"));
                failed.record(name, id, inputs);
                continue;
            }
        };

        let buffer = if shared == Shared::InputsAndBuffer {
            take_buffer(&mut table, &label, errors)
        } else {
            BufferConfig::default()
        };
        match parse(&component_type, table) {
            Ok(config) => {
                components.insert(id, WithInputs { inputs, buffer, config });
            }
            Err(messages) => {
                errors.extend(messages.into_iter().map(|message| ConfigError::component(&label, message)));
                failed.record(name, id, inputs);
            }
        }
    }
    components
}

impl Failed {
    fn record(&mut self, section: &str, id: String, inputs: Vec<String>) {
        match section {
            "sources" => self.sources += 1,
            "sinks" => self.sinks += 1,
            _ => {}
        }
        self.all.push(id.clone());
        if section != "sources" {
            self.consumers.push((format!("{section}.{id}"), id, inputs));
        }
    }
}

fn take_buffer(table: &mut toml::Table, label: &str, errors: &mut Vec<ConfigError>) -> BufferConfig {
    let buffer = match table.remove("buffer") {
        None => return BufferConfig::default(),
        Some(toml::Value::Table(buffer)) => buffer,
        Some(other) => {
            errors.push(ConfigError::component(label, format!("`buffer` must be a table, not a {}", other.type_str())));
            return BufferConfig::default();
        }
    };
    match deserialize::deserialize_table::<BufferConfig>(buffer) {
        Ok(config) => {
            for message in config.validate() {
                errors.push(ConfigError::component(label, message));
            }
            config
        }
        Err(messages) => {
            for message in messages {
                // The table was deserialized on its own, so its keys need the `buffer.` prefix. A hint
                // names a key only in an unknown option's message; otherwise it names a value.
                let unknown_option = message.starts_with("unknown option `");
                let mut message =
                    message.replacen("option `", "option `buffer.", 1).replacen("for `", "for `buffer.", 1);
                if unknown_option {
                    message = message.replacen("did you mean `", "did you mean `buffer.", 1);
                }
                errors.push(ConfigError::component(label, message));
            }
            BufferConfig::default()
        }
    }
}

fn take_inputs(table: &mut toml::Table, label: &str, errors: &mut Vec<ConfigError>) -> Vec<String> {
    let Some(value) = table.remove("inputs") else {
        errors
            .push(ConfigError::component(label, "missing required option `inputs`; list the components it reads from"));
        return Vec::new();
    };
    let items = match value {
        toml::Value::Array(items) => items,
        other => {
            errors.push(ConfigError::component(
                label,
                format!("`inputs` must be an array of strings, not a {}", other.type_str()),
            ));
            return Vec::new();
        }
    };

    let mut inputs = Vec::new();
    for item in items {
        match item {
            toml::Value::String(input) => inputs.push(input),
            other => errors.push(ConfigError::component(
                label,
                format!("`inputs` must contain strings, found a {}", other.type_str()),
            )),
        }
    }
    if inputs.is_empty() {
        errors.push(ConfigError::component(label, "`inputs` is empty; list at least one component or output"));
    }
    inputs
}

/// Parses a component's table by its type, with a "did you mean" hint for unknown types.
pub(crate) fn parse_typed<T, S: serde::de::DeserializeOwned>(
    table: toml::Table,
    wrap: fn(S) -> T,
) -> Result<T, Vec<String>> {
    deserialize::deserialize_table::<S>(table).map(wrap)
}

/// Formats the error for an unknown component type.
pub(crate) fn unknown_type(component_type: &str, known: &[&str]) -> Vec<String> {
    let hint = did_you_mean(component_type, known.iter().copied());
    vec![format!("unknown type `{component_type}`{hint} (known types: {})", known.join(", "))]
}

/// Returns a warning for each named output that no component consumes, such as a transform's
/// `dropped` output left unconnected.
pub fn unconsumed_output_warnings(config: &Config) -> Vec<String> {
    let nodes = config.graph_nodes();
    let consumed: std::collections::BTreeSet<&str> =
        nodes.iter().flat_map(|node| node.inputs.iter().map(String::as_str)).collect();
    let mut warnings = Vec::new();
    for node in &nodes {
        for output in node.outputs.iter().filter(|output| !output.required) {
            let id = graph::output_id(&node.id, output.name);
            if !consumed.contains(id.as_str()) {
                let consequence = match output.kind {
                    DataKind::Deletions => "its deletion requests are counted as skipped",
                    _ => "its records are counted and logged, but not written anywhere",
                };
                warnings.push(format!("output `{id}` is not consumed by any sink; {consequence}"));
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests;
