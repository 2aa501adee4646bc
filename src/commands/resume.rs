//! `runbook resume RUN`: continue a run that stopped without an end (a crash, a closed terminal,
//! SIGKILL). Completed steps are not run again; the step that was in flight is shown with its
//! last output and the operator decides: run it again, mark it done, or roll back from there.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use nix::sys::signal::Signal;

use crate::engine::operator::{
    ABORT, Answer, Choice, DONE, Operator, RETRY, ROLLBACK, RUN, SKIP, Terminal, Unattended,
};
use crate::engine::{Engine, code};
use crate::journal::lock::{self, Holder};
use crate::journal::{Event, RunState, RunStatus, StepStatus, Store, Writer, shared};
use crate::plan::Plan;
use crate::runbook::load;
use crate::ui::Ui;
use crate::{Refused, signals};

const STOP: Choice = Choice("stop");
const WAIT: Choice = Choice("wait");

pub fn run(store: &Store, wanted: &str, yes: bool) -> Result<i32> {
    let run = store.find(wanted)?;
    refuse_unresumable(&run)?;
    if !yes && !std::io::stdin().is_terminal() {
        return Err(Refused("there is no terminal to ask how to resume; pass --yes (it runs the in-flight step again)".into()).into());
    }
    let rb = load(Path::new(&run.started.runbook))?;
    if rb.hash != run.started.hash {
        return Err(Refused(format!(
            "{} changed since run {} started (sha256 {} then, {} now); resume needs the same revision. To undo what the run did: runbook rollback {}",
            run.started.runbook,
            run.id,
            run.started.hash.get(..12).unwrap_or(&run.started.hash),
            &rb.hash[..12],
            run.id
        ))
        .into());
    }
    let plan = super::rebuild_plan(&rb, &run)?;
    let _lock = lock::acquire(
        &lock::lock_path(store.root(), &rb.name, plan.env.as_deref()),
        &Holder {
            operator: plan.operator.clone(),
            host: crate::host(),
            pid: std::process::id(),
            since: chrono::Utc::now(),
            run_id: run.id.clone(),
        },
    )?;
    let holder = Holder {
        operator: plan.operator.clone(),
        host: crate::host(),
        pid: std::process::id(),
        since: chrono::Utc::now(),
        run_id: run.id.clone(),
    };
    let _team_lock = match &plan.lock_redis {
        Some(url) => Some(shared::acquire(url, &rb.name, plan.env.as_deref(), &holder)?),
        None => None,
    };
    let mut journal = Writer::open(&run.dir.join("journal.jsonl"), run.last_seq)?;
    if let Some(url) = &plan.store_redis {
        journal.mirror_to(shared::Mirror::connect(url, &plan.name, &run.id));
    }
    journal.append(Event::Resumed {
        operator: plan.operator.clone(),
        host: crate::host(),
        pid: std::process::id(),
    })?;
    signals::install();
    continue_run(&run, &plan, journal, yes)
}

fn refuse_unresumable(run: &RunState) -> Result<()> {
    if let Some((status, _)) = run.finished {
        let mut next = String::new();
        if matches!(status, RunStatus::Interrupted | RunStatus::Aborted)
            && let Some(n) = run.last_started()
        {
            let env = run.started.env.as_deref().map_or(String::new(), |e| format!(" --env {e}"));
            next = format!(
                ". To go on from step {n}: runbook run {} --from {n}{env}",
                run.started.runbook
            );
        }
        let undo = if run.applied_newest_first().is_empty() {
            String::new()
        } else {
            format!(". To undo it: runbook rollback {}", run.id)
        };
        bail!(Refused(format!(
            "run {} already finished ({}); there is nothing to resume{undo}{next}",
            run.id,
            status.label()
        )));
    }
    // A run still going holds the run lock, which `run` takes next and which refuses plainly;
    // its pid alone could have been reused.
    if run.steps.values().any(|s| {
        matches!(
            s.status,
            StepStatus::RollingBack | StepStatus::RolledBack | StepStatus::RollbackFailed
        )
    }) {
        bail!(Refused(format!(
            "run {} stopped while rolling back; finish the rollback with: runbook rollback {}",
            run.id, run.id
        )));
    }
    Ok(())
}

/// Where the run stopped.
enum Stopped {
    /// A step had started and not finished: it may or may not have done its work.
    InFlight(usize),
    /// A step had failed and the operator's answer (retry, rollback, skip) never came.
    Failed(usize),
    /// Between steps.
    Between,
}

fn stopped_at(run: &RunState) -> Stopped {
    match run.last_started().and_then(|n| run.steps.get(&n)) {
        Some(s) if s.status == StepStatus::InFlight => Stopped::InFlight(s.number - 1),
        Some(s) if s.status == StepStatus::Failed && s.note.is_none() => {
            Stopped::Failed(s.number - 1)
        }
        _ => Stopped::Between,
    }
}

fn continue_run(run: &RunState, plan: &Plan, journal: Writer, yes: bool) -> Result<i32> {
    let ui = Ui::new();
    let (first, last) = run.started.range.unwrap_or((1, plan.steps.len()));
    let applied = applied_in_order(run);
    let stopped = stopped_at(run);
    let pending = (first - 1..last)
        .find(|i| run.steps.get(&(i + 1)).is_some_and(|s| s.status == StepStatus::Pending))
        .unwrap_or(last);
    ui.say(&format!("{} {}: resuming run {}", ui.bold("runbook"), plan.name, run.id));
    ui.say(&format!("  done before the stop: {}", describe(&applied)));
    let mut term = Terminal;
    let mut unattended = Unattended;
    let operator: &mut dyn Operator = if yes { &mut unattended } else { &mut term };
    let (idx, choice) = match stopped {
        Stopped::InFlight(idx) => {
            show_in_flight(&ui, run, idx + 1);
            settle_processes(&ui, run, idx + 1, yes, operator)?;
            let q = format!("Step {} was in flight. What now?", idx + 1);
            (idx, decide(operator, yes, RUN, &q, &[RUN, DONE, ROLLBACK, ABORT])?)
        }
        Stopped::Failed(idx) => {
            let check = run.steps.get(&(idx + 1)).map_or("", |s| s.check.as_str());
            ui.say(&ui.warn(&format!(
                "Step {} had failed ({check}) and nobody had decided what next.",
                idx + 1
            )));
            let q = format!("Step {} failed. What now?", idx + 1);
            // Unattended, as in `run --yes`: a failure rolls back.
            (idx, decide(operator, yes, ROLLBACK, &q, &[RETRY, ROLLBACK, SKIP, ABORT])?)
        }
        Stopped::Between => (pending, RUN),
    };
    let mut engine =
        Engine::new(plan, journal, &ui, operator, yes).resumed(applied, attempts_of(run));
    let end = match choice {
        RUN | RETRY => engine.run(idx..last)?,
        DONE => {
            engine.mark_done(idx)?;
            engine.run(idx + 1..last)?
        }
        SKIP => {
            engine.skip_failed(idx)?;
            engine.run(idx + 1..last)?
        }
        ROLLBACK => engine.resume_rollback(Some(idx))?,
        _ => {
            ui.say("Nothing was run. The run stays open: `runbook resume` or `runbook rollback` it later.");
            return Ok(code::ABORTED);
        }
    };
    super::run::summarize(&ui, plan, end);
    Ok(end.code)
}

/// The operator's answer, or the unattended one.
fn decide(
    operator: &mut dyn Operator,
    yes: bool,
    unattended: Choice,
    question: &str,
    choices: &[Choice],
) -> Result<Choice> {
    if yes {
        return Ok(unattended);
    }
    Ok(match operator.choose(question, choices)? {
        Answer::Chose(c) => c,
        Answer::Interrupted => ABORT,
    })
}

/// Steps that succeeded, in the order they ran, as plan indices.
fn applied_in_order(run: &RunState) -> Vec<usize> {
    let mut done: Vec<usize> = run
        .applied_newest_first()
        .into_iter()
        // Succeeded, or failed and skipped on purpose (it may have partly applied).
        .filter(|s| {
            s.status == StepStatus::Succeeded
                || (s.status == StepStatus::Failed && s.note.is_some())
        })
        .map(|s| s.number - 1)
        .collect();
    done.reverse();
    done
}

fn describe(applied: &[usize]) -> String {
    if applied.is_empty() {
        return "no step".into();
    }
    let n: Vec<String> = applied.iter().map(|i| (i + 1).to_string()).collect();
    format!("steps {}", n.join(", "))
}

/// The in-flight step and the last lines it printed before the stop.
fn show_in_flight(ui: &Ui, run: &RunState, number: usize) {
    ui.say(&ui.warn(&format!(
        "Step {number} ({}) was in flight when the run stopped.",
        run.step_title(number)
    )));
    let log = run.steps.get(&number).and_then(|s| s.log.clone()).map(|l| run.dir.join(l));
    let text = log.and_then(|p| std::fs::read(p).ok()).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        ui.say("  (it printed nothing)");
        return;
    }
    ui.say("  its last output:");
    for line in &lines[lines.len().saturating_sub(10)..] {
        ui.say(&format!("  | {line}"));
    }
}

/// Processes a step started may outlive the engine: find them by RUNBOOK_RUN_ID and, on the
/// operator's word, wait for them or stop them. Unattended, they are stopped.
fn settle_processes(
    ui: &Ui,
    run: &RunState,
    step: usize,
    yes: bool,
    operator: &mut dyn Operator,
) -> Result<()> {
    let pids = step_processes(&run.id, step);
    if pids.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    ui.say(&ui.warn(&format!("Its processes are still running: pids {}", listed.join(", "))));
    let choice = if yes {
        STOP
    } else {
        match operator.choose("Wait for them to finish, or stop them?", &[WAIT, STOP])? {
            Answer::Chose(c) => c,
            Answer::Interrupted => {
                bail!("interrupted while deciding about the step's processes; nothing was run")
            }
        }
    };
    if choice == STOP {
        signal_all(&pids, Signal::SIGTERM);
    }
    let deadline = std::time::Instant::now()
        + if choice == STOP { Duration::from_secs(5) } else { Duration::MAX / 4 };
    while !step_processes(&run.id, step).is_empty() {
        if signals::interrupted() {
            bail!("interrupted while waiting for the step's processes; nothing was run");
        }
        if std::time::Instant::now() > deadline {
            // They ignored SIGTERM.
            signal_all(&step_processes(&run.id, step), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let gone = if choice == STOP { "stopped" } else { "finished" };
    ui.say(&format!("  the step's processes have {gone}"));
    Ok(())
}

/// A process already gone gives ESRCH, which is what we want.
fn signal_all(pids: &[i32], signal: Signal) {
    for pid in pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), signal);
    }
}

/// Processes whose environment says they belong to this run's step (RUNBOOK_RUN_ID and
/// RUNBOOK_STEP); a daemon an earlier step started on purpose is left alone.
fn step_processes(run_id: &str, step: usize) -> Vec<i32> {
    let run_var = format!("RUNBOOK_RUN_ID={run_id}");
    let step_var = format!("RUNBOOK_STEP={step}");
    crate::process::table::with_env(&[&run_var, &step_var])
}

/// How often each step was tried before the stop, by plan index.
fn attempts_of(run: &RunState) -> std::collections::HashMap<usize, u32> {
    run.steps.values().map(|s| (s.number - 1, s.attempts)).collect()
}
