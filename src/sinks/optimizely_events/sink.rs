//! The sink's run loop: reading input, closing batches on time, bounding requests in flight, and the
//! drain at shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;

use super::batch::{Batch, Batcher, Unbatched};
use super::config::{BuildError, OptimizelyEventsConfig};
use super::dead_letter::{dead_letter, Failure};
use super::delivery::Delivery;
use super::service::HttpService;
use crate::event::Event;
use crate::observability::{ComponentKind, ComponentMetrics};
use crate::topology::{Input, Output};

/// A sink that batches conversions into Event API requests and delivers them.
#[derive(Debug)]
pub struct OptimizelyEventsSink {
    batcher: Batcher,
    delivery: Arc<Delivery>,
    concurrency: usize,
}

impl OptimizelyEventsSink {
    /// Validates `config` and builds the sink's HTTP client.
    ///
    /// Returns [`BuildError::InvalidConfig`] listing every invalid setting, or
    /// [`BuildError::HttpClient`] when the client cannot be created.
    pub fn new(component_id: String, config: OptimizelyEventsConfig) -> Result<Self, BuildError> {
        let valid = match config.validate() {
            Ok(valid) => valid,
            Err(problems) => return Err(BuildError::InvalidConfig { component_id, problems }),
        };
        let service = match HttpService::new(valid.request_timeout, valid.strict, valid.compression) {
            Ok(service) => service,
            Err(source) => return Err(BuildError::HttpClient { component_id, source }),
        };

        let metrics = ComponentMetrics::new(ComponentKind::Sink, &component_id, "optimizely_events");
        let delivery = Delivery { component_id, service, retry: valid.retry, metrics };
        Ok(OptimizelyEventsSink {
            batcher: Batcher::new(valid.limits, valid.endpoint),
            delivery: Arc::new(delivery),
            concurrency: valid.concurrency,
        })
    }

    /// Runs the sink until `input` closes, then sends every open batch at once and waits for all
    /// requests and their retries to finish.
    ///
    /// Events that cannot be delivered go to `dropped` as dead-letter records.
    pub async fn run(self, mut input: Input, dropped: Output) {
        let component_id = self.delivery.component_id.clone();
        tracing::info!(component_id, "sink started");
        let mut running = Running {
            sink: self,
            dropped,
            in_flight: JoinSet::new(),
            unbatched_warnings: UnbatchedWarnings::default(),
        };

        loop {
            // Without an open batch there is no deadline, and the guard disables the far-future sleep.
            let deadline = running.sink.batcher.next_deadline();
            let wake_at = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                // Finished requests first, so their slots and dead-letter records are released before
                // more input is taken.
                biased;
                Some(result) = running.in_flight.join_next(), if !running.in_flight.is_empty() => {
                    running.finish(result).await;
                }
                () = tokio::time::sleep_until(wake_at), if deadline.is_some() => {
                    let expired = running.sink.batcher.take_expired(Instant::now());
                    running.dispatch_all(expired).await;
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

/// The state of a running sink.
struct Running {
    sink: OptimizelyEventsSink,
    dropped: Output,
    /// Delivery tasks. Each returns the dead-letter records of its batch.
    in_flight: JoinSet<Vec<Event>>,
    unbatched_warnings: UnbatchedWarnings,
}

/// Rate-limits the warning about events that the batcher did not accept, which can repeat for every event.
#[derive(Default)]
struct UnbatchedWarnings {
    last_warning: Option<Instant>,
    /// Events not accepted since the last warning.
    count: u64,
}

impl UnbatchedWarnings {
    /// Counts one event that the batcher did not accept and logs a warning at most once a minute, with the count.
    fn record(&mut self, component_id: &str, failure: &Failure) {
        self.count += 1;
        let now = Instant::now();
        let due = self.last_warning.is_none_or(|last| now.duration_since(last) >= Duration::from_secs(60));
        if !due {
            return;
        }
        tracing::warn!(
            component_id,
            events = self.count,
            reason = failure.reason.as_str(),
            example = %failure.message,
            "events that cannot be batched went to the dead-letter output without being sent"
        );
        self.last_warning = Some(now);
        self.count = 0;
    }
}

impl Running {
    /// Adds a chunk of events to the batches and sends every batch that became full.
    async fn accept(&mut self, events: Vec<Event>) {
        self.sink.delivery.metrics.received(events.len() as u64, 0);
        let mut ready = Vec::new();
        let mut dead_letters = Vec::new();
        let now = Instant::now();
        for event in events {
            if let Err(unbatched) = self.sink.batcher.push(event, now, &mut ready) {
                let Unbatched { event, error } = *unbatched;
                let failure = Failure::from_batch_error(&error);
                self.unbatched_warnings.record(&self.sink.delivery.component_id, &failure);
                dead_letters.push(dead_letter(event, &self.sink.delivery.component_id, &failure));
            }
        }

        self.send_dead_letters(dead_letters).await;
        self.dispatch_all(ready).await;
    }

    async fn dispatch_all(&mut self, batches: Vec<Batch>) {
        for batch in batches {
            self.dispatch(batch).await;
        }
    }

    /// Starts delivering `batch`, first waiting for a free request slot.
    async fn dispatch(&mut self, batch: Batch) {
        // Counting the tasks is the concurrency limit: a task sends one request at a time, retries and
        // split halves included, so `concurrency` tasks mean at most that many requests in flight.
        while self.in_flight.len() >= self.sink.concurrency {
            match self.in_flight.join_next().await {
                Some(result) => self.finish(result).await,
                None => break,
            }
        }
        self.in_flight.spawn(self.sink.delivery.clone().deliver(batch));
    }

    /// Sends the dead-letter records of a finished delivery task.
    async fn finish(&mut self, result: Result<Vec<Event>, JoinError>) {
        match result {
            Ok(dead_letters) => self.send_dead_letters(dead_letters).await,
            // The task's events were dropped with it, so their sources learn `Undelivered`.
            Err(error) => tracing::error!(
                component_id = %self.sink.delivery.component_id,
                %error,
                "delivery task failed; its events are reported as undelivered"
            ),
        }
    }

    /// Sends records to the dead-letter output.
    ///
    /// Only the run loop awaits this send, and it occupies no request slot while waiting: delivery tasks
    /// return their records instead of sending them. So a slow dead-letter consumer slows the intake
    /// of this sink, as a full channel should, but can never stop a request from finishing.
    async fn send_dead_letters(&mut self, records: Vec<Event>) {
        if let Err(error) = self.dropped.send(records).await {
            // The records were dropped with the send, so their sources learn `Undelivered`.
            tracing::error!(component_id = %self.sink.delivery.component_id, %error, "failed to send dead-letter records");
        }
    }

    /// Sends every open batch and waits until every request has finished.
    ///
    /// Open batches go out at once instead of waiting for their timeouts, because no more input can
    /// arrive to fill them. If the topology's shutdown timeout ends this task first, the events still
    /// held are dropped and reported as `Undelivered`.
    async fn drain(&mut self) {
        let open = self.sink.batcher.take_all();
        self.dispatch_all(open).await;
        while let Some(result) = self.in_flight.join_next().await {
            self.finish(result).await;
        }
    }
}
