//! Files under `data_dir`: names derived from component ids, and atomic writes.

use std::io::Write;
use std::path::Path;

/// Maps a component id to a file name: characters other than ASCII letters, digits and `-` become `_`,
/// so an id can never name a path outside its directory.
pub(crate) fn component_file_name(component_id: &str) -> String {
    component_id
        .chars()
        .map(|character| if character.is_ascii_alphanumeric() || character == '-' { character } else { '_' })
        .collect()
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, renames it over `path`, and syncs the
/// directory, so that after a crash `path` contains either its old or its new content.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let directory = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(directory)?;

    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);

    std::fs::rename(&temporary, path)?;
    std::fs::File::open(directory)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_id_cannot_escape_directory() {
        assert_eq!(component_file_name("../x/y"), "___x_y");
        assert_eq!(component_file_name("opt-1"), "opt-1");
    }

    #[test]
    fn atomic_write_replaces_content() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("nested/state.json");
        write_atomically(&path, b"first").unwrap();
        write_atomically(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert!(!path.with_extension("tmp").exists());
    }
}
