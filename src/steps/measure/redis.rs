//! Metrics from a Redis server: INFO (hit ratio, memory), DBSIZE, and a SCAN count of the keys
//! matching a pattern. Never KEYS: SCAN does not block the server however many keys there are.
//! A password in the URL never reaches an error message.
//!
//! On a cluster (`INFO` says `cluster_enabled:1`) one node holds only its share of the keys, so
//! every figure is the sum over the primaries from `CLUSTER SLOTS`, and a `primaries` metric says
//! how many were summed. Replicas are left out: they repeat their primary's keys.

use super::Metric;
use crate::steps::flush::{cluster_primaries, node_url, url_host};
use anyhow::{Context, Result};
use std::collections::HashSet;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn measure(url: &str, pattern: Option<&str>) -> Result<Vec<Metric>> {
    query(url, pattern).map_err(|e| scrub(e, url))
}

fn query(url: &str, pattern: Option<&str>) -> Result<Vec<Metric>> {
    let mut con = connect(url)?;
    let info: String = redis::cmd("INFO").query(&mut con).context("INFO failed")?;
    if info_field(&info, "cluster_enabled") != Some(1.0) {
        let figures = Figures::read(&mut con, info, pattern)?;
        return Ok(figures.metrics(None));
    }
    let host = url_host(url);
    let primaries = cluster_primaries(&mut con, &host).context("CLUSTER SLOTS failed")?;
    if primaries.is_empty() {
        anyhow::bail!("CLUSTER SLOTS lists no primary: the cluster serves no slot yet");
    }
    let mut total = Figures::default();
    for p in &primaries {
        let node = node_url(url, &p.host, p.port);
        let read = connect(&node).and_then(|mut con| {
            let info: String = redis::cmd("INFO").query(&mut con).context("INFO failed")?;
            Figures::read(&mut con, info, pattern)
        });
        let figures = read.with_context(|| format!("primary {}:{}", p.host, p.port))?;
        total.add(&figures);
    }
    Ok(total.metrics(Some(primaries.len())))
}

/// What one server says, or the sum over a cluster's primaries.
#[derive(Default)]
struct Figures {
    hits: Option<f64>,
    misses: Option<f64>,
    memory: Option<f64>,
    keys: u64,
    matching: Option<u64>,
}

impl Figures {
    fn read(con: &mut redis::Connection, info: String, pattern: Option<&str>) -> Result<Figures> {
        let keys: u64 = redis::cmd("DBSIZE").query(con).context("DBSIZE failed")?;
        let matching = pattern.map(|p| count_matching(con, p)).transpose()?;
        Ok(Figures {
            hits: info_field(&info, "keyspace_hits"),
            misses: info_field(&info, "keyspace_misses"),
            memory: info_field(&info, "used_memory"),
            keys,
            matching,
        })
    }

    fn add(&mut self, other: &Figures) {
        let sum = |a: Option<f64>, b: Option<f64>| Some(a.unwrap_or(0.0) + b?);
        self.hits = sum(self.hits, other.hits);
        self.misses = sum(self.misses, other.misses);
        self.memory = sum(self.memory, other.memory);
        self.keys += other.keys;
        self.matching = other.matching.map(|m| self.matching.unwrap_or(0) + m);
    }

    /// The metrics; on a cluster also `primaries`, the number of servers summed over.
    fn metrics(&self, primaries: Option<usize>) -> Vec<Metric> {
        let mut metrics = Vec::new();
        if let (Some(h), Some(m)) = (self.hits, self.misses) {
            metrics.push(Metric::new("keyspace_hits", h));
            metrics.push(Metric::new("keyspace_misses", m));
            if h + m > 0.0 {
                metrics.push(Metric::new("hit_ratio", h / (h + m)));
            }
        }
        if let Some(bytes) = self.memory {
            metrics.push(Metric::new("used_memory_bytes", bytes));
        }
        metrics.push(Metric::new("keys", self.keys as f64));
        if let Some(matching) = self.matching {
            metrics.push(Metric::new("keys_matching", matching as f64));
        }
        if let Some(n) = primaries {
            metrics.push(Metric::new("primaries", n as f64));
        }
        metrics
    }
}

fn connect(url: &str) -> Result<redis::Connection> {
    let client = crate::tls::client(url).map_err(|e| anyhow::anyhow!("{e}"))?;
    // The redis error repeats its cause in its own text: one line of it is enough.
    let con = client.get_connection_with_timeout(TIMEOUT).map_err(|e| {
        if crate::tls::is_certificate_error(&e.to_string()) {
            anyhow::anyhow!("the TLS connection was refused (nothing was sent in plain text): {e}")
        } else {
            anyhow::anyhow!("cannot connect: {e}")
        }
    })?;
    con.set_read_timeout(Some(TIMEOUT)).context("cannot set a read timeout")?;
    con.set_write_timeout(Some(TIMEOUT)).context("cannot set a write timeout")?;
    Ok(con)
}

/// SCAN may return a key twice while the server rehashes: keys are counted once each.
fn count_matching(con: &mut redis::Connection, pattern: &str) -> Result<u64> {
    let mut cursor: u64 = 0;
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query(con)
            .with_context(|| format!("SCAN MATCH {pattern} failed"))?;
        seen.extend(keys);
        if next == 0 {
            return Ok(seen.len() as u64);
        }
        cursor = next;
    }
}

/// A numeric `name:value` line of INFO.
fn info_field(info: &str, name: &str) -> Option<f64> {
    info.lines()
        .filter_map(|l| l.trim_end().split_once(':'))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
}

/// An error whose text cannot hold the password, whatever a lower layer put in it.
fn scrub(err: anyhow::Error, url: &str) -> anyhow::Error {
    anyhow::anyhow!(crate::secret::scrub(&format!("{err:#}"), url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_read() {
        let info = "# Stats\r\nkeyspace_hits:12\r\nkeyspace_misses:3\r\n";
        assert_eq!(info_field(info, "keyspace_hits"), Some(12.0));
        assert_eq!(info_field(info, "used_memory"), None);
    }
}
