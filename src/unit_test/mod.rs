//! `optimizely-relay test`: runs the `[[tests]]` of a configuration through the real transform and
//! compares one of its outputs with expected events or a snapshot file. Tests never use the network.
//!
//! - [`config`]: the `[[tests]]` tables, from the configuration and from `--tests` files.
//! - [`datafile`]: the transform's datafile, from `datafile.path` or the copy saved under `data_dir`.
//! - [`runner`]: feeds messages through the transform's run loop and compares an output.
//! - [`snapshot`]: the stable JSON form of snapshot files.
//! - [`diff`]: the differences between expected and actual events, by path.

pub mod config;
pub mod datafile;
pub mod diff;
pub mod runner;
pub mod snapshot;

use std::collections::BTreeSet;

use crate::config::{Config, ConfigError};
use crate::transforms::TransformConfig;

pub use config::{load_tests, Expectation, TestCase, TestInput};
pub use runner::{collect_outputs, run_tests, CollectedOutputs, Summary};

/// Problems that would stop tests from running, found without running them.
#[derive(Debug, Default)]
pub struct TestCheck {
    /// Problems of the tests themselves: input or snapshot files missing or unusable.
    pub errors: Vec<ConfigError>,
    /// Problems of this machine: a `url` or `sdk_key` datafile without a saved copy, which a run of the
    /// pipeline with network access creates.
    pub warnings: Vec<String>,
}

/// Checks the files that `tests` read and the datafiles they map with, as `validate` reports them.
pub fn check_tests(config: &Config, tests: &[TestCase]) -> TestCheck {
    let mut check = TestCheck::default();
    for test in tests {
        let label = format!("{}: test `{}`", test.declared_in.display(), test.name);
        if let TestInput::File(path) = &test.input {
            if let Err(error) = std::fs::File::open(path) {
                let message = format!("cannot read input file `{}`: {error}", path.display());
                check.errors.push(ConfigError::component(&label, message));
            }
        }
        if let Expectation::Snapshot(path) = &test.expectation {
            let message = match snapshot::read(path) {
                Ok(Some(_)) => None,
                Ok(None) => Some(format!(
                    "snapshot `{}` does not exist; run `optimizely-relay test --update` to create it",
                    path.display()
                )),
                Err(problem) => Some(problem),
            };
            if let Some(message) = message {
                check.errors.push(ConfigError::component(&label, message));
            }
        }
    }

    // `Config::check_local_files` already checks `datafile.path` files, so only saved copies remain.
    let transforms: BTreeSet<&str> = tests.iter().map(|test| test.transform.as_str()).collect();
    for id in transforms {
        let Some(TransformConfig::Optimizely(settings)) = config.transforms.get(id).map(|transform| &transform.config)
        else {
            continue;
        };
        if !settings.datafile.is_remote() {
            continue;
        }
        if let Err(message) = datafile::load_offline_datafile(id, settings, config.global.data_dir.as_deref()) {
            check.warnings.push(format!("the tests of transform `{id}` cannot run on this machine: {message}"));
        }
    }
    check
}
