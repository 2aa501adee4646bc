//! Metrics from a Redis server: INFO (hit ratio, memory), DBSIZE, and a SCAN count of the keys
//! matching a pattern. Never KEYS: SCAN does not block the server however many keys there are.
//! A password in the URL never reaches an error message.

use super::Metric;
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
    let keys: u64 = redis::cmd("DBSIZE").query(&mut con).context("DBSIZE failed")?;
    let field = |name: &str| info_field(&info, name);
    let (hits, misses) = (field("keyspace_hits"), field("keyspace_misses"));
    let mut metrics = Vec::new();
    if let (Some(h), Some(m)) = (hits, misses) {
        metrics.push(Metric::new("keyspace_hits", h));
        metrics.push(Metric::new("keyspace_misses", m));
        if h + m > 0.0 {
            metrics.push(Metric::new("hit_ratio", h / (h + m)));
        }
    }
    if let Some(bytes) = field("used_memory") {
        metrics.push(Metric::new("used_memory_bytes", bytes));
    }
    metrics.push(Metric::new("keys", keys as f64));
    if let Some(pattern) = pattern {
        metrics.push(Metric::new("keys_matching", count_matching(&mut con, pattern)? as f64));
    }
    Ok(metrics)
}

fn connect(url: &str) -> Result<redis::Connection> {
    let client = redis::Client::open(url).context("the Redis URL is not valid")?;
    // The redis error repeats its cause in its own text: one line of it is enough.
    let con = client
        .get_connection_with_timeout(TIMEOUT)
        .map_err(|e| anyhow::anyhow!("cannot connect: {e}"))?;
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
