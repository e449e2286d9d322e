//! The `optimizely_user_deletion` sink: requests the deletion of each user's visitor data through
//! Optimizely's Subject Access Request API.
//!
//! Files by role:
//! - `config`: the settings, their defaults and validation; the token type that hides its value.
//! - `client`: the request body, one `POST` per deletion with retries, and the removal of the token
//!   from response text. The `delete-user` command uses the client directly.
//! - `outcome`: the outcome of one deletion, the dead-letter reasons and records.
//! - `dedupe`: the identifiers deleted within the dedupe window.
//! - `sink`: the run loop: input, duplicates, request concurrency and the drain at shutdown.
//!
//! Retries follow the rule the HTTP sinks share (`sinks::util::retry`).

mod client;
pub mod config;
mod dedupe;
mod outcome;
mod sink;

pub use client::{DeletionClient, MAX_IDENTIFIER_CHARS};
pub use config::{
    BuildError, DeletionRequestConfig, IdentifierType, OptimizelyUserDeletionConfig, PersonalAccessToken,
    DEFAULT_ENDPOINT,
};
pub use outcome::{DeletionOutcome, Failure, Reason};
pub use sink::OptimizelyUserDeletionSink;
