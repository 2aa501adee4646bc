//! `runbook rollback RUN`: undo what a past run left applied, newest first, with the rollback
//! commands its journal recorded (not today's file), appending to that run's journal.

use std::io::IsTerminal;

use anyhow::Result;

use crate::engine::code;
use crate::engine::operator::{Answer, NO, Operator, Terminal, YES};
use crate::journal::{Event, RunState, RunStatus, StepState, Store, Writer, reader};
use crate::plan::Work;
use crate::runbook::Expect;
use crate::secret::Masker;
use crate::steps::{self, StepContext};
use crate::ui::Ui;
use crate::{Refused, signals};

pub fn run(store: &Store, wanted: &str, yes: bool) -> Result<i32> {
    let run = store.find(wanted)?;
    refuse_if_running(&run)?;
    let applied = run.applied_newest_first();
    let (todo, stays): (Vec<&StepState>, Vec<&StepState>) =
        applied.into_iter().partition(|s| s.rollback.is_some());
    if todo.is_empty() {
        return Err(Refused(format!(
            "run {} has nothing to roll back ({}): no applied step with a rollback",
            run.id,
            run.status_label()
        ))
        .into());
    }
    let ui = Ui::new();
    let numbers: Vec<String> = todo.iter().map(|s| s.number.to_string()).collect();
    for s in &stays {
        ui.say(&ui.warn(&format!(
            "step {} {} has no rollback and stays applied",
            s.number,
            run.step_title(s.number)
        )));
    }
    let mut journal = Writer::open(&run.dir.join("journal.jsonl"), run.last_seq)?;
    if !confirm(&ui, &run, &numbers, yes, &mut journal)? {
        ui.say("Nothing was rolled back.");
        return Ok(code::ABORTED);
    }
    signals::install();
    for (pos, step) in todo.iter().enumerate() {
        if pos > 0 && signals::interrupted() && abandon(&ui, yes, step.number, &mut journal)? {
            let still: Vec<usize> = todo[pos..].iter().chain(&stays).map(|s| s.number).collect();
            ui.say(&ui.warn(&format!(
                "Rollback abandoned; still applied: {still:?}. `runbook rollback {}` continues it.",
                run.id
            )));
            journal.append(Event::RunFinished {
                status: RunStatus::Interrupted,
                exit_code: code::INTERRUPTED,
                still_applied: still,
            })?;
            return Ok(code::INTERRUPTED);
        }
        if !undo(&ui, &run, step, &mut journal)? {
            let still: Vec<usize> = todo[pos..].iter().chain(&stays).map(|s| s.number).collect();
            ui.say(&ui.bad(&format!(
                "Rollback stopped at step {}; still applied: {still:?}",
                step.number
            )));
            journal.append(Event::RunFinished {
                status: RunStatus::RollbackFailed,
                exit_code: code::ROLLBACK_FAILED,
                still_applied: still,
            })?;
            return Ok(code::ROLLBACK_FAILED);
        }
    }
    let still_applied = stays.iter().map(|s| s.number).collect();
    journal.append(Event::RunFinished {
        status: RunStatus::RolledBack,
        exit_code: code::OK,
        still_applied,
    })?;
    ui.say(&ui.good(&format!("run {} rolled back (steps {})", run.id, numbers.join(", "))));
    Ok(code::OK)
}

/// Ctrl-C between two rollback steps: ask before abandoning the rest (unattended: go on).
fn abandon(ui: &Ui, yes: bool, next: usize, journal: &mut Writer) -> Result<bool> {
    let signal = signals::last_name().to_string();
    signals::clear();
    journal.append(Event::Interrupted { step: Some(next), signal: signal.clone() })?;
    if yes || !std::io::stdin().is_terminal() {
        ui.say(&ui.warn(&format!("{signal} during the rollback: unattended, it goes on")));
        return Ok(false);
    }
    let question =
        format!("{signal}: abandon the rollback and leave step {next} and older applied?");
    let answer = Terminal.choose(&question, &[YES, NO])?;
    let said = match answer {
        Answer::Chose(c) => c.0,
        Answer::Interrupted => "interrupted",
    };
    journal.append(Event::Prompt { step: Some(next), question, answer: said.into() })?;
    signals::clear();
    Ok(answer != Answer::Chose(NO))
}

fn refuse_if_running(run: &RunState) -> Result<()> {
    let alive = reader::process_alive(run.started.pid) && run.started.host == crate::host();
    if run.finished.is_none() && alive {
        return Err(Refused(format!(
            "run {} is still running (pid {} on {}); wait for it or stop it first",
            run.id, run.started.pid, run.started.host
        ))
        .into());
    }
    Ok(())
}

fn confirm(
    ui: &Ui,
    run: &RunState,
    numbers: &[String],
    yes: bool,
    journal: &mut Writer,
) -> Result<bool> {
    ui.say(&format!(
        "Run {} ({}): roll back steps {}, in that order",
        run.id,
        run.started.name,
        numbers.join(", ")
    ));
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(
            Refused("there is no terminal to confirm the rollback; pass --yes".into()).into()
        );
    }
    let question = format!("Roll back steps {}?", numbers.join(", "));
    let answer = Terminal.choose(&question, &[YES, NO])?;
    let said = match answer {
        Answer::Chose(c) => c.0,
        Answer::Interrupted => "interrupted",
    };
    journal.append(Event::Prompt { step: None, question, answer: said.into() })?;
    Ok(answer == Answer::Chose(YES))
}

fn undo(ui: &Ui, run: &RunState, step: &StepState, journal: &mut Writer) -> Result<bool> {
    let Some(work) = &step.rollback else { return Ok(true) };
    let log = format!("logs/{:02}-rollback.log", step.number);
    journal.append(Event::RollbackStarted {
        step: step.number,
        reason: format!("runbook rollback {}", run.id),
        work: work.clone(),
        log: log.clone(),
    })?;
    ui.say(&format!(
        "  ↩ step {} {}: {}",
        step.number,
        run.step_title(step.number),
        work.summary()
    ));
    let result = execute(ui, work, &run.dir.join(&log));
    journal.append(Event::RollbackFinished {
        step: step.number,
        ok: result.outcome == crate::journal::Outcome::Ok,
        exit_code: result.exit_code,
        duration_ms: result.duration.as_millis() as u64,
        check: result.check.clone(),
        details: result.details.clone(),
    })?;
    let ok = result.outcome == crate::journal::Outcome::Ok;
    let mark = if ok { ui.good("  ✓ rolled back") } else { ui.bad("  ✗ ROLLBACK FAILED") };
    ui.say(&format!("{mark} step {} ({})", step.number, result.check));
    Ok(ok)
}

fn execute(ui: &Ui, work: &Work, log: &std::path::Path) -> steps::StepResult {
    let masker = Masker::default();
    let ctx = StepContext {
        ui,
        masker: &masker,
        env: &[],
        // A Ctrl-C must not cut a rollback command in half; it is dealt with between steps.
        interrupt: &signals::NEVER,
        log_path: log,
        echo: true,
    };
    ui.start_spinner("rolling back");
    let result = steps::execute(work, &Expect::default(), &ctx);
    ui.finish_spinner();
    result.unwrap_or_else(|e| steps::StepResult::could_not_run(&e))
}
