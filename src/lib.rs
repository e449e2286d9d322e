//! optimizely-relay maps Segment messages to Optimizely Event API conversions and delivers them.
//!
//! It is a binary, `optimizely-relay`, and this library, which other Rust pipelines embed. The binary
//! uses only the public API below.
//!
//! # Architecture
//!
//! A pipeline is a graph of components joined by bounded buffers: sources read Segment messages
//! ([`sources`]), the `optimizely` transform maps them with a datafile ([`transforms::optimizely`]),
//! and sinks deliver what comes out ([`sinks`]). Events travel in chunks ([`event::Event`]), and each
//! carries an acknowledgement reference ([`ack::EventFinalizer`]): every component that takes an
//! event finalizes it as delivered, skipped, dead-lettered or undelivered, and when the last
//! reference is gone the source's [`ack::AckReceiver`] learns the most severe outcome. Sources build
//! their guarantees on that: the `file` source checkpoints only past final outcomes, and the
//! `http_server` source answers a request once its events are final.
//!
//! The transform turns each `track` message into a complete Event API request body with one visitor
//! ([`event::Conversion`]), and in a pipeline sends it on with the visitor already written as JSON
//! ([`event::EncodedConversion`], which `decode` turns back into its fields). The Event API sink
//! merges bodies with equal top-level fields into one request, retries what can be retried, splits
//! what the API rejects, and sends what cannot be delivered to its dead-letter output with the
//! reason. Nothing is dropped unseen.
//!
//! [`config::Config`] loads a TOML configuration and [`topology::build`] turns it into a runnable
//! [`topology::Topology`]; cancelling the token given to [`topology::Topology::run`] shuts it down in
//! order: sources first, then the transforms and sinks drain.
//!
//! # Use
//!
//! - Map messages alone: [`transforms::optimizely::OptimizelyTransform`] (`from_toml`, `map_message`,
//!   `map_bytes`, `set_datafile` to swap the datafile).
//! - Deliver conversions from your own code: [`sinks::optimizely_events::OptimizelyEventsSink`] fed
//!   through a [`topology::buffer()`], with outcomes reported to your [`ack::AckReceiver`].
//! - Run a whole pipeline in-process: [`config::Config::from_toml`], [`topology::build`],
//!   [`topology::Topology::run`].
//!
//! The `examples/` directory has one program for each.
//!
//! # Layout
//!
//! - [`event`] and [`ack`]: the unit of data between components and its end-to-end acknowledgement.
//! - [`config`]: the TOML configuration, environment interpolation and validation.
//! - [`sources`], [`transforms`], [`sinks`]: one module per component type, one file per role.
//! - [`topology`]: builds the component graph from a configuration, runs it and shuts it down.
//! - [`observability`]: metrics, the health endpoint and the progress line.
//! - [`unit_test`]: `optimizely-relay test`, which checks a transform's outputs against expectations.
//!
//! serde_json is built with `preserve_order` (trait order decides attribute order) and
//! `arbitrary_precision` (revenue is converted from the decimal text of numbers). Cargo unifies
//! features, so a crate that depends on this one gets both for its own `serde_json` values too.

#![deny(missing_docs)]

pub mod ack;
pub mod config;
pub mod event;
mod log_limit;
pub mod observability;
pub mod sinks;
pub mod sources;
mod state_files;
pub mod topology;
pub mod transforms;
pub mod unit_test;
