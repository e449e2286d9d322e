//! The `stdin` source: newline-delimited JSON on standard input.

use serde::Deserialize;

use super::{read_lines, Emitter, SourceContext, SourceError, DEFAULT_MAX_LINE_BYTES};

/// Settings of the `stdin` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinSourceConfig {
    /// Maximum length of one line in bytes. Longer lines are dead-lettered with the reason
    /// `line_too_long`, keeping only their first `max_line_bytes` bytes. Default 1048576 (1 MiB).
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

fn default_max_line_bytes() -> usize {
    DEFAULT_MAX_LINE_BYTES
}

impl StdinSourceConfig {
    /// Returns the checks that need more than one option.
    pub fn validate(&self) -> Vec<String> {
        if self.max_line_bytes == 0 {
            return vec!["invalid value for `max_line_bytes`: 0; give a number of bytes above 0".to_owned()];
        }
        Vec::new()
    }

    /// Reads standard input to its end, or until shutdown.
    pub async fn run(&self, context: SourceContext) -> Result<(), SourceError> {
        let SourceContext { output, shutdown, stats, id, .. } = context;
        let mut emitter = Emitter::new(output, stats.clone(), stats, "stdin");
        tracing::info!(component_id = %id, "reading standard input");
        let (reader, capacity) = (tokio::io::stdin(), 256 * 1024);
        read_lines(reader, capacity, "standard input", self.max_line_bytes, &mut emitter, &shutdown).await?;
        tracing::info!(component_id = %id, "standard input ended");
        Ok(())
    }
}
