//! What a team shares through one Redis: a lock that holds across machines (SET NX with an
//! expiry, kept alive by a heartbeat, with a fencing token), and a stream per runbook that gets
//! every journal event, so `history` and the rehearsal gate see runs made elsewhere.
//! The local journal stays the record: when the shared Redis is unreachable the run goes on and
//! says so.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

use super::lock::Holder;
use crate::Refused;
use crate::secret::redact as redact_url;

/// How long the lock lives without a heartbeat: a dead holder frees it after this.
const LOCK_TTL: Duration = Duration::from_secs(30);
const HEARTBEAT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const RENEW: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/// A stalled server must not freeze a deploy: every call gives up after this.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

fn connect(url: &str) -> Result<redis::Connection> {
    let client =
        crate::tls::client(url).with_context(|| format!("bad Redis URL {}", redact_url(url)))?;
    let conn = client
        .get_connection_with_timeout(CONNECT_TIMEOUT)
        .with_context(|| format!("cannot reach {}", redact_url(url)))?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(conn)
}

/// A lock in Redis, held until dropped.
pub struct RedisLock {
    url: String,
    key: String,
    value: String,
    pub fencing_token: u64,
    stop: Arc<AtomicBool>,
    heartbeat: Option<JoinHandle<()>>,
}

impl RedisLock {
    /// The Redis that holds the lock (may carry a password: redact before showing).
    pub fn url(&self) -> &str {
        &self.url
    }
}

pub fn lock_key(name: &str, env: Option<&str>) -> String {
    format!("runbook:lock:{name}:{}", env.unwrap_or("default"))
}

/// Take the shared lock or refuse naming its holder. Unreachable Redis is an error: nothing runs
/// without the lock the runbook asks for.
pub fn acquire(url: &str, name: &str, env: Option<&str>, holder: &Holder) -> Result<RedisLock> {
    let mut conn = connect(url)
        .context("the [lock] Redis is needed to run; nothing was run (a retry is safe)")?;
    let key = lock_key(name, env);
    let fencing_token: u64 = redis::cmd("INCR")
        .arg(format!("runbook:fence:{name}:{}", env.unwrap_or("default")))
        .query(&mut conn)?;
    let value =
        serde_json::to_string(&serde_json::json!({ "holder": holder, "token": fencing_token }))?;
    let set: Option<String> = redis::cmd("SET")
        .arg(&key)
        .arg(&value)
        .arg("NX")
        .arg("PX")
        .arg(LOCK_TTL.as_millis() as u64)
        .query(&mut conn)?;
    if set.is_none() {
        let current: Option<String> = redis::cmd("GET").arg(&key).query(&mut conn)?;
        return Err(refusal(current.as_deref(), url).into());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let heartbeat = spawn_heartbeat(url.to_string(), key.clone(), value.clone(), Arc::clone(&stop));
    Ok(RedisLock {
        url: url.to_string(),
        key,
        value,
        fencing_token,
        stop,
        heartbeat: Some(heartbeat),
    })
}

fn refusal(current: Option<&str>, url: &str) -> Refused {
    let holder = current
        .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
        .and_then(|v| serde_json::from_value::<Holder>(v["holder"].clone()).ok());
    match holder {
        Some(h) => Refused(format!(
            "this runbook is already running in this environment (lock in {}): {} on {} since {} (run {}, pid {})",
            redact_url(url),
            h.operator,
            h.host,
            h.since.format("%Y-%m-%d %H:%M:%SZ"),
            h.run_id,
            h.pid
        )),
        None => Refused(format!(
            "this runbook is already running in this environment (lock in {})",
            redact_url(url)
        )),
    }
}

fn spawn_heartbeat(
    url: String,
    key: String,
    value: String,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut conn = connect(&url).ok();
        let mut waited = Duration::ZERO;
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
            waited += Duration::from_millis(200);
            if waited < HEARTBEAT {
                continue;
            }
            waited = Duration::ZERO;
            if conn.is_none() {
                conn = connect(&url).ok();
            }
            let renewed: Option<i64> = conn.as_mut().and_then(|c| {
                redis::Script::new(RENEW)
                    .key(&key)
                    .arg(&value)
                    .arg(LOCK_TTL.as_millis() as u64)
                    .invoke(c)
                    .ok()
            });
            if renewed != Some(1) {
                // A dropped connection is made again at the next beat.
                conn = None;
                eprintln!(
                    "warning: could not renew the run lock in {}; another run may take it after {}s",
                    redact_url(&url),
                    LOCK_TTL.as_secs()
                );
            }
        }
    })
}

impl Drop for RedisLock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        if let Ok(mut conn) = connect(&self.url) {
            let _: Result<i64, _> =
                redis::Script::new(RELEASE).key(&self.key).arg(&self.value).invoke(&mut conn);
        }
    }
}

/// The stream of one runbook's journal events.
pub fn journal_stream(name: &str) -> String {
    format!("runbook:journal:{name}")
}

/// The stream of one runbook's passed rehearsals.
pub fn rehearsal_stream(name: &str) -> String {
    format!("runbook:rehearsals:{name}")
}

/// Copies journal lines to the team's stream. The first failure is said once and the mirror
/// stops; the local journal is unaffected.
pub struct Mirror {
    conn: Option<redis::Connection>,
    url: String,
    stream: String,
    run_id: String,
}

impl Mirror {
    pub fn connect(url: &str, name: &str, run_id: &str) -> Mirror {
        let conn = match connect(url) {
            Ok(c) => Some(c),
            Err(e) => {
                warn_unreachable(url, &e);
                None
            }
        };
        Mirror {
            conn,
            url: url.to_string(),
            stream: journal_stream(name),
            run_id: run_id.to_string(),
        }
    }

    pub fn push(&mut self, line: &[u8]) {
        let Some(conn) = self.conn.as_mut() else { return };
        let sent: redis::RedisResult<String> = redis::cmd("XADD")
            .arg(&self.stream)
            .arg("*")
            .arg("run")
            .arg(&self.run_id)
            .arg("event")
            .arg(line)
            .query(conn);
        if let Err(e) = sent {
            warn_unreachable(&self.url, &anyhow::Error::new(e));
            self.conn = None;
        }
    }
}

fn warn_unreachable(url: &str, e: &anyhow::Error) {
    eprintln!(
        "warning: the team store {} is unreachable ({e:#}); the run goes on and journals locally only",
        redact_url(url)
    );
}

/// Every journal line of a stream, grouped by run id, in order.
pub fn read_journals(url: &str, stream: &str) -> Result<Vec<(String, Vec<Vec<u8>>)>> {
    let mut conn = connect(url)?;
    let entries: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query(&mut conn)?;
    let mut runs: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
    for entry in entries.ids {
        let run: Option<String> = entry.get("run");
        let event: Option<Vec<u8>> = entry.get("event");
        let (Some(run), Some(event)) = (run, event) else { continue };
        match runs.iter_mut().find(|(id, _)| *id == run) {
            Some((_, lines)) => lines.push(event),
            None => runs.push((run, vec![event])),
        }
    }
    Ok(runs)
}

/// The names of every runbook with a journal stream in this Redis.
pub fn stream_names(url: &str) -> Result<Vec<String>> {
    let mut conn = connect(url)?;
    let mut names = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("runbook:journal:*")
            .arg("COUNT")
            .arg(1000)
            .query(&mut conn)?;
        names.extend(keys);
        if next == 0 {
            return Ok(names);
        }
        cursor = next;
    }
}

/// Add a line to a stream (used for rehearsal records).
pub fn append(url: &str, stream: &str, line: &str) -> Result<()> {
    let mut conn = connect(url)?;
    let _: String =
        redis::cmd("XADD").arg(stream).arg("*").arg("record").arg(line).query(&mut conn)?;
    Ok(())
}

/// Every record of a stream written by `append`.
pub fn records(url: &str, stream: &str) -> Result<Vec<String>> {
    let mut conn = connect(url)?;
    let entries: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query(&mut conn)?;
    Ok(entries.ids.iter().filter_map(|e| e.get::<String>("record")).collect())
}
