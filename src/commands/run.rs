//! `runbook run FILE` and `runbook rehearse FILE`: check, plan, refuse what cannot work (no
//! terminal, the rehearsal gate, a run already going), take the lock, then hand the plan to the
//! engine.

use std::io::IsTerminal;
use std::ops::Range;
use std::path::Path;

use anyhow::{Result, bail};

use crate::Refused;
use crate::cli::{RehearseArgs, RunArgs, Target};
use crate::engine::operator::{self, Operator, Terminal};
use crate::engine::{Engine, Parts};
use crate::gate::{self, Rehearsal, Verdict};
use crate::journal::{Event, RunStarted, RunStatus, StepInfo, Store};
use crate::plan::{Context, Plan, Work};
use crate::runbook::{Runbook, load};
use crate::runner::Local;
use crate::session::{Session, Team};
use crate::ui::Ui;

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
    in_gated_env: bool,
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
            in_gated_env: false,
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
            in_gated_env: args.in_gated_env,
        },
        store,
    )
}

fn launch(l: &Launch<'_>, store: &Store) -> Result<i32> {
    let rb = load(l.file)?;
    let terminal = std::io::stdin().is_terminal();
    super::need_terminal_or_yes(
        l.yes,
        "ask before each step; run on a terminal, or pass --yes to run unattended (a failure then rolls back)",
    )?;
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
    if let Some(h) = &ready.session.locks.run.stale {
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
    session: Session,
}

fn prepare(
    rb: &Runbook,
    l: &Launch<'_>,
    store: &Store,
    run_id: &str,
    run_dir: &Path,
    terminal: bool,
) -> Result<Ready> {
    let mut term = Terminal { name: crate::operator() };
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
    if l.rehearse {
        preamble.extend(check_rehearsal_here(rb, &plan, l)?);
    } else {
        preamble.extend(check_gate(rb, &plan, l, store)?);
    }
    let command = if l.rehearse { "rehearse" } else { "run" };
    let mut started = run_started(rb, &plan, command, l.reason.clone());
    started.range = Some((range.start + 1, range.end));
    started.given = l.target.vars.iter().map(|(k, _)| k.clone()).collect();
    let team =
        Team { lock_redis: plan.lock_redis.as_deref(), store_redis: plan.store_redis.as_deref() };
    let session = Session::start(store.root(), run_dir, started, team, preamble)?;
    Ok(Ready { plan, range, session })
}

/// An environment that requires a rehearsal elsewhere is where the real thing happens: a
/// rehearsal there runs every rollback in it too. Only on purpose, said and recorded.
fn check_rehearsal_here(rb: &Runbook, plan: &Plan, l: &Launch<'_>) -> Result<Option<Event>> {
    let Some(env) = plan.env.as_deref() else { return Ok(None) };
    let Some(gate) = rb.envs.get(env).and_then(|e| e.require_rehearsal.as_ref()) else {
        return Ok(None);
    };
    if !l.in_gated_env {
        return Err(Refused(format!(
            "{env} requires a rehearsal in {} before it runs: it is where the real change happens, and a rehearsal there runs every rollback in it too. Rehearse with `--env {}`, or, to rehearse in {env} on purpose, pass --in-gated-env --reason TEXT (recorded). Nothing was run",
            gate.env, gate.env
        ))
        .into());
    }
    Ok(Some(Event::GatedRehearsal {
        env: env.to_string(),
        reason: l.reason.clone().unwrap_or_default(),
    }))
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
    let _ = rb;
    let Ready { plan, range, session } = ready;
    if session.state.gate_overridden.is_some() {
        ui.say(&ui.warn(
            "The rehearsal gate is overridden; this is recorded in the journal and the note.",
        ));
    }
    let command = if l.rehearse { "rehearse" } else { "run" };
    let env = plan.env.as_deref().map_or(String::new(), |e| format!(" in {e}"));
    ui.say(&format!("{} {}{env}: {command} {}", ui.bold("runbook"), plan.name, plan.run_id));
    let mut operator = operator::for_command(l.yes);
    let parts = Parts {
        journal: session.journal,
        ui,
        operator: operator.as_mut(),
        runner: &Local,
        env: plan.step_env.clone(),
        masker: plan.masker.clone(),
    };
    let mut engine = Engine::new(Some(&plan), session.state, parts);
    let end = if l.rehearse { engine.rehearse()? } else { engine.run(range)? };
    let state = engine.state().clone();
    drop(engine);
    drop(session.locks);
    if end.status == RunStatus::Rehearsed {
        record_rehearsal(ui, &plan, state_dir)?;
    }
    super::summarize(ui, &state, end);
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
        schema: crate::journal::event::SCHEMA,
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
        secrets: plan.secrets.clone(),
        given: Vec::new(),
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
