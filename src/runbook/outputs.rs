//! Step outputs: `capture = ["^release: (?P<release>\\S+)$"]` on a shell step with an `id` names
//! values read from its output, and `{{steps.ID.NAME}}` uses them in the commands of later steps,
//! in rollbacks and in `verify_rollback` (a measure with an `id` offers its metrics the same
//! way). In a command a use becomes `"${RUNBOOK_OUTPUT_ID_NAME}"`, a quoted reference to an
//! environment variable the step gets at run time, so a value is never parsed as shell and the
//! journal records the command as it ran with the reference in it. The values themselves are
//! journalled with the step that captured them, so a resume or a `rollback RUN` weeks later uses
//! the value captured then.
//!
//! `check` refuses a use of an unknown step or output, one used before the step that defines it
//! has run, and a use outside a command.

use regex::Regex;

use super::diagnostic::Diagnostic;
use super::fields::nearest;
use super::model::*;
use super::template::{locate, placeholders};

/// The prefix of the environment variables that carry outputs to commands.
pub const ENV_PREFIX: &str = "RUNBOOK_OUTPUT_";

/// `steps.ID.NAME` split into its step id and output name; `None` for any other placeholder.
pub fn parse_ref(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("steps.")?;
    let (id, output) = rest.rsplit_once('.')?;
    (!id.is_empty() && !output.is_empty()).then_some((id, output))
}

/// The environment variable that carries output `name` of step `id`.
pub fn env_name(id: &str, name: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' })
            .collect()
    };
    format!("{ENV_PREFIX}{}__{}", clean(id), clean(name))
}

/// What a command gets in place of `{{steps.ID.NAME}}`: a quoted reference, one shell word
/// whatever the value holds.
pub fn shell_ref(id: &str, name: &str) -> String {
    format!("\"${{{}}}\"", env_name(id, name))
}

/// The outputs a step defines: the named groups of its `capture` patterns, or a measure's metric
/// names where they can be known. `None` when the step defines none.
pub fn defined_by(step: &Step) -> Option<Vec<String>> {
    match &step.action {
        Action::Measure(def) => Some(super::measure_check::metric_names(def)),
        _ if !step.expect.capture.is_empty() => Some(
            step.expect
                .capture
                .iter()
                .flat_map(|re| re.capture_names().flatten().map(String::from).collect::<Vec<_>>())
                .collect(),
        ),
        _ => None,
    }
}

/// `capture` on a shell step: patterns with named groups, on a step with an id.
pub fn check_captures(step: &Step, patterns: &[Template], d: &mut Vec<Diagnostic>) {
    if !patterns.is_empty() && step.id.is_none() {
        d.push(
            Diagnostic::new(
                patterns[0].span.clone(),
                format!("step {} captures outputs but has no id", step.number),
            )
            .expected("`id = \"...\"` on the step, so later steps can name it")
            .hint("later steps use an output as {{steps.ID.NAME}}"),
        );
    }
}

/// Every `{{steps.ID.NAME}}` in the runbook: known step and output, defined before use, used in a
/// command only.
pub fn check(rb: &Runbook, d: &mut Vec<Diagnostic>) {
    for step in &rb.steps {
        for (t, place) in uses(step) {
            let Ok(found) = placeholders(&t.text) else { continue };
            for p in found {
                let Some((id, name)) = parse_ref(p.name) else { continue };
                let span = locate(&rb.source, t, &t.text[p.range.clone()]);
                if let Some(diag) = check_one(rb, step, place, id, name, span) {
                    d.push(diag);
                }
            }
        }
    }
}

/// Where an output may be used in a step, and how late its defining step may be.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    /// The step's own command: the defining step must come before it.
    Run,
    /// Its rollback or verify_rollback: the step itself may define it.
    Undo,
    /// Anywhere else (a URL, a file, a pattern, a title): not supported.
    Other,
}

fn uses(step: &Step) -> Vec<(&Template, Place)> {
    let mut out: Vec<(&Template, Place)> = Vec::new();
    match &step.action {
        Action::Shell(t) => out.push((t, Place::Run)),
        Action::Measure(MeasureDef::Command { run, .. }) => out.push((run, Place::Run)),
        Action::Watch(WatchDef { source: WatchSourceDef::Command(c), .. }) => {
            out.push((c, Place::Run))
        }
        _ => {}
    }
    out.extend(step.rollback.iter().map(|t| (t, Place::Undo)));
    out.extend(step.verify_rollback.iter().map(|t| (t, Place::Undo)));
    for t in super::validate::step_templates(step) {
        if !out.iter().any(|(o, _)| std::ptr::eq(*o, t)) {
            out.push((t, Place::Other));
        }
    }
    out
}

fn check_one(
    rb: &Runbook,
    step: &Step,
    place: Place,
    id: &str,
    name: &str,
    span: std::ops::Range<usize>,
) -> Option<Diagnostic> {
    let use_ = format!("{{{{steps.{id}.{name}}}}}");
    if place == Place::Other {
        return Some(
            Diagnostic::new(span, format!("{use_} in step {} is not in a command", step.number))
                .expected("a step output used in `run`, `rollback` or `verify_rollback`")
                .hint("outputs reach commands as environment variables; other keys are fixed before the run"),
        );
    }
    let ids: Vec<&str> = rb.steps.iter().filter_map(|s| s.id.as_deref()).collect();
    let Some(definer) = rb.steps.iter().find(|s| s.id.as_deref() == Some(id)) else {
        let diag = Diagnostic::new(span, format!("{use_}: no step has id {id:?}"))
            .expected(format!("the id of an earlier step: {}", ids.join(", ")));
        return Some(match nearest(id, &ids) {
            Some(near) => diag.hint(format!("did you mean {near:?}?")),
            None => diag,
        });
    };
    let Some(names) = defined_by(definer) else {
        return Some(
            Diagnostic::new(
                span,
                format!("{use_}: step {} ({id}) captures no outputs", definer.number),
            )
            .expected("a step with `capture = [\"...(?P<name>...)...\"]`")
            .hint("add `capture` with a named group to that step"),
        );
    };
    if !names.iter().any(|n| n == name) {
        let candidates: Vec<&str> = names.iter().map(String::as_str).collect();
        let diag = Diagnostic::new(
            span,
            format!("{use_}: step {} ({id}) has no output `{name}`", definer.number),
        )
        .expected(format!("one of its outputs: {}", candidates.join(", ")));
        return Some(match nearest(name, &candidates) {
            Some(near) => diag.hint(format!("did you mean `{near}`?")),
            None => diag,
        });
    }
    let too_late = match place {
        Place::Run => definer.number >= step.number,
        _ => definer.number > step.number,
    };
    too_late.then(|| {
        Diagnostic::new(
            span,
            format!(
                "{use_} is used in step {} before step {} captures it",
                step.number, definer.number
            ),
        )
        .expected(format!(
            "a use in step {} or later",
            definer.number + usize::from(place == Place::Run)
        ))
        .hint("an output exists only once the step that captures it has run")
    })
}

/// The capture patterns of a shell step, compiled; each bad one is reported at its own span.
pub fn compile(patterns: &[Template], d: &mut Vec<Diagnostic>) -> Vec<Regex> {
    let mut out = Vec::new();
    for t in patterns {
        match Regex::new(&format!("(?m){}", t.text)) {
            Ok(re) if re.capture_names().flatten().next().is_some() => out.push(re),
            Ok(_) => d.push(
                Diagnostic::new(t.span.clone(), format!("capture {:?} has no named group", t.text))
                    .expected("a named group such as (?P<release>\\S+)")
                    .hint("the group's name is the output's name: {{steps.ID.NAME}}"),
            ),
            Err(e) => d.push(super::parse::bad_regex(t.span.clone(), &t.text, &e)),
        }
    }
    out
}
