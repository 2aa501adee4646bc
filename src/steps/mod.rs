//! Step kinds. Each kind lives in one file: what it accepts in the runbook and how it runs.

pub mod flush;
pub mod measure;
pub mod watch;
