//! Sinks: components that write events to their destination.

pub mod optimizely_events;
