//! Sinks: components that write events to their destination.

pub mod console;
pub mod file;
pub mod optimizely_events;
pub mod optimizely_user_deletion;
mod util;

use std::path::Path;

use crate::config::{parse_typed, unknown_type, DataKind, OutputSpec};

pub use console::ConsoleSinkConfig;
pub use file::FileSinkConfig;
pub use optimizely_events::OptimizelyEventsConfig;
pub use optimizely_user_deletion::OptimizelyUserDeletionConfig;

/// The settings of one sink, by type.
#[derive(Debug, Clone)]
pub enum SinkConfig {
    /// `type = "optimizely_events"`.
    OptimizelyEvents(OptimizelyEventsConfig),
    /// `type = "optimizely_user_deletion"`.
    OptimizelyUserDeletion(OptimizelyUserDeletionConfig),
    /// `type = "console"`.
    Console(ConsoleSinkConfig),
    /// `type = "file"`.
    File(FileSinkConfig),
}

impl SinkConfig {
    /// The known sink types.
    pub const TYPES: &'static [&'static str] = &["optimizely_events", "optimizely_user_deletion", "console", "file"];

    /// Parses a sink's table (without `type` and `inputs`) by its type.
    pub fn parse(component_type: &str, table: toml::Table) -> Result<SinkConfig, Vec<String>> {
        match component_type {
            "optimizely_events" => parse_typed(table, SinkConfig::OptimizelyEvents),
            "optimizely_user_deletion" => parse_typed(table, SinkConfig::OptimizelyUserDeletion),
            "console" => parse_typed(table, SinkConfig::Console),
            "file" => parse_typed(table, SinkConfig::File),
            other => Err(unknown_type(other, SinkConfig::TYPES)),
        }
    }

    /// Returns the sink's type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkConfig::OptimizelyEvents(_) => "optimizely_events",
            SinkConfig::OptimizelyUserDeletion(_) => "optimizely_user_deletion",
            SinkConfig::Console(_) => "console",
            SinkConfig::File(_) => "file",
        }
    }

    /// Returns the checks that need more than one option.
    pub fn validate(&self) -> Vec<String> {
        match self {
            SinkConfig::OptimizelyEvents(config) => config.problems(),
            SinkConfig::OptimizelyUserDeletion(config) => config.problems(),
            SinkConfig::Console(_) => Vec::new(),
            SinkConfig::File(config) => config.validate(),
        }
    }

    /// Resolves relative paths against the configuration file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        if let SinkConfig::File(config) = self {
            config.resolve_paths(base);
        }
    }

    /// Returns the sink's outputs: the `dropped` dead-letter output of the Optimizely sinks.
    pub fn outputs(&self) -> Vec<OutputSpec> {
        match self {
            SinkConfig::OptimizelyEvents(_) | SinkConfig::OptimizelyUserDeletion(_) => {
                vec![OutputSpec { name: Some("dropped"), kind: DataKind::DeadLetters, required: false }]
            }
            SinkConfig::Console(_) | SinkConfig::File(_) => Vec::new(),
        }
    }

    /// Returns the data kinds the sink accepts.
    pub fn accepts(&self) -> Vec<DataKind> {
        match self {
            SinkConfig::OptimizelyEvents(_) => vec![DataKind::Conversions],
            SinkConfig::OptimizelyUserDeletion(_) => vec![DataKind::Deletions],
            SinkConfig::Console(_) | SinkConfig::File(_) => {
                vec![DataKind::Messages, DataKind::Conversions, DataKind::Deletions, DataKind::DeadLetters]
            }
        }
    }
}

/// An error building an HTTP API sink (`optimizely_events`, `optimizely_user_deletion`) or its client.
#[derive(Debug, thiserror::Error)]
pub enum SinkBuildError {
    /// One or more settings have invalid values; every problem is listed.
    #[error("invalid settings for sink `{component_id}`: {}", .problems.join("; "))]
    InvalidConfig {
        /// The sink's id.
        component_id: String,
        /// Each invalid setting, with its value and the accepted range.
        problems: Vec<String>,
    },

    /// The HTTP client could not be created, for example because the TLS backend failed to load.
    #[error("failed to build the HTTP client of sink `{component_id}`: {source}")]
    HttpClient {
        /// The sink's id.
        component_id: String,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
}
