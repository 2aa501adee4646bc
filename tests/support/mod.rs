//! Shared helpers for the integration tests: a real `redis-server` on a free port, temporary
//! working directories and a builder that runs the real `runbook` binary.

#![allow(dead_code)]

pub mod cmd;
pub mod redis_server;

#[allow(unused_imports)] // until the binary-level tests use them
pub use cmd::{Outcome, Runbook};
pub use redis_server::RedisServer;
