//! The component graph: bounded channels between tasks, and the shutdown order.
//!
//! Shutdown works by closing channels from the sources down:
//! 1. Sources stop at the end of their input or when the shutdown token is cancelled, and drop their
//!    outputs.
//! 2. A transform's input closes once every upstream output is dropped, finishes the chunk in
//!    hand, and drops its own outputs.
//! 3. A sink sees its input close, flushes its partial batches, and waits for in-flight requests.
//!
//! From the moment every source has stopped, the remaining components get `shutdown_timeout_secs` to
//! finish. Tasks still running then are aborted; the events they held report `Undelivered` through
//! their finalizers, so the summary counts them instead of losing them unseen.

pub mod buffer;
mod build;
pub mod output;
mod run;
pub mod stats;

pub use buffer::{buffer, BufferConfig, BufferSender, Input, WhenFull};
pub use build::{build, BuildError, Topology};
pub use output::{Output, OutputClosed, Unconnected};
pub use run::RunReport;
pub use stats::{RunStats, Summary};
