//! `runbook rollback RUN`: undo what a past run left applied, newest first, with the rollback
//! commands its journal recorded (not today's file), appending to that run's journal. It holds
//! the run lock while it works (so a run still going is refused by the lock, not by a pid that
//! may have been reused), gives the commands the secrets they refer to (read again from
//! their sources, since the journal never held them) and checks `verify_rollback`.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Result;
use regex::Regex;

use crate::engine::code;
use crate::engine::operator::{Answer, NO, Operator, Terminal, YES};
use crate::journal::lock::{self, Holder};
use crate::journal::{Event, Outcome, RunState, RunStatus, StepState, Store, Writer, shared};
use crate::plan::{Plan, Work};
use crate::runbook::{Expect, load};
use crate::secret::Masker;
use crate::steps::{self, StepContext, StepResult};
use crate::ui::Ui;
use crate::{Refused, signals};

/// What the rollback of one run works with.
struct Undo<'a> {
    ui: Ui,
    run: &'a RunState,
    /// The secrets the recorded commands refer to, and RUNBOOK_RUN_ID.
    env: Vec<(String, String)>,
    masker: Masker,
    journal: Writer,
}

pub fn run(store: &Store, wanted: &str, yes: bool) -> Result<i32> {
    let run = store.find(wanted)?;
    let (todo, stays): (Vec<&StepState>, Vec<&StepState>) =
        run.applied_newest_first().into_iter().partition(|s| s.rollback.is_some());
    let stays: Vec<&StepState> =
        stays.into_iter().filter(|s| run.changes_without_rollback(s.number)).collect();
    if todo.is_empty() {
        return Err(Refused(format!(
            "run {} has nothing to roll back ({}): no applied step with a rollback",
            run.id,
            run.status_label()
        ))
        .into());
    }
    let plan = load(Path::new(&run.started.runbook))
        .ok()
        .and_then(|rb| super::rebuild_plan(&rb, &run).ok());
    let (env, masker) = secrets_for(&run, &todo, plan.as_ref())?;
    let holder = Holder {
        operator: crate::operator(),
        host: crate::host(),
        pid: std::process::id(),
        since: chrono::Utc::now(),
        run_id: run.id.clone(),
    };
    let _lock = lock::acquire(
        &lock::lock_path(store.root(), &run.started.name, run.started.env.as_deref()),
        &holder,
    )?;
    let _team_lock = match plan.as_ref().and_then(|p| p.lock_redis.as_ref()) {
        Some(url) => {
            Some(shared::acquire(url, &run.started.name, run.started.env.as_deref(), &holder)?)
        }
        None => None,
    };
    let journal = Writer::open(&run.dir.join("journal.jsonl"), run.last_seq)?;
    let mut undo = Undo { ui: Ui::new(), run: &run, env, masker, journal };
    for s in &stays {
        let title = run.step_title(s.number);
        undo.ui.say(
            &undo.ui.warn(&format!("step {} {title} has no rollback and stays applied", s.number)),
        );
    }
    if !undo.confirm(&todo, yes)? {
        undo.ui.say("Nothing was rolled back.");
        return Ok(code::ABORTED);
    }
    signals::install();
    undo.all(&todo, &stays, yes)
}

/// The secrets the recorded rollback commands refer to (`${RUNBOOK_SECRET_NAME}`): from the
/// runbook's own sources when it can still be read, else from this process's environment.
/// A missing one is a refusal before anything runs: a rollback with an empty token is worse
/// than none.
fn secrets_for(
    run: &RunState,
    todo: &[&StepState],
    plan: Option<&Plan>,
) -> Result<(Vec<(String, String)>, Masker)> {
    let reference = Regex::new(r"RUNBOOK_SECRET_[A-Z0-9_]+").expect("a valid regex");
    let mut names: Vec<String> = Vec::new();
    for step in todo {
        let text = serde_json::to_string(&(&step.rollback, &step.verify)).unwrap_or_default();
        names.extend(reference.find_iter(&text).map(|m| m.as_str().to_string()));
    }
    names.sort();
    names.dedup();
    let from_plan = |name: &str| {
        plan.and_then(|p| p.step_env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    };
    let mut env = vec![("RUNBOOK_RUN_ID".to_string(), run.id.clone())];
    let mut missing = Vec::new();
    for name in names {
        match from_plan(&name).or_else(|| std::env::var(&name).ok()) {
            Some(value) => env.push((name, value)),
            None => missing.push(name),
        }
    }
    if !missing.is_empty() {
        return Err(Refused(format!(
            "the rollback commands use {}, which cannot be read again from {} (it is missing or changed); set {} in the environment and run again. Nothing was rolled back",
            missing.join(", "),
            run.started.runbook,
            if missing.len() == 1 { "it" } else { "them" }
        ))
        .into());
    }
    let masker = Masker::new(env.iter().skip(1).map(|(_, v)| v.clone()));
    Ok((env, masker))
}

impl Undo<'_> {
    fn all(&mut self, todo: &[&StepState], stays: &[&StepState], yes: bool) -> Result<i32> {
        for (pos, step) in todo.iter().enumerate() {
            let still =
                || -> Vec<usize> { todo[pos..].iter().chain(stays).map(|s| s.number).collect() };
            if pos > 0 && signals::interrupted() && self.abandon(yes, step.number)? {
                self.ui.say(&self.ui.warn(&format!(
                    "Rollback abandoned; still applied: steps {}. `runbook rollback {}` continues it.",
                    list(&still()),
                    self.run.id
                )));
                return self.finish(RunStatus::Interrupted, code::INTERRUPTED, still());
            }
            if !self.one(step)? {
                let msg = format!(
                    "Rollback stopped at step {}; still applied: steps {}",
                    step.number,
                    list(&still())
                );
                self.ui.say(&self.ui.bad(&msg));
                return self.finish(RunStatus::RollbackFailed, code::ROLLBACK_FAILED, still());
            }
        }
        let numbers: Vec<String> = todo.iter().map(|s| s.number.to_string()).collect();
        let msg = format!("run {} rolled back (steps {})", self.run.id, numbers.join(", "));
        self.ui.say(&self.ui.good(&msg));
        self.finish(RunStatus::RolledBack, code::OK, stays.iter().map(|s| s.number).collect())
    }

    fn finish(
        &mut self,
        status: RunStatus,
        exit_code: i32,
        still_applied: Vec<usize>,
    ) -> Result<i32> {
        self.journal.append(Event::RunFinished { status, exit_code, still_applied })?;
        Ok(exit_code)
    }

    fn confirm(&mut self, todo: &[&StepState], yes: bool) -> Result<bool> {
        let numbers: Vec<String> = todo.iter().map(|s| s.number.to_string()).collect();
        let (id, name) = (&self.run.id, &self.run.started.name);
        self.ui.say(&format!(
            "Run {id} ({name}): roll back steps {}, in that order",
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
        let answer = self.ask(None, question)?;
        Ok(answer == Answer::Chose(YES))
    }

    /// Ctrl-C between two rollback steps: ask before abandoning the rest (unattended: go on).
    fn abandon(&mut self, yes: bool, next: usize) -> Result<bool> {
        let signal = signals::last_name().to_string();
        signals::clear();
        self.journal.append(Event::Interrupted { step: Some(next), signal: signal.clone() })?;
        if yes || !std::io::stdin().is_terminal() {
            self.ui.say(
                &self.ui.warn(&format!("{signal} during the rollback: unattended, it goes on")),
            );
            return Ok(false);
        }
        let question =
            format!("{signal}: abandon the rollback and leave step {next} and older applied?");
        let answer = self.ask(Some(next), question)?;
        signals::clear();
        Ok(answer != Answer::Chose(NO))
    }

    fn ask(&mut self, step: Option<usize>, question: String) -> Result<Answer> {
        let answer = Terminal.choose(&question, &[YES, NO])?;
        let said = match answer {
            Answer::Chose(c) => c.0,
            Answer::Interrupted => "interrupted",
        };
        self.journal.append(Event::Prompt { step, question, answer: said.into() })?;
        Ok(answer)
    }

    /// Undo one step with its recorded rollback, then check its recorded verify_rollback.
    fn one(&mut self, step: &StepState) -> Result<bool> {
        let Some(work) = &step.rollback else { return Ok(true) };
        let log = format!("logs/{:02}-rollback.log", step.number);
        self.journal.append(Event::RollbackStarted {
            step: step.number,
            reason: format!("runbook rollback {}", self.run.id),
            work: work.clone(),
            log: log.clone(),
        })?;
        let title = self.run.step_title(step.number);
        self.ui.say(&format!("  ↩ step {} {title}: {}", step.number, work.summary()));
        let mut result = self.execute(step.number, work, &self.run.dir.join(&log));
        if result.outcome == Outcome::Ok
            && let Some(verify) = &step.verify
        {
            let log = self.run.dir.join(format!("logs/{:02}-verify.log", step.number));
            let check = self.execute(step.number, verify, &log);
            result.add_verification(check);
        }
        crate::engine::record_rollback(
            &mut self.journal,
            &self.ui,
            &self.masker,
            step.number,
            &result,
        )
    }

    fn execute(&self, step: usize, work: &Work, log: &Path) -> StepResult {
        let mut env = self.env.clone();
        env.push(("RUNBOOK_STEP".into(), step.to_string()));
        let ctx = StepContext {
            runner: &crate::runner::Local,
            ui: &self.ui,
            masker: &self.masker,
            env: &env,
            // A Ctrl-C must not cut a rollback command in half; it is dealt with between steps.
            interrupt: &signals::NEVER,
            log_path: log,
            echo: true,
            run_dir: None,
            step,
        };
        self.ui.start_spinner(&format!("rolling back step {step}"));
        let result = steps::execute(work, &Expect::default(), &ctx);
        self.ui.finish_spinner();
        result.unwrap_or_else(|e| StepResult::could_not_run(&e))
    }
}

fn list(numbers: &[usize]) -> String {
    numbers.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
}
