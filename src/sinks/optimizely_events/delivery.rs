//! Delivery of one batch, from its first request to the final status of each event: retries, splitting
//! of rejected requests, and dead-letter records.

use std::sync::Arc;

use super::batch::Batch;
use super::dead_letter::{dead_letter, Failure};
use super::service::HttpService;
use crate::ack::EventStatus;
use crate::event::Event;
use crate::observability::ComponentMetrics;
use crate::sinks::util::http::AttemptOutcome;
use crate::sinks::util::retry::{classify_status, send_with_retries, Finished, RetryPolicy, StatusClass};

/// State shared by every delivery task of one sink.
#[derive(Debug)]
pub(super) struct Delivery {
    pub component_id: String,
    pub service: HttpService,
    pub retry: RetryPolicy,
    pub metrics: ComponentMetrics,
}

impl Delivery {
    /// Delivers `batch` and returns the dead-letter records of the events that failed.
    ///
    /// Delivered events are finalized here. The records are returned rather than sent so that this
    /// task never waits on the dead-letter output: the run loop, which owns that output, sends them.
    /// Requests produced by splitting are sent one after another inside this task, so a split never
    /// exceeds the sink's request concurrency.
    pub async fn deliver(self: Arc<Self>, batch: Batch) -> Vec<Event> {
        let mut dead_letters = Vec::new();
        let mut pending = vec![batch];
        while let Some(batch) = pending.pop() {
            let body = self.service.prepare(batch.encode_body());
            self.metrics.batch(batch.len(), batch.encoded_len());
            let finished = send_with_retries(&self.retry, &self.component_id, batch.endpoint(), || {
                self.service.send(batch.endpoint(), &body)
            })
            .await;

            if let Some((first, second)) = self.settle(batch, &finished, &mut dead_letters) {
                // The stack is last in, first out: the first half is sent next.
                pending.push(second);
                pending.push(first);
            }
        }
        dead_letters
    }

    /// Finalizes or dead-letters the events of `batch` after its last attempt, or returns the two
    /// halves to send instead.
    fn settle(&self, batch: Batch, finished: &Finished, dead_letters: &mut Vec<Event>) -> Option<(Batch, Batch)> {
        let response = match &finished.outcome {
            AttemptOutcome::Response(response) => response,
            AttemptOutcome::Failed { .. } => {
                self.dead_letter_all(batch, &Failure::exhausted(&finished.outcome, finished.attempts), dead_letters);
                return None;
            }
        };

        match classify_status(response.status) {
            StatusClass::Success => {
                tracing::debug!(
                    component_id = %self.component_id,
                    events = batch.len(),
                    body_bytes = batch.encoded_len(),
                    status = response.status,
                    "delivered request"
                );
                self.metrics.sent(batch.len() as u64, batch.encoded_len() as u64);
                finalize_all(batch, EventStatus::Delivered);
                None
            }
            // A rejection of a request holding several events may be caused by one of them. Sending
            // each half separately isolates it, so only events that the API rejects on their own are
            // dead-lettered. A 413 splits the same way, into smaller bodies.
            StatusClass::Rejected if batch.len() > 1 => {
                tracing::warn!(
                    component_id = %self.component_id,
                    events = batch.len(),
                    status = response.status,
                    "Event API rejected the request; sending each half separately"
                );
                Some(batch.split_in_half())
            }
            StatusClass::Rejected => {
                self.dead_letter_all(batch, &Failure::rejected(response, finished.attempts), dead_letters);
                None
            }
            StatusClass::Retryable => {
                self.dead_letter_all(batch, &Failure::exhausted(&finished.outcome, finished.attempts), dead_letters);
                None
            }
        }
    }

    fn dead_letter_all(&self, batch: Batch, failure: &Failure, dead_letters: &mut Vec<Event>) {
        tracing::warn!(
            component_id = %self.component_id,
            events = batch.len(),
            reason = failure.reason.as_str(),
            status = failure.status,
            attempts = failure.attempts,
            error = failure.error.as_deref().unwrap_or(""),
            "Event API request failed; sending its events to the dead-letter output"
        );
        dead_letters.extend(batch.into_events().map(|event| dead_letter(event, &self.component_id, failure)));
    }
}

fn finalize_all(batch: Batch, status: EventStatus) {
    for event in batch.into_events() {
        event.finalize(status);
    }
}
