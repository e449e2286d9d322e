//! Building a runnable topology from a configuration.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::buffer::{buffer, BufferConfig, BufferSender, Input};
use super::output::{Output, Unconnected};
use crate::ack::EventStatus;
use crate::config::{graph::output_id, Config};
use crate::observability::{ComponentKind, ComponentMetrics};
use crate::sinks::optimizely_events::OptimizelyEventsSink;
use crate::sinks::optimizely_user_deletion::OptimizelyUserDeletionSink;
use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;
use crate::transforms::optimizely::datafile_refresh::{
    load_initial_datafile, ConfiguredFetcher, DatafileRefresher, DatafileStatus,
};
use crate::transforms::optimizely::datafile_source::MIN_RECOMMENDED_REFRESH_INTERVAL_SECS;
use crate::transforms::optimizely::datafile_store::DatafileStore;
use crate::transforms::optimizely::OptimizelyTransform;
use crate::transforms::TransformConfig;

/// A component that failed to build, such as a datafile that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{component}: {message}")]
pub struct BuildError {
    /// The section and id, as `transforms.opt`.
    pub component: String,
    /// The failure and the fix.
    pub message: String,
}

/// A built transform with its input and outputs.
pub(super) enum BuiltTransform {
    Optimizely(Arc<OptimizelyTransform>),
}

/// A built sink.
pub(super) enum BuiltSink {
    OptimizelyEvents(OptimizelyEventsSink),
    OptimizelyUserDeletion(OptimizelyUserDeletionSink),
    Console(crate::sinks::ConsoleSinkConfig),
    File(crate::sinks::FileSinkConfig, tokio::fs::File),
}

/// A built transform with its input and its outputs by name (`None` is the default output).
pub(super) type TransformParts = (String, BuiltTransform, Input, BTreeMap<Option<&'static str>, Output>);

impl BuiltSink {
    /// Returns the sink's type name.
    pub(super) fn type_name(&self) -> &'static str {
        match self {
            BuiltSink::OptimizelyEvents(_) => "optimizely_events",
            BuiltSink::OptimizelyUserDeletion(_) => "optimizely_user_deletion",
            BuiltSink::Console(_) => "console",
            BuiltSink::File(..) => "file",
        }
    }
}

/// A topology whose components are built and wired, ready to run.
pub struct Topology {
    pub(super) sources: Vec<(String, SourceConfig, Output)>,
    pub(super) transforms: Vec<TransformParts>,
    pub(super) refreshers: Vec<DatafileRefresher>,
    pub(super) sinks: Vec<(String, BuiltSink, Input, Output)>,
    pub(super) shutdown_timeout: Duration,
    pub(super) warnings: Vec<String>,
    pub(super) data_dir: Option<std::path::PathBuf>,
    pub(super) once: bool,
    pub(super) metrics: Option<(std::net::SocketAddr, metrics_exporter_prometheus::PrometheusHandle)>,
}

impl Topology {
    /// Returns the datafile status of each transform whose datafile is refreshed, by component id.
    pub fn datafile_statuses(&self) -> Vec<(String, Arc<std::sync::Mutex<DatafileStatus>>)> {
        self.refreshers.iter().map(|refresher| (refresher.component_id().to_owned(), refresher.status())).collect()
    }

    /// Makes every `file` source read its files to their end once and stop, instead of following them.
    pub fn read_once(mut self) -> Topology {
        self.once = true;
        self
    }

    /// Returns warnings about the configuration that do not stop it from running, such as outputs that
    /// no sink consumes.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// Builds every component of a validated configuration: loads datafiles, opens files, and wires the
/// channels. Returns every failure, not only the first.
///
/// ```
/// use std::path::Path;
/// use optimizely_relay::{config::Config, topology};
/// use tokio_util::sync::CancellationToken;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let directory = std::env::temp_dir().join(format!("relay-doctest-{}", std::process::id()));
/// std::fs::create_dir_all(&directory).unwrap();
/// std::fs::write(directory.join("in.ndjson"), "{\"type\":\"identify\",\"userId\":\"u\"}\n").unwrap();
/// let text = r#"
///     [sources.in]
///     type = "file"
///     include = ["in.ndjson"]
///     mode = "once"
///     [sinks.out]
///     type = "file"
///     inputs = ["in"]
///     path = "out.ndjson"
/// "#;
/// let config = Config::from_toml(text, &directory, &|_| None).unwrap();
/// let pipeline = topology::build(&config).await.unwrap();
///
/// // Cancelling the token would stop the sources; a read-once run also ends by itself.
/// let report = pipeline.run(CancellationToken::new()).await;
/// assert_eq!(report.summary.sent, 1);
/// assert!(report.is_success());
/// # std::fs::remove_dir_all(&directory).unwrap();
/// # });
/// ```
pub async fn build(config: &Config) -> Result<Topology, Vec<BuildError>> {
    // The recorder must exist before components register their metrics.
    let metrics = match &config.global.api {
        Some(api) => match crate::observability::install_recorder() {
            Ok(handle) => Some((api.address, handle)),
            Err(message) => return Err(vec![BuildError { component: "api".to_owned(), message }]),
        },
        None => None,
    };
    let mut wiring = Wiring::new(config);
    let mut errors = Vec::new();
    let client = reqwest::Client::builder().build().map_err(|error| {
        vec![BuildError {
            component: "datafile".to_owned(),
            message: format!("cannot create the HTTP client: {error}"),
        }]
    })?;

    let mut sources = Vec::new();
    for (id, source) in &config.sources {
        let output = wiring.output(id, None, Unconnected::Finalize(EventStatus::Undelivered));
        sources.push((id.clone(), source.clone(), output));
    }

    let mut transforms = Vec::new();
    let mut refreshers = Vec::new();
    for (id, transform) in &config.transforms {
        let TransformConfig::Optimizely(settings) = &transform.config;
        let label = format!("transforms.{id}");
        let store = config.global.data_dir.as_deref().map(|data_dir| DatafileStore::new(data_dir, id));
        let fetcher = Arc::new(ConfiguredFetcher::new(settings.datafile.clone(), client.clone()));
        let loaded = match load_initial_datafile(id, &settings.datafile, fetcher.as_ref(), store.as_ref()).await {
            Ok(loaded) => loaded,
            Err(error) => {
                errors.push(BuildError { component: label, message: error.to_string() });
                continue;
            }
        };
        if let Some(expected) = &settings.account_id {
            if let Err(error) = loaded.datafile.check_account_id(expected) {
                errors.push(BuildError {
                    component: label,
                    message: format!("datafile from {}: {error}", loaded.source),
                });
                continue;
            }
        }
        tracing::info!(
            component_id = %id,
            source = %loaded.source,
            revision = %loaded.datafile.revision,
            project_id = %loaded.datafile.project_id,
            "datafile loaded"
        );

        let built = Arc::new(OptimizelyTransform::new(id.clone(), settings, loaded.datafile.clone()));
        if settings.datafile.is_remote() {
            if settings.datafile.refresh_interval_secs < MIN_RECOMMENDED_REFRESH_INTERVAL_SECS {
                tracing::warn!(
                    component_id = %id,
                    refresh_interval_secs = settings.datafile.refresh_interval_secs,
                    "datafile.refresh_interval_secs is below 30; frequent refreshes add CDN requests without fresher experiments"
                );
            }
            let interval = settings.datafile.refresh_interval();
            let refresher = DatafileRefresher::new(built.clone(), fetcher, interval, store, &loaded);
            refreshers.push(refresher);
        }
        let mut outputs = BTreeMap::new();
        outputs.insert(None, wiring.output(id, None, Unconnected::Finalize(EventStatus::Undelivered)));
        outputs.insert(
            Some("dropped"),
            wiring.output(id, Some("dropped"), Unconnected::Finalize(EventStatus::DeadLettered)),
        );
        outputs.insert(
            Some("deletions"),
            wiring.output(id, Some("deletions"), Unconnected::Finalize(EventStatus::Skipped)),
        );
        let input = wiring.input(id);
        transforms.push((id.clone(), BuiltTransform::Optimizely(built), input, outputs));
    }

    let mut sinks = Vec::new();
    for (id, sink) in &config.sinks {
        let label = format!("sinks.{id}");
        let built = match &sink.config {
            SinkConfig::OptimizelyEvents(settings) => match OptimizelyEventsSink::new(id.clone(), settings.clone()) {
                Ok(built) => BuiltSink::OptimizelyEvents(built),
                Err(error) => {
                    errors.push(BuildError { component: label, message: error.to_string() });
                    continue;
                }
            },
            SinkConfig::OptimizelyUserDeletion(settings) => match OptimizelyUserDeletionSink::new(id.clone(), settings)
            {
                Ok(built) => BuiltSink::OptimizelyUserDeletion(built),
                Err(error) => {
                    errors.push(BuildError { component: label, message: error.to_string() });
                    continue;
                }
            },
            SinkConfig::Console(settings) => BuiltSink::Console(settings.clone()),
            SinkConfig::File(settings) => match settings.open().await {
                Ok(file) => BuiltSink::File(settings.clone(), file),
                Err(error) => {
                    errors.push(BuildError {
                        component: label,
                        message: format!(
                            "cannot open `{}` for appending: {error}; check the path and its permissions",
                            settings.path.display()
                        ),
                    });
                    continue;
                }
            },
        };
        let dropped = wiring.output(id, Some("dropped"), Unconnected::Finalize(EventStatus::DeadLettered));
        let input = wiring.input(id);
        sinks.push((id.clone(), built, input, dropped));
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Topology {
        sources,
        transforms,
        refreshers,
        sinks,
        shutdown_timeout: Duration::from_secs_f64(config.global.shutdown_timeout_secs),
        warnings: crate::config::unconsumed_output_warnings(config),
        data_dir: config.global.data_dir.clone(),
        once: false,
        metrics,
    })
}

/// The buffers of a topology: one input buffer per consumer, and for each output id the consumers
/// that read it.
struct Wiring {
    types: BTreeMap<String, (ComponentKind, &'static str)>,
    senders: BTreeMap<String, BufferSender>,
    receivers: BTreeMap<String, Input>,
    consumers: BTreeMap<String, Vec<String>>,
}

impl Wiring {
    fn new(config: &Config) -> Wiring {
        let mut types = BTreeMap::new();
        for (id, source) in &config.sources {
            types.insert(id.clone(), (ComponentKind::Source, source.type_name()));
        }
        for (id, transform) in &config.transforms {
            types.insert(id.clone(), (ComponentKind::Transform, transform.config.type_name()));
        }
        for (id, sink) in &config.sinks {
            types.insert(id.clone(), (ComponentKind::Sink, sink.config.type_name()));
        }
        let mut wiring =
            Wiring { types, senders: BTreeMap::new(), receivers: BTreeMap::new(), consumers: BTreeMap::new() };
        let consumers = config
            .transforms
            .iter()
            .map(|(id, transform)| (id, &transform.inputs, BufferConfig::default()))
            .chain(config.sinks.iter().map(|(id, sink)| (id, &sink.inputs, sink.buffer)));
        for (id, inputs, buffer_config) in consumers {
            let (sender, receiver) = buffer(id, buffer_config);
            wiring.senders.insert(id.clone(), sender);
            wiring.receivers.insert(id.clone(), receiver);
            for input in inputs {
                wiring.consumers.entry(input.clone()).or_default().push(id.clone());
            }
        }
        wiring
    }

    fn output(&mut self, component: &str, name: Option<&'static str>, unconnected: Unconnected) -> Output {
        let id = output_id(component, name);
        let senders: Vec<_> = self
            .consumers
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|consumer| self.senders.get(consumer).cloned())
            .collect();
        let metrics = ComponentMetrics::new(self.kind_of(component), component, self.type_of(component));
        Output::new(id, senders, unconnected).with_metrics(metrics, name)
    }

    fn kind_of(&self, component: &str) -> ComponentKind {
        match self.types.get(component) {
            Some((kind, _)) => *kind,
            None => ComponentKind::Source,
        }
    }

    fn type_of(&self, component: &str) -> &'static str {
        self.types.get(component).map_or("unknown", |(_, component_type)| component_type)
    }

    /// Takes the receiver of a consumer. The wiring's own senders are dropped with it at the end of
    /// [`build`], so each channel closes once every upstream output is gone.
    fn input(&mut self, component: &str) -> Input {
        self.receivers.remove(component).unwrap_or_else(|| buffer(component, BufferConfig::default()).1)
    }
}
