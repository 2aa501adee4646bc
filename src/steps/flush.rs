//! `kind = "flush"`: delete only the Redis keys matching some patterns, backing each one up
//! first, and restore them on rollback. Never FLUSHDB, FLUSHALL or KEYS.
//!
//! How a flush runs, and why:
//! - Connect and refuse what cannot be done safely before touching anything: a replica
//!   (READONLY).
//! - With `max_keys`, count the matching keys with a read-only SCAN first, so the limit refuses
//!   before a single delete. Without it there is no separate count: a SCAN pass over the whole
//!   keyspace is the dominant cost of a flush (about 0.9 s of server time per million keys on
//!   Redis 7.0), so the deleting pass is the only one.
//! - Delete with SCAN MATCH + pipelined UNLINK. Each round trip carries the UNLINKs for the keys
//!   of the previous SCAN *and* the next SCAN, so the client waits once per SCAN page. Only one
//!   page of keys is ever held, so memory stays flat whatever the key count.
//! - With a backup, every page is DUMPed (with its PTTL) before it is unlinked, the replies read
//!   one at a time and streamed to the backup file (`backup` module: format and checksum), and
//!   the file is pushed to the kernel before the UNLINK goes out: a key is never deleted before
//!   its backup is written. On any failure the segment is still sealed (checksum, fsync), so
//!   `restore` works on what was backed up.
//! - A key matching several patterns is counted, backed up and deleted once (client-side glob).
//! - A cluster node (`INFO cluster`) hands all of this to `cluster`, which does it on every
//!   primary at once (SCAN on one node would miss the other nodes' keys).
//! - Before the first deletion of each pattern, the connection's user must be allowed every
//!   command the flush and its restore need (`permissions`), so a user that may delete but not
//!   restore is refused with nothing deleted.
//! - A backup segment's trailer says whether the flush got through: only then does the restore
//!   delete matching keys the backup does not hold (written after the flush); after a flush that
//!   stopped they may be keys it never reached.

mod backup;
mod cluster;
mod conn;
mod error;
mod permissions;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use redis::Value;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use backup::{BackupWriter, Item, OpenError, Problem, Reader, Record};
pub use cluster::{NodeReport, key_slot, node_url, primaries as cluster_primaries, url_host};
use conn::{Link, from_value, glob_match, info_field, parse_scan, push_scan};
pub use error::FlushError;

/// Keys per UNLINK command and per DUMP pipeline. 1000 keys is ~30 KB of command for typical
/// key names: large enough that the per-call cost vanishes (the server spends its time freeing
/// keys, not parsing), small enough that one UNLINK blocks the server well under a millisecond
/// and that a page of DUMP replies is read and written without a large buffer.
pub const DEFAULT_BATCH: usize = 1000;

/// SCAN COUNT: hash slots the server visits per SCAN call. Each call costs the server roughly
/// 1 µs per slot (well under 10 ms even at this size), and a larger count means fewer round trips
/// through a keyspace where only a few keys match.
pub const SCAN_COUNT: usize = 10_000;

/// RESTOREs per pipeline, and the most DUMP payload bytes held before one is sent.
const RESTORE_BATCH: usize = 1000;
const RESTORE_BYTES: usize = 8 << 20;

/// What to flush. `url` is the rendered URL and may carry a password: it is shown only redacted.
#[derive(Clone)]
pub struct FlushSpec {
    pub url: String,
    pub patterns: Vec<String>,
    pub max_keys: Option<u64>,
    pub backup: bool,
    /// Keys per UNLINK / DUMP pipeline; 0 means `DEFAULT_BATCH`.
    pub batch: usize,
}

impl std::fmt::Debug for FlushSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlushSpec")
            .field("url", &redact(&self.url))
            .field("patterns", &self.patterns)
            .field("max_keys", &self.max_keys)
            .field("backup", &self.backup)
            .field("batch", &self.batch)
            .finish()
    }
}

/// A read-only look at what a flush would delete.
#[derive(Serialize, Debug, Clone)]
pub struct Preview {
    pub matched: u64,
    pub samples: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FlushReport {
    /// The server's URL with the password replaced by `***`.
    pub server: String,
    pub patterns: Vec<String>,
    /// Keys the deleting SCAN found (and tried to delete).
    pub matched: u64,
    /// Keys UNLINK actually removed (a key that expired or was deleted meanwhile is not counted).
    pub deleted: u64,
    pub backed_up: u64,
    /// Bytes this flush added to the backup file.
    pub backup_bytes: u64,
    pub backup_file: Option<PathBuf>,
    /// SHA-256 (hex) of the backup segment this flush wrote.
    pub checksum: Option<String>,
    /// On a cluster, what each primary matched and deleted (the totals above are their sums).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeReport>,
    pub duration_ms: u64,
    /// From INFO stats, read at the end (server totals; the backup's DUMP and PTTL count as hits).
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    /// Matching keys before the flush: the read-only count made for `max_keys` when it is set,
    /// otherwise the deleting SCAN's tally (`matched`). A separate count pass costs a full
    /// keyspace scan, the biggest cost of a flush, so it is made only when needed.
    pub count_before: u64,
    /// `count_before - deleted`: what the flush left of the keys it counted. Not a rescan (that
    /// would cost another full keyspace scan); keys the application re-cached since are not in
    /// it. Call `preview` for a live count.
    pub count_after: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct RestoreReport {
    /// Keys written back from the backup, each with the value it had before the flush.
    pub restored: u64,
    /// Of those, keys that existed again (the application re-cached them after the flush, from
    /// the changed state) and were overwritten with the value from the backup.
    #[serde(default)]
    pub replaced: u64,
    /// Journals of older versions only: keys that existed again and were left alone.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub already_present: u64,
    /// Keys whose TTL ran out since they were backed up: not restored (and, if the application
    /// wrote them again, deleted as keys written after the flush).
    pub expired: u64,
    /// Keys matching the flush's patterns that are not in the backup: written after the flush
    /// (from the changed state), deleted so the cache is as it was before the change.
    #[serde(default)]
    pub deleted_new: u64,
    /// Whether keys written after the flush were looked for: false for a journal of an older
    /// version (it recorded no patterns with the restore) or a torn backup.
    #[serde(default)]
    pub swept: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Count the keys matching `spec.patterns` and return up to `samples` of them. Read-only.
pub fn preview(spec: &FlushSpec, samples: usize) -> Result<Preview, FlushError> {
    check_spec(spec)?;
    let mut link = Link::open(&spec.url, false)?;
    if link.cluster {
        return cluster::preview(spec, link, samples);
    }
    let mut picked = Vec::new();
    let matched = count_matching(&mut link, &spec.patterns, &mut |key| {
        if picked.len() < samples {
            picked.push(String::from_utf8_lossy(key).into_owned());
        }
    })?;
    Ok(Preview { matched, samples: picked })
}

/// Delete the keys matching `spec.patterns`, backing them up to `backup_file` first when
/// `spec.backup`. `progress` is called with the number deleted so far after every UNLINK batch.
/// A backup file that already holds complete backups is appended to (a re-run keeps the first
/// run's keys); one that holds anything else is refused.
pub fn flush(
    spec: &FlushSpec,
    backup_file: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<FlushReport, FlushError> {
    flush_until(spec, backup_file, progress, &crate::signals::NEVER)
}

/// [`flush`], stopping between batches once `stop` is set (a Ctrl-C or SIGTERM): never with a
/// batch half done, so every key deleted is in the backup. A stop is `FlushError::Interrupted`.
pub fn flush_until(
    spec: &FlushSpec,
    backup_file: &Path,
    progress: &mut dyn FnMut(u64),
    stop: &AtomicBool,
) -> Result<FlushReport, FlushError> {
    check_spec(spec)?;
    let started = Instant::now();
    let mut link = Link::open(&spec.url, true)?;
    if link.cluster {
        return cluster::flush(spec, link, backup_file, started, progress, stop);
    }
    let counted = spec
        .max_keys
        .map(|max_keys| refuse_too_many(&mut link, &spec.patterns, max_keys))
        .transpose()?;
    let size_before = std::fs::metadata(backup_file).map(|m| m.len()).unwrap_or(0);
    let writer = spec.backup.then(|| open_backup(backup_file)).transpose()?;
    let batch = if spec.batch == 0 { DEFAULT_BATCH } else { spec.batch };
    let by_slot = false;
    let mut run = Deletion { link, writer, batch, by_slot, matched: 0, deleted: 0, progress, stop };
    let outcome = run.all_patterns(&spec.patterns);
    let Deletion { mut link, writer, matched, deleted, .. } = run;
    let sealed = writer.map(|w| seal(w, deleted, outcome.is_ok())).transpose();
    outcome?;
    let sealed = sealed?;
    let count_before = counted.unwrap_or(matched);
    let stats = link.info("stats").map_err(|e| link.ctx("INFO").classify(&e))?;
    let stat = |name| info_field(&stats, name).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(FlushReport {
        server: link.server.clone(),
        patterns: spec.patterns.clone(),
        matched,
        deleted,
        backed_up: sealed.as_ref().map_or(0, |s| s.records),
        backup_bytes: sealed.as_ref().map_or(0, |s| s.size.saturating_sub(size_before)),
        backup_file: spec.backup.then(|| backup_file.to_path_buf()),
        checksum: sealed.map(|s| s.checksum),
        nodes: Vec::new(),
        duration_ms: started.elapsed().as_millis() as u64,
        keyspace_hits: stat("keyspace_hits"),
        keyspace_misses: stat("keyspace_misses"),
        count_before,
        count_after: count_before.saturating_sub(deleted),
    })
}

/// Count the matching keys, read-only, and refuse when there are more than `max_keys`.
fn refuse_too_many(link: &mut Link, patterns: &[String], max_keys: u64) -> Result<u64, FlushError> {
    let count = count_matching(link, patterns, &mut |_| {})?;
    if count > max_keys {
        return Err(FlushError::TooManyKeys {
            server: link.server.clone(),
            patterns: patterns.to_vec(),
            matched: count,
            max_keys,
        });
    }
    Ok(count)
}

/// Leave the keys matching `patterns` as they were before the flush: every key in `backup_file`
/// is written back with the TTL it had left, replacing whatever is there now (the first record of
/// a key wins: a re-run flush appends what the change rendered since), then every key matching
/// `patterns` that is not in the backup is deleted, since it was written after the flush.
/// `progress` gets the number restored so far. A truncated file (the flush died mid-way) has its
/// intact records restored and then gives `FlushError::BackupIncomplete`, which carries the
/// counts; no key is deleted then, since keys the flush never reached cannot be told from new
/// ones. A corrupt file is refused before anything is restored.
pub fn restore(
    url: &str,
    backup_file: &Path,
    patterns: &[String],
    progress: &mut dyn FnMut(u64),
) -> Result<RestoreReport, FlushError> {
    let unreadable = |e: std::io::Error| FlushError::BackupUnreadable {
        path: backup_file.to_path_buf(),
        detail: e.to_string(),
    };
    let mut file = File::open(backup_file).map_err(unreadable)?;
    let len = file.metadata().map_err(unreadable)?.len();
    let scan = backup::scan_file(&mut file, len).map_err(unreadable)?;
    if let Some(Problem::Corrupt { .. }) = &scan.problem {
        let detail = scan.problem.as_ref().map(ToString::to_string).unwrap_or_default();
        return Err(FlushError::BackupCorrupt { path: backup_file.to_path_buf(), detail });
    }
    let mut link = Link::open(url, true)?;
    let router = link.cluster.then(|| cluster::Router::new(url, &mut link)).transpose()?;
    file.seek(SeekFrom::Start(0)).map_err(unreadable)?;
    let reader = Reader::new(BufReader::with_capacity(1 << 20, file), len);
    let mut run = Restoring {
        link,
        router,
        path: backup_file,
        report: RestoreReport::default(),
        progress,
        met: HashMap::new(),
    };
    run.all_records(reader)?;
    match scan.problem {
        Some(problem) => Err(FlushError::BackupIncomplete {
            path: backup_file.to_path_buf(),
            detail: problem.to_string(),
            report: run.report,
        }),
        // Matching keys not in the backup were written after the flush only if the flush got
        // through: after one that stopped, they may be keys it never reached, left as they are.
        None if !scan.last_complete => Ok(run.report),
        None => {
            run.sweep(patterns)?;
            Ok(run.report)
        }
    }
}

pub use crate::secret::redact;

/// A key's identity in the restore's memory: 16 bytes of its SHA-256, whatever its length.
pub(super) fn key_digest(key: &[u8]) -> [u8; 16] {
    let full = sha2::Sha256::digest(key);
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// Whether a key pattern matches every key: one made only of `*` and `?`, however many (`*`,
/// `**`, `*?*`; `?` alone matches every one-letter key, and no flush means that). Checked on the
/// pattern as used, wherever it came from.
pub fn matches_every_key(pattern: &str) -> bool {
    !pattern.is_empty() && pattern.bytes().all(|b| b == b'*' || b == b'?')
}

fn check_spec(spec: &FlushSpec) -> Result<(), FlushError> {
    if spec.patterns.is_empty() || spec.patterns.iter().any(String::is_empty) {
        return Err(FlushError::InvalidSpec {
            detail: format!(
                "patterns {:?}: expected at least one non-empty key pattern",
                spec.patterns
            ),
        });
    }
    if let Some(all) = spec.patterns.iter().find(|p| matches_every_key(p)) {
        return Err(FlushError::InvalidSpec {
            detail: format!(
                "pattern {all:?} matches every key; expected a pattern that names the keys that matter, such as \"page:upload:*\" (clearing every key is FLUSHDB's job, and runbook never does it)"
            ),
        });
    }
    Ok(())
}

pub(super) fn open_backup(path: &Path) -> Result<BackupWriter, FlushError> {
    BackupWriter::open(path).map_err(|e| match e {
        OpenError::Io(e) => {
            FlushError::BackupIo { path: path.to_path_buf(), deleted: 0, detail: e.to_string() }
        }
        OpenError::NotAppendable(detail) => {
            FlushError::BackupInUse { path: path.to_path_buf(), detail }
        }
    })
}

/// What sealing a backup segment left: its checksum, the file's new size, its record count.
pub(super) struct Sealed {
    checksum: String,
    size: u64,
    records: u64,
}

/// Write the trailer, saying whether the flush got through, and fsync.
pub(super) fn seal(
    writer: BackupWriter,
    deleted: u64,
    complete: bool,
) -> Result<Sealed, FlushError> {
    let path = writer.path().to_path_buf();
    let records = writer.records();
    let (checksum, size) = writer.finish(complete).map_err(|e| FlushError::BackupIo {
        path,
        deleted,
        detail: e.to_string(),
    })?;
    Ok(Sealed { checksum, size, records })
}

/// Does `key` match one of the patterns before `index`? Then that pattern's pass owns it.
fn claimed_earlier(patterns: &[String], index: usize, key: &[u8]) -> bool {
    patterns[..index].iter().any(|p| glob_match(p.as_bytes(), key))
}

/// Count the keys matching any of `patterns` (each once), calling `on_key` for each.
pub(super) fn count_matching(
    link: &mut Link,
    patterns: &[String],
    on_key: &mut dyn FnMut(&[u8]),
) -> Result<u64, FlushError> {
    let mut count = 0;
    for (index, pattern) in patterns.iter().enumerate() {
        let mut cursor = 0;
        loop {
            push_scan(link.begin(), cursor, pattern, SCAN_COUNT);
            let reply = link.send().and_then(|_| link.recv()).and_then(parse_scan);
            let (next, keys) = reply.map_err(|e| link.ctx("SCAN").classify(&e))?;
            for key in keys.iter().filter(|k| !claimed_earlier(patterns, index, k)) {
                count += 1;
                on_key(key);
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    }
    Ok(count)
}

/// Where a deleting pass writes its backup records: the file itself (one server), or a node's
/// buffer that goes into the shared file under a lock (a cluster's primaries, in parallel).
/// `sync_to_os` returns only once every record written so far is in the kernel.
pub(super) trait Sink {
    fn write(&mut self, key: &[u8], pttl: i64, at: u64, value: &[u8]) -> std::io::Result<()>;
    fn sync_to_os(&mut self) -> std::io::Result<()>;
    fn path(&self) -> &Path;
}

impl Sink for BackupWriter {
    fn write(&mut self, key: &[u8], pttl: i64, at: u64, value: &[u8]) -> std::io::Result<()> {
        BackupWriter::write(self, key, pttl, at, value)
    }
    fn sync_to_os(&mut self) -> std::io::Result<()> {
        BackupWriter::sync_to_os(self)
    }
    fn path(&self) -> &Path {
        BackupWriter::path(self)
    }
}

/// The deleting pass: SCAN pages, backed up then unlinked.
pub(super) struct Deletion<'a, W: Sink = BackupWriter> {
    pub link: Link,
    pub writer: Option<W>,
    pub batch: usize,
    /// A cluster node: one UNLINK never spans two hash slots (CROSSSLOT).
    pub by_slot: bool,
    pub matched: u64,
    pub deleted: u64,
    pub progress: &'a mut dyn FnMut(u64),
    pub stop: &'a AtomicBool,
}

impl<W: Sink> Deletion<'_, W> {
    pub fn all_patterns(&mut self, patterns: &[String]) -> Result<(), FlushError> {
        for index in 0..patterns.len() {
            self.one_pattern(patterns, index)?;
        }
        Ok(())
    }

    /// Each round trip sends the UNLINKs for the last page and the SCAN for the next one.
    fn one_pattern(&mut self, patterns: &[String], index: usize) -> Result<(), FlushError> {
        let mut page: Vec<Vec<u8>> = Vec::new();
        let mut cursor = Some(0);
        let mut checked = false;
        while cursor.is_some() || !page.is_empty() {
            self.stop_if_asked()?;
            if let Some(key) = page.first().filter(|_| !checked) {
                let backup = self.writer.is_some();
                permissions::check(&mut self.link, key, backup, self.deleted)?;
                checked = true;
            }
            self.back_up(&page)?;
            let chunks = cluster::unlink_chunks(&mut page, self.batch, self.by_slot);
            let buf = self.link.begin();
            for chunk in &chunks {
                redis::cmd("UNLINK").arg(&page[chunk.clone()]).write_packed_command(buf);
            }
            if let Some(cursor) = cursor {
                push_scan(buf, cursor, &patterns[index], SCAN_COUNT);
            }
            self.link.send().map_err(|e| self.fail("UNLINK", &e))?;
            for _ in &chunks {
                let reply = self.link.recv().and_then(from_value::<u64>);
                self.deleted += reply.map_err(|e| self.fail("UNLINK", &e))?;
                (self.progress)(self.deleted);
            }
            page.clear();
            if cursor.is_some() {
                let reply = self.link.recv().and_then(parse_scan);
                let (next, keys) = reply.map_err(|e| self.fail("SCAN", &e))?;
                page = keys.into_iter().filter(|k| !claimed_earlier(patterns, index, k)).collect();
                self.matched += page.len() as u64;
                cursor = (next != 0).then_some(next);
            }
        }
        Ok(())
    }

    /// DUMP and PTTL every key of `keys`, streaming each reply into the backup, then push the
    /// backup to the kernel. Keys gone since the SCAN (nil DUMP) are skipped.
    fn back_up(&mut self, keys: &[Vec<u8>]) -> Result<(), FlushError> {
        if self.writer.is_none() || keys.is_empty() {
            return Ok(());
        }
        for chunk in keys.chunks(self.batch) {
            let buf = self.link.begin();
            for key in chunk {
                redis::cmd("DUMP").arg(key).write_packed_command(buf);
                redis::cmd("PTTL").arg(key).write_packed_command(buf);
            }
            let dumped_at_ms = backup::now_ms();
            self.link.send().map_err(|e| self.fail("DUMP", &e))?;
            for key in chunk {
                let dump = self.link.recv().map_err(|e| self.fail("DUMP", &e))?;
                let pttl = self.link.recv().and_then(from_value::<i64>);
                let pttl = pttl.map_err(|e| self.fail("PTTL", &e))?;
                let Value::BulkString(value) = dump else { continue };
                if pttl == -2 {
                    continue;
                }
                self.write_record(key, pttl, dumped_at_ms, &value)?;
            }
        }
        let deleted = self.deleted;
        let writer = self.writer.as_mut().expect("checked above");
        writer.sync_to_os().map_err(|e| backup_io(writer.path(), deleted, e))
    }

    fn write_record(
        &mut self,
        key: &[u8],
        pttl: i64,
        dumped_at_ms: u64,
        value: &[u8],
    ) -> Result<(), FlushError> {
        let deleted = self.deleted;
        let Some(writer) = self.writer.as_mut() else { return Ok(()) };
        writer
            .write(key, pttl.max(-1), dumped_at_ms, value)
            .map_err(|e| backup_io(writer.path(), deleted, e))
    }

    /// Between batches: every UNLINK sent so far has its answer, and the page at hand is neither
    /// backed up nor deleted yet, so stopping here leaves every deleted key in the backup.
    fn stop_if_asked(&self) -> Result<(), FlushError> {
        if !self.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        Err(FlushError::Interrupted {
            server: self.link.server.clone(),
            deleted: self.deleted,
            matched: self.matched,
            backup_file: self.writer.as_ref().map(|w| w.path().to_path_buf()),
        })
    }

    fn fail(&self, command: &'static str, err: &redis::RedisError) -> FlushError {
        let mut ctx = self.link.ctx(command);
        ctx.deleted = Some(self.deleted);
        ctx.backup_file = self.writer.as_ref().map(|w| w.path());
        ctx.classify(err)
    }
}

fn backup_io(path: &Path, deleted: u64, err: std::io::Error) -> FlushError {
    FlushError::BackupIo { path: path.to_path_buf(), deleted, detail: err.to_string() }
}

/// The restoring pass: records read from the backup, RESTOREd in pipelined batches, then the
/// sweep of keys written after the flush.
struct Restoring<'a> {
    link: Link,
    /// On a cluster: sends each record to the primary that owns its slot now.
    router: Option<cluster::Router>,
    path: &'a Path,
    report: RestoreReport,
    progress: &'a mut dyn FnMut(u64),
    /// Every key met in the backup, and whether it was restored (an expired one was not, so the
    /// sweep deletes what the application wrote under its name since).
    met: HashMap<[u8; 16], bool>,
}

impl Restoring<'_> {
    fn all_records<R: std::io::Read>(&mut self, mut reader: Reader<R>) -> Result<(), FlushError> {
        let mut batch: Vec<Record> = Vec::new();
        let mut bytes = 0;
        loop {
            let item = reader.next_item(true).map_err(|e| FlushError::BackupUnreadable {
                path: self.path.to_path_buf(),
                detail: e.to_string(),
            })?;
            match item {
                Item::Record(record) => {
                    bytes += record.value.len() + record.key.len();
                    batch.push(record);
                    if batch.len() >= RESTORE_BATCH || bytes >= RESTORE_BYTES {
                        self.restore_batch(&batch)?;
                        batch.clear();
                        bytes = 0;
                    }
                }
                Item::SegmentEnd { .. } => {}
                Item::Eof | Item::Problem(Problem::Truncated { .. }) => break,
                Item::Problem(problem) => {
                    // The file changed since it was checked: stop, keeping what is restored.
                    self.restore_batch(&batch)?;
                    return Err(FlushError::BackupCorrupt {
                        path: self.path.to_path_buf(),
                        detail: problem.to_string(),
                    });
                }
            }
        }
        self.restore_batch(&batch)
    }

    /// The records to restore, each with its TTL left: a key met before is skipped, an expired
    /// one counted and remembered as not restored.
    fn pick<'r>(&mut self, batch: &'r [Record]) -> Vec<(&'r Record, u64)> {
        let now = backup::now_ms();
        let mut todo = Vec::with_capacity(batch.len());
        for record in batch {
            let digest = key_digest(&record.key);
            if self.met.contains_key(&digest) {
                continue;
            }
            let ttl = match record.remaining_ttl_ms(now) {
                Some(0) => {
                    self.met.insert(digest, false);
                    self.report.expired += 1;
                    continue;
                }
                Some(ms) => ms,
                None => 0,
            };
            self.met.insert(digest, true);
            todo.push((record, ttl));
        }
        todo
    }

    /// Each record as EXISTS (to count what is replaced) and RESTORE ... REPLACE, pipelined.
    fn restore_batch(&mut self, batch: &[Record]) -> Result<(), FlushError> {
        let todo = self.pick(batch);
        if let Some(router) = self.router.as_mut() {
            router.restore_batch(todo, &mut self.report, self.path)?;
            (self.progress)(self.report.restored);
            return Ok(());
        }
        let buf = self.link.begin();
        let mut sent = Vec::with_capacity(todo.len());
        for (record, ttl) in todo {
            redis::cmd("EXISTS").arg(&record.key).write_packed_command(buf);
            redis::cmd("RESTORE")
                .arg(&record.key)
                .arg(ttl)
                .arg(&record.value)
                .arg("REPLACE")
                .write_packed_command(buf);
            sent.push(record);
        }
        if sent.is_empty() {
            return Ok(());
        }
        self.link.send().map_err(|e| self.fail(&e))?;
        for record in sent {
            let existed = self.link.recv_raw().map_err(|e| self.fail(&e))?;
            match self.link.recv_raw().map_err(|e| self.fail(&e))? {
                Value::ServerError(err) => return Err(self.refused(record, err.into())),
                _ => self.report.restored += 1,
            }
            if existed == Value::Int(1) {
                self.report.replaced += 1;
            }
        }
        (self.progress)(self.report.restored);
        Ok(())
    }

    /// Delete every key matching `patterns` that the backup did not restore: the application
    /// wrote it after the flush, from the state the rollback undoes.
    fn sweep(&mut self, patterns: &[String]) -> Result<(), FlushError> {
        if patterns.is_empty() {
            return Ok(());
        }
        if let Some(router) = self.router.as_mut() {
            router.sweep(patterns, &self.met, &mut self.report, self.path)?;
            self.report.swept = true;
            return Ok(());
        }
        for pattern in patterns {
            let mut cursor = 0;
            loop {
                push_scan(self.link.begin(), cursor, pattern, SCAN_COUNT);
                let reply = self.link.send().and_then(|_| self.link.recv()).and_then(parse_scan);
                let (next, keys) = reply.map_err(|e| self.fail(&e))?;
                let new: Vec<Vec<u8>> = keys
                    .into_iter()
                    .filter(|k| self.met.get(&key_digest(k)) != Some(&true))
                    .collect();
                self.unlink(&new)?;
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        self.report.swept = true;
        Ok(())
    }

    fn unlink(&mut self, keys: &[Vec<u8>]) -> Result<(), FlushError> {
        if keys.is_empty() {
            return Ok(());
        }
        let buf = self.link.begin();
        for chunk in keys.chunks(RESTORE_BATCH) {
            redis::cmd("UNLINK").arg(chunk).write_packed_command(buf);
        }
        self.link.send().map_err(|e| self.fail(&e))?;
        for _ in keys.chunks(RESTORE_BATCH) {
            let reply = self.link.recv().and_then(from_value::<u64>);
            self.report.deleted_new += reply.map_err(|e| self.fail(&e))?;
        }
        Ok(())
    }

    fn fail(&self, err: &redis::RedisError) -> FlushError {
        match self.link.ctx("RESTORE").classify(err) {
            FlushError::Unreachable { server, detail } => FlushError::RestoreInterrupted {
                server,
                path: self.path.to_path_buf(),
                restored: self.report.restored,
                detail,
            },
            other => other,
        }
    }

    fn refused(&self, record: &Record, err: redis::RedisError) -> FlushError {
        match self.link.ctx("RESTORE").classify(&err) {
            FlushError::Redis { server, detail, .. } => FlushError::RestoreRefused {
                server,
                key: String::from_utf8_lossy(&record.key).into_owned(),
                restored: self.report.restored,
                detail,
            },
            other => other,
        }
    }
}
