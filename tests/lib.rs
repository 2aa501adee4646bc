//! Integration tests: one binary, one module per feature, each driving the real `runbook` binary
//! or, for the step kinds, the library.

mod measure;
mod support;
mod watch;
