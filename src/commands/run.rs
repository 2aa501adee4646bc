//! `runbook run FILE`: check, plan, refuse what cannot work, then hand the plan to the engine.

use std::io::IsTerminal;

use anyhow::{Result, bail};

use crate::cli::RunArgs;
use crate::engine::operator::{Operator, Terminal, Unattended};
use crate::engine::{Engine, RunEnd};
use crate::journal::{Event, RunStarted, RunStatus, StepInfo, Store, Writer};
use crate::plan::{Context, Plan, Work};
use crate::runbook::{Runbook, load};
use crate::ui::Ui;
use crate::{Refused, signals};

pub fn run(args: &RunArgs, store: &Store) -> Result<i32> {
    let rb = load(&args.file)?;
    let terminal = std::io::stdin().is_terminal();
    if !args.yes && !terminal {
        return Err(Refused(
            "there is no terminal to ask before each step; run on a terminal, or pass --yes to run unattended (a failure then rolls back)".into(),
        )
        .into());
    }
    let (run_id, run_dir) = store.create_run(&rb.name)?;
    let operator_name = crate::operator();
    let mut term = Terminal;
    let mut ask = |label: &str| term.secret(label);
    let built = Plan::build(
        &rb,
        Context {
            env: args.target.env.as_deref(),
            overrides: &args.target.vars,
            run_id: run_id.clone(),
            run_dir: run_dir.clone(),
            operator: operator_name,
            ask_secret: if terminal { Some(&mut ask) } else { None },
            dry: false,
        },
    );
    let plan = match built.and_then(|p| select(&p, args).map(|r| (p, r))) {
        Ok(ok) => ok,
        Err(e) => {
            // Nothing ran: leave no empty run behind.
            let _ = std::fs::remove_dir_all(&run_dir);
            return Err(e);
        }
    };
    let (plan, range) = plan;
    execute(&rb, &plan, range, args)
}

/// The steps `--from` and `--to` select, refusing unattended runs that need a person.
fn select(plan: &Plan, args: &RunArgs) -> Result<std::ops::Range<usize>> {
    let from = args.from.as_deref().map(|s| plan.step_index(s)).transpose()?.unwrap_or(0);
    let to =
        args.to.as_deref().map(|s| plan.step_index(s)).transpose()?.unwrap_or(plan.steps.len() - 1);
    if from > to {
        bail!(
            "--from {} comes after --to {}; expected the first step before the last",
            from + 1,
            to + 1
        );
    }
    if args.yes
        && let Some(s) = plan.steps[from..=to]
            .iter()
            .find(|s| matches!(s.work, Work::Manual { .. }) && s.excluded.is_none())
    {
        return Err(Refused(format!(
            "step {} ({}) is done by hand and --yes means nobody is there; run on a terminal without --yes",
            s.number, s.title
        ))
        .into());
    }
    Ok(from..to + 1)
}

fn execute(
    rb: &Runbook,
    plan: &Plan,
    range: std::ops::Range<usize>,
    args: &RunArgs,
) -> Result<i32> {
    let ui = Ui::new();
    let mut journal = Writer::open(&plan.run_dir.join("journal.jsonl"), 0)?;
    journal.append(Event::RunStarted(run_started(rb, plan, "run", args.reason.clone())))?;
    signals::install();
    let env = plan.env.as_deref().map_or(String::new(), |e| format!(" in {e}"));
    ui.say(&format!("{} {}{env}: run {}", ui.bold("runbook"), plan.name, plan.run_id));
    let mut term = Terminal;
    let mut unattended = Unattended;
    let operator: &mut dyn Operator = if args.yes { &mut unattended } else { &mut term };
    let mut engine = Engine::new(plan, journal, &ui, operator, args.yes);
    let end = engine.run(range)?;
    summarize(&ui, plan, end);
    Ok(end.code)
}

pub fn run_started(rb: &Runbook, plan: &Plan, command: &str, reason: Option<String>) -> RunStarted {
    RunStarted {
        run_id: plan.run_id.clone(),
        command: command.to_string(),
        runbook: std::fs::canonicalize(&rb.path)
            .unwrap_or_else(|_| rb.path.clone())
            .display()
            .to_string(),
        name: rb.name.clone(),
        hash: rb.hash.clone(),
        operator: plan.operator.clone(),
        host: crate::host(),
        pid: std::process::id(),
        reason: reason.map(|r| plan.masker.mask(&r).into_owned()),
        env: plan.env.clone(),
        vars: plan.vars.clone(),
        steps: plan
            .steps
            .iter()
            .map(|s| StepInfo {
                number: s.number,
                id: s.id.clone(),
                title: s.title.clone(),
                kind: s.kind,
                owner: s.owner.clone(),
                expect: s.expect_text(),
                irreversible: s.irreversible.clone(),
            })
            .collect(),
    }
}

fn summarize(ui: &Ui, plan: &Plan, end: RunEnd) {
    let label = end.status.label();
    let line = match end.status {
        RunStatus::Succeeded => ui.good(label),
        RunStatus::RolledBack | RunStatus::Aborted | RunStatus::Interrupted => ui.warn(label),
        _ => ui.bad(label),
    };
    ui.say(&format!("\nrun {} {line} (exit {})", plan.run_id, end.code));
    ui.say(&format!("journal: {}", plan.run_dir.join("journal.jsonl").display()));
    ui.say(&format!("details: runbook show {}", plan.run_id));
    write_note(ui, plan);
}

/// The run's counts and metric changes, and its final note in `<run_dir>/report.md`. A note that
/// cannot be written is a warning: the run itself is over and journalled.
fn write_note(ui: &Ui, plan: &Plan) {
    let path = plan.run_dir.join("report.md");
    let written = crate::journal::reader::read(&plan.run_dir).and_then(|state| {
        let note = crate::report::Note::from_run(&state);
        std::fs::write(&path, crate::report::markdown(&note))?;
        Ok(note.summary())
    });
    match written {
        Ok(lines) => {
            lines.iter().for_each(|l| ui.say(l));
            ui.say(&format!("note: {}", path.display()));
        }
        Err(e) => ui.say(&ui.warn(&format!("cannot write the note {}: {e:#}", path.display()))),
    }
}
