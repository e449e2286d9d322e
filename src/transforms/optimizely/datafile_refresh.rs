//! Loading a transform's first datafile and refreshing it while the pipeline runs.
//!
//! The transform always maps with the newest good datafile and never with a guessed one:
//! - Startup needs a datafile. When the download fails and a copy saved under `data_dir` matches the
//!   configured source, the transform starts from that copy with a warning saying how old it is.
//! - A refresh sends the last `Last-Modified` back as `If-Modified-Since`. A 304, or a datafile with
//!   the revision already in use, replaces nothing.
//! - Any failure keeps the last good datafile and is logged once per attempt. Consecutive failures
//!   double the wait, up to four times the interval, so a failing CDN is not polled harder.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::datafile::DatafileError;
use super::datafile_source::{fetch_datafile, DatafileConfig, FetchResult, LoadedDatafile};
use super::datafile_store::DatafileStore;
use super::transform::OptimizelyTransform;

/// The factor by which consecutive failures may stretch the refresh interval at most.
const MAX_BACKOFF_FACTOR: u32 = 4;

/// Fetches a datafile, conditionally when `if_modified_since` is given.
#[async_trait]
pub trait DatafileFetcher: Send + Sync {
    /// Fetches the datafile, or learns that it has not changed since `if_modified_since`.
    async fn fetch(&self, if_modified_since: Option<&str>) -> Result<FetchResult, DatafileError>;
}

/// Fetches the datafile a [`DatafileConfig`] names, over HTTP or from disk.
pub struct ConfiguredFetcher {
    config: DatafileConfig,
    client: reqwest::Client,
}

impl ConfiguredFetcher {
    /// Creates a fetcher for `config` that sends its requests with `client`.
    pub fn new(config: DatafileConfig, client: reqwest::Client) -> ConfiguredFetcher {
        ConfiguredFetcher { config, client }
    }
}

#[async_trait]
impl DatafileFetcher for ConfiguredFetcher {
    async fn fetch(&self, if_modified_since: Option<&str>) -> Result<FetchResult, DatafileError> {
        fetch_datafile(&self.config, &self.client, if_modified_since).await
    }
}

/// The state of a transform's datafile, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatafileStatus {
    /// The revision in use.
    pub revision: String,
    /// The path or URL, without secrets.
    pub source: String,
    /// When the source last confirmed the datafile in use: a download or a 304.
    pub confirmed_at: SystemTime,
    /// Failed refreshes since the last success.
    pub consecutive_failures: u32,
}

impl DatafileStatus {
    /// Returns the time since the source last confirmed the datafile in use.
    pub fn age(&self) -> Duration {
        SystemTime::now().duration_since(self.confirmed_at).unwrap_or_default()
    }
}

/// The result of one refresh attempt.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// A new revision replaced the old one.
    Updated {
        /// The revision used before.
        previous: String,
        /// The revision used from now on.
        revision: String,
    },
    /// The server responded with 304 Not Modified.
    NotModified,
    /// The server sent the revision already in use.
    SameRevision,
    /// The attempt failed; the last good datafile stays in use.
    Failed(DatafileError),
}

/// Refreshes one transform's datafile periodically.
pub struct DatafileRefresher {
    component_id: String,
    fetcher: Arc<dyn DatafileFetcher>,
    interval: Duration,
    transform: Arc<OptimizelyTransform>,
    store: Option<DatafileStore>,
    status: Arc<Mutex<DatafileStatus>>,
    last_modified: Option<String>,
}

impl DatafileRefresher {
    /// Creates a refresher that starts from `initial`, the datafile the transform uses now.
    pub fn new(
        transform: Arc<OptimizelyTransform>,
        fetcher: Arc<dyn DatafileFetcher>,
        interval: Duration,
        store: Option<DatafileStore>,
        initial: &LoadedDatafile,
    ) -> DatafileRefresher {
        let status = DatafileStatus {
            revision: initial.datafile.revision.clone(),
            source: initial.source.clone(),
            confirmed_at: SystemTime::now(),
            consecutive_failures: 0,
        };
        DatafileRefresher {
            component_id: transform.id().to_owned(),
            fetcher,
            interval,
            transform,
            store,
            status: Arc::new(Mutex::new(status)),
            last_modified: initial.last_modified.clone(),
        }
    }

    /// Returns the id of the transform whose datafile this refresher keeps current.
    pub fn component_id(&self) -> &str {
        &self.component_id
    }

    /// Returns the shared status, which stays current while [`DatafileRefresher::run`] runs.
    pub fn status(&self) -> Arc<Mutex<DatafileStatus>> {
        self.status.clone()
    }

    /// Refreshes every interval until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let failures = self.lock_status().consecutive_failures;
            let delay = next_delay(self.interval, failures);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            self.refresh_once().await;
        }
    }

    /// Makes one refresh attempt, swapping in a new datafile when the source has one, and logs the
    /// outcome.
    pub async fn refresh_once(&mut self) -> RefreshOutcome {
        let result = self.fetcher.fetch(self.last_modified.as_deref()).await;
        let outcome = match result {
            Ok(FetchResult::NotModified) => RefreshOutcome::NotModified,
            Ok(FetchResult::Loaded(loaded)) => self.apply(loaded),
            Err(error) => RefreshOutcome::Failed(error),
        };
        self.record(&outcome);
        outcome
    }

    fn apply(&mut self, loaded: LoadedDatafile) -> RefreshOutcome {
        self.last_modified = loaded.last_modified.clone();
        let previous = self.transform.datafile().revision.clone();
        if loaded.datafile.revision == previous {
            return RefreshOutcome::SameRevision;
        }

        self.transform.set_datafile(loaded.datafile.clone());
        if let Some(store) = &self.store {
            save_copy(&self.component_id, store, &loaded);
        }
        RefreshOutcome::Updated { previous, revision: loaded.datafile.revision.clone() }
    }

    fn record(&self, outcome: &RefreshOutcome) {
        let label = match outcome {
            RefreshOutcome::Updated { .. } => "updated",
            RefreshOutcome::NotModified => "not_modified",
            RefreshOutcome::SameRevision => "same_revision",
            RefreshOutcome::Failed(_) => "failed",
        };
        metrics::counter!("datafile_refreshes_total", "component_id" => self.component_id.clone(), "outcome" => label)
            .increment(1);
        let mut status = self.lock_status();
        match outcome {
            RefreshOutcome::Failed(error) => {
                status.consecutive_failures += 1;
                let next_attempt = next_delay(self.interval, status.consecutive_failures);
                tracing::warn!(
                    component_id = %self.component_id,
                    %error,
                    revision = %status.revision,
                    age_secs = status.age().as_secs(),
                    consecutive_failures = status.consecutive_failures,
                    next_attempt_secs = next_attempt.as_secs_f64(),
                    "datafile refresh failed; keeping the last good datafile"
                );
            }
            RefreshOutcome::Updated { previous, revision } => {
                tracing::info!(
                    component_id = %self.component_id,
                    source = %status.source,
                    previous_revision = %previous,
                    %revision,
                    "datafile updated"
                );
                status.revision = revision.clone();
                status.confirmed_at = SystemTime::now();
                status.consecutive_failures = 0;
            }
            RefreshOutcome::NotModified | RefreshOutcome::SameRevision => {
                tracing::debug!(component_id = %self.component_id, revision = %status.revision, "datafile unchanged");
                status.confirmed_at = SystemTime::now();
                status.consecutive_failures = 0;
            }
        }
    }

    fn lock_status(&self) -> std::sync::MutexGuard<'_, DatafileStatus> {
        // The status contains plain values, so a panic elsewhere cannot leave it inconsistent.
        self.status.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Returns the wait before the next refresh: the interval, doubled for each consecutive failure, at
/// most four times the interval.
pub fn next_delay(interval: Duration, consecutive_failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(consecutive_failures).min(MAX_BACKOFF_FACTOR);
    interval.saturating_mul(factor)
}

/// Loads a transform's first datafile. When a remote datafile cannot be downloaded and `store` holds
/// a good copy of the same source, starts from that copy with a warning; otherwise fails with the
/// download's error. Saves a downloaded datafile to `store`.
pub async fn load_initial_datafile(
    component_id: &str,
    config: &DatafileConfig,
    fetcher: &dyn DatafileFetcher,
    store: Option<&DatafileStore>,
) -> Result<LoadedDatafile, DatafileError> {
    let error = match fetcher.fetch(None).await {
        Ok(FetchResult::Loaded(loaded)) => {
            save_initial(component_id, config, store, &loaded);
            return Ok(loaded);
        }
        Ok(FetchResult::NotModified) => {
            return Err(DatafileError::HttpStatus {
                url: config.source_description(),
                status: 304,
                hint: "the server answered Not Modified to an unconditional request; check the datafile URL",
            })
        }
        Err(error) => error,
    };

    let Some(store) = store.filter(|_| config.is_remote()) else { return Err(error) };
    match store.load(&config.source_description()) {
        Ok(Some(saved)) => {
            tracing::warn!(
                component_id,
                %error,
                revision = %saved.loaded.datafile.revision,
                saved_age_secs = saved.age.as_secs(),
                path = %store.datafile_path().display(),
                "cannot download the datafile; starting from the copy saved {} ago",
                describe_age(saved.age)
            );
            Ok(saved.loaded)
        }
        Ok(None) => Err(error),
        Err(reason) => {
            tracing::warn!(component_id, reason = %reason, "ignoring the saved datafile");
            Err(error)
        }
    }
}

fn save_initial(component_id: &str, config: &DatafileConfig, store: Option<&DatafileStore>, loaded: &LoadedDatafile) {
    if let Some(store) = store.filter(|_| config.is_remote()) {
        save_copy(component_id, store, loaded);
    }
}

/// Saves the last good datafile, logging a failure: the pipeline runs on without the copy.
fn save_copy(component_id: &str, store: &DatafileStore, loaded: &LoadedDatafile) {
    if let Err(error) = store.save(loaded) {
        tracing::warn!(
            component_id,
            path = %store.datafile_path().display(),
            %error,
            "cannot save the datafile to data_dir; a restart during a CDN outage will not find it"
        );
    }
}

/// Formats a duration as `2h05m`, `7m30s` or `12s`.
pub fn describe_age(age: Duration) -> String {
    let seconds = age.as_secs();
    match seconds {
        0..=59 => format!("{seconds}s"),
        60..=3599 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_up_to_four_intervals() {
        let interval = Duration::from_secs(300);
        assert_eq!(next_delay(interval, 0), Duration::from_secs(300));
        assert_eq!(next_delay(interval, 1), Duration::from_secs(600));
        assert_eq!(next_delay(interval, 2), Duration::from_secs(1200));
        assert_eq!(next_delay(interval, 3), Duration::from_secs(1200));
        assert_eq!(next_delay(interval, u32::MAX), Duration::from_secs(1200));
    }

    #[test]
    fn age_formats() {
        assert_eq!(describe_age(Duration::from_secs(12)), "12s");
        assert_eq!(describe_age(Duration::from_secs(450)), "7m30s");
        assert_eq!(describe_age(Duration::from_secs(7500)), "2h05m");
    }
}
