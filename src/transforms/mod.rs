//! Transforms: components that turn one kind of event into another.

pub mod optimizely;

use std::path::Path;

use crate::config::{parse_typed, unknown_type, DataKind, OutputSpec};

pub use optimizely::OptimizelyTransformConfig;

/// The settings of one transform, by type.
#[derive(Debug, Clone)]
pub enum TransformConfig {
    /// `type = "optimizely"`.
    Optimizely(OptimizelyTransformConfig),
}

impl TransformConfig {
    /// The known transform types.
    pub const TYPES: &'static [&'static str] = &["optimizely"];

    /// Parses a transform's table (without `type` and `inputs`) by its type.
    pub fn parse(component_type: &str, table: toml::Table) -> Result<TransformConfig, Vec<String>> {
        match component_type {
            "optimizely" => parse_typed(table, TransformConfig::Optimizely),
            other => Err(unknown_type(other, TransformConfig::TYPES)),
        }
    }

    /// Returns the transform's type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            TransformConfig::Optimizely(_) => "optimizely",
        }
    }

    /// Returns the checks that need more than one option.
    pub fn validate(&self) -> Vec<String> {
        match self {
            TransformConfig::Optimizely(config) => config.validate(),
        }
    }

    /// Resolves relative paths against the configuration file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        match self {
            TransformConfig::Optimizely(config) => config.resolve_paths(base),
        }
    }

    /// Returns the transform's outputs: conversions by default, plus `dropped` and `deletions`.
    pub fn outputs(&self) -> Vec<OutputSpec> {
        vec![
            OutputSpec { name: None, kind: DataKind::Conversions, required: true },
            OutputSpec { name: Some("dropped"), kind: DataKind::DeadLetters, required: false },
            OutputSpec { name: Some("deletions"), kind: DataKind::Deletions, required: false },
        ]
    }

    /// Returns the data kinds the transform accepts: Segment messages.
    pub fn accepts(&self) -> Vec<DataKind> {
        vec![DataKind::Messages]
    }
}
