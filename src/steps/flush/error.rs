//! `FlushError`: every way a flush, preview or restore can fail. Each message says what happened,
//! what was expected, and whether running the step again is safe. Passwords never appear: servers
//! are named by their redacted URL and server details are scrubbed before they are stored.

use std::path::PathBuf;

use redis::{ErrorKind, RedisError, ServerErrorKind};

use super::RestoreReport;

#[derive(thiserror::Error, Debug)]
pub enum FlushError {
    #[error(
        "invalid Redis URL {url}: {detail}; expected redis://host:port/db, with any user and password (percent-encoded) before the host; nothing was done, fix the URL before retrying"
    )]
    InvalidUrl { url: String, detail: String },

    #[error("invalid flush step: {detail}; nothing was done")]
    InvalidSpec { detail: String },

    #[error(
        "cannot reach Redis at {server}: {detail}; expected a server accepting connections; nothing was deleted, a retry is safe"
    )]
    Unreachable { server: String, detail: String },

    #[error(
        "the TLS connection to Redis at {server} was refused: {detail}; expected a server certificate signed by the CA in tls_ca (and, when the server asks for one, the client certificate in tls_cert and tls_key); nothing was sent in plain text and nothing was deleted; a retry is safe once the certificates are fixed"
    )]
    TlsRefused { server: String, detail: String },

    #[error(
        "authentication to Redis at {server} failed: {detail}; expected the right user and password in the URL; nothing was deleted, a retry is safe once the password is fixed"
    )]
    AuthFailed { server: String, detail: String },

    #[error(
        "Redis at {server} is a read-only replica; expected the primary; nothing was deleted, point the step at the primary and retry"
    )]
    ReadOnlyReplica { server: String },

    #[error(
        "Redis at {server} redirected a command ({detail}): the cluster's slots moved while the flush ran; {}", progress_note(*.deleted)
    )]
    ClusterMoved { server: String, deleted: u64, detail: String },

    #[error(
        "the cluster at {server} is not whole: {detail}; expected every hash slot served by a primary; nothing was deleted or restored; a retry is safe once `redis-cli --cluster check` is clean"
    )]
    ClusterDegraded { server: String, detail: String },

    #[error("{}", super::cluster::partial_text(.nodes, .backup_file))]
    ClusterPartial { nodes: Vec<super::cluster::NodeRun>, backup_file: Option<PathBuf> },

    #[error(
        "refusing to flush: {matched} keys match {patterns:?} on {server}, more than max_keys = {max_keys}; nothing was deleted; narrow the pattern or raise max_keys, then retry"
    )]
    TooManyKeys { server: String, patterns: Vec<String>, matched: u64, max_keys: u64 },

    #[error("connection to Redis at {server} lost mid-flush ({detail}): deleted {deleted} keys so far (at least); {}; re-running the step deletes what is left, a retry is safe; `runbook rollback` restores", backup_note(.backup_file))]
    ConnectionLost { server: String, deleted: u64, backup_file: Option<PathBuf>, detail: String },

    #[error("interrupted: the flush stopped between batches after deleting {deleted} of the {matched} matching keys found so far; {}; the others were not touched. Rolling back restores the deleted ones; running the step again deletes the rest (a retry is safe)", interrupted_note(*.deleted, .backup_file))]
    Interrupted { server: String, deleted: u64, matched: u64, backup_file: Option<PathBuf> },

    #[error(
        "connection to Redis at {server} lost mid-restore ({detail}): restored {restored} keys so far from {path}; re-running the restore is safe (it writes the same values again)"
    )]
    RestoreInterrupted { server: String, path: PathBuf, restored: u64, detail: String },

    #[error(
        "backup file {path}: {detail}; deleted {deleted} keys so far, every one of them backed up before it was deleted; nothing more is deleted until the backup can be written; a retry is safe once the disk is fixed"
    )]
    BackupIo { path: PathBuf, deleted: u64, detail: String },

    #[error(
        "backup file {path} already exists and is not a complete runbook flush backup ({detail}); expected a new path or a complete backup to append to; nothing was deleted; move the file aside, then retry"
    )]
    BackupInUse { path: PathBuf, detail: String },

    #[error(
        "cannot read backup file {path}: {detail}; nothing was restored; a retry is safe once the file is readable"
    )]
    BackupUnreadable { path: PathBuf, detail: String },

    #[error(
        "backup file {path} is corrupt ({detail}); expected a runbook flush backup with a matching SHA-256; nothing was restored, since which keys are damaged cannot be told"
    )]
    BackupCorrupt { path: PathBuf, detail: String },

    #[error("backup file {path} is incomplete ({detail}), probably because the flush died mid-way; restored what was intact: {} restored ({} replaced a newer value), {} expired; keys written after the flush were not deleted, since they cannot be told from keys the flush never reached; a retry is safe", .report.restored, .report.replaced, .report.expired)]
    BackupIncomplete { path: PathBuf, detail: String, report: RestoreReport },

    #[error(
        "Redis at {server} refused to restore key {key:?}: {detail}; expected RESTORE to accept a DUMP payload from this backup (same or newer Redis version); restored {restored} keys before it; a retry is safe"
    )]
    RestoreRefused { server: String, key: String, restored: u64, detail: String },

    #[error("Redis at {server} does not let {user} run what this flush needs: {}; expected the user to be allowed UNLINK, and with backup DUMP, PTTL, EXISTS and RESTORE, on the keys it flushes (for instance `ACL SETUSER {user} +restore`); {}", .missing.join(", "), progress_note(*.deleted))]
    NotPermitted { server: String, user: String, missing: Vec<String>, deleted: u64 },

    #[error("Redis at {server} answered {command} with an error: {detail}; {}", progress_note(*.deleted))]
    Redis { server: String, command: &'static str, deleted: u64, detail: String },
}

fn backup_note(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!("the backup at {} holds them", p.display()),
        None => "no backup was taken (backup = false), so they cannot be restored".to_string(),
    }
}

fn interrupted_note(deleted: u64, path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!(
            "all {deleted} are in the backup {} (each was backed up before it was deleted)",
            p.display()
        ),
        None => "there is no backup of them (backup = false)".to_string(),
    }
}

fn progress_note(deleted: u64) -> String {
    if deleted == 0 {
        "nothing was deleted; a retry is safe".to_string()
    } else {
        format!("deleted {deleted} keys so far, all backed up when backup is on; a retry is safe")
    }
}

impl FlushError {
    /// True when running the same step again cannot make things worse: nothing was deleted, or
    /// what was deleted is in the backup and a re-run only deletes what is left. It does not
    /// promise the retry will succeed (a wrong password stays wrong).
    pub fn retry_safe(&self) -> bool {
        !matches!(
            self,
            FlushError::InvalidUrl { .. }
                | FlushError::InvalidSpec { .. }
                | FlushError::BackupCorrupt { .. }
                | FlushError::BackupInUse { .. }
        )
    }
}

/// What the failing call was doing, so a Redis error can be turned into the right `FlushError`.
pub(crate) struct Context<'a> {
    pub server: &'a str,
    pub password: Option<&'a str>,
    pub command: &'static str,
    /// Keys deleted so far; `Some` while flushing, so a lost connection reports it.
    pub deleted: Option<u64>,
    pub backup_file: Option<&'a std::path::Path>,
}

impl Context<'_> {
    /// Turn a Redis error into the `FlushError` that explains it.
    pub fn classify(&self, err: &RedisError) -> FlushError {
        let server = self.server.to_string();
        let detail = self.scrub(&err.to_string());
        let code = err.code().unwrap_or("");
        let deleted = self.deleted.unwrap_or(0);
        if err.kind() == ErrorKind::AuthenticationFailed
            || matches!(code, "NOAUTH" | "WRONGPASS")
            || detail.contains("AUTH") && detail.contains("without any password")
        {
            return FlushError::AuthFailed { server, detail };
        }
        if self.deleted.is_none() && crate::tls::is_certificate_error(&detail) {
            return FlushError::TlsRefused { server, detail };
        }
        match err.kind() {
            ErrorKind::Server(ServerErrorKind::ReadOnly) => FlushError::ReadOnlyReplica { server },
            ErrorKind::Server(
                ServerErrorKind::Moved
                | ServerErrorKind::Ask
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::CrossSlot,
            ) => FlushError::ClusterMoved { server, deleted, detail },
            ErrorKind::InvalidClientConfig => FlushError::InvalidUrl { url: server, detail },
            _ if err.is_io_error() || err.is_connection_dropped() || err.is_timeout() => {
                match self.deleted {
                    Some(deleted) => FlushError::ConnectionLost {
                        server,
                        deleted,
                        backup_file: self.backup_file.map(|p| p.to_path_buf()),
                        detail,
                    },
                    None => FlushError::Unreachable { server, detail },
                }
            }
            _ => FlushError::Redis { server, command: self.command, deleted, detail },
        }
    }

    /// Remove the password from a message, in case a library ever echoes it.
    pub fn scrub(&self, text: &str) -> String {
        match self.password {
            Some(p) if !p.is_empty() => text.replace(p, "***"),
            _ => text.to_string(),
        }
    }
}
