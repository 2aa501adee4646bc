//! The crash-safe record of every run: events appended and fsynced one at a time, read back into
//! a run's state, and stored one folder per run in the state directory.

pub mod event;
pub mod index;
pub mod lock;
pub mod reader;
pub mod shared;
pub mod store;
pub mod writer;

pub use event::{Event, Outcome, Record, RunStarted, RunStatus, StepInfo};
pub use reader::{RunState, StepState, StepStatus};
pub use store::Store;
pub use writer::Writer;
