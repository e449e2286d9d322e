//! The `file` source: reads newline-delimited JSON files matching glob patterns.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{read_lines, Emitter, SourceContext, SourceError, DEFAULT_MAX_LINE_BYTES};

/// Settings of the `file` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Glob patterns of the files to read, such as `/var/log/app/*.ndjson`. Relative patterns are
    /// resolved against the configuration file's directory. Files are read in path order, each to its end.
    pub include: Vec<String>,
    /// Glob patterns of files to leave out, matched against the full path.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Maximum length of one line in bytes. Longer lines are dead-lettered with the reason
    /// `line_too_long`. Default 1048576 (1 MiB).
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

fn default_max_line_bytes() -> usize {
    DEFAULT_MAX_LINE_BYTES
}

impl FileSourceConfig {
    /// Returns the checks that need more than one option.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.include.is_empty() {
            errors.push("`include` is empty; list at least one glob pattern of files to read".to_owned());
        }
        for pattern in self.include.iter().chain(&self.exclude) {
            if let Err(error) = glob::Pattern::new(pattern) {
                errors.push(format!("invalid glob pattern `{pattern}`: {error}"));
            }
        }
        if self.max_line_bytes == 0 {
            errors.push("invalid value for `max_line_bytes`: 0; give a number of bytes above 0".to_owned());
        }
        errors
    }

    /// Resolves relative patterns against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        for pattern in self.include.iter_mut().chain(self.exclude.iter_mut()) {
            let resolved = crate::config::resolve_path(base, Path::new(pattern.as_str()));
            *pattern = resolved.to_string_lossy().into_owned();
        }
    }

    /// Returns the files that match `include` and no `exclude` pattern, sorted and without duplicates.
    pub fn matching_files(&self) -> Vec<PathBuf> {
        let excluded: Vec<glob::Pattern> =
            self.exclude.iter().filter_map(|pattern| glob::Pattern::new(pattern).ok()).collect();
        let mut files = Vec::new();
        for pattern in &self.include {
            let Ok(paths) = glob::glob(pattern) else { continue };
            for path in paths.flatten() {
                let is_excluded = excluded.iter().any(|exclude| exclude.matches_path(&path));
                if path.is_file() && !is_excluded {
                    files.push(path);
                }
            }
        }
        files.sort();
        files.dedup();
        files
    }

    /// Reads every matching file to its end, or until shutdown.
    pub async fn run(&self, context: SourceContext) -> Result<(), SourceError> {
        let SourceContext { output, shutdown, stats, id } = context;
        let mut emitter = Emitter::new(output, stats.clone(), stats);

        let files = self.matching_files();
        if files.is_empty() {
            tracing::warn!(component_id = %id, include = ?self.include, "no file matches the include patterns");
        }

        for path in files {
            if shutdown.is_cancelled() {
                break;
            }
            let what = path.display().to_string();
            let file =
                tokio::fs::File::open(&path).await.map_err(|error| SourceError::Read { what: what.clone(), error })?;
            tracing::info!(component_id = %id, path = %what, "reading file");
            let reader = tokio::io::BufReader::with_capacity(256 * 1024, file);
            read_lines(reader, &what, self.max_line_bytes, &mut emitter, &shutdown).await?;
        }
        Ok(())
    }
}
