//! The on-disk copy of the last good datafile, so that a restart during a CDN outage can start.
//!
//! Layout under `data_dir`: `datafiles/<component id>.json` is the datafile as received, and
//! `datafiles/<component id>.meta.json` records its source, revision, `Last-Modified` and save time.
//! Each file is written to a temporary file, synced and renamed into place, so a crash leaves either
//! the old or the new file. The copy is used only when its metadata matches the configured source and
//! its revision; anything else is ignored, never fatal.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::datafile::Datafile;
use super::datafile_source::LoadedDatafile;
use crate::state_files::{component_file_name, write_atomically};

/// Metadata saved beside the datafile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SavedMetadata {
    /// The path or URL the datafile was loaded from, without secrets.
    source: String,
    /// The datafile's revision, checked against the saved datafile on load.
    revision: String,
    /// The `Last-Modified` header the server sent with it.
    last_modified: Option<String>,
    /// When it was saved, in milliseconds since the Unix epoch.
    saved_at_unix_ms: u64,
}

/// A datafile read back from disk.
#[derive(Debug, Clone)]
pub struct SavedDatafile {
    /// The datafile with its source and `Last-Modified`.
    pub loaded: LoadedDatafile,
    /// How long ago it was saved.
    pub age: Duration,
}

/// The saved copy of one transform's datafile.
#[derive(Debug, Clone)]
pub struct DatafileStore {
    datafile_path: PathBuf,
    metadata_path: PathBuf,
}

impl DatafileStore {
    /// Creates the store of the transform `component_id` under `data_dir`.
    pub fn new(data_dir: &Path, component_id: &str) -> DatafileStore {
        let directory = data_dir.join("datafiles");
        let name = component_file_name(component_id);
        DatafileStore {
            datafile_path: directory.join(format!("{name}.json")),
            metadata_path: directory.join(format!("{name}.meta.json")),
        }
    }

    /// Returns the path of the saved datafile.
    pub fn datafile_path(&self) -> &Path {
        &self.datafile_path
    }

    /// Saves `loaded` atomically: the datafile first, then its metadata.
    pub fn save(&self, loaded: &LoadedDatafile) -> std::io::Result<()> {
        let metadata = SavedMetadata {
            source: loaded.source.clone(),
            revision: loaded.datafile.revision.clone(),
            last_modified: loaded.last_modified.clone(),
            saved_at_unix_ms: unix_millis(SystemTime::now()),
        };
        let metadata_json = serde_json::to_vec_pretty(&metadata).map_err(std::io::Error::other)?;

        write_atomically(&self.datafile_path, &loaded.body)?;
        write_atomically(&self.metadata_path, &metadata_json)
    }

    /// Reads the saved datafile of `expected_source`. Returns `Ok(None)` when nothing is saved, and an
    /// error naming the problem when the copy is unreadable, corrupt, of another source, or its files
    /// do not belong together.
    pub fn load(&self, expected_source: &str) -> Result<Option<SavedDatafile>, String> {
        let metadata_bytes = match std::fs::read(&self.metadata_path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(format!("cannot read `{}`: {error}", self.metadata_path.display())),
        };
        let metadata: SavedMetadata = serde_json::from_slice(&metadata_bytes)
            .map_err(|error| format!("`{}` is corrupt: {error}", self.metadata_path.display()))?;
        if metadata.source != expected_source {
            return Err(format!(
                "the saved datafile came from {}, not from the configured {expected_source}",
                metadata.source
            ));
        }

        let body = std::fs::read(&self.datafile_path)
            .map_err(|error| format!("cannot read `{}`: {error}", self.datafile_path.display()))?;
        let datafile = Datafile::parse(&body)
            .map_err(|error| format!("`{}` is not a usable datafile: {error}", self.datafile_path.display()))?;
        if datafile.revision != metadata.revision {
            return Err(format!(
                "`{}` contains revision {} but its metadata names revision {}",
                self.datafile_path.display(),
                datafile.revision,
                metadata.revision
            ));
        }

        let saved_at = SystemTime::UNIX_EPOCH + Duration::from_millis(metadata.saved_at_unix_ms);
        let age = SystemTime::now().duration_since(saved_at).unwrap_or_default();
        let loaded = LoadedDatafile {
            datafile: Arc::new(datafile),
            last_modified: metadata.last_modified,
            source: metadata.source,
            body: body.into(),
        };
        Ok(Some(SavedDatafile { loaded, age }))
    }
}

fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map(|duration| duration.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_bytes(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/../shared/fixtures/datafiles/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn loaded(name: &str, source: &str) -> LoadedDatafile {
        let body = fixture_bytes(name);
        LoadedDatafile {
            datafile: Arc::new(Datafile::parse(&body).unwrap()),
            last_modified: Some("Wed, 02 Dec 2026 10:00:00 GMT".to_owned()),
            source: source.to_owned(),
            body: body.into(),
        }
    }

    #[test]
    fn saved_datafile_loads_back() {
        let directory = tempfile::tempdir().unwrap();
        let store = DatafileStore::new(directory.path(), "opt");
        store.save(&loaded("go-typed-audience-datafile.json", "https://cdn.example/d.json")).unwrap();

        let saved = store.load("https://cdn.example/d.json").unwrap().unwrap();
        assert_eq!(saved.loaded.datafile.revision, "3");
        assert_eq!(saved.loaded.last_modified.as_deref(), Some("Wed, 02 Dec 2026 10:00:00 GMT"));
        assert!(saved.age < Duration::from_secs(60));
        assert_eq!(store.datafile_path(), directory.path().join("datafiles/opt.json"));
    }

    #[test]
    fn nothing_saved_is_none() {
        let directory = tempfile::tempdir().unwrap();
        assert!(DatafileStore::new(directory.path(), "opt").load("x").unwrap().is_none());
    }

    #[test]
    fn other_source_ignored() {
        let directory = tempfile::tempdir().unwrap();
        let store = DatafileStore::new(directory.path(), "opt");
        store.save(&loaded("go-typed-audience-datafile.json", "https://cdn.example/a.json")).unwrap();

        let error = store.load("https://cdn.example/b.json").unwrap_err();
        assert!(error.contains("https://cdn.example/a.json"), "{error}");
    }

    #[test]
    fn corrupt_datafile_ignored() {
        let directory = tempfile::tempdir().unwrap();
        let store = DatafileStore::new(directory.path(), "opt");
        store.save(&loaded("go-typed-audience-datafile.json", "s")).unwrap();
        std::fs::write(store.datafile_path(), b"{\"version\": \"4\", trunc").unwrap();

        let error = store.load("s").unwrap_err();
        assert!(error.contains("not a usable datafile"), "{error}");
    }

    #[test]
    fn mismatched_files_ignored() {
        let directory = tempfile::tempdir().unwrap();
        let store = DatafileStore::new(directory.path(), "opt");
        store.save(&loaded("go-typed-audience-datafile.json", "s")).unwrap();
        std::fs::write(store.datafile_path(), fixture_bytes("java-valid-project-config-v4.json")).unwrap();

        let error = store.load("s").unwrap_err();
        assert!(error.contains("revision 1480511547 but its metadata names revision 3"), "{error}");
    }

    #[test]
    fn component_id_cannot_escape_directory() {
        let directory = tempfile::tempdir().unwrap();
        let store = DatafileStore::new(directory.path(), "../x/y");
        assert_eq!(store.datafile_path(), directory.path().join("datafiles/___x_y.json"));
    }
}
