//! Integration tests: one binary, one module per feature, each driving the real `runbook` binary.

mod check;
mod run;
mod support;
