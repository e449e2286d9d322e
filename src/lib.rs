//! optimizely-relay maps Segment messages to Optimizely Event API conversions and delivers them.
//!
//! Layout:
//! - [`event`] and [`ack`]: the unit of data between components and its end-to-end acknowledgement.
//! - [`config`]: the TOML configuration, environment interpolation and validation.
//! - [`sources`], [`transforms`], [`sinks`]: one module per component type, one file per role.
//! - [`topology`]: builds the component graph from a configuration, runs it and shuts it down.
//! - [`unit_test`]: `optimizely-relay test`, which checks a transform's outputs against expectations.

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
