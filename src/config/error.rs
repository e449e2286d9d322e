//! Configuration errors.

use std::fmt;

/// One problem in a configuration. Loading reports every problem it finds, not only the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The component the problem belongs to, as `sinks.out`, or `None` for global options and the file.
    pub component: Option<String>,
    /// The problem, naming the key and value, and the fix.
    pub message: String,
}

impl ConfigError {
    /// Creates an error for a component (`"sinks.out"`).
    pub fn component(component: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { component: Some(component.into()), message: message.into() }
    }

    /// Creates an error that belongs to no component.
    pub fn global(message: impl Into<String>) -> ConfigError {
        ConfigError { component: None, message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.component {
            Some(component) => write!(formatter, "{component}: {}", self.message),
            None => formatter.write_str(&self.message),
        }
    }
}

/// Every problem found while loading a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        let noun = if count == 1 { "error" } else { "errors" };
        writeln!(formatter, "invalid configuration ({count} {noun}):")?;
        for error in &self.0 {
            writeln!(formatter, "  - {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Returns the candidate closest to `input` when it is close enough to be a likely typo.
pub fn suggest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(input, candidate), candidate))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|left, right| left.0.total_cmp(&right.0))
        .map(|(_, candidate)| candidate)
}

/// Formats a "did you mean" hint, or an empty string when nothing is close.
pub fn did_you_mean<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match suggest(input, candidates) {
        Some(candidate) => format!("; did you mean `{candidate}`?"),
        None => String::new(),
    }
}

/// Describes a TOML syntax error with its line and column, counted from 1, such as
/// `invalid TOML at line 3, column 24: invalid basic string`.
pub fn invalid_toml(text: &str, error: &toml::de::Error) -> String {
    let Some(span) = error.span() else { return format!("invalid TOML: {}", error.message()) };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |start| start.chars().count()) + 1;
    format!("invalid TOML at line {line}, column {column}: {}", error.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggest_finds_typo() {
        assert_eq!(suggest("max_evnts", ["max_events", "max_bytes", "timeout_secs"]), Some("max_events"));
    }

    #[test]
    fn suggest_ignores_unrelated_words() {
        assert_eq!(suggest("colour", ["max_events", "endpoint"]), None);
    }

    #[test]
    fn invalid_toml_names_line_and_column() {
        let text = "[sources.in]\ntype = \"stdin\"\nrevenue_unit = \"dollars\n";
        let error = toml::from_str::<toml::Table>(text).unwrap_err();
        assert_eq!(invalid_toml(text, &error), "invalid TOML at line 3, column 24: invalid basic string");
    }
}
