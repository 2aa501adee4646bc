//! Integration tests: one binary, one module per feature, each driving the real `runbook` binary
//! or, for the step kinds, the library.

mod check;
mod measure;
mod run;
mod support;
mod watch;

mod flush;
mod process;
mod prompts;
mod report;
