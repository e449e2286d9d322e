//! The `optimizely` transform: maps Segment messages to Event API conversions using a datafile.
