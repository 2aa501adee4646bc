//! Flush, preview and restore on a Redis Cluster, found from the server (`INFO cluster` says
//! `cluster_enabled:1`), with no key in the runbook to say so.
//!
//! Why per-node connections routed here rather than the redis crate's `ClusterConnection`: a
//! flush needs a SCAN on *every* primary (a cluster connection sends SCAN to one node of its
//! choosing), a pipeline per node whose DUMP replies stream into the backup as they arrive, and
//! the nodes worked in parallel; the single-server flush (`Deletion`, `Link`) already does the
//! per-node part, so each primary gets one of those on its own thread. The restore sends each key
//! to the primary owning its slot now, found from `CLUSTER SLOTS` and corrected by the MOVED and
//! ASK answers of a cluster that was resharded or failed over since the flush.
//!
//! - The layout comes from `CLUSTER SLOTS` (every Redis since 3.0 answers it; `CLUSTER SHARDS`
//!   only since 7.0), and must serve all 16384 slots before anything is deleted.
//! - `max_keys` is checked against the count over all primaries before the first delete.
//! - Every node's deleting pass writes into the one backup file: its DUMPed records are held per
//!   node and appended under a lock, then pushed to the kernel, before that node's UNLINK goes
//!   out, so the promise "backed up before deleted" holds node by node.
//! - An UNLINK never spans two hash slots (a cluster answers CROSSSLOT).
//! - A primary failing mid-flush does not stop the others; the error then says what each primary
//!   deleted, and everything deleted is in the backup.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::Value;
use serde::{Deserialize, Serialize};

use super::backup::{BackupWriter, Record};
use super::conn::{Link, info_field, parse_scan, push_scan};
use super::{
    Deletion, FlushError, FlushReport, FlushSpec, Preview, RestoreReport, Sink, count_matching,
    key_digest, open_backup, redact, seal,
};

pub const SLOTS: usize = 16384;

/// Redirections followed for one batch of a restore before giving up (a cluster that keeps
/// moving the same slots is not one to restore into blind).
const MAX_REDIRECTS: usize = 5;

/// One primary and the slots it serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Primary {
    pub host: String,
    pub port: u16,
    pub slots: Vec<(u16, u16)>,
}

/// What one primary matched and deleted, as the flush's report lists it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct NodeReport {
    pub server: String,
    pub matched: u64,
    pub deleted: u64,
}

/// How one primary's part of a flush ended.
#[derive(Debug)]
pub struct NodeRun {
    pub server: String,
    pub matched: u64,
    pub deleted: u64,
    /// Why it stopped early, in words; `None` when it finished.
    pub failure: Option<String>,
    hits: u64,
    misses: u64,
}

/// The hash slot of a key: CRC16 (XMODEM) of the key, or of its `{hash tag}`, modulo 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        rest.iter().position(|&b| b == b'}').filter(|&len| len > 0).map(|len| &rest[..len])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS as u16
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= (byte as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// The UNLINK commands for a page: `batch` keys each, and on a cluster node also one hash slot
/// each (the page is sorted by slot so that keys of a slot go together).
pub fn unlink_chunks(page: &mut [Vec<u8>], batch: usize, by_slot: bool) -> Vec<Range<usize>> {
    if !by_slot {
        return (0..page.len())
            .step_by(batch.max(1))
            .map(|s| s..(s + batch).min(page.len()))
            .collect();
    }
    page.sort_by_cached_key(|k| key_slot(k));
    let mut chunks = Vec::new();
    let mut start = 0;
    for i in 1..=page.len() {
        let boundary = i == page.len() || key_slot(&page[i]) != key_slot(&page[start]);
        if boundary || i - start == batch {
            chunks.push(start..i);
            start = i;
        }
    }
    chunks
}

/// The primaries of the cluster `con` belongs to, from `CLUSTER SLOTS`. A node announcing no
/// address (an empty IP) is the one asked, reached as `seed_host`.
pub fn primaries(con: &mut redis::Connection, seed_host: &str) -> redis::RedisResult<Vec<Primary>> {
    let reply: Value = redis::cmd("CLUSTER").arg("SLOTS").query(con)?;
    let Value::Array(ranges) = reply else { return Ok(Vec::new()) };
    let mut found: Vec<Primary> = Vec::new();
    for range in ranges {
        let Some((start, end, host, port)) = parse_range(range) else { continue };
        let host = if host.is_empty() || host == "?" { seed_host.to_string() } else { host };
        match found.iter_mut().find(|p| p.host == host && p.port == port) {
            Some(p) => p.slots.push((start, end)),
            None => found.push(Primary { host, port, slots: vec![(start, end)] }),
        }
    }
    Ok(found)
}

/// `[start, end, [ip, port, id, ...], replicas...]`: the range and its primary.
fn parse_range(range: Value) -> Option<(u16, u16, String, u16)> {
    let Value::Array(items) = range else { return None };
    let mut items = items.into_iter();
    let start: u16 = redis::from_redis_value(items.next()?).ok()?;
    let end: u16 = redis::from_redis_value(items.next()?).ok()?;
    let Value::Array(node) = items.next()? else { return None };
    let mut node = node.into_iter();
    let host: String = redis::from_redis_value(node.next()?).ok()?;
    let port: u16 = redis::from_redis_value(node.next()?).ok()?;
    Some((start, end, host, port))
}

/// Slots no primary serves, as ranges (`0-99, 5000`); empty when the cluster is whole.
fn uncovered(primaries: &[Primary]) -> String {
    let mut served = vec![false; SLOTS];
    for (start, end) in primaries.iter().flat_map(|p| &p.slots) {
        let end = (*end as usize).min(SLOTS - 1);
        served.iter_mut().take(end + 1).skip(*start as usize).for_each(|s| *s = true);
    }
    let mut gaps = Vec::new();
    let mut slot = 0;
    while slot < SLOTS {
        if served[slot] {
            slot += 1;
            continue;
        }
        let start = slot;
        while slot < SLOTS && !served[slot] {
            slot += 1;
        }
        gaps.push(if slot - 1 == start {
            start.to_string()
        } else {
            format!("{start}-{}", slot - 1)
        });
    }
    gaps.join(", ")
}

/// The seed URL with another node's host and port: same scheme, user, password, database and
/// TLS files.
pub fn node_url(seed: &str, host: &str, port: u16) -> String {
    let Some(start) = seed.find("://").map(|i| i + 3) else { return seed.to_string() };
    let rest = &seed[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let userinfo = rest[..end].rfind('@').map_or("", |at| &rest[..=at]);
    let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
    format!("{}{userinfo}{host}:{port}{}", &seed[..start], &rest[end..])
}

/// The host part of a URL (`127.0.0.1` of `redis://:pw@127.0.0.1:7000/0`).
pub fn url_host(url: &str) -> String {
    let rest = url.find("://").map_or(url, |i| &url[i + 3..]);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let hostport = authority.rfind('@').map_or(authority, |at| &authority[at + 1..]);
    if let Some(v6) = hostport.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default().to_string();
    }
    hostport.split(':').next().unwrap_or_default().to_string()
}

/// The cluster's primaries, every slot served, each with an open connection that is checked to
/// be a primary.
fn open_primaries(url: &str, seed: &mut Link) -> Result<Vec<Link>, FlushError> {
    let found = primaries(&mut seed.con, &url_host(url))
        .map_err(|e| seed.ctx("CLUSTER SLOTS").classify(&e))?;
    let gaps = uncovered(&found);
    if !gaps.is_empty() {
        let detail = format!("no primary serves slots {gaps} (CLUSTER SLOTS)");
        return Err(FlushError::ClusterDegraded { server: seed.server.clone(), detail });
    }
    found.iter().map(|p| Link::open(&node_url(url, &p.host, p.port), true)).collect()
}

fn cluster_name(seed: &Link, primaries: usize) -> String {
    format!("the cluster at {} ({primaries} primaries)", seed.server)
}

/// The preview over every primary: the total and a few keys.
pub fn preview(spec: &FlushSpec, mut seed: Link, samples: usize) -> Result<Preview, FlushError> {
    let mut links = open_primaries(&spec.url, &mut seed)?;
    let mut picked = Vec::new();
    let mut matched = 0;
    for link in &mut links {
        matched += count_matching(link, &spec.patterns, &mut |key| {
            if picked.len() < samples {
                picked.push(String::from_utf8_lossy(key).into_owned());
            }
        })?;
    }
    Ok(Preview { matched, samples: picked })
}

/// Count over all primaries at once, and refuse before any delete when over `max_keys`.
fn refuse_too_many(
    links: &mut [Link],
    patterns: &[String],
    max_keys: u64,
    server: &str,
) -> Result<u64, FlushError> {
    let counts: Vec<Result<u64, FlushError>> = std::thread::scope(|s| {
        let handles: Vec<_> = links
            .iter_mut()
            .map(|link| s.spawn(move || count_matching(link, patterns, &mut |_| {})))
            .collect();
        // A count that panicked is not a count of zero: refuse rather than under-count.
        let panicked = || FlushError::Redis {
            server: server.to_string(),
            command: "SCAN",
            deleted: 0,
            detail: "a counting thread panicked (a bug)".into(),
        };
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(panicked()))).collect()
    });
    let count = counts.into_iter().sum::<Result<u64, FlushError>>()?;
    if count > max_keys {
        return Err(FlushError::TooManyKeys {
            server: server.to_string(),
            patterns: patterns.to_vec(),
            matched: count,
            max_keys,
        });
    }
    Ok(count)
}

/// The flush on every primary in parallel, into one backup file.
pub fn flush(
    spec: &FlushSpec,
    mut seed: Link,
    backup_file: &Path,
    started: Instant,
    progress: &mut dyn FnMut(u64),
    stop: &AtomicBool,
) -> Result<FlushReport, FlushError> {
    let mut links = open_primaries(&spec.url, &mut seed)?;
    let server = cluster_name(&seed, links.len());
    let counted = spec
        .max_keys
        .map(|max| refuse_too_many(&mut links, &spec.patterns, max, &server))
        .transpose()?;
    let size_before = std::fs::metadata(backup_file).map(|m| m.len()).unwrap_or(0);
    let shared = spec.backup.then(|| open_backup(backup_file)).transpose()?.map(Mutex::new);
    let batch = if spec.batch == 0 { super::DEFAULT_BATCH } else { spec.batch };
    let job = Job { spec, shared: shared.as_ref(), batch, stop };
    let runs = run_nodes(links, &job, progress);
    let deleted: u64 = runs.iter().map(|r| r.deleted).sum();
    let failed = runs.iter().any(|r| r.failure.is_some());
    let writer = shared.map(|m| m.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner()));
    let sealed = writer.map(|w| seal(w, deleted, !failed)).transpose();
    if failed {
        let backup_file = spec.backup.then(|| backup_file.to_path_buf());
        if stop.load(Ordering::SeqCst) {
            let matched = runs.iter().map(|r| r.matched).sum();
            return Err(FlushError::Interrupted { server, deleted, matched, backup_file });
        }
        return Err(FlushError::ClusterPartial { nodes: runs, backup_file });
    }
    let sealed = sealed?;
    let matched = runs.iter().map(|r| r.matched).sum();
    let count_before = counted.unwrap_or(matched);
    Ok(FlushReport {
        server,
        patterns: spec.patterns.clone(),
        matched,
        deleted,
        backed_up: sealed.as_ref().map_or(0, |s| s.records),
        backup_bytes: sealed.as_ref().map_or(0, |s| s.size.saturating_sub(size_before)),
        backup_file: spec.backup.then(|| backup_file.to_path_buf()),
        checksum: sealed.map(|s| s.checksum),
        nodes: runs
            .iter()
            .map(|r| NodeReport {
                server: r.server.clone(),
                matched: r.matched,
                deleted: r.deleted,
            })
            .collect(),
        duration_ms: started.elapsed().as_millis() as u64,
        keyspace_hits: runs.iter().map(|r| r.hits).sum(),
        keyspace_misses: runs.iter().map(|r| r.misses).sum(),
        count_before,
        count_after: count_before.saturating_sub(deleted),
    })
}

/// One thread per primary; this thread reports the total deleted while they work.
fn run_nodes(links: Vec<Link>, job: &Job<'_>, progress: &mut dyn FnMut(u64)) -> Vec<NodeRun> {
    let done: Vec<AtomicU64> = links.iter().map(|_| AtomicU64::new(0)).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = links
            .into_iter()
            .zip(&done)
            .map(|(link, done)| s.spawn(move || flush_node(link, job, done)))
            .collect();
        // Finished nodes are noticed within 5 ms; the total is reported every 100 ms.
        let mut reported = Instant::now();
        while !handles.iter().all(|h| h.is_finished()) {
            if reported.elapsed() >= Duration::from_millis(100) {
                progress(done.iter().map(|d| d.load(Ordering::Relaxed)).sum());
                reported = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| panicked())).collect()
    })
}

fn panicked() -> NodeRun {
    NodeRun {
        server: "a primary".into(),
        matched: 0,
        deleted: 0,
        failure: Some("its worker panicked (a bug)".into()),
        hits: 0,
        misses: 0,
    }
}

/// What every primary's thread is given: the step, the shared backup, the batch, the stop flag.
struct Job<'a> {
    spec: &'a FlushSpec,
    shared: Option<&'a Mutex<BackupWriter>>,
    batch: usize,
    stop: &'a AtomicBool,
}

fn flush_node(link: Link, job: &Job<'_>, done: &AtomicU64) -> NodeRun {
    let server = link.server.clone();
    let writer = job.shared.map(NodeSink::new);
    let mut progress = |n: u64| done.store(n, Ordering::Relaxed);
    let mut run = Deletion {
        link,
        writer,
        batch: job.batch,
        by_slot: true,
        matched: 0,
        deleted: 0,
        progress: &mut progress,
        stop: job.stop,
    };
    let outcome = run.all_patterns(&job.spec.patterns);
    let Deletion { mut link, matched, deleted, .. } = run;
    let stats = outcome.and_then(|_| link.info("stats").map_err(|e| link.ctx("INFO").classify(&e)));
    let stat = |info: &str, name| info_field(info, name).and_then(|v| v.parse().ok()).unwrap_or(0);
    match stats {
        Ok(info) => NodeRun {
            server,
            matched,
            deleted,
            failure: None,
            hits: stat(&info, "keyspace_hits"),
            misses: stat(&info, "keyspace_misses"),
        },
        Err(e) => {
            NodeRun { server, matched, deleted, failure: Some(reason(e)), hits: 0, misses: 0 }
        }
    }
}

/// Why a primary stopped, short: the whole error repeats what the cluster-wide one says anyway.
fn reason(err: FlushError) -> String {
    match err {
        FlushError::ConnectionLost { detail, .. } => format!("the connection was lost ({detail})"),
        FlushError::ClusterMoved { detail, .. } => format!("the cluster redirected it ({detail})"),
        other => other.to_string(),
    }
}

/// Bytes of DUMP payload a node holds before it appends them to the shared file: a page of big
/// values must not be held whole (the single-server path streams them the same way).
const PENDING_BYTES: usize = 4 << 20;

/// A node's view of the shared backup: records are held (up to `PENDING_BYTES`) and appended to
/// the file under its lock; `sync_to_os` appends the rest and pushes them to the kernel.
struct NodeSink<'a> {
    shared: &'a Mutex<BackupWriter>,
    pending: Vec<Record>,
    pending_bytes: usize,
    path: PathBuf,
}

impl<'a> NodeSink<'a> {
    fn new(shared: &'a Mutex<BackupWriter>) -> NodeSink<'a> {
        let path = shared.lock().map(|w| w.path().to_path_buf()).unwrap_or_default();
        NodeSink { shared, pending: Vec::new(), pending_bytes: 0, path }
    }

    /// Append the held records to the shared file; with `sync`, push it to the kernel too.
    fn append(&mut self, sync: bool) -> std::io::Result<()> {
        let mut writer = self.shared.lock().map_err(|_| {
            std::io::Error::other("another primary's worker panicked while writing")
        })?;
        for r in self.pending.drain(..) {
            writer.write(&r.key, r.pttl_ms, r.dumped_at_ms, &r.value)?;
        }
        self.pending_bytes = 0;
        if sync { writer.sync_to_os() } else { Ok(()) }
    }
}

impl Sink for NodeSink<'_> {
    fn write(&mut self, key: &[u8], pttl: i64, at: u64, value: &[u8]) -> std::io::Result<()> {
        let record =
            Record { key: key.to_vec(), pttl_ms: pttl, dumped_at_ms: at, value: value.to_vec() };
        self.pending_bytes += record.key.len() + record.value.len();
        self.pending.push(record);
        if self.pending_bytes >= PENDING_BYTES {
            return self.append(false);
        }
        Ok(())
    }

    fn sync_to_os(&mut self) -> std::io::Result<()> {
        self.append(true)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

/// The text of `FlushError::ClusterPartial`: what each primary deleted and how it ended.
pub fn partial_text(nodes: &[NodeRun], backup_file: &Option<PathBuf>) -> String {
    let lines: Vec<String> = nodes
        .iter()
        .map(|n| match &n.failure {
            None => format!("{}: deleted {} keys, finished", n.server, n.deleted),
            Some(why) => format!("{}: deleted {} keys, then stopped: {why}", n.server, n.deleted),
        })
        .collect();
    let total: u64 = nodes.iter().map(|n| n.deleted).sum();
    let backup = match backup_file {
        Some(p) => format!("every one of them is in the backup at {}", p.display()),
        None => "no backup was taken (backup = false), so they cannot be restored".into(),
    };
    format!(
        "the flush did not finish on every primary of the cluster: [{}]; {total} keys deleted in all, {backup}; re-running the step deletes what is left once every primary answers (a retry is safe); `runbook rollback` restores them, to whichever primary owns each key by then",
        lines.join("; ")
    )
}

/// Sends each restored record to the primary owning its slot now.
pub struct Router {
    url: String,
    /// Slot -> index into `addrs`.
    owners: Vec<usize>,
    addrs: Vec<(String, u16)>,
    links: Vec<Option<Link>>,
}

/// One record on its way: where it goes, and whether it goes there after ASKING.
struct Pending<'r> {
    record: &'r Record,
    ttl: u64,
    target: usize,
    asking: bool,
}

impl Router {
    /// The layout now, from the node the URL names (any node of the cluster, even a replica).
    pub fn new(url: &str, seed: &mut Link) -> Result<Router, FlushError> {
        let found = primaries(&mut seed.con, &url_host(url))
            .map_err(|e| seed.ctx("CLUSTER SLOTS").classify(&e))?;
        let gaps = uncovered(&found);
        if !gaps.is_empty() {
            let detail = format!("no primary serves slots {gaps} (CLUSTER SLOTS)");
            return Err(FlushError::ClusterDegraded { server: seed.server.clone(), detail });
        }
        let mut router = Router {
            url: url.to_string(),
            owners: vec![0; SLOTS],
            addrs: Vec::new(),
            links: Vec::new(),
        };
        for p in found {
            let index = router.addr_index(&p.host, p.port);
            for (start, end) in p.slots {
                router.owners[start as usize..=end as usize].fill(index);
            }
        }
        Ok(router)
    }

    fn addr_index(&mut self, host: &str, port: u16) -> usize {
        if let Some(i) = self.addrs.iter().position(|(h, p)| h == host && *p == port) {
            return i;
        }
        self.addrs.push((host.to_string(), port));
        self.links.push(None);
        self.addrs.len() - 1
    }

    fn link(&mut self, index: usize) -> Result<&mut Link, FlushError> {
        if self.links[index].is_none() {
            let (host, port) = &self.addrs[index];
            self.links[index] = Some(Link::open(&node_url(&self.url, host, *port), true)?);
        }
        Ok(self.links[index].as_mut().expect("opened above"))
    }

    /// RESTORE ... REPLACE a batch (each record with its TTL left), EXISTS first to count what
    /// is replaced: one pipeline per primary, then the redirected records again, to where the
    /// cluster said they belong.
    pub fn restore_batch(
        &mut self,
        batch: Vec<(&Record, u64)>,
        report: &mut RestoreReport,
        path: &Path,
    ) -> Result<(), FlushError> {
        let mut todo: Vec<Pending<'_>> = batch
            .into_iter()
            .map(|(record, ttl)| {
                let target = self.owners[key_slot(&record.key) as usize];
                Pending { record, ttl, target, asking: false }
            })
            .collect();
        for _ in 0..=MAX_REDIRECTS {
            if todo.is_empty() {
                return Ok(());
            }
            todo = self.round(todo, report, path)?;
        }
        let server = redact(&crate::tls::without_files(&self.url)).into_owned();
        let detail = format!("the cluster redirected the same keys {MAX_REDIRECTS} times in a row");
        Err(FlushError::ClusterMoved { server, deleted: 0, detail })
    }

    /// Send every pending record to its node, read every reply; the redirected come back.
    fn round<'r>(
        &mut self,
        todo: Vec<Pending<'r>>,
        report: &mut RestoreReport,
        path: &Path,
    ) -> Result<Vec<Pending<'r>>, FlushError> {
        let mut by_node: BTreeMap<usize, Vec<Pending<'r>>> = BTreeMap::new();
        for p in todo {
            by_node.entry(p.target).or_default().push(p);
        }
        for (&node, group) in &by_node {
            let restored = report.restored;
            let link = self.link(node).map_err(|e| interrupted(e, path, restored))?;
            let buf = link.begin();
            for p in group {
                // ASKING holds for the one command after it.
                if p.asking {
                    redis::cmd("ASKING").write_packed_command(buf);
                }
                redis::cmd("EXISTS").arg(&p.record.key).write_packed_command(buf);
                if p.asking {
                    redis::cmd("ASKING").write_packed_command(buf);
                }
                redis::cmd("RESTORE")
                    .arg(&p.record.key)
                    .arg(p.ttl)
                    .arg(&p.record.value)
                    .arg("REPLACE")
                    .write_packed_command(buf);
            }
            link.send()
                .map_err(|e| interrupted(link.ctx("RESTORE").classify(&e), path, restored))?;
        }
        let mut again = Vec::new();
        for (node, group) in by_node {
            for p in group {
                if let Some(p) = self.reply(node, p, report, path)? {
                    again.push(p);
                }
            }
        }
        Ok(again)
    }

    /// Read one record's reply; a redirected record is returned with its new target.
    fn reply<'r>(
        &mut self,
        node: usize,
        mut p: Pending<'r>,
        report: &mut RestoreReport,
        path: &Path,
    ) -> Result<Option<Pending<'r>>, FlushError> {
        let restored = report.restored;
        let link = self.links[node].as_mut().expect("sent on it");
        let lost = |link: &Link, e: &redis::RedisError| {
            interrupted(link.ctx("RESTORE").classify(e), path, restored)
        };
        let mut next = || {
            if p.asking {
                link.recv_raw()?;
            }
            link.recv_raw()
        };
        let (existed, restore) = (next(), next());
        let (existed, restore) =
            (existed.map_err(|e| lost(link, &e))?, restore.map_err(|e| lost(link, &e))?);
        let err = match restore {
            Value::ServerError(err) => err,
            _ => {
                report.restored += 1;
                report.replaced += u64::from(existed == Value::Int(1));
                return Ok(None);
            }
        };
        let redirect = err.details().and_then(parse_redirect);
        match (err.code(), redirect) {
            ("MOVED", Some((slot, host, port))) => {
                p.target = self.addr_index(&host, port);
                self.owners[slot as usize] = p.target;
                p.asking = false;
                Ok(Some(p))
            }
            ("ASK", Some((_, host, port))) => {
                p.target = self.addr_index(&host, port);
                p.asking = true;
                Ok(Some(p))
            }
            _ => {
                let link = self.links[node].as_mut().expect("sent on it");
                let server = link.server.clone();
                Err(FlushError::RestoreRefused {
                    server,
                    key: String::from_utf8_lossy(&p.record.key).into_owned(),
                    restored,
                    detail: link.ctx("RESTORE").scrub(&format!(
                        "{} {}",
                        err.code(),
                        err.details().unwrap_or("")
                    )),
                })
            }
        }
    }
}

impl Router {
    /// Delete, on every primary, the keys matching `patterns` that the restore did not write
    /// (`met` says which it did): the application wrote them after the flush.
    pub fn sweep(
        &mut self,
        patterns: &[String],
        met: &HashMap<[u8; 16], bool>,
        report: &mut RestoreReport,
        path: &Path,
    ) -> Result<(), FlushError> {
        let mut primaries = self.owners.clone();
        primaries.sort_unstable();
        primaries.dedup();
        for node in primaries {
            let restored = report.restored;
            let link = self.link(node).map_err(|e| interrupted(e, path, restored))?;
            let lost = |link: &Link, e: &redis::RedisError| {
                interrupted(link.ctx("UNLINK").classify(e), path, restored)
            };
            for pattern in patterns {
                let mut cursor = 0;
                loop {
                    push_scan(link.begin(), cursor, pattern, super::SCAN_COUNT);
                    let reply = link.send().and_then(|_| link.recv()).and_then(parse_scan);
                    let (next, keys) = reply.map_err(|e| lost(link, &e))?;
                    let mut new: Vec<Vec<u8>> = keys
                        .into_iter()
                        .filter(|k| met.get(&key_digest(k)) != Some(&true))
                        .collect();
                    report.deleted_new += unlink(link, &mut new).map_err(|e| lost(link, &e))?;
                    cursor = next;
                    if cursor == 0 {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

/// UNLINK `keys` on a cluster node, one command per hash slot; the number removed.
fn unlink(link: &mut Link, keys: &mut [Vec<u8>]) -> redis::RedisResult<u64> {
    let chunks = unlink_chunks(keys, super::DEFAULT_BATCH, true);
    if chunks.is_empty() {
        return Ok(0);
    }
    let buf = link.begin();
    for chunk in &chunks {
        redis::cmd("UNLINK").arg(&keys[chunk.clone()]).write_packed_command(buf);
    }
    link.send()?;
    let mut removed = 0;
    for _ in &chunks {
        removed += link.recv().and_then(super::conn::from_value::<u64>)?;
    }
    Ok(removed)
}

/// A node that went away mid-restore: say how far the restore got, and that a retry is safe.
fn interrupted(err: FlushError, path: &Path, restored: u64) -> FlushError {
    match err {
        FlushError::Unreachable { server, detail }
        | FlushError::ConnectionLost { server, detail, .. } => {
            FlushError::RestoreInterrupted { server, path: path.to_path_buf(), restored, detail }
        }
        other => other,
    }
}

/// `3999 127.0.0.1:6381` (the details of MOVED and ASK): the slot and where it is now.
fn parse_redirect(details: &str) -> Option<(u16, String, u16)> {
    let (slot, addr) = details.trim().split_once(' ')?;
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((slot.parse().ok()?, host.to_string(), port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from CLUSTER KEYSLOT on Redis 7.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn unlink_chunks_never_span_two_slots() {
        let mut page: Vec<Vec<u8>> =
            (0..500).map(|i| format!("k:{}", i % 40).into_bytes()).collect();
        let chunks = unlink_chunks(&mut page, 7, true);
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), 500);
        for c in &chunks {
            assert!(c.len() <= 7);
            let slot = key_slot(&page[c.start]);
            assert!(page[c.clone()].iter().all(|k| key_slot(k) == slot));
        }
        let mut plain: Vec<Vec<u8>> = (0..10).map(|i| vec![i]).collect();
        assert_eq!(unlink_chunks(&mut plain, 4, false), vec![0..4, 4..8, 8..10]);
    }

    #[test]
    fn node_urls_keep_credentials_and_tls_files() {
        assert_eq!(
            node_url("rediss://u:p@seed:7000/0?tls_ca=/ca.pem", "10.0.0.2", 7001),
            "rediss://u:p@10.0.0.2:7001/0?tls_ca=/ca.pem"
        );
        assert_eq!(node_url("redis://seed", "::1", 7001), "redis://[::1]:7001");
        assert_eq!(url_host("redis://:p@h.example:7000/0"), "h.example");
        assert_eq!(url_host("redis://[::1]:7000"), "::1");
    }

    #[test]
    fn gaps_are_named() {
        let p = |slots| Primary { host: "h".into(), port: 1, slots };
        assert_eq!(uncovered(&[p(vec![(0, 16383)])]), "");
        assert_eq!(uncovered(&[p(vec![(0, 99), (101, 16000)])]), "100, 16001-16383");
        assert_eq!(parse_redirect("3999 127.0.0.1:6381"), Some((3999, "127.0.0.1".into(), 6381)));
    }
}
