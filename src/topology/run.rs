//! Running a built topology to completion.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::build::{BuiltSink, BuiltTransform, Topology};
use super::stats::{RunStats, Summary};
use crate::observability::api::ApiState;
use crate::sources::{SourceConfig, SourceContext};
use crate::transforms::optimizely::TransformOutputs;

/// How long the final background tasks of sources, such as checkpoint writes, may take.
const BACKGROUND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The result of a run.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Events by final outcome.
    pub summary: Summary,
    /// Errors of sources that stopped before the end of their input.
    pub source_errors: Vec<String>,
    /// Whether components were still running at the shutdown timeout and were aborted.
    pub timed_out: bool,
}

impl RunReport {
    /// Returns whether every event reached a final outcome and every source read its input to the end.
    pub fn is_success(&self) -> bool {
        self.source_errors.is_empty() && self.summary.undelivered == 0 && !self.timed_out
    }
}

impl Topology {
    /// Runs every component until all sources have ended and the rest has drained, or until
    /// `shutdown` is cancelled and the shutdown timeout has passed.
    pub async fn run(self, shutdown: CancellationToken) -> RunReport {
        self.run_with_stats(shutdown, Arc::new(RunStats::default())).await
    }

    /// Runs like [`Topology::run`], counting into `stats`, which callers may read while it runs.
    pub async fn run_with_stats(self, shutdown: CancellationToken, stats: Arc<RunStats>) -> RunReport {
        let datafiles = self.datafile_statuses();
        let Topology { sources, transforms, refreshers, sinks, shutdown_timeout, warnings, data_dir, once, metrics } =
            self;
        let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let api_shutdown = CancellationToken::new();
        let api_task = match metrics {
            Some((address, handle)) => match tokio::net::TcpListener::bind(address).await {
                Ok(listener) => {
                    let state = ApiState { handle, stats: stats.clone(), datafiles, draining: draining.clone() };
                    Some(tokio::spawn(crate::observability::api::serve(listener, state, api_shutdown.clone())))
                }
                Err(error) => {
                    tracing::error!(%address, %error, "cannot listen for the API server; running without /metrics and /health");
                    None
                }
            },
            None => None,
        };
        for warning in &warnings {
            tracing::warn!("{warning}");
        }

        let mut downstream: Vec<(String, JoinHandle<()>)> = Vec::new();
        for (id, sink, input, dropped) in sinks {
            let span = component_span(&id, "sink", sink.type_name());
            downstream.push((id.clone(), tokio::spawn(run_sink(id, sink, input, dropped).instrument(span))));
        }
        for (id, transform, input, mut outputs) in transforms {
            let BuiltTransform::Optimizely(transform) = transform;
            let outputs = TransformOutputs {
                conversions: outputs.remove(&None).expect("the builder creates the default output"),
                dropped: outputs.remove(&Some("dropped")).expect("the builder creates the dropped output"),
                deletions: outputs.remove(&Some("deletions")).expect("the builder creates the deletions output"),
            };
            let span = component_span(&id, "transform", "optimizely");
            downstream.push((id, tokio::spawn(async move { transform.run(input, outputs).await }.instrument(span))));
        }

        // Refreshers run until the pipeline has drained; a datafile update mid-drain is harmless.
        let refresh_shutdown = CancellationToken::new();
        let refresh_tasks: Vec<JoinHandle<()>> =
            refreshers.into_iter().map(|refresher| tokio::spawn(refresher.run(refresh_shutdown.clone()))).collect();

        let background = tokio_util::task::TaskTracker::new();
        let drained = CancellationToken::new();
        let mut source_tasks = Vec::new();
        for (id, source, output) in sources {
            let context = SourceContext {
                id: id.clone(),
                output,
                shutdown: shutdown.clone(),
                stats: stats.clone(),
                data_dir: data_dir.clone(),
                once,
                background: background.clone(),
                drained: drained.clone(),
            };
            let span = component_span(&id, "source", source.type_name());
            source_tasks.push((id, tokio::spawn(run_source(source, context).instrument(span))));
        }

        let mut source_errors = Vec::new();
        for (id, task) in source_tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::error!(component_id = %id, %error, "source stopped with an error");
                    source_errors.push(format!("sources.{id}: {error}"));
                }
                Err(error) => source_errors.push(format!("sources.{id}: the task failed: {error}")),
            }
        }

        draining.store(true, std::sync::atomic::Ordering::Release);
        tracing::info!(timeout_secs = shutdown_timeout.as_secs_f64(), "all sources stopped; draining");
        let timed_out = drain(downstream, shutdown_timeout).await;
        refresh_shutdown.cancel();
        for task in refresh_tasks {
            // A refresh in flight carries no events, so aborting it loses nothing.
            task.abort();
            let _ = task.await;
        }
        let summary = settle(&stats).await;

        // Sources' background tasks, such as the final checkpoint write, run after every outcome is in.
        drained.cancel();
        background.close();
        if tokio::time::timeout(BACKGROUND_TIMEOUT, background.wait()).await.is_err() {
            tracing::error!("background tasks of sources did not finish in time; a checkpoint may be older than the delivered events");
        }
        if timed_out {
            tracing::error!(
                undelivered = summary.undelivered,
                "shutdown timeout reached; aborted components that were still running"
            );
        }
        api_shutdown.cancel();
        if let Some(task) = api_task {
            let _ = task.await;
        }
        RunReport { summary, source_errors, timed_out }
    }
}

/// Waits briefly for the outcomes of aborted tasks, then returns the summary with every event that
/// still has no final outcome counted as undelivered.
///
/// An aborted task drops its events, and so reports them, only when the runtime next polls it, which
/// can be after the abort returned.
async fn settle(stats: &RunStats) -> Summary {
    for _ in 0..100 {
        if stats.summary().pending() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut summary = stats.summary();
    summary.undelivered += summary.pending();
    summary
}

/// Waits for the downstream tasks up to `timeout`, then aborts what is left. Returns whether any task
/// had to be aborted.
async fn drain(tasks: Vec<(String, JoinHandle<()>)>, timeout: std::time::Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut timed_out = false;
    for (id, mut task) in tasks {
        match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(component_id = %id, %error, "component task failed"),
            Err(_) => {
                tracing::error!(component_id = %id, "component still running at the shutdown timeout; aborting it");
                task.abort();
                let _ = task.await;
                timed_out = true;
            }
        }
    }
    timed_out
}

/// Returns the span of a component's task: every log line of the task carries its id, kind and type.
fn component_span(id: &str, kind: &'static str, component_type: &'static str) -> tracing::Span {
    tracing::info_span!("component", component_id = %id, component_kind = kind, component_type)
}

async fn run_source(source: SourceConfig, context: SourceContext) -> Result<(), crate::sources::SourceError> {
    match source {
        SourceConfig::Stdin(config) => config.run(context).await,
        SourceConfig::File(config) => config.run(context).await,
        SourceConfig::HttpServer(config) => config.run(context).await,
        #[cfg(feature = "kafka")]
        SourceConfig::Kafka(config) => config.run(context).await,
    }
}

async fn run_sink(id: String, sink: BuiltSink, input: super::Input, dropped: super::Output) {
    match sink {
        BuiltSink::OptimizelyEvents(sink) => sink.run(input, dropped).await,
        BuiltSink::OptimizelyUserDeletion(sink) => sink.run(input, dropped).await,
        BuiltSink::Console(config) => config.run(&id, input).await,
        BuiltSink::File(config, file) => config.run(&id, file, input).await,
    }
}
