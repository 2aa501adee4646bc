//! `runbook plan FILE`: the steps as they would run, with the rollbacks a failure at each step
//! would trigger. Runs nothing and reads no secret. `--json` prints the same as one object.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::{Value, json};

use crate::cli::Target;
use crate::plan::{Context, Plan, PlannedStep};
use crate::runbook::{Gate, load};
use crate::ui::Ui;

pub fn run(file: &Path, target: &Target, as_json: bool) -> Result<i32> {
    let rb = load(file)?;
    let operator = std::env::var("RUNBOOK_OPERATOR").unwrap_or_else(|_| crate::operator());
    let plan = Plan::build(
        &rb,
        Context {
            env: target.env.as_deref(),
            overrides: &target.vars,
            run_id: "<run_id>".into(),
            run_dir: PathBuf::from("<run_dir>"),
            operator,
            ask_secret: None,
            dry: true,
        },
    )?;
    let gate =
        plan.env.as_deref().and_then(|e| rb.envs.get(e)).and_then(|e| e.require_rehearsal.as_ref());
    if as_json {
        println!("{}", serde_json::to_string_pretty(&plan_json(&plan, &rb.description, gate))?);
        return Ok(crate::engine::code::OK);
    }
    print_plan(&plan, &rb.description);
    let rollout = crate::rollout::plan_lines(&plan);
    if !rollout.is_empty() {
        println!(
            "
{}",
            rollout.join(
                "
"
            )
        );
    }
    if let Some(gate) = gate {
        println!(
            "\ngate: a run in {} needs this revision to have passed a rehearsal in {} within {}",
            plan.env.as_deref().unwrap_or_default(),
            gate.env,
            crate::runbook::duration::human(gate.within)
        );
    }
    Ok(crate::engine::code::OK)
}

/// The plan as JSON: what the text shows, every command masked as on the terminal.
fn plan_json(plan: &Plan, description: &str, gate: Option<&Gate>) -> Value {
    let steps: Vec<Value> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| step_json(plan, step, &plan.steps[..=i]))
        .collect();
    let mut vars: serde_json::Map<String, Value> =
        plan.vars.iter().map(|(k, v)| (k.clone(), Value::from(shown(plan, v)))).collect();
    // Secrets are never among the plan's values: they are named, and shown as `***`.
    vars.extend(plan.secrets.iter().map(|k| (k.clone(), Value::from(crate::secret::MASK))));
    json!({
        "name": plan.name,
        "path": plan.path,
        "hash": plan.hash,
        "description": description,
        "env": plan.env,
        "vars": vars,
        "gate": gate.map(|g| json!({
            "env": g.env,
            "within": crate::runbook::duration::human(g.within),
        })),
        "steps": steps,
    })
}

fn step_json(plan: &Plan, step: &PlannedStep, upto: &[PlannedStep]) -> Value {
    let expect = step.expect_text();
    json!({
        "number": step.number,
        "id": step.id,
        "title": step.title,
        "kind": step.kind.name(),
        "owner": step.owner,
        "command": shown(plan, &step.work.summary()),
        "keys": crate::steps::flush_step::preview_line(&step.work, &plan.step_env)
            .map(|preview| shown(plan, &preview)),
        "expect": (!expect.is_empty()).then_some(expect),
        "retries": step.retries,
        "rollback": step.rollback.as_ref().map(|w| shown(plan, &w.summary())),
        "irreversible": step.irreversible,
        "verify_rollback": step.verify_rollback.as_ref().map(|w| shown(plan, &w.summary())),
        "skipped_in_env": step.excluded,
        "on_failure": rollback_sequence(upto),
    })
}

/// Text as the terminal shows it: secrets masked, URL passwords hidden.
fn shown(plan: &Plan, text: &str) -> String {
    crate::secret::redact(&plan.masker.mask(text)).into_owned()
}

fn print_plan(plan: &Plan, description: &str) {
    let ui = Ui::new();
    let env = plan.env.as_deref().map_or(String::new(), |e| format!(", env {e}"));
    println!(
        "{}  ({}{env}, sha256 {})",
        ui.bold(&plan.name),
        plan.path.display(),
        &plan.hash[..12]
    );
    if !description.is_empty() {
        println!("{description}");
    }
    for (i, step) in plan.steps.iter().enumerate() {
        println!();
        print_step(&ui, plan, step);
        println!("   on failure here: {}", rollback_sequence(&plan.steps[..=i]));
    }
}

fn print_step(ui: &Ui, plan: &Plan, step: &PlannedStep) {
    let id = step.id.as_deref().map_or(String::new(), |id| format!(" ({id})"));
    let head = format!("{}. {}{id}", step.number, step.title);
    println!("{}  [{}] owner: {}", ui.bold(&head), step.kind.name(), step.owner);
    if let Some(why) = &step.excluded {
        println!("   skipped in this environment: {why}");
    }
    if let Some(on) = &step.on {
        let hosts: Vec<&str> = on.hosts.iter().map(|h| h.host.as_str()).collect();
        println!("   on:       {} ({})", on.group, hosts.join(", "));
    }
    println!("   do:       {}", plan.masker.mask(&step.work.summary()));
    if let Some(preview) = crate::steps::flush_step::preview_line(&step.work, &plan.step_env) {
        println!("   keys:     {}", plan.masker.mask(&preview));
    }
    let expect = step.expect_text();
    if !expect.is_empty() {
        println!("   expect:   {expect}");
    }
    if step.retries > 0 {
        println!("   retries:  {}", step.retries);
    }
    match (&step.rollback, &step.irreversible) {
        (Some(w), _) => println!("   rollback: {}", plan.masker.mask(&w.summary())),
        (None, Some(why)) => println!("   rollback: none, irreversible: {why}"),
        (None, None) => println!("   rollback: none (changes nothing)"),
    }
    if let Some(v) = &step.verify_rollback {
        println!("   verify:   {} (after the rollback)", plan.masker.mask(&v.summary()));
    }
}

/// The rollbacks a failure at the last of `steps` triggers: its own first, then the earlier
/// ones, newest first.
fn rollback_sequence(steps: &[PlannedStep]) -> String {
    let mut parts = Vec::new();
    for s in steps.iter().rev().filter(|s| s.excluded.is_none()) {
        match (&s.rollback, &s.irreversible) {
            (Some(_), _) => parts.push(format!("roll back {}", s.number)),
            (None, Some(_)) => parts.push(format!("{} stays (irreversible)", s.number)),
            (None, None) => {}
        }
    }
    if parts.is_empty() { "nothing to roll back".into() } else { parts.join(", ") }
}
