//! The component graph: bounded channels between tasks, and the shutdown order.

pub mod output;

pub use output::{Input, Output, OutputClosed, Unconnected};
