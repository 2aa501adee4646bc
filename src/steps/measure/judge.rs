//! `fail_if`: a measure step judges its own figures. A bare metric name is what this step
//! measured; `before` is the first figure of the same metric that another step of this run
//! measured earlier, read back from the run's journal (so a resumed run still finds it). A
//! condition that holds fails the step; one that cannot be judged (no such figure, nothing
//! measured before) fails it too, since a guard that was never checked must not pass as one that
//! was.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Metric, format_value};
use crate::journal::Event;
use crate::runbook::condition::{self, Unknown};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The condition did not hold: the figure is acceptable.
    Passed,
    /// The condition held: the step failed on it.
    Failed,
    /// The condition could not be judged (a figure was missing): the step failed on it.
    Unjudged,
}

/// A figure measured earlier in the run, and the step that measured it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Earlier {
    pub value: f64,
    pub step: usize,
}

/// One condition, judged; journalled in the step's details so the note can mark the change.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Judgement {
    pub condition: String,
    /// The metric the condition is about, when it names exactly one.
    pub metric: Option<String>,
    pub verdict: Verdict,
    /// `before`, when the condition uses it and it was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Earlier>,
    /// What was compared, in words.
    pub text: String,
}

impl Judgement {
    pub fn failed(&self) -> bool {
        self.verdict != Verdict::Passed
    }
}

/// Judge every condition against this step's figures and the run's earlier ones.
pub fn judge_all(
    conditions: &[String],
    now: &[Metric],
    earlier: &[(usize, Metric)],
) -> Vec<Judgement> {
    conditions.iter().map(|c| judge(c, now, earlier)).collect()
}

fn judge(text: &str, now: &[Metric], earlier: &[(usize, Metric)]) -> Judgement {
    let c = match condition::parse(text) {
        Ok(c) => c,
        Err(e) => {
            // `check` refuses these; a journal edited by hand could still hold one.
            let text = format!("cannot judge `{text}`: {e}");
            return Judgement {
                condition: text.clone(),
                metric: None,
                verdict: Verdict::Unjudged,
                before: None,
                text,
            };
        }
    };
    let metric = c.subject().map(String::from);
    let before = match (&metric, c.uses_before()) {
        (Some(m), true) => earlier
            .iter()
            .find(|(_, e)| e.name == *m)
            .map(|(step, e)| Earlier { value: e.value, step: *step }),
        _ => None,
    };
    let lookup = |name: &str| figure(now, name);
    let unit = metric
        .as_deref()
        .map_or("", |m| now.iter().find(|x| x.name == m).map_or("", |x| x.unit.as_str()));
    let shown = |v: f64| with_unit(v, unit);
    let (verdict, words) = match c.judge(&lookup, before.map(|b| b.value)) {
        Ok(j) => {
            let compared = format!("{} {} {}", shown(j.left), c.comparison(), shown(j.right));
            let from = before.map_or(String::new(), |b| {
                format!(", before = {} (step {})", shown(b.value), b.step)
            });
            if j.held {
                (Verdict::Failed, format!("fail_if `{text}` is true: {compared}{from}"))
            } else {
                (Verdict::Passed, format!("fail_if `{text}` is false: {compared}{from}"))
            }
        }
        Err(Unknown::Metric(name)) => (
            Verdict::Unjudged,
            format!("cannot judge fail_if `{text}`: this step measured no `{name}`"),
        ),
        Err(Unknown::Before(name)) => (
            Verdict::Unjudged,
            format!(
                "cannot judge fail_if `{text}`: no step before this one measured `{name}` in this run, so `before` has no value (was that step left out with --from?)"
            ),
        ),
    };
    Judgement { condition: text.to_string(), metric, verdict, before, text: words }
}

/// This step's figure of `name`. A `status_<code>` count a source did not report is 0: sources
/// report only the statuses they saw.
fn figure(now: &[Metric], name: &str) -> Option<f64> {
    match now.iter().find(|m| m.name == name) {
        Some(m) => Some(m.value),
        None if name.starts_with("status_") => Some(0.0),
        None => None,
    }
}

fn with_unit(v: f64, unit: &str) -> String {
    match unit {
        "" | "count" | "ratio" => format_value(v),
        "%" => format!("{}%", format_value(v)),
        _ => format!("{} {unit}", format_value(v)),
    }
}

/// Every figure other steps of this run measured, in the order they were journalled. An
/// unreadable journal gives none: a condition using `before` then cannot be judged and fails.
pub fn earlier_figures(run_dir: &Path, step: usize) -> Vec<(usize, Metric)> {
    let Ok(bytes) = std::fs::read(run_dir.join("journal.jsonl")) else { return Vec::new() };
    let (records, _) = crate::journal::reader::parse_lines(&bytes);
    let mut out = Vec::new();
    for r in records {
        let Event::StepFinished { step: s, details: Some(d), .. } = r.event else { continue };
        if s == step {
            continue;
        }
        let Some(list) = d.get("metrics") else { continue };
        if let Ok(metrics) = serde_json::from_value::<Vec<Metric>>(list.clone()) {
            out.extend(metrics.into_iter().map(|m| (s, m)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, value: f64) -> Metric {
        Metric::new(name, value)
    }

    #[test]
    fn before_is_the_first_earlier_figure_of_the_same_metric() {
        let earlier = [(1, m("latency_p95_ms", 5.0)), (3, m("latency_p95_ms", 50.0))];
        let j = judge("latency_p95_ms > 1.5 * before", &[m("latency_p95_ms", 9.0)], &earlier);
        assert_eq!(j.verdict, Verdict::Failed);
        assert_eq!(j.before, Some(Earlier { value: 5.0, step: 1 }));
        assert_eq!(
            j.text,
            "fail_if `latency_p95_ms > 1.5 * before` is true: 9 ms > 7.500 ms, before = 5 ms (step 1)"
        );
    }

    #[test]
    fn a_missing_figure_cannot_be_judged_and_an_unseen_status_is_zero() {
        let now = [m("error_rate", 0.0)];
        assert_eq!(judge("latency_p95_ms > 100", &now, &[]).verdict, Verdict::Unjudged);
        assert_eq!(judge("error_rate > before", &now, &[]).verdict, Verdict::Unjudged);
        assert_eq!(judge("status_500 > 0", &now, &[]).verdict, Verdict::Passed);
    }
}
