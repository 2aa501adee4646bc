//! Metrics from sequential GETs: latency percentiles, error rate and a count per status code.
//!
//! Latency is the time to the end of the body, of the requests that got a response (any status):
//! a refused connection fails in microseconds and would make a dead service look fast, so the
//! percentiles leave transport errors (refused, reset, timed out) out. Those count in
//! `transport_errors` and in `error_rate`, with responses whose status is 400 or more. With no
//! response at all there are no latency figures.

use super::Metric;
use anyhow::{Result, bail};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub(super) fn measure(url: &str, requests: u32, timeout: Duration) -> Result<Vec<Metric>> {
    check(url, requests)?;
    let agent = agent(timeout);
    let mut latencies = Vec::with_capacity(requests as usize);
    let mut statuses: BTreeMap<u16, u32> = BTreeMap::new();
    let mut transport_errors = 0u32;
    for _ in 0..requests {
        let started = Instant::now();
        match get(&agent, url) {
            Ok(status) => {
                *statuses.entry(status).or_default() += 1;
                latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            Err(_) => transport_errors += 1,
        }
    }
    let errors =
        transport_errors + statuses.iter().filter(|(s, _)| **s >= 400).map(|(_, n)| n).sum::<u32>();
    let mut metrics = latency_metrics(&mut latencies);
    metrics.push(Metric::new("error_rate", f64::from(errors) / f64::from(requests)));
    metrics.push(Metric::new("requests", f64::from(requests)));
    metrics.push(Metric::new("responses", latencies.len() as f64));
    metrics.push(Metric::new("transport_errors", f64::from(transport_errors)));
    for (status, n) in statuses {
        metrics.push(Metric::new(format!("status_{status}"), f64::from(n)));
    }
    Ok(metrics)
}

fn check(url: &str, requests: u32) -> Result<()> {
    if requests == 0 {
        bail!("requests is 0: expected at least 1");
    }
    let uri: ureq::http::Uri =
        url.parse().map_err(|e| anyhow::anyhow!("`{url}` is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        bail!("`{url}` is not an http:// or https:// URL with a host");
    }
    Ok(())
}

fn agent(timeout: Duration) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build();
    ureq::Agent::new_with_config(config)
}

/// One GET, its body read to the end; the status when a response came.
fn get(agent: &ureq::Agent, url: &str) -> Result<u16, ureq::Error> {
    let mut response = agent.get(url).call()?;
    std::io::copy(&mut response.body_mut().as_reader(), &mut std::io::sink())?;
    Ok(response.status().as_u16())
}

fn latency_metrics(latencies: &mut [f64]) -> Vec<Metric> {
    if latencies.is_empty() {
        return Vec::new();
    }
    latencies.sort_by(f64::total_cmp);
    vec![
        Metric::new("latency_p50_ms", percentile(latencies, 50.0)),
        Metric::new("latency_p95_ms", percentile(latencies, 95.0)),
        Metric::new("latency_max_ms", latencies.last().copied().unwrap_or(0.0)),
    ]
}

/// Nearest-rank percentile of sorted values: always one of them, so p50 <= p95 <= max holds.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 10.0);
        assert_eq!(percentile(&v, 95.0), 19.0);
        assert_eq!(percentile(&[7.0], 95.0), 7.0);
    }
}
