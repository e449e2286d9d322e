//! Transforms: components that turn one kind of event into another.

pub mod optimizely;
