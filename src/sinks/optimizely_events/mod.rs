//! The `optimizely_events` sink: batches conversions into Event API requests and delivers them.
//!
//! Files by role:
//! - `config`: the settings, their defaults and validation.
//! - `batch`: encodes each visitor on arrival and groups conversions into request bodies per batch key,
//!   within the count, size and time limits.
//! - `service`: the HTTP client, one POST per attempt.
//! - `delivery`: one batch from its first request to the final status of each event, including the
//!   splitting of rejected requests.
//! - `dead_letter`: the reasons and records of events that are not delivered.
//! - `sink`: the run loop: input, batch timeouts, request concurrency and the drain at shutdown.
//!
//! The retry rule (which outcomes are retried, backoff with jitter, `Retry-After`, and when to give
//! up) is shared with the other HTTP sinks in `sinks::util::retry`.

mod batch;
#[cfg(test)]
mod batch_properties;
pub mod config;
mod dead_letter;
mod delivery;
mod service;
mod sink;

pub use config::{BatchConfig, BuildError, Compression, OptimizelyEventsConfig, RequestConfig, MAX_BODY_BYTES};
pub use sink::OptimizelyEventsSink;
