//! Integration tests: one binary, one module per feature, each driving the real `runbook` binary.

mod support;

mod flush;
