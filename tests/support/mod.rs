//! Shared helpers for the integration tests: a real `redis-server` on a free port, temporary
//! working directories and a builder that runs the real `runbook` binary.

#![allow(dead_code)]

pub mod cmd;
pub mod redis_cluster;
pub mod redis_server;
pub mod redis_tls;
pub mod sshd;

#[allow(unused_imports)] // until the binary-level tests use them
pub use cmd::{Outcome, Runbook};
pub use redis_cluster::RedisCluster;
pub use redis_server::RedisServer;
pub use redis_tls::TlsRedis;

/// Every file below `dir`, for tests that search a whole state directory.
pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

/// Fail when `secret` appears in any file below `dir`.
pub fn assert_nowhere_below(dir: &std::path::Path, secret: &str) {
    for file in walk(dir) {
        let bytes = std::fs::read(&file).unwrap();
        let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(!found, "{secret:?} found in {}", file.display());
    }
}
