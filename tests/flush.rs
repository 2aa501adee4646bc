//! The flush step's library, against a real `redis-server`: only matching keys go, the backup
//! restores them with their TTLs, limits refuse before deleting, and faults say what happened.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use redis::Commands;
use runbook::steps::flush::{self, FlushError, FlushSpec, RestoreReport};

use crate::support::RedisServer;

fn spec(server: &RedisServer, patterns: &[&str]) -> FlushSpec {
    FlushSpec {
        url: server.url(0),
        patterns: patterns.iter().map(|p| p.to_string()).collect(),
        max_keys: None,
        backup: true,
        batch: flush::DEFAULT_BATCH,
    }
}

/// `count` string keys `prefix:N` holding `value-N`, loaded in one pipeline.
fn load(con: &mut redis::Connection, prefix: &str, count: usize) {
    let mut pipe = redis::pipe();
    for n in 0..count {
        pipe.set(format!("{prefix}:{n}"), format!("value-{n}")).ignore();
        if pipe.len() >= 5000 {
            pipe.exec(con).unwrap();
            pipe = redis::pipe();
        }
    }
    if !pipe.is_empty() {
        pipe.exec(con).unwrap();
    }
}

fn count(con: &mut redis::Connection, pattern: &str) -> usize {
    redis::Iter::<String>::into_iter(con.scan_match(pattern).unwrap()).map(Result::unwrap).count()
}

fn backup_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("backup").join("flush.bin")
}

fn no_progress(_: u64) {}

#[test]
fn flush_deletes_only_matching_keys_and_leaves_the_rest_untouched() {
    let server = RedisServer::start();
    let mut con = server.client(0);
    load(&mut con, "page:upload", 3000);
    load(&mut con, "page:home", 500);
    load(&mut con, "session", 200);
    let dir = tempfile::tempdir().unwrap();
    let mut calls = Vec::new();

    let report = flush::flush(&spec(&server, &["page:upload:*"]), &backup_path(&dir), &mut |n| {
        calls.push(n)
    })
    .unwrap();

    assert_eq!(
        (report.count_before, report.matched, report.deleted, report.backed_up),
        (3000, 3000, 3000, 3000)
    );
    assert_eq!(report.count_after, 0);
    assert_eq!(count(&mut con, "page:upload:*"), 0);
    assert_eq!(count(&mut con, "page:home:*"), 500);
    assert_eq!(count(&mut con, "session:*"), 200);
    let v: String = con.get("page:home:42").unwrap();
    assert_eq!(v, "value-42");
    let v: String = con.get("session:199").unwrap();
    assert_eq!(v, "value-199");
    assert_eq!(calls.last(), Some(&3000), "progress ends at the number deleted");
    assert!(calls.windows(2).all(|w| w[0] <= w[1]), "progress never goes back: {calls:?}");
    let checksum = report.checksum.expect("a checksum when backing up");
    assert_eq!(checksum.len(), 64);
    assert_eq!(report.backup_file.as_deref(), Some(backup_path(&dir).as_path()));
    assert_eq!(report.backup_bytes, std::fs::metadata(backup_path(&dir)).unwrap().len());
    assert_eq!(report.server, server.url(0));
}

#[test]
fn flush_without_backup_writes_no_file() {
    let server = RedisServer::start();
    let mut con = server.client(0);
    load(&mut con, "page:upload", 100);
    let dir = tempfile::tempdir().unwrap();
    let spec = FlushSpec { backup: false, ..spec(&server, &["page:upload:*"]) };

    let report = flush::flush(&spec, &backup_path(&dir), &mut no_progress).unwrap();

    assert_eq!((report.deleted, report.backed_up, report.backup_bytes), (100, 0, 0));
    assert_eq!((report.backup_file, report.checksum), (None, None));
    assert!(!backup_path(&dir).exists());
}

#[test]
fn overlapping_patterns_delete_and_back_up_each_key_once() {
    let server = RedisServer::start();
    let mut con = server.client(0);
    load(&mut con, "page:upload", 300);
    load(&mut con, "page:home", 200);
    load(&mut con, "other", 50);
    let dir = tempfile::tempdir().unwrap();

    let report = flush::flush(
        &spec(&server, &["page:*", "page:upload:*"]),
        &backup_path(&dir),
        &mut no_progress,
    )
    .unwrap();

    assert_eq!((report.count_before, report.deleted, report.backed_up), (500, 500, 500));
    assert_eq!(count(&mut con, "*"), 50);
}

#[test]
fn preview_counts_and_samples_without_deleting() {
    let server = RedisServer::start();
    let mut con = server.client(0);
    load(&mut con, "page:upload", 250);
    load(&mut con, "page:home", 10);

    let preview = flush::preview(&spec(&server, &["page:upload:*"]), 5).unwrap();

    assert_eq!(preview.matched, 250);
    assert_eq!(preview.samples.len(), 5);
    assert!(preview.samples.iter().all(|k| k.starts_with("page:upload:")), "{:?}", preview.samples);
    assert_eq!(count(&mut con, "page:upload:*"), 250);
}

#[test]
fn restore_brings_back_values_types_and_ttls() {
    let server = RedisServer::start();
    let mut con = server.client(0);
    load(&mut con, "page:upload", 2500);
    let _: () = con.pexpire("page:upload:7", 600_000).unwrap();
    let _: () = con.hset("page:upload:hash", "field", "hv").unwrap();
    let _: () = con.rpush("page:upload:list", &["a", "b", "c"]).unwrap();
    let _: () = con.pset_ex("page:upload:short", "gone soon", 1_500).unwrap();
    let _: () = con.set("keep", "me").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let report =
        flush::flush(&spec(&server, &["page:upload:*"]), &backup_path(&dir), &mut no_progress)
            .unwrap();
    assert_eq!(report.deleted, 2503);
    // The application re-caches two keys meanwhile from the changed state, writes a new one,
    // and the short-lived key's TTL runs out.
    let _: () = con.set("page:upload:3", "fresh").unwrap();
    let _: () = con.set("page:upload:new", "rendered by the change").unwrap();
    std::thread::sleep(Duration::from_millis(1_700));
    let _: () = con.set("page:upload:short", "rendered by the change").unwrap();

    let mut seen = Vec::new();
    let patterns = ["page:upload:*".to_string()];
    let restored =
        flush::restore(&server.url(0), &backup_path(&dir), &patterns, &mut |n| seen.push(n))
            .unwrap();

    let expected = RestoreReport {
        restored: 2502,
        replaced: 1,
        already_present: 0,
        expired: 1,
        deleted_new: 2,
        swept: true,
    };
    assert_eq!(restored, expected);
    assert_eq!(seen.last(), Some(&2502));
    let v: String = con.get("page:upload:1234").unwrap();
    assert_eq!(v, "value-1234");
    let v: String = con.get("page:upload:3").unwrap();
    assert_eq!(v, "value-3", "the backup replaces what the change wrote");
    let new: bool = con.exists("page:upload:new").unwrap();
    assert!(!new, "a key written after the flush is deleted");
    let v: String = con.get("keep").unwrap();
    assert_eq!(v, "me", "keys not matching the pattern are left alone");
    let h: String = con.hget("page:upload:hash", "field").unwrap();
    assert_eq!(h, "hv");
    let l: Vec<String> = con.lrange("page:upload:list", 0, -1).unwrap();
    assert_eq!(l, ["a", "b", "c"]);
    let ttl: i64 = con.pttl("page:upload:7").unwrap();
    assert!((595_000..=600_000).contains(&ttl), "TTL restored minus the time elapsed: {ttl}");
    let ttl: i64 = con.pttl("page:upload:8").unwrap();
    assert_eq!(ttl, -1, "a key without TTL comes back without one");
    let exists: bool = con.exists("page:upload:short").unwrap();
    assert!(!exists, "an expired key is not restored, and what the change wrote under it goes");

    let again =
        flush::restore(&server.url(0), &backup_path(&dir), &patterns, &mut no_progress).unwrap();
    let expected = RestoreReport { replaced: 2502, deleted_new: 0, ..expected };
    assert_eq!(again, expected, "restoring twice is safe");
}

#[test]
fn max_keys_refuses_before_deleting_anything() {
    let server = RedisServer::start();
    let mut con = server.client(0);
    load(&mut con, "page:upload", 1001);
    let dir = tempfile::tempdir().unwrap();
    let spec = FlushSpec { max_keys: Some(1000), ..spec(&server, &["page:upload:*"]) };

    let err = flush::flush(&spec, &backup_path(&dir), &mut no_progress).unwrap_err();

    assert!(
        matches!(err, FlushError::TooManyKeys { matched: 1001, max_keys: 1000, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("1001") && message.contains("max_keys = 1000"), "{message}");
    assert!(message.contains("nothing was deleted"), "{message}");
    assert_eq!(count(&mut con, "page:upload:*"), 1001);
    assert!(!backup_path(&dir).exists(), "no backup file is created for a refused flush");

    let exact = FlushSpec { max_keys: Some(1001), ..spec };
    assert_eq!(flush::flush(&exact, &backup_path(&dir), &mut no_progress).unwrap().deleted, 1001);
}

#[test]
fn killing_the_server_mid_flush_reports_progress_and_the_backup_restores_every_deleted_key() {
    let mut server = RedisServer::start();
    let mut con = server.client(0);
    load(&mut con, "page:upload", 200_000);
    drop(con);
    let dir = tempfile::tempdir().unwrap();
    let path = backup_path(&dir);
    let spec = spec(&server, &["page:upload:*"]);
    let (tx, rx) = mpsc::channel();

    let flushing = std::thread::spawn(move || {
        let mut told = false;
        flush::flush(&spec, &path, &mut |deleted| {
            if !told && deleted >= 10_000 {
                told = true;
                tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("the flush reports progress");
    server.kill();
    let err = flushing.join().unwrap().unwrap_err();

    let FlushError::ConnectionLost { deleted, ref backup_file, .. } = err else {
        panic!("{err:?}")
    };
    assert!((10_000..200_000).contains(&deleted), "deleted {deleted}");
    assert_eq!(backup_file.as_deref(), Some(backup_path(&dir).as_path()));
    assert!(err.retry_safe());
    let message = err.to_string();
    assert!(message.contains(&format!("deleted {deleted} keys so far")), "{message}");
    assert!(message.contains("re-running the step deletes what is left"), "{message}");
    assert!(message.contains("`runbook rollback` restores"), "{message}");

    let fresh = RedisServer::start();
    let restored =
        flush::restore(&fresh.url(0), &backup_path(&dir), &[], &mut no_progress).unwrap();
    assert!(
        restored.restored >= deleted,
        "backup holds every deleted key: {restored:?} < {deleted}"
    );
    assert!(restored.restored < 200_000 + 1);
    let mut con = fresh.client(0);
    let keys: Vec<String> = redis::Iter::<String>::into_iter(con.scan_match("*").unwrap())
        .map(Result::unwrap)
        .collect();
    assert_eq!(keys.len() as u64, restored.restored);
    let mut pipe = redis::pipe();
    for key in &keys[..1000.min(keys.len())] {
        pipe.get(key);
    }
    let values: Vec<String> = pipe.query(&mut con).unwrap();
    for (key, value) in keys.iter().zip(values) {
        let n = key.strip_prefix("page:upload:").expect("only matching keys are backed up");
        assert_eq!(value, format!("value-{n}"));
    }
}

#[test]
fn password_protected_server_works_and_a_wrong_password_is_never_printed() {
    let server = RedisServer::start_with_password("s3cr3t-pw");
    let mut con = server.client(0);
    load(&mut con, "page:upload", 50);
    let dir = tempfile::tempdir().unwrap();

    let report =
        flush::flush(&spec(&server, &["page:upload:*"]), &backup_path(&dir), &mut no_progress)
            .unwrap();
    assert_eq!(report.deleted, 50);
    assert!(
        !report.server.contains("s3cr3t-pw") && report.server.contains(":***@"),
        "{}",
        report.server
    );
    let json = serde_json::to_string(&report).unwrap();
    assert!(!json.contains("s3cr3t-pw"));

    let wrong = FlushSpec {
        url: format!("redis://:not-the-pw@127.0.0.1:{}/0", server.port),
        ..spec(&server, &["page:*"])
    };
    let err = flush::flush(&wrong, &backup_path(&dir), &mut no_progress).unwrap_err();
    assert!(matches!(err, FlushError::AuthFailed { .. }), "{err:?}");
    assert!(
        !err.to_string().contains("not-the-pw") && !format!("{err:?}").contains("not-the-pw"),
        "{err}"
    );
    assert!(err.to_string().contains("nothing was deleted"), "{err}");

    let missing = FlushSpec {
        url: format!("redis://127.0.0.1:{}/0", server.port),
        ..spec(&server, &["page:*"])
    };
    let err = flush::preview(&missing, 3).unwrap_err();
    assert!(matches!(err, FlushError::AuthFailed { .. }), "{err:?}");
}

#[test]
fn redact_hides_the_password() {
    assert_eq!(flush::redact("redis://user:secret@host:6379/0"), "redis://user:***@host:6379/0");
    assert_eq!(
        flush::redact("rediss://:secret@cache.internal:6380/2"),
        "rediss://:***@cache.internal:6380/2"
    );
    assert_eq!(flush::redact("redis://cache:6379/0"), "redis://cache:6379/0");
    let spec = FlushSpec {
        url: "redis://u:secret@h/0".into(),
        patterns: vec![],
        max_keys: None,
        backup: true,
        batch: 0,
    };
    assert!(!format!("{spec:?}").contains("secret"));
}

/// Flush `n` keys with a backup and return the backup's bytes.
fn backup_of(n: usize, dir: &tempfile::TempDir) -> Vec<u8> {
    let server = RedisServer::start();
    load(&mut server.client(0), "page:upload", n);
    flush::flush(&spec(&server, &["page:upload:*"]), &backup_path(dir), &mut no_progress).unwrap();
    std::fs::read(backup_path(dir)).unwrap()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn truncated_backup_restores_the_intact_records_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = backup_of(100, &dir);
    // Cut the trailer (1 + 8 + 32 bytes) and half of the last record away.
    write(&backup_path(&dir), &bytes[..bytes.len() - 41 - 20]);
    let server = RedisServer::start();

    let err =
        flush::restore(&server.url(0), &backup_path(&dir), &[], &mut no_progress).unwrap_err();

    let FlushError::BackupIncomplete { ref report, .. } = err else { panic!("{err:?}") };
    assert_eq!(report.restored, 99);
    assert_eq!(count(&mut server.client(0), "page:upload:*"), 99);
    let message = err.to_string();
    assert!(message.contains("incomplete") && message.contains("99 restored"), "{message}");
    assert!(err.retry_safe());
}

#[test]
fn corrupt_backup_is_refused_and_nothing_restored() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = backup_of(100, &dir);
    // Damage one byte of a stored value: only the checksum can tell.
    let at = bytes.windows(8).position(|w| w == b"value-50").expect("the value is in the backup");
    bytes[at + 2] ^= 0x55;
    write(&backup_path(&dir), &bytes);
    let server = RedisServer::start();

    let err =
        flush::restore(&server.url(0), &backup_path(&dir), &[], &mut no_progress).unwrap_err();

    assert!(matches!(err, FlushError::BackupCorrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("nothing was restored"), "{err}");
    assert_eq!(count(&mut server.client(0), "*"), 0);

    write(&backup_path(&dir), b"not a backup at all");
    let err =
        flush::restore(&server.url(0), &backup_path(&dir), &[], &mut no_progress).unwrap_err();
    assert!(err.to_string().contains("not a runbook flush backup"), "{err}");
}

#[test]
fn a_rerun_appends_to_the_backup_so_rollback_restores_both_runs() {
    let server = RedisServer::start();
    let mut con = server.client(0);
    load(&mut con, "page:upload", 30);
    let dir = tempfile::tempdir().unwrap();
    let first =
        flush::flush(&spec(&server, &["page:upload:*"]), &backup_path(&dir), &mut no_progress)
            .unwrap();
    load(&mut con, "page:upload:again", 20);
    let second =
        flush::flush(&spec(&server, &["page:upload:*"]), &backup_path(&dir), &mut no_progress)
            .unwrap();
    assert_eq!((first.deleted, second.deleted), (30, 20));
    assert_ne!(first.checksum, second.checksum);

    let restored =
        flush::restore(&server.url(0), &backup_path(&dir), &[], &mut no_progress).unwrap();

    assert_eq!(restored.restored, 50);
    assert_eq!(count(&mut con, "page:upload:*"), 50);
}

#[test]
fn unreachable_server_is_reported_as_safe_to_retry() {
    let server = RedisServer::start();
    let url = server.url(0);
    drop(server);
    let dir = tempfile::tempdir().unwrap();
    let spec =
        FlushSpec { url, patterns: vec!["page:*".into()], max_keys: None, backup: true, batch: 0 };

    let err = flush::flush(&spec, &backup_path(&dir), &mut no_progress).unwrap_err();

    assert!(matches!(err, FlushError::Unreachable { .. }), "{err:?}");
    assert!(err.retry_safe());
    assert!(err.to_string().contains("nothing was deleted"), "{err}");
}

#[test]
fn replica_is_refused_before_anything_is_deleted() {
    let primary = RedisServer::start();
    let replica = RedisServer::start();
    load(&mut primary.client(0), "page:upload", 10);
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(primary.port)
        .query(&mut replica.client(0))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    let err =
        flush::flush(&spec(&replica, &["page:upload:*"]), &backup_path(&dir), &mut no_progress)
            .unwrap_err();

    assert!(matches!(err, FlushError::ReadOnlyReplica { .. }), "{err:?}");
    assert!(err.to_string().contains("read-only replica"), "{err}");
    assert_eq!(count(&mut primary.client(0), "page:upload:*"), 10);
}

#[test]
fn tls_url_against_a_plain_server_fails_cleanly() {
    let server = RedisServer::start();
    let url = format!("rediss://127.0.0.1:{}/0", server.port);
    let spec =
        FlushSpec { url, patterns: vec!["page:*".into()], max_keys: None, backup: false, batch: 0 };

    let err = flush::preview(&spec, 1).unwrap_err();

    assert!(err.retry_safe(), "{err:?}");
    assert!(err.to_string().contains("nothing was deleted"), "{err}");
}

/// Issue 10 item 4, the last guard: whatever the plan let through, the flush itself refuses a
/// pattern made only of `*` and `?`, before it connects.
#[test]
fn a_pattern_matching_every_key_is_refused_by_the_flush_itself() {
    let server = RedisServer::start();
    let mut con = server.client(0);
    load(&mut con, "page:upload:", 10);
    let dir = tempfile::tempdir().unwrap();
    for all in ["*", "**", "*?*", "?*", "page:*"] {
        let patterns = ["page:upload:*", all];
        let result = flush::flush(&spec(&server, &patterns), &backup_path(&dir), &mut no_progress);
        if all == "page:*" {
            assert!(result.is_ok());
            continue;
        }
        let err = result.unwrap_err();
        assert!(matches!(err, FlushError::InvalidSpec { .. }), "{all}: {err}");
        assert!(err.to_string().contains("matches every key"), "{err}");
        assert_eq!(count(&mut con, "page:upload:*"), 10, "{all}: nothing deleted");
        assert!(flush::preview(&spec(&server, &patterns), 5).is_err(), "{all}");
    }
}

/// A flush that stopped before deleting every matching key (here its first UNLINK is refused)
/// seals its backup as stopped, and the restore then leaves the matching keys it does not hold
/// alone: they are keys the flush never reached, not keys written after it.
#[test]
fn the_restore_of_a_flush_that_stopped_deletes_no_key_it_never_reached() {
    let server = RedisServer::start();
    let mut con = server.client(0);
    load(&mut con, "page:upload", 5000);
    let rules = ["nounlink", "on", ">nounlink-pw", "~*", "+@all", "-@admin", "-unlink"];
    let _: () = redis::cmd("ACL").arg("SETUSER").arg(&rules).query(&mut con).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let limited = FlushSpec {
        url: format!("redis://nounlink:nounlink-pw@127.0.0.1:{}/0", server.port),
        batch: 100,
        ..spec(&server, &["page:upload:*"])
    };
    let err = flush::flush(&limited, &backup_path(&dir), &mut no_progress).unwrap_err();
    assert!(err.to_string().contains("UNLINK"), "{err}");
    assert_eq!(count(&mut con, "page:upload:*"), 5000, "nothing deleted");
    let patterns = ["page:upload:*".to_string()];
    let report =
        flush::restore(&server.url(0), &backup_path(&dir), &patterns, &mut no_progress).unwrap();
    assert!(!report.swept, "{report:?}");
    assert_eq!(count(&mut con, "page:upload:*"), 5000, "the restore deleted nothing");
}
