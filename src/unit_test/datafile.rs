//! The datafile a test maps with, found without any network access: the file of `datafile.path`, or
//! for `url` and `sdk_key` datafiles the last good copy that the pipeline saved under `data_dir`.

use std::path::Path;
use std::sync::Arc;

use crate::transforms::optimizely::datafile::Datafile;
use crate::transforms::optimizely::datafile_store::DatafileStore;
use crate::transforms::optimizely::OptimizelyTransformConfig;

/// A datafile available offline, with where it was read from.
#[derive(Debug, Clone)]
pub struct OfflineDatafile {
    /// The parsed datafile.
    pub datafile: Arc<Datafile>,
    /// The file it was read from.
    pub file: String,
}

/// Reads the datafile of the transform `component_id`. The error explains how to make the datafile
/// available.
pub fn load_offline_datafile(
    component_id: &str,
    settings: &OptimizelyTransformConfig,
    data_dir: Option<&Path>,
) -> Result<OfflineDatafile, String> {
    let loaded = match &settings.datafile.path {
        Some(path) => read_local(path)?,
        None => read_saved_copy(component_id, settings, data_dir)?,
    };
    if let Some(expected) = &settings.account_id {
        loaded.datafile.check_account_id(expected).map_err(|error| format!("datafile `{}`: {error}", loaded.file))?;
    }
    Ok(loaded)
}

fn read_local(path: &Path) -> Result<OfflineDatafile, String> {
    let bytes = std::fs::read(path)
        .map_err(|error| format!("cannot read `datafile.path` `{}`: {error}; check the path", path.display()))?;
    let datafile = Datafile::parse(&bytes).map_err(|error| format!("datafile `{}`: {error}", path.display()))?;
    Ok(OfflineDatafile { datafile: Arc::new(datafile), file: path.display().to_string() })
}

fn read_saved_copy(
    component_id: &str,
    settings: &OptimizelyTransformConfig,
    data_dir: Option<&Path>,
) -> Result<OfflineDatafile, String> {
    let source = settings.datafile.source_description();
    let Some(data_dir) = data_dir else {
        return Err(format!(
            "the datafile of transform `{component_id}` comes from {source}, and tests never use the network; \
             set `data_dir` and run the pipeline once with network access, so that it saves a copy under \
             `data_dir/datafiles/`, or give a local datafile with `datafile.path`"
        ));
    };

    let store = DatafileStore::new(data_dir, component_id);
    let file = store.datafile_path().display().to_string();
    match store.load(&source) {
        Ok(Some(saved)) => Ok(OfflineDatafile { datafile: saved.loaded.datafile, file }),
        Ok(None) => Err(format!(
            "no saved copy of the datafile of transform `{component_id}` (from {source}) exists at `{file}`, and \
             tests never use the network; run the pipeline once with network access to save it, or give a local \
             datafile with `datafile.path`"
        )),
        Err(reason) => Err(format!(
            "the saved datafile of transform `{component_id}` cannot be used: {reason}; run the pipeline once \
             with network access to replace it, or give a local datafile with `datafile.path`"
        )),
    }
}
