//! Step outputs at run time (the runbook side is `runbook::outputs`). A shell step's `capture`
//! patterns are matched line by line against its output as it comes; the named groups are the
//! step's outputs, journalled in its `step_finished` details. A command that refers to an output
//! (`"${RUNBOOK_OUTPUT_ID__NAME}"`, written by the plan for `{{steps.ID.NAME}}`) gets it as an
//! environment variable, read back from the run's journal, so a resume or a `rollback RUN` uses
//! the value captured then. An output that holds a secret's value is journalled masked and kept
//! only in this process's memory: it cannot be used after the process that captured it ended.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Result, bail};
use regex::Regex;

use super::StepContext;
use crate::journal::{Event, Outcome};
use crate::plan::Work;
use crate::runbook::outputs::{ENV_PREFIX, env_name};
use crate::secret::MASK;

/// Which secret output: (run folder, step, name).
type SecretKey = (PathBuf, usize, String);

/// Secret outputs of the runs of this process.
static SECRET_OUTPUTS: Mutex<Option<HashMap<SecretKey, String>>> = Mutex::new(None);

/// Check what a step captured against its patterns: `Ok` with the details to journal, or the
/// failure in words (the pattern that matched nothing and the last lines of the output).
pub fn judge(
    patterns: &[Regex],
    captured: BTreeMap<String, String>,
    tail: &str,
    ctx: &StepContext<'_>,
) -> Result<serde_json::Value, String> {
    for re in patterns {
        let names: Vec<&str> = re.capture_names().flatten().collect();
        if !names.iter().any(|n| captured.contains_key(*n)) {
            let pattern = re.as_str().strip_prefix("(?m)").unwrap_or(re.as_str());
            return Err(format!(
                "capture `{pattern}` matched no line of the output, so `{}` has no value; the output ends with:\n{}",
                names.join("`, `"),
                crate::report::last_lines(tail, 5)
            ));
        }
    }
    let mut shown = serde_json::Map::new();
    let mut secret = Vec::new();
    for (name, value) in captured {
        if ctx.masker.mask(&value) != value {
            remember(ctx, &name, value);
            shown.insert(name.clone(), MASK.into());
            secret.push(name);
        } else {
            shown.insert(name, value.into());
        }
    }
    let mut details = serde_json::json!({ "outputs": shown });
    if !secret.is_empty() {
        details["secret_outputs"] = serde_json::json!(secret);
    }
    Ok(details)
}

fn remember(ctx: &StepContext<'_>, name: &str, value: String) {
    let Some(dir) = ctx.run_dir else { return };
    let mut store = SECRET_OUTPUTS.lock().unwrap_or_else(|e| e.into_inner());
    store
        .get_or_insert_with(HashMap::new)
        .insert((dir.to_path_buf(), ctx.step, name.into()), value);
}

fn recall(dir: &Path, step: usize, name: &str) -> Option<String> {
    let store = SECRET_OUTPUTS.lock().unwrap_or_else(|e| e.into_inner());
    store.as_ref()?.get(&(dir.to_path_buf(), step, name.to_string())).cloned()
}

/// The output variables `work`'s commands refer to, with their values from this run's journal.
/// A reference this run has no value for stops the step before anything runs.
pub fn env_for(work: &Work, ctx: &StepContext<'_>) -> Result<Vec<(String, String)>> {
    let wanted = references(work);
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let known = match ctx.run_dir {
        Some(dir) => known_outputs(dir),
        None => Known::default(),
    };
    let mut env = Vec::new();
    for var in wanted {
        match known.values.get(&var) {
            Some(Some(value)) => env.push((var, value.clone())),
            found => bail!("{}", missing(&var, &known, found.is_some())),
        }
    }
    Ok(env)
}

fn missing(var: &str, known: &Known, secret: bool) -> String {
    let what = known.names.get(var).map_or_else(
        || format!("${{{var}}}"),
        |(id, name, step)| format!("{{{{steps.{id}.{name}}}}} (step {step})"),
    );
    if secret {
        return format!(
            "{what} holds a secret, which is never journalled, and the process that captured it has ended; run that step again (nothing was run)"
        );
    }
    format!(
        "the command uses {what}, which this run has no value for: the step that captures it has not run successfully in this run (left out with --from?); nothing was run"
    )
}

/// Every `${RUNBOOK_OUTPUT_...}` in the commands of `work`.
fn references(work: &Work) -> Vec<String> {
    let texts: Vec<&str> = match work {
        Work::Shell { run, .. } => vec![run],
        Work::Measure { run: Some(run), .. } => vec![run],
        Work::Watch { command: Some(c), .. } => vec![c],
        _ => Vec::new(),
    };
    let mut out: Vec<String> = Vec::new();
    for text in texts {
        let mut rest = text;
        while let Some(at) = rest.find(&format!("${{{ENV_PREFIX}")) {
            let after = &rest[at + 2..];
            let Some(end) = after.find('}') else { break };
            let var = after[..end].to_string();
            if !out.contains(&var) {
                out.push(var);
            }
            rest = &after[end..];
        }
    }
    out
}

/// What the journal holds: each output variable's value (`None`: a secret this process does not
/// hold), and which step and name it stands for.
#[derive(Default)]
struct Known {
    values: BTreeMap<String, Option<String>>,
    names: BTreeMap<String, (String, String, usize)>,
}

fn known_outputs(dir: &Path) -> Known {
    let mut known = Known::default();
    let Ok(bytes) = std::fs::read(dir.join("journal.jsonl")) else { return known };
    let (records, _) = crate::journal::reader::parse_lines(&bytes);
    let mut ids: BTreeMap<usize, String> = BTreeMap::new();
    for r in records {
        match r.event {
            Event::RunStarted(s) => {
                ids = s.steps.into_iter().filter_map(|i| Some((i.number, i.id?))).collect();
            }
            Event::StepFinished { step, outcome: Outcome::Ok, details: Some(d), .. } => {
                let Some(id) = ids.get(&step) else { continue };
                for (name, value) in outputs_of(&d) {
                    let var = env_name(id, &name);
                    let value = if value == MASK && is_secret(&d, &name) {
                        recall(dir, step, &name)
                    } else {
                        Some(value)
                    };
                    known.names.insert(var.clone(), (id.clone(), name, step));
                    known.values.insert(var, value);
                }
            }
            _ => {}
        }
    }
    known
}

/// A step's outputs as journalled: its captures, or a measure's metrics.
fn outputs_of(details: &serde_json::Value) -> Vec<(String, String)> {
    if let Some(map) = details.get("outputs").and_then(|o| o.as_object()) {
        return map
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().into()))
            .collect();
    }
    let metrics = details.get("metrics").cloned().unwrap_or_default();
    serde_json::from_value::<Vec<super::measure::Metric>>(metrics)
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.name, super::measure::format_value(m.value)))
        .collect()
}

fn is_secret(details: &serde_json::Value, name: &str) -> bool {
    details
        .get("secret_outputs")
        .and_then(|s| s.as_array())
        .is_some_and(|names| names.iter().any(|n| n == name))
}
