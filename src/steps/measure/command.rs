//! Metrics from a command's output: every named capture of every pattern is one metric.

use super::Metric;
use anyhow::{Context, Result, bail};
use regex::Regex;

pub(super) fn measure(
    run: &str,
    patterns: &[String],
    shell: &super::Shell<'_>,
) -> Result<Vec<Metric>> {
    let regexes = compile(patterns)?;
    let output = capture(run, shell)?;
    let mut metrics = Vec::new();
    for (i, re) in regexes.iter().enumerate() {
        metrics.extend(read(i, re, &output)?);
    }
    Ok(metrics)
}

/// The most output a measure command may print: its figures are read from the start of it.
const MAX_OUTPUT: usize = 1 << 20;

/// Run the command through the one spawning helper (its own process group, the step's
/// environment with the secrets, Ctrl-C) and keep its merged output, up to `MAX_OUTPUT`.
fn capture(run: &str, shell: &super::Shell<'_>) -> Result<String> {
    let mut out = Vec::new();
    let spawn = crate::runner::Spawn {
        command: run,
        cwd: shell.cwd,
        timeout: shell.timeout,
        env: shell.env,
        interrupt: shell.interrupt,
    };
    let exit = shell.runner.run(&spawn, &mut |chunk| {
        let room = MAX_OUTPUT.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
    })?;
    let text = String::from_utf8_lossy(&out).into_owned();
    if exit.code != Some(0) {
        bail!(
            "the command ended with {} (expected exit 0); its output ends with:\n{}",
            exit.describe(),
            tail(&text, 5)
        );
    }
    Ok(text)
}

/// Check every pattern before running anything: valid, with named captures, no name twice.
fn compile(patterns: &[String]) -> Result<Vec<Regex>> {
    if patterns.is_empty() {
        bail!("no patterns: name a capture, e.g. `p95=(?P<latency_p95_ms>[0-9.]+)`");
    }
    let mut seen: Vec<String> = Vec::new();
    let mut regexes = Vec::new();
    for (i, p) in patterns.iter().enumerate() {
        let re =
            Regex::new(p).with_context(|| format!("patterns[{i}] `{p}` is not a valid regex"))?;
        let names: Vec<String> = re.capture_names().flatten().map(String::from).collect();
        if names.is_empty() {
            bail!("patterns[{i}] `{p}` has no named capture: name one, e.g. (?P<queue_depth>\\d+)");
        }
        for name in names {
            if seen.contains(&name) {
                bail!("patterns[{i}] `{p}` names `{name}` again: each metric needs its own name");
            }
            seen.push(name);
        }
        regexes.push(re);
    }
    Ok(regexes)
}

/// The metrics of one pattern: its first match; a capture that took no part in it is skipped.
fn read(i: usize, re: &Regex, stdout: &str) -> Result<Vec<Metric>> {
    let Some(caps) = re.captures(stdout) else {
        bail!(
            "patterns[{i}] `{re}` did not match the command's output, which begins:\n{}",
            head(stdout, 5)
        );
    };
    let mut metrics = Vec::new();
    for name in re.capture_names().flatten() {
        let Some(m) = caps.name(name) else { continue };
        let text = m.as_str().trim();
        let value: f64 = text.parse().map_err(|_| {
            anyhow::anyhow!("capture `{name}` of patterns[{i}] caught `{text}`, expected a number")
        })?;
        metrics.push(Metric::new(name, value));
    }
    Ok(metrics)
}

fn head(text: &str, n: usize) -> String {
    text.lines().take(n).collect::<Vec<_>>().join("\n")
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
