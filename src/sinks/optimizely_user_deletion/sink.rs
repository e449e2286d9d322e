//! The sink's run loop: one request per identifier, the dedupe window, request concurrency, and the
//! drain at shutdown.

use crate::observability::{ComponentKind, ComponentMetrics};
use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::{Id as TaskId, JoinError, JoinSet};
use tokio::time::Instant;

use super::client::DeletionClient;
use super::config::{BuildError, OptimizelyUserDeletionConfig};
use super::dedupe::{RecentDeletions, MAX_REMEMBERED_IDENTIFIERS};
use super::outcome::{dead_letter, DeletionOutcome, Failure};
use crate::ack::EventStatus;
use crate::event::{Event, Payload};
use crate::topology::{Input, Output};

/// A sink that sends one Subject Access Request API deletion per user.
#[derive(Debug)]
pub struct OptimizelyUserDeletionSink {
    client: Arc<DeletionClient>,
    recent: Option<RecentDeletions>,
    metrics: ComponentMetrics,
}

impl OptimizelyUserDeletionSink {
    /// Validates `config` and builds the sink's HTTP client.
    ///
    /// Returns [`BuildError::InvalidConfig`] listing every invalid setting, or
    /// [`BuildError::HttpClient`] when the client cannot be created.
    pub fn new(component_id: String, config: &OptimizelyUserDeletionConfig) -> Result<Self, BuildError> {
        let valid = match config.validate() {
            Ok(valid) => valid,
            Err(problems) => return Err(BuildError::InvalidConfig { component_id, problems }),
        };
        let recent = valid.dedupe_window.map(|window| RecentDeletions::new(window, MAX_REMEMBERED_IDENTIFIERS));
        let metrics = ComponentMetrics::new(ComponentKind::Sink, &component_id, "optimizely_user_deletion");
        let client = DeletionClient::from_valid(component_id, valid)?;
        Ok(OptimizelyUserDeletionSink { client: Arc::new(client), recent, metrics })
    }

    /// Runs the sink until `input` closes, then waits for every request and its retries to finish.
    ///
    /// Each deletion is finalized as delivered when the API accepts it. A deletion of an identifier
    /// that the API accepted within the dedupe window is not sent and is finalized as skipped. A
    /// deletion of an identifier whose request is still running is not sent either: it shares that
    /// request's outcome, skipped on success and dead-lettered with the same failure otherwise.
    /// Failed deletions go to `dropped` as dead-letter records.
    pub async fn run(self, mut input: Input, dropped: Output) {
        let component_id = self.client.component_id().to_owned();
        tracing::info!(component_id, "sink started");
        let mut running = Running {
            client: self.client,
            recent: self.recent,
            metrics: self.metrics,
            dropped,
            in_flight: JoinSet::new(),
            events_by_task: HashMap::new(),
            task_by_identifier: HashMap::new(),
        };

        loop {
            tokio::select! {
                // Finished requests first, so their slots and dead-letter records are released before
                // more input is taken.
                biased;
                Some(result) = running.in_flight.join_next_with_id(), if !running.in_flight.is_empty() => {
                    running.finish(result).await;
                }
                chunk = input.recv() => match chunk {
                    Some(events) => running.accept(events).await,
                    None => break,
                },
            }
        }

        running.drain().await;
        tracing::info!(component_id, "sink stopped");
    }
}

/// The result of one request task: the identifier and the outcome of its deletion.
type TaskOutput = (String, DeletionOutcome);

/// The state of a running sink.
struct Running {
    client: Arc<DeletionClient>,
    /// Identifiers deleted within the dedupe window; `None` when `dedupe_window_secs` is 0.
    recent: Option<RecentDeletions>,
    metrics: ComponentMetrics,
    dropped: Output,
    /// One task per request, from the first attempt to the last retry.
    in_flight: JoinSet<TaskOutput>,
    /// The events each task settles: the event that started it, then the duplicates that arrived while
    /// it ran.
    events_by_task: HashMap<TaskId, Vec<Event>>,
    /// The task running for each identifier, when the dedupe window is on.
    task_by_identifier: HashMap<String, TaskId>,
}

impl Running {
    /// Starts a request for each new identifier of `events`, and settles the rest: duplicates,
    /// identifiers deleted within the window, and events that are not deletion requests.
    async fn accept(&mut self, events: Vec<Event>) {
        self.metrics.received(events.len() as u64, 0);
        let mut dead_letters = Vec::new();
        for event in events {
            let identifier = match &event.payload {
                Payload::Deletion(deletion) => deletion.identifier.clone(),
                other => {
                    let failure = Failure::unsupported(payload_kind(other));
                    tracing::warn!(
                        component_id = self.client.component_id(),
                        reason = failure.reason.as_str(),
                        "received an event that is not a deletion request; sending it to the dead-letter output"
                    );
                    dead_letters.push(dead_letter(event, self.client.component_id(), &failure));
                    continue;
                }
            };
            if let Some(event) = self.join_duplicate(&identifier, event) {
                self.dispatch(identifier, event).await;
            }
        }
        self.send_dead_letters(dead_letters).await;
    }

    /// Settles `event` without a request when its identifier is already being deleted or was deleted
    /// within the window, and returns it otherwise.
    fn join_duplicate(&mut self, identifier: &str, event: Event) -> Option<Event> {
        let Some(recent) = self.recent.as_mut() else {
            return Some(event);
        };
        if let Some(task) = self.task_by_identifier.get(identifier) {
            // Every task in `task_by_identifier` has its events in `events_by_task`, so this branch
            // always finds the running request.
            if let Some(events) = self.events_by_task.get_mut(task) {
                events.push(event);
                return None;
            }
            return Some(event);
        }
        if recent.contains(identifier, Instant::now()) {
            tracing::debug!(
                component_id = self.client.component_id(),
                "identifier was deleted within the dedupe window; skipping the repeated deletion"
            );
            event.finalize(EventStatus::Skipped);
            return None;
        }
        Some(event)
    }

    /// Starts the request for `identifier`, first waiting for a free request slot.
    async fn dispatch(&mut self, identifier: String, event: Event) {
        while self.in_flight.len() >= self.client.concurrency() {
            match self.in_flight.join_next_with_id().await {
                Some(result) => self.finish(result).await,
                None => break,
            }
        }

        let client = self.client.clone();
        let task_identifier = identifier.clone();
        let handle = self.in_flight.spawn(async move {
            let outcome = client.delete(&task_identifier).await;
            (task_identifier, outcome)
        });
        // The task's result is read only by this loop, so the entries exist before it is read.
        self.events_by_task.insert(handle.id(), vec![event]);
        if self.recent.is_some() {
            self.task_by_identifier.insert(identifier, handle.id());
        }
    }

    /// Settles the events of a finished request.
    async fn finish(&mut self, result: Result<(TaskId, TaskOutput), JoinError>) {
        let (task, (identifier, outcome)) = match result {
            Ok(output) => output,
            Err(error) => {
                // Dropping the events reports them as undelivered to their sources.
                let events = self.forget_task(error.id());
                tracing::error!(
                    component_id = self.client.component_id(),
                    %error,
                    events = events.len(),
                    "deletion task failed; its events are reported as undelivered"
                );
                return;
            }
        };
        let events = self.forget_task(task);

        match outcome {
            DeletionOutcome::Deleted { status, attempts } => {
                tracing::debug!(
                    component_id = self.client.component_id(),
                    status,
                    attempts,
                    duplicates = events.len().saturating_sub(1),
                    "deletion request accepted"
                );
                if let Some(recent) = &mut self.recent {
                    recent.insert(&identifier, Instant::now());
                }
                self.metrics.sent(1, 0);
                for (index, event) in events.into_iter().enumerate() {
                    let status = if index == 0 { EventStatus::Delivered } else { EventStatus::Skipped };
                    event.finalize(status);
                }
            }
            DeletionOutcome::Failed(failure) => {
                tracing::warn!(
                    component_id = self.client.component_id(),
                    reason = failure.reason.as_str(),
                    status = failure.status,
                    attempts = failure.attempts,
                    error = failure.error.as_deref().unwrap_or(""),
                    events = events.len(),
                    "deletion request failed; sending it to the dead-letter output"
                );
                let component_id = self.client.component_id();
                let records = events.into_iter().map(|event| dead_letter(event, component_id, &failure)).collect();
                self.send_dead_letters(records).await;
            }
        }
    }

    /// Removes a finished task from both maps and returns its events.
    fn forget_task(&mut self, task: TaskId) -> Vec<Event> {
        self.task_by_identifier.retain(|_, running| *running != task);
        self.events_by_task.remove(&task).unwrap_or_default()
    }

    /// Sends records to the dead-letter output.
    async fn send_dead_letters(&mut self, records: Vec<Event>) {
        if let Err(error) = self.dropped.send(records).await {
            // The records were dropped with the send, so their sources learn `Undelivered`.
            tracing::error!(component_id = self.client.component_id(), %error, "failed to send dead-letter records");
        }
    }

    /// Waits until every request has finished. If the topology's shutdown timeout ends this task
    /// first, the events still held are dropped and reported as `Undelivered`.
    async fn drain(&mut self) {
        while let Some(result) = self.in_flight.join_next_with_id().await {
            self.finish(result).await;
        }
    }
}

/// Returns the name of a payload kind for messages.
fn payload_kind(payload: &Payload) -> &'static str {
    match payload {
        Payload::RawMessage(text) if serde_json::from_slice::<serde_json::Value>(text).is_err() => "unparsed line",
        Payload::Message(_) | Payload::RawMessage(_) => "Segment message",
        Payload::Unparsed(_) => "unparsed line",
        Payload::Conversion(_) | Payload::EncodedConversion(_) => "conversion",
        Payload::Deletion(_) => "deletion request",
        Payload::DeadLetter(_) => "dead-letter record",
    }
}
