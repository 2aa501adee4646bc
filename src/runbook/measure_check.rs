//! `check` for the `fail_if` conditions of measure steps: each parses (an error points at its
//! column), names only metrics its step's source measures (where that can be known), and a
//! condition using `before` has an earlier measure step that reads the same metric.

use regex::Regex;

use super::condition::{self, Condition};
use super::diagnostic::{Diagnostic, Span};
use super::fields::nearest;
use super::model::*;
use crate::steps::measure::{HTTP_METRICS, REDIS_METRICS};

pub fn check(rb: &Runbook, d: &mut Vec<Diagnostic>) {
    for (i, step) in rb.steps.iter().enumerate() {
        let Action::Measure(def) = &step.action else { continue };
        for t in &step.fail_if {
            match condition::parse(&t.text) {
                Ok(c) => {
                    check_names(rb, t, &c, def, d);
                    check_before(rb, t, &c, &rb.steps[..i], step.number, d);
                }
                Err(e) => d.push(
                    Diagnostic::new(
                        inside(rb, t, e.at, e.len),
                        format!("fail_if condition {:?}: {}", t.text, e.message),
                    )
                    .expected(e.expected)
                    .hint("a condition reads like `error_rate > 0.01` or `latency_p95_ms > 1.5 * before`"),
                ),
            }
        }
    }
}

/// What a measure source yields: its metric names, and whether `status_<code>` counts may appear.
/// `None` when it cannot be known (a capture pattern that does not compile is reported elsewhere).
fn known_metrics(def: &MeasureDef) -> (Vec<String>, bool) {
    match def {
        MeasureDef::Http { .. } => (HTTP_METRICS.iter().map(|s| s.to_string()).collect(), true),
        MeasureDef::Redis { pattern, .. } => {
            let names =
                REDIS_METRICS.iter().filter(|n| pattern.is_some() || **n != "keys_matching");
            (names.map(|s| s.to_string()).collect(), false)
        }
        MeasureDef::Command { patterns, .. } => {
            let names = patterns
                .iter()
                .filter_map(|p| Regex::new(&super::template::regex_stand_in(&p.text)).ok())
                .flat_map(|re| re.capture_names().flatten().map(String::from).collect::<Vec<_>>())
                .collect();
            (names, false)
        }
    }
}

/// The metric names a measure source yields, where they can be known (not `status_<code>`).
pub fn metric_names(def: &MeasureDef) -> Vec<String> {
    known_metrics(def).0
}

fn yields(def: &MeasureDef, name: &str) -> bool {
    let (names, statuses) = known_metrics(def);
    names.iter().any(|n| n == name) || (statuses && is_status(name))
}

/// `status_200`, `status_503`: the count of responses with that status.
fn is_status(name: &str) -> bool {
    name.strip_prefix("status_")
        .is_some_and(|code| code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()))
}

fn check_names(
    rb: &Runbook,
    t: &Template,
    c: &Condition,
    def: &MeasureDef,
    d: &mut Vec<Diagnostic>,
) {
    let (names, statuses) = known_metrics(def);
    for (name, at) in c.metric_spans() {
        if yields(def, name) {
            continue;
        }
        let candidates: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut expected = format!("a metric this step measures: {}", candidates.join(", "));
        if statuses {
            expected.push_str(", status_<code>");
        }
        let mut diag = Diagnostic::new(
            inside(rb, t, *at, name.len()),
            format!("fail_if names `{name}`, which this step does not measure"),
        )
        .expected(expected);
        diag = match nearest(name, &candidates) {
            Some(near) => diag.hint(format!("did you mean `{near}`?")),
            None if matches!(def, MeasureDef::Command { .. }) => {
                diag.hint("a command's metrics are the named groups of its `capture` patterns")
            }
            None => diag,
        };
        d.push(diag);
    }
}

fn check_before(
    rb: &Runbook,
    t: &Template,
    c: &Condition,
    earlier: &[Step],
    number: usize,
    d: &mut Vec<Diagnostic>,
) {
    let (Some(at), Some(subject)) = (c.before_at(), c.subject()) else { return };
    let measured = earlier.iter().any(|s| match &s.action {
        Action::Measure(def) => yields(def, subject),
        _ => false,
    });
    if !measured {
        d.push(
            Diagnostic::new(
                inside(rb, t, at, "before".len()),
                format!(
                    "`before` in step {number} has nothing to compare with: no measure step before it reads `{subject}`"
                ),
            )
            .expected(format!("a measure step before step {number} that reads `{subject}`"))
            .hint("measure the same thing before the change, e.g. the same `http` with the same `requests`"),
        );
    }
}

/// The span of a piece of a condition: exact in a plain quoted string, else the whole string.
fn inside(rb: &Runbook, t: &Template, at: usize, len: usize) -> Span {
    let raw = rb.source.get(t.span.clone()).unwrap_or("");
    let plain = raw.len() == t.text.len() + 2 && raw.get(1..raw.len() - 1) == Some(t.text.as_str());
    if plain {
        let start = t.span.start + 1 + at.min(t.text.len());
        start..start + len.max(1)
    } else {
        t.span.clone()
    }
}
