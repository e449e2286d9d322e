//! The `optimizely` transform: maps Segment messages to Event API conversions using a datafile.
//!
//! - [`config`]: the settings; [`mapper`] and `fields`: the mapping rules of one message;
//!   [`transform`]: the running component with its outputs.
//! - [`datafile`] and [`datafile_source`]: the datafile model and where it is loaded from.
//! - [`timestamp`], [`number`], [`path`], [`message_uuid`]: value-level rules.

pub mod borrowed;
pub mod config;
pub mod datafile;
pub mod datafile_refresh;
pub mod datafile_source;
pub mod datafile_store;
mod excerpt;
mod fields;
pub mod mapper;
pub mod message_uuid;
pub mod number;
pub mod path;
pub mod timestamp;
pub mod transform;

pub use config::OptimizelyTransformConfig;
pub use mapper::{MapOutcome, Mapper, Rejection, SkipReason};
pub use transform::{OptimizelyTransform, TransformOutputs};

#[cfg(test)]
mod tests;
