//! The `optimizely_events` sink: batches conversions into Event API requests and delivers them.
//!
//! Files by role:
//! - `config`: the settings, their defaults and validation.
//! - `batch`: encodes each visitor on arrival and groups conversions into request bodies per batch key,
//!   within the count, size and time limits.
//! - `service`: the HTTP client, one POST per attempt.
//! - `retry`: which outcomes are retried, backoff with jitter, `Retry-After`, and when to give up.

mod batch;
pub mod config;
mod retry;
mod service;

pub use config::{BatchConfig, BuildError, Compression, OptimizelyEventsConfig, RequestConfig, MAX_BODY_BYTES};
