//! Building blocks that the HTTP sinks share.
//!
//! - `retry`: which outcomes are retried, backoff with jitter, `Retry-After`, and when to give up.
//! - `http`: the response to one attempt, read within a size limit, and transport error descriptions.
//! - `settings`: parsing of `_secs` durations and endpoint URLs.

pub(crate) mod http;
pub(crate) mod retry;
pub(crate) mod settings;
