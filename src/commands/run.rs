//! `runbook run FILE` and `runbook rehearse FILE`: check, plan, refuse what cannot work (no
//! terminal, the rehearsal gate, a run already going), take the lock, then hand the plan to the
//! engine.

use std::io::IsTerminal;
use std::ops::Range;
use std::path::Path;

use anyhow::{Result, bail};

use crate::cli::{RehearseArgs, RunArgs, Target};
use crate::engine::operator::{Operator, Terminal, Unattended};
use crate::engine::{Engine, RunEnd};
use crate::gate::{self, Rehearsal, Verdict};
use crate::journal::lock::{self, Holder, RunLock};
use crate::journal::shared;
use crate::journal::{Event, RunStarted, RunStatus, StepInfo, Store, Writer};
use crate::plan::{Context, Plan, Work};
use crate::runbook::{Runbook, load};
use crate::ui::Ui;
use crate::{Refused, signals};

/// What `run` and `rehearse` share, from their command lines.
struct Launch<'a> {
    file: &'a Path,
    target: &'a Target,
    yes: bool,
    reason: Option<String>,
    from: Option<&'a str>,
    to: Option<&'a str>,
    override_gate: bool,
    rehearse: bool,
}

pub fn run(args: &RunArgs, store: &Store) -> Result<i32> {
    launch(
        &Launch {
            file: &args.file,
            target: &args.target,
            yes: args.yes,
            reason: args.reason.clone(),
            from: args.from.as_deref(),
            to: args.to.as_deref(),
            override_gate: args.override_gate,
            rehearse: false,
        },
        store,
    )
}

pub fn rehearse(args: &RehearseArgs, store: &Store) -> Result<i32> {
    launch(
        &Launch {
            file: &args.file,
            target: &args.target,
            yes: args.yes,
            reason: args.reason.clone(),
            from: None,
            to: None,
            override_gate: false,
            rehearse: true,
        },
        store,
    )
}

fn launch(l: &Launch<'_>, store: &Store) -> Result<i32> {
    let rb = load(l.file)?;
    let terminal = std::io::stdin().is_terminal();
    if !l.yes && !terminal {
        return Err(Refused(
            "there is no terminal to ask before each step; run on a terminal, or pass --yes to run unattended (a failure then rolls back)".into(),
        )
        .into());
    }
    let (run_id, run_dir) = store.create_run(&rb.name)?;
    let prepared = prepare(&rb, l, store, &run_id, &run_dir, terminal);
    let ready = match prepared {
        Ok(ok) => ok,
        Err(e) => {
            // Nothing ran: leave no empty run behind.
            let _ = std::fs::remove_dir_all(&run_dir);
            return Err(e);
        }
    };
    let ui = Ui::new();
    if let Some(h) = &ready.lock.stale {
        let since = h.since.format("%Y-%m-%d %H:%M:%SZ");
        ui.say(&ui.warn(&format!(
            "note: run {} ({} on {}, since {since}) died holding the lock; it was stale and is taken over (`runbook resume {}` continues that run)",
            h.run_id, h.operator, h.host, h.run_id
        )));
    }
    execute(&ui, &rb, ready, l, store.root())
}

/// A run that may start: its plan, the steps to run, the locks it holds, and what the journal
/// must say before the first step.
struct Ready {
    plan: Plan,
    range: Range<usize>,
    lock: RunLock,
    team_lock: Option<shared::RedisLock>,
    preamble: Vec<Event>,
}

fn prepare(
    rb: &Runbook,
    l: &Launch<'_>,
    store: &Store,
    run_id: &str,
    run_dir: &Path,
    terminal: bool,
) -> Result<Ready> {
    let mut term = Terminal;
    let mut ask = |label: &str| term.secret(label);
    let plan = Plan::build(
        rb,
        Context {
            env: l.target.env.as_deref(),
            overrides: &l.target.vars,
            run_id: run_id.to_string(),
            run_dir: run_dir.to_path_buf(),
            operator: crate::operator(),
            ask_secret: if terminal { Some(&mut ask) } else { None },
            dry: false,
        },
    )?;
    let range = select(&plan, l)?;
    let mut preamble: Vec<Event> = Vec::new();
    if !l.rehearse {
        preamble.extend(check_gate(rb, &plan, l, store)?);
    }
    let holder = Holder {
        operator: plan.operator.clone(),
        host: crate::host(),
        pid: std::process::id(),
        since: chrono::Utc::now(),
        run_id: run_id.to_string(),
    };
    let lock =
        lock::acquire(&lock::lock_path(store.root(), &rb.name, plan.env.as_deref()), &holder)?;
    let team_lock = match &plan.lock_redis {
        Some(url) => {
            let taken = shared::acquire(url, &rb.name, plan.env.as_deref(), &holder)?;
            let redis = crate::secret::redact(url).into_owned();
            preamble.push(Event::LockTaken { redis, fencing_token: taken.fencing_token });
            Some(taken)
        }
        None => None,
    };
    Ok(Ready { plan, range, lock, team_lock, preamble })
}

/// The environment's rehearsal gate: pass, refuse, or (with --override-gate) go ahead and say
/// what was overridden.
fn check_gate(rb: &Runbook, plan: &Plan, l: &Launch<'_>, store: &Store) -> Result<Option<Event>> {
    let Some(env) = plan.env.as_deref() else { return Ok(None) };
    let Some(gate) = rb.envs.get(env).and_then(|e| e.require_rehearsal.as_ref()) else {
        return Ok(None);
    };
    let mut history = gate::rehearsals(store.root(), &rb.name, &gate.env);
    if let Some(url) = &plan.store_redis {
        history = gate::with_team_rehearsals(history, url, &rb.name, &gate.env);
    }
    let refusal = match gate::check(rb, gate, &history, chrono::Utc::now()) {
        Verdict::Pass(_) => return Ok(None),
        Verdict::Refuse(why) => why,
    };
    let within = crate::runbook::duration::human(gate.within);
    if !l.override_gate {
        return Err(Refused(format!(
            "{env} requires a passed rehearsal in {} within {within}: {refusal}. Rehearse it with `runbook rehearse {} --env {}`, or run anyway with --override-gate --reason TEXT (recorded)",
            gate.env,
            rb.path.display(),
            gate.env
        ))
        .into());
    }
    Ok(Some(Event::GateOverridden {
        required_env: gate.env.clone(),
        within,
        refusal,
        reason: l.reason.clone().unwrap_or_default(),
    }))
}

/// The steps `--from` and `--to` select, refusing unattended runs that need a person.
fn select(plan: &Plan, l: &Launch<'_>) -> Result<Range<usize>> {
    let from = l.from.map(|s| plan.step_index(s)).transpose()?.unwrap_or(0);
    let to =
        l.to.map(|s| plan.step_index(s)).transpose()?.unwrap_or(plan.steps.len().saturating_sub(1));
    if from > to {
        bail!(
            "--from {} comes after --to {}; expected the first step before the last",
            from + 1,
            to + 1
        );
    }
    if l.yes
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

fn execute(ui: &Ui, rb: &Runbook, ready: Ready, l: &Launch<'_>, state_dir: &Path) -> Result<i32> {
    let Ready { plan, range, lock, team_lock, preamble } = ready;
    let command = if l.rehearse { "rehearse" } else { "run" };
    let mut journal = Writer::open(&plan.run_dir.join("journal.jsonl"), 0)?;
    if let Some(url) = &plan.store_redis {
        journal.mirror_to(shared::Mirror::connect(url, &plan.name, &plan.run_id));
    }
    let mut started = run_started(rb, &plan, command, l.reason.clone());
    started.range = Some((range.start + 1, range.end));
    journal.append(Event::RunStarted(started))?;
    for event in preamble {
        if matches!(event, Event::GateOverridden { .. }) {
            ui.say(&ui.warn(
                "The rehearsal gate is overridden; this is recorded in the journal and the note.",
            ));
        }
        journal.append(event)?;
    }
    signals::install();
    let env = plan.env.as_deref().map_or(String::new(), |e| format!(" in {e}"));
    ui.say(&format!("{} {}{env}: {command} {}", ui.bold("runbook"), plan.name, plan.run_id));
    let mut term = Terminal;
    let mut unattended = Unattended;
    let operator: &mut dyn Operator = if l.yes { &mut unattended } else { &mut term };
    let mut engine = Engine::new(&plan, journal, ui, operator, l.yes);
    let end = if l.rehearse { engine.rehearse()? } else { engine.run(range)? };
    drop(engine);
    drop(team_lock);
    drop(lock);
    if end.status == RunStatus::Rehearsed {
        record_rehearsal(ui, &plan, state_dir)?;
    }
    summarize(ui, &plan, end);
    Ok(end.code)
}

fn record_rehearsal(ui: &Ui, plan: &Plan, state_dir: &Path) -> Result<()> {
    let Some(env) = plan.env.clone() else {
        ui.say("note: rehearsed without --env, so no environment's gate can count it");
        return Ok(());
    };
    let rehearsal = Rehearsal {
        ts: chrono::Utc::now(),
        name: plan.name.clone(),
        hash: plan.hash.clone(),
        env,
        run_id: plan.run_id.clone(),
        operator: plan.operator.clone(),
        host: crate::host(),
    };
    gate::record(state_dir, &rehearsal)?;
    if let Some(url) = &plan.store_redis
        && let Err(e) = gate::share(url, &rehearsal)
    {
        ui.say(
            &ui.warn(&format!(
                "the rehearsal is recorded locally, but not in the team store: {e:#}"
            )),
        );
    }
    Ok(())
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
        range: None,
    }
}

pub(crate) fn summarize(ui: &Ui, plan: &Plan, end: RunEnd) {
    let label = end.status.label();
    let line = match end.status {
        RunStatus::Succeeded | RunStatus::Rehearsed => ui.good(label),
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
        crate::private::write(&path, crate::report::markdown(&note).as_bytes())?;
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
