//! The `optimizely` transform: maps Segment messages to Event API conversions using a datafile.

pub mod datafile;
pub mod datafile_source;
pub mod excerpt;
pub mod message_uuid;
pub mod number;
pub mod path;
pub mod timestamp;
