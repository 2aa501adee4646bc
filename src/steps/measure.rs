//! The `measure` step: read numbers from a system before and after a change, so the final note can
//! show what the change did. Three sources: a command's output read through named regex captures,
//! an HTTP endpoint probed with sequential GETs, and a Redis server's INFO. Every source only
//! reads, so every error says a retry is safe.
//!
//! [`compare`] pairs what was measured before with what was measured after.

mod command;
mod http;
pub mod judge;
mod redis;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What an `http` source measures, besides `status_<code>`: the count of responses with each
/// status seen. `fail_if` may name any of them.
pub const HTTP_METRICS: &[&str] = &[
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_max_ms",
    "error_rate",
    "requests",
    "responses",
    "transport_errors",
];

/// What a `redis` source measures (`keys_matching` only with a `pattern`).
pub const REDIS_METRICS: &[&str] = &[
    "keyspace_hits",
    "keyspace_misses",
    "hit_ratio",
    "used_memory_bytes",
    "keys",
    "keys_matching",
];

#[derive(Clone, Debug, PartialEq)]
pub enum MeasureSource {
    /// `bash -c run`; each named capture of each pattern becomes a metric, its text a number.
    Command { run: String, patterns: Vec<String> },
    /// `requests` sequential GETs, each bounded by `timeout`.
    Http { url: String, requests: u32, timeout: Duration },
    /// INFO and DBSIZE, and a SCAN count of the keys matching `pattern` when it is set.
    Redis { url: String, pattern: Option<String> },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    /// `ms`, `bytes`, `ratio` (0..1), `%`, `count`, or empty; see [`unit_for`].
    pub unit: String,
}

impl Metric {
    pub fn new(name: impl Into<String>, value: f64) -> Metric {
        let name = name.into();
        let unit = unit_for(&name).to_string();
        Metric { name, value, unit }
    }
}

/// The unit a metric's name implies, so a command's captures get units the same way built-in
/// metrics do: `*_ms` ms, `*_bytes` bytes, `*_ratio`/`*_rate` ratio, `*_pct` %, and counts.
pub fn unit_for(name: &str) -> &'static str {
    let counts = [
        "requests",
        "responses",
        "transport_errors",
        "keys",
        "keys_matching",
        "keyspace_hits",
        "keyspace_misses",
    ];
    if name.ends_with("_ms") {
        "ms"
    } else if name.ends_with("_bytes") {
        "bytes"
    } else if name.ends_with("_ratio") || name.ends_with("_rate") {
        "ratio"
    } else if name.ends_with("_pct") || name.ends_with("_percent") {
        "%"
    } else if counts.contains(&name) || name.starts_with("status_") || name.ends_with("_count") {
        "count"
    } else {
        ""
    }
}

/// Take the measurements. On error nothing was changed anywhere: a retry is safe.
pub fn measure(source: &MeasureSource) -> Result<Vec<Metric>> {
    let shell = Shell {
        runner: &crate::runner::Local,
        env: &[],
        cwd: None,
        timeout: None,
        interrupt: &crate::signals::INTERRUPTED,
    };
    measure_in(source, &shell)
}

/// How a command source runs: the step's environment (secrets), working directory, timeout and
/// interrupt flag, as for shell steps.
pub struct Shell<'a> {
    /// Where the command runs.
    pub runner: &'a dyn crate::runner::Runner,
    pub env: &'a [(String, String)],
    pub cwd: Option<&'a std::path::Path>,
    pub timeout: Option<Duration>,
    pub interrupt: &'static std::sync::atomic::AtomicBool,
}

/// `measure`, with a command source run the way the step says.
pub fn measure_in(source: &MeasureSource, shell: &Shell<'_>) -> Result<Vec<Metric>> {
    let metrics = match source {
        MeasureSource::Command { run, patterns } => command::measure(run, patterns, shell),
        MeasureSource::Http { url, requests, timeout } => http::measure(url, *requests, *timeout),
        MeasureSource::Redis { url, pattern } => redis::measure(url, pattern.as_deref()),
    };
    metrics.with_context(|| {
        format!("measure from {} failed (a measure only reads: a retry is safe)", describe(source))
    })
}

fn describe(source: &MeasureSource) -> String {
    match source {
        MeasureSource::Command { run, .. } => format!("command `{run}`"),
        MeasureSource::Http { url, .. } => format!("GET {}", crate::secret::redact(url)),
        MeasureSource::Redis { url, .. } => format!("Redis {}", crate::secret::redact(url)),
    }
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Comparison {
    pub name: String,
    pub unit: String,
    pub before: f64,
    pub after: f64,
    /// `after - before`.
    pub change: f64,
    /// The change as a percentage of `before`; `None` when `before` is 0.
    pub change_pct: Option<f64>,
}

/// Pair metrics by name: the first one named so in `before` with the last one in `after`, in the
/// order `before` lists them. A metric on one side only is left out, except a count (such as
/// `status_500`), which a source reports only when it saw some: its other side is 0.
pub fn compare(before: &[Metric], after: &[Metric]) -> Vec<Comparison> {
    let mut names: Vec<&Metric> = Vec::new();
    for m in before.iter().chain(after) {
        if !names.iter().any(|n| n.name == m.name) {
            names.push(m);
        }
    }
    let first = |name: &str| before.iter().find(|m| m.name == name).map(|m| m.value);
    let last = |name: &str| after.iter().rev().find(|m| m.name == name).map(|m| m.value);
    names
        .into_iter()
        .filter_map(|m| {
            let zero = (m.unit == "count").then_some(0.0);
            let (b, a) = (first(&m.name).or(zero)?, last(&m.name).or(zero)?);
            Some(Comparison {
                name: m.name.clone(),
                unit: m.unit.clone(),
                before: b,
                after: a,
                change: a - b,
                change_pct: (b != 0.0).then(|| (a - b) / b.abs() * 100.0),
            })
        })
        .collect()
}

/// Run a measure step for the engine: the figures go to the terminal, the step log and the
/// journal, where the report pairs them before and after. The step fails when every HTTP request
/// failed, or when a `fail_if` condition holds or cannot be judged.
pub fn run(
    source: &MeasureSource,
    shell: &Shell<'_>,
    fail_if: &[String],
    ctx: &super::StepContext<'_>,
) -> Result<super::StepResult> {
    let started = std::time::Instant::now();
    let metrics = match measure_in(source, shell) {
        Ok(metrics) => metrics,
        Err(e) if shell.interrupt.load(std::sync::atomic::Ordering::SeqCst) => {
            let check = format!("interrupted: {e:#}");
            let outcome = crate::journal::Outcome::Interrupted;
            return Ok(super::StepResult::without_exit(outcome, check, started.elapsed(), None));
        }
        Err(e) => return Err(e),
    };
    let earlier = match ctx.run_dir {
        Some(dir) if !fail_if.is_empty() => judge::earlier_figures(dir, ctx.step),
        _ => Vec::new(),
    };
    let judged = judge::judge_all(fail_if, &metrics, &earlier);
    let mut text = String::new();
    for m in &metrics {
        text.push_str(&format!("{} = {} {}\n", m.name, format_value(m.value), m.unit));
    }
    for j in &judged {
        text.push_str(&format!("{}\n", j.text));
    }
    crate::private::write(ctx.log_path, text.as_bytes())
        .with_context(|| format!("cannot write the step log {}", ctx.log_path.display()))?;
    for line in text.lines() {
        ctx.ui.say(&format!("  {line}"));
    }
    let (outcome, check) = verdict(source, &metrics, &judged);
    let mut details = serde_json::json!({ "metrics": metrics });
    if !judged.is_empty() {
        details["judged"] = serde_json::json!(judged);
    }
    let mut result =
        super::StepResult::without_exit(outcome, check, started.elapsed(), Some(details));
    result.output_tail = text;
    Ok(result)
}

/// The step's outcome and its check in words: what failed first, then the rest.
fn verdict(
    source: &MeasureSource,
    metrics: &[Metric],
    judged: &[judge::Judgement],
) -> (crate::journal::Outcome, String) {
    let mut failures: Vec<String> = Vec::new();
    if let Some(all_failed) = every_request_failed(source, metrics) {
        failures.push(all_failed);
    }
    failures.extend(judged.iter().filter(|j| j.failed()).map(|j| j.text.clone()));
    if failures.is_empty() {
        let passed = if judged.is_empty() {
            String::new()
        } else {
            format!("; fail_if: {} passed", judged.len())
        };
        return (
            crate::journal::Outcome::Ok,
            format!("{} metrics measured{passed}", metrics.len()),
        );
    }
    (crate::journal::Outcome::Failed, failures.join("; "))
}

/// An HTTP measure where no request succeeded measured nothing but the failure itself.
fn every_request_failed(source: &MeasureSource, metrics: &[Metric]) -> Option<String> {
    let MeasureSource::Http { url, .. } = source else { return None };
    let value = |name: &str| metrics.iter().find(|m| m.name == name).map_or(0.0, |m| m.value);
    if value("error_rate") < 1.0 {
        return None;
    }
    let requests = value("requests");
    let transport = value("transport_errors");
    let url = crate::secret::redact(url);
    Some(format!(
        "every one of the {} requests to {url} failed ({} refused, reset or timed out; {} answered with an error status): there is no latency to measure",
        format_value(requests),
        format_value(transport),
        format_value(requests - transport)
    ))
}

/// Whole numbers without a fraction, others with up to three decimals.
pub fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v:.3}") }
}
