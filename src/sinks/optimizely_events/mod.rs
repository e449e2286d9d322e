//! The `optimizely_events` sink: batches conversions into Event API requests and delivers them.
