//! The run state machine: each step is shown, confirmed, run, checked and journalled; a failure
//! leads to retry, rollback, skip or abort; a rollback undoes the failed step and then every
//! applied step, newest first. Every event is on disk before the run goes on.

pub mod operator;

use std::ops::Range;
use std::path::PathBuf;

use anyhow::Result;

use crate::journal::{Event, Outcome, RunStatus, Writer};
use crate::plan::{Plan, PlannedStep, Work};
use crate::runbook::{Expect, Kind};
use crate::signals;
use crate::steps::{self, StepContext, StepResult};
use crate::ui::Ui;
use operator::{ABORT, Answer, Choice, DONE, LEAVE, NO, Operator, RETRY, ROLLBACK, RUN, SKIP, YES};

/// Exit codes, documented in the README.
pub mod code {
    pub const OK: i32 = 0;
    pub const ERROR: i32 = 1;
    pub const INVALID: i32 = 2;
    pub const ROLLED_BACK: i32 = 3;
    pub const ROLLBACK_FAILED: i32 = 4;
    pub const REFUSED: i32 = 5;
    pub const ABORTED: i32 = 6;
    pub const USAGE: i32 = 64;
    pub const INTERRUPTED: i32 = 130;
}

/// How a run ended.
#[derive(Debug, Clone, Copy)]
pub struct RunEnd {
    pub status: RunStatus,
    pub code: i32,
}

enum Next {
    Continue,
    Stop(RunEnd),
}

pub struct Engine<'a> {
    plan: &'a Plan,
    journal: Writer,
    ui: &'a Ui,
    operator: &'a mut dyn Operator,
    yes: bool,
    /// Indices of steps that ran (their change may be in place), in the order they ran.
    applied: Vec<usize>,
    /// A step was skipped by the operator: a rehearsal with a gap in it does not pass.
    incomplete: bool,
    /// Attempts already made per step index (a resumed run numbers its retries on from there).
    attempts_before: std::collections::HashMap<usize, u32>,
    /// The number of the step being handled, for the "go on from here" hint.
    current: Option<usize>,
}

impl<'a> Engine<'a> {
    pub fn new(
        plan: &'a Plan,
        journal: Writer,
        ui: &'a Ui,
        operator: &'a mut dyn Operator,
        yes: bool,
    ) -> Engine<'a> {
        Engine {
            plan,
            journal,
            ui,
            operator,
            yes,
            applied: Vec::new(),
            incomplete: false,
            attempts_before: std::collections::HashMap::new(),
            current: None,
        }
    }

    /// Run the steps in `range` (indices into the plan) and record how the run ended.
    pub fn run(&mut self, range: Range<usize>) -> Result<RunEnd> {
        for idx in range {
            if let Next::Stop(end) = self.step(idx)? {
                return self.finish(end);
            }
        }
        self.finish(RunEnd { status: RunStatus::Succeeded, code: code::OK })
    }

    /// Continue a run from its journal: `applied` are the steps that already ran, in order, and
    /// `attempts` how often each step was tried, so a re-run gets a log of its own.
    pub fn resumed(
        mut self,
        applied: Vec<usize>,
        attempts: std::collections::HashMap<usize, u32>,
    ) -> Engine<'a> {
        self.applied = applied;
        self.attempts_before = attempts;
        self
    }

    /// Resume by rolling back: the step that was in flight first, then the applied ones.
    pub fn resume_rollback(&mut self, in_flight: Option<usize>) -> Result<RunEnd> {
        let end = self.rollback(in_flight, "rollback chosen at resume")?;
        self.finish(end)
    }

    /// The operator says the in-flight step did complete: record it as done.
    pub fn mark_done(&mut self, idx: usize) -> Result<()> {
        let plan = self.plan;
        let step = &plan.steps[idx];
        let check = "marked done by the operator at resume".to_string();
        let result = StepResult::without_exit(Outcome::Ok, check, std::time::Duration::ZERO, None);
        self.record_finish(step, 0, &result)?;
        self.applied.push(idx);
        Ok(())
    }

    /// At resume: the failed step is skipped on the operator's word (and kept for rollback).
    pub fn skip_failed(&mut self, idx: usize) -> Result<()> {
        self.applied.push(idx);
        self.incomplete = true;
        let reason = "failed; the operator chose at resume to skip it and go on".to_string();
        self.journal.append(Event::StepSkipped { step: self.plan.steps[idx].number, reason })
    }

    /// A rehearsal: every step, then every rollback newest first (each verified where the step
    /// says how). It passes only when both halves do.
    pub fn rehearse(&mut self) -> Result<RunEnd> {
        for idx in 0..self.total() {
            if let Next::Stop(end) = self.step(idx)? {
                return self.finish(end);
            }
        }
        let all_ran = !self.incomplete;
        if all_ran {
            self.say(&self.ui.bold("Every step passed. Now every rollback, newest first."));
        } else {
            self.say(
                &self
                    .ui
                    .warn("A step was skipped: this rehearsal cannot pass. Rolling back what ran."),
            );
        }
        let end = self.rollback(None, "rehearsal: exercising every rollback")?;
        let end = match end.status {
            RunStatus::RolledBack if all_ran => {
                RunEnd { status: RunStatus::Rehearsed, code: code::OK }
            }
            RunStatus::RolledBack => RunEnd { status: RunStatus::Failed, code: code::ROLLED_BACK },
            _ => end,
        };
        self.finish(end)
    }

    fn total(&self) -> usize {
        self.plan.steps.len()
    }

    fn step(&mut self, idx: usize) -> Result<Next> {
        let plan = self.plan;
        let step = &plan.steps[idx];
        self.current = Some(step.number);
        if let Some(why) = &step.excluded {
            self.say_dim(&format!(
                "- step {}/{} {}: not in this environment ({why})",
                step.number,
                self.total(),
                step.title
            ));
            self.journal.append(Event::StepSkipped { step: step.number, reason: why.clone() })?;
            return Ok(Next::Continue);
        }
        self.show_card(step);
        if !self.yes {
            match self.ask(
                Some(step.number),
                &format!("Run step {}?", step.number),
                &[RUN, SKIP, ABORT],
            )? {
                Answer::Chose(RUN) => {}
                Answer::Chose(SKIP) => {
                    self.incomplete = true;
                    let reason = "skipped by the operator".to_string();
                    self.journal.append(Event::StepSkipped { step: step.number, reason })?;
                    return Ok(Next::Continue);
                }
                Answer::Interrupted => return Ok(Next::Stop(self.interrupted(None)?)),
                Answer::Chose(_) => return Ok(Next::Stop(self.abort()?)),
            }
        }
        if let Work::Manual { instructions } = &step.work {
            return self.manual(idx, instructions);
        }
        self.attempts(idx)
    }

    /// Run a step until it passes, its retries are spent, or the operator decides.
    fn attempts(&mut self, idx: usize) -> Result<Next> {
        let plan = self.plan;
        let step = &plan.steps[idx];
        let mut attempt = self.attempts_before.get(&idx).copied().unwrap_or(0);
        loop {
            attempt += 1;
            let result = self.execute(step, attempt)?;
            let result = self.confirm_note(step, result)?;
            self.record_finish(step, attempt, &result)?;
            match result.outcome {
                Outcome::Ok => {
                    self.applied.push(idx);
                    return Ok(Next::Continue);
                }
                Outcome::Interrupted => {
                    self.applied.push(idx);
                    return Ok(Next::Stop(self.interrupted(Some(step.number))?));
                }
                Outcome::Failed | Outcome::TimedOut => {}
            }
            if attempt <= step.retries {
                self.say(&self.ui.warn(&format!(
                    "  retrying step {} (retry {attempt} of {})",
                    step.number, step.retries
                )));
                continue;
            }
            match self.after_failure(step)? {
                Answer::Chose(RETRY) => continue,
                Answer::Chose(SKIP) => {
                    // It failed and may have partly applied: a later rollback still undoes it.
                    self.applied.push(idx);
                    self.incomplete = true;
                    let reason = "failed; the operator chose to skip it and go on".to_string();
                    self.journal.append(Event::StepSkipped { step: step.number, reason })?;
                    return Ok(Next::Continue);
                }
                Answer::Chose(ROLLBACK) => {
                    let reason = format!("step {} failed: {}", step.number, result.check);
                    return Ok(Next::Stop(self.rollback(Some(idx), &reason)?));
                }
                Answer::Interrupted => {
                    self.applied.push(idx);
                    return Ok(Next::Stop(self.interrupted(Some(step.number))?));
                }
                Answer::Chose(_) => {
                    self.applied.push(idx);
                    return Ok(Next::Stop(self.abort()?));
                }
            }
        }
    }

    fn after_failure(&mut self, step: &PlannedStep) -> Result<Answer> {
        if self.yes {
            self.say(&format!("  --yes: rolling back after step {} failed", step.number));
            return Ok(Answer::Chose(ROLLBACK));
        }
        let q = format!("Step {} failed. What now?", step.number);
        self.ask(Some(step.number), &q, &[RETRY, ROLLBACK, SKIP, ABORT])
    }

    /// Where `expect` is only a note, the operator says whether they saw it.
    fn confirm_note(&mut self, step: &PlannedStep, mut result: StepResult) -> Result<StepResult> {
        let note_only = step.expect.stdout.is_none() && step.expect.note.is_some();
        if result.outcome != Outcome::Ok || !note_only || !matches!(step.work, Work::Shell { .. }) {
            return Ok(result);
        }
        let note = step.expect.note.clone().unwrap_or_default();
        if self.yes {
            result.check.push_str(&format!("; not confirmed by a person (--yes): {note}"));
            return Ok(result);
        }
        match self.ask(
            Some(step.number),
            &format!("Expected: {note}. Did you see it?"),
            &[YES, NO],
        )? {
            Answer::Chose(YES) => result.check.push_str(&format!("; operator confirmed: {note}")),
            Answer::Interrupted => result.outcome = Outcome::Interrupted,
            _ => {
                result.outcome = Outcome::Failed;
                result.check.push_str(&format!("; operator did not see: {note}"));
            }
        }
        Ok(result)
    }

    fn manual(&mut self, idx: usize, instructions: &str) -> Result<Next> {
        let plan = self.plan;
        let step = &plan.steps[idx];
        let started = std::time::Instant::now();
        self.journal_start(step, 1, String::new())?;
        self.say(&format!("  {}", self.ui.bold("Do this by hand:")));
        for line in self.plan.masker.mask(instructions).lines() {
            self.say(&format!("    {line}"));
        }
        let answer = self.ask(Some(step.number), "When it is done, type done", &[DONE, ABORT])?;
        let (outcome, check) = match answer {
            Answer::Chose(DONE) => (Outcome::Ok, "operator said done".to_string()),
            Answer::Interrupted => (Outcome::Interrupted, "interrupted at the prompt".to_string()),
            Answer::Chose(_) => (Outcome::Failed, "operator aborted".to_string()),
        };
        let result = StepResult::without_exit(outcome, check, started.elapsed(), None);
        self.record_finish(step, 1, &result)?;
        self.show_result(step, &result);
        match outcome {
            Outcome::Ok => {
                self.applied.push(idx);
                Ok(Next::Continue)
            }
            Outcome::Interrupted => Ok(Next::Stop(self.interrupted(Some(step.number))?)),
            _ => Ok(Next::Stop(self.abort()?)),
        }
    }

    fn log_path(&self, step: usize, what: &str) -> (PathBuf, String) {
        let name = format!("logs/{step:02}-{what}.log");
        (self.plan.run_dir.join(&name), name)
    }

    /// The start of a step, with everything a later rollback of the run needs, as run.
    fn journal_start(&mut self, step: &PlannedStep, attempt: u32, log: String) -> Result<()> {
        let m = &self.plan.masker;
        self.journal.append(Event::StepStarted {
            step: step.number,
            attempt,
            work: step.work.for_journal(m),
            rollback: step.rollback.as_ref().map(|w| w.for_journal(m)),
            verify: step.verify_rollback.as_ref().map(|w| w.for_journal(m)),
            log,
        })
    }

    /// Journal the start, run the work, show the result. The finish is journalled by the caller
    /// once any confirmation is in.
    fn execute(&mut self, step: &PlannedStep, attempt: u32) -> Result<StepResult> {
        let what = if attempt == 1 { "run".to_string() } else { format!("run{attempt}") };
        let (log_path, log) = self.log_path(step.number, &what);
        self.journal_start(step, attempt, log)?;
        let label = format!("step {}/{} {}", step.number, self.total(), step.title);
        let result = self.run_work(
            step.number,
            &step.work,
            &step.expect,
            &log_path,
            &label,
            &signals::INTERRUPTED,
        );
        let result = result.unwrap_or_else(|e| StepResult::could_not_run(&e));
        self.show_result(step, &result);
        Ok(result)
    }

    /// Run work that stops when `interrupt` is set. Rollbacks pass `signals::NEVER`: a Ctrl-C
    /// must not cut a rollback command in half; the operator is asked after it instead.
    fn run_work(
        &self,
        step: usize,
        work: &Work,
        expect: &Expect,
        log: &std::path::Path,
        label: &str,
        interrupt: &'static std::sync::atomic::AtomicBool,
    ) -> Result<StepResult> {
        let ctx = StepContext {
            runner: &crate::runner::Local,
            ui: self.ui,
            masker: &self.plan.masker,
            env: &self.step_env(step),
            interrupt,
            log_path: log,
            echo: true,
            run_dir: Some(&self.plan.run_dir),
            step,
        };
        self.ui.start_spinner(label);
        let result = steps::execute(work, expect, &ctx);
        self.ui.finish_spinner();
        result
    }

    /// The run's environment for steps, plus RUNBOOK_STEP, by which `resume` tells one step's
    /// leftover processes from another's.
    fn step_env(&self, step: usize) -> Vec<(String, String)> {
        let mut env = self.plan.step_env.clone();
        env.push(("RUNBOOK_STEP".into(), step.to_string()));
        env
    }

    fn record_finish(&mut self, step: &PlannedStep, attempt: u32, r: &StepResult) -> Result<()> {
        self.journal.append(Event::StepFinished {
            step: step.number,
            attempt,
            outcome: r.outcome,
            exit_code: r.exit_code,
            duration_ms: r.duration.as_millis() as u64,
            check: self.plan.masker.mask(&r.check).into_owned(),
            output_tail: r.output_tail.clone(),
            details: r.details.clone(),
        })
    }

    /// Undo the failed step (it may have partly applied), then every applied step, newest first.
    fn rollback(&mut self, failed: Option<usize>, reason: &str) -> Result<RunEnd> {
        let mut order: Vec<usize> = failed.into_iter().collect();
        order.extend(self.applied.iter().rev().filter(|i| Some(**i) != failed));
        self.say(&self.ui.warn(&format!("Rolling back: {}", self.plan.masker.mask(reason))));
        let plan = self.plan;
        if !order.iter().any(|i| plan.steps[*i].leaves_a_change()) {
            self.say("  nothing to roll back: no step that ran changed anything");
        }
        let mut kept = Vec::new();
        for (pos, &idx) in order.iter().enumerate() {
            let plan = self.plan;
            let step = &plan.steps[idx];
            let Some(work) = step.rollback.clone() else {
                if let Some(why) = &step.irreversible {
                    self.say(
                        &self.ui.warn(&format!("  step {} cannot be undone: {why}", step.number)),
                    );
                    kept.push(idx);
                }
                continue;
            };
            if !self.rollback_one(step, &work, reason)? {
                kept.extend(order[pos..].iter().copied());
                self.applied = kept;
                self.explain_stuck();
                return Ok(RunEnd {
                    status: RunStatus::RollbackFailed,
                    code: code::ROLLBACK_FAILED,
                });
            }
            if signals::interrupted() && self.abandon_rollback(step.number)? {
                kept.extend(order[pos + 1..].iter().copied());
                self.applied = kept;
                self.hint_rollback();
                return Ok(RunEnd { status: RunStatus::Interrupted, code: code::INTERRUPTED });
            }
        }
        self.applied = kept;
        Ok(RunEnd { status: RunStatus::RolledBack, code: code::ROLLED_BACK })
    }

    fn rollback_one(&mut self, step: &PlannedStep, work: &Work, reason: &str) -> Result<bool> {
        let (log_path, log) = self.log_path(step.number, "rollback");
        self.journal.append(Event::RollbackStarted {
            step: step.number,
            reason: self.plan.masker.mask(reason).into_owned(),
            work: work.for_journal(&self.plan.masker),
            log,
        })?;
        self.say(&format!(
            "  ↩ step {} {}: {}",
            step.number,
            step.title,
            self.plan.masker.mask(&work.summary())
        ));
        let label = format!("rollback of step {}", step.number);
        let mut result = self.run_to_the_end(step.number, work, &log_path, &label);
        if result.outcome == Outcome::Ok
            && let Some(verify) = &step.verify_rollback
        {
            self.verify(step, verify, &mut result);
        }
        record_rollback(&mut self.journal, self.ui, &self.plan.masker, step.number, &result)
    }

    /// Ctrl-C during a rollback: the rollback command in progress was let finish; now ask before
    /// abandoning the rest. Unattended runs keep rolling back (the journal says they were asked).
    fn abandon_rollback(&mut self, after_step: usize) -> Result<bool> {
        let signal = signals::last_name().to_string();
        signals::clear();
        self.journal
            .append(Event::Interrupted { step: Some(after_step), signal: signal.clone() })?;
        if self.yes {
            self.say(
                &self.ui.warn(&format!("{signal} during the rollback: --yes keeps rolling back")),
            );
            return Ok(false);
        }
        let q = format!("{signal}: abandon the rollback and leave the remaining steps applied?");
        let answer = self.ask(Some(after_step), &q, &[YES, NO])?;
        signals::clear();
        Ok(matches!(answer, Answer::Chose(YES) | Answer::Interrupted))
    }

    /// `verify_rollback`: the rollback only counts when this check passes after it.
    fn verify(&self, step: &PlannedStep, verify: &Work, result: &mut StepResult) {
        let (log_path, _) = self.log_path(step.number, "verify");
        let label = format!("verifying the rollback of step {}", step.number);
        let check = self.run_to_the_end(step.number, verify, &log_path, &label);
        result.add_verification(check);
    }

    /// A rollback or its verification: expects exit 0 and is not cut short by Ctrl-C.
    fn run_to_the_end(
        &self,
        step: usize,
        work: &Work,
        log: &std::path::Path,
        label: &str,
    ) -> StepResult {
        self.run_work(step, work, &Expect::default(), log, label, &signals::NEVER)
            .unwrap_or_else(|e| StepResult::could_not_run(&e))
    }

    /// A rollback failed: say plainly what is still applied and what to run by hand.
    fn explain_stuck(&self) {
        self.say(&self.ui.bad("Rollback stopped. These steps are still applied, newest first:"));
        for s in self.still_applied() {
            let undo = s.rollback.as_ref().map_or_else(
                || format!("no rollback ({})", s.irreversible.as_deref().unwrap_or("none defined")),
                |w| self.plan.masker.mask(&w.summary()).into_owned(),
            );
            self.say(&format!("  step {} {}: undo by hand with: {undo}", s.number, s.title));
        }
        self.say(&format!(
            "  when fixed, `runbook rollback {}` retries the rollback",
            self.plan.run_id
        ));
    }

    fn abort(&mut self) -> Result<RunEnd> {
        self.say(&self.ui.warn("Aborted by the operator; nothing was rolled back."));
        self.hint_rollback();
        Ok(RunEnd { status: RunStatus::Aborted, code: code::ABORTED })
    }

    /// Applied steps that changed something (a check or a measure leaves nothing to undo),
    /// in the order they ran.
    fn still_applied(&self) -> Vec<&'a PlannedStep> {
        let plan = self.plan;
        self.applied.iter().map(|i| &plan.steps[*i]).filter(|s| s.leaves_a_change()).collect()
    }

    /// After an abort or an interruption: how to undo, and how to go on instead.
    fn hint_rollback(&self) {
        let steps: Vec<String> =
            self.still_applied().iter().map(|s| s.number.to_string()).collect();
        if !steps.is_empty() {
            self.say(&format!(
                "Steps still applied: {}. To undo them: runbook rollback {}",
                steps.join(", "),
                self.plan.run_id
            ));
        }
        if let Some(n) = self.current.filter(|n| *n <= self.total()) {
            self.say(&format!(
                "To go on from step {n} instead: runbook run {} --from {n}{}",
                self.plan.path.display(),
                self.plan.env.as_deref().map_or(String::new(), |e| format!(" --env {e}"))
            ));
        }
    }

    /// Ctrl-C or SIGTERM: journal it, then offer a rollback (unattended runs leave it to a person).
    fn interrupted(&mut self, step: Option<usize>) -> Result<RunEnd> {
        let signal = signals::last_name().to_string();
        self.journal.append(Event::Interrupted { step, signal: signal.clone() })?;
        signals::clear();
        if self.ui.interactive {
            // The terminal echoed ^C where the cursor was: start a line of our own.
            self.say("");
        }
        self.say(&self.ui.warn(&format!("Interrupted ({signal}).")));
        let interrupted = RunEnd { status: RunStatus::Interrupted, code: code::INTERRUPTED };
        if self.yes || self.applied.is_empty() {
            self.hint_rollback();
            return Ok(interrupted);
        }
        match self.ask(step, "Roll back the applied steps now?", &[ROLLBACK, LEAVE])? {
            Answer::Chose(ROLLBACK) => {
                let end = self.rollback(None, &format!("interrupted by {signal}"))?;
                Ok(if end.status == RunStatus::RolledBack { interrupted } else { end })
            }
            _ => {
                self.hint_rollback();
                Ok(interrupted)
            }
        }
    }

    fn finish(&mut self, end: RunEnd) -> Result<RunEnd> {
        let still_applied = self.still_applied().iter().map(|s| s.number).collect();
        self.journal.append(Event::RunFinished {
            status: end.status,
            exit_code: end.code,
            still_applied,
        })?;
        Ok(end)
    }

    /// Ask the operator and journal the question and the answer.
    fn ask(&mut self, step: Option<usize>, question: &str, choices: &[Choice]) -> Result<Answer> {
        let answer = self.operator.choose(question, choices)?;
        let said = match answer {
            Answer::Chose(c) => c.0.to_string(),
            Answer::Interrupted => "interrupted".to_string(),
        };
        self.journal.append(Event::Prompt {
            step,
            question: question.to_string(),
            answer: said,
        })?;
        Ok(answer)
    }

    fn say(&self, line: &str) {
        self.ui.say(line);
    }

    fn say_dim(&self, line: &str) {
        self.ui.say(&self.ui.dim(line));
    }

    fn show_card(&self, step: &PlannedStep) {
        let m = &self.plan.masker;
        let head = format!("▶ step {}/{} {}", step.number, self.total(), step.title);
        self.say(&format!(
            "{}  {}",
            self.ui.bold(&head),
            self.ui.dim(&format!("[{}] owner: {}", step.kind.name(), step.owner))
        ));
        if self.yes && step.kind != Kind::Manual {
            self.say(&self.ui.dim(&format!("  $ {}", m.mask(&step.work.summary()))));
            return;
        }
        self.say(&format!("  do:       {}", m.mask(&step.work.summary())));
        if let Some(preview) = steps::flush_step::preview_line(&step.work, &self.plan.step_env) {
            self.say(&format!("  keys:     {}", m.mask(&preview)));
        }
        let expect = step.expect_text();
        if !expect.is_empty() {
            self.say(&format!("  expect:   {expect}"));
        }
        let rollback = match (&step.rollback, &step.irreversible) {
            (Some(w), _) => m.mask(&w.summary()).into_owned(),
            (None, Some(why)) => format!("none: irreversible ({why})"),
            (None, None) => "none (changes nothing)".into(),
        };
        self.say(&format!("  rollback: {rollback}"));
        if let Some(v) = &step.verify_rollback {
            self.say(&format!("  verify:   {} (after the rollback)", m.mask(&v.summary())));
        }
    }

    fn show_result(&self, step: &PlannedStep, r: &StepResult) {
        let took = crate::runbook::duration::human(r.duration);
        let line = match r.outcome {
            Outcome::Ok => self.ui.good(&format!("✓ step {} ok", step.number)),
            _ => self.ui.bad(&format!("✗ step {} failed", step.number)),
        };
        self.say(&format!("{line} ({}, {took})", self.plan.masker.mask(&r.check)));
    }
}

/// Journal a rollback's result and show it; true when it worked. Shared by a run's own rollback
/// and `runbook rollback RUN`.
pub fn record_rollback(
    journal: &mut Writer,
    ui: &Ui,
    masker: &crate::secret::Masker,
    step: usize,
    result: &StepResult,
) -> Result<bool> {
    let ok = result.outcome == Outcome::Ok;
    let check = masker.mask(&result.check).into_owned();
    journal.append(Event::RollbackFinished {
        step,
        ok,
        exit_code: result.exit_code,
        duration_ms: result.duration.as_millis() as u64,
        check: check.clone(),
        details: result.details.clone(),
    })?;
    let mark = if ok { ui.good("  ✓ rolled back") } else { ui.bad("  ✗ ROLLBACK FAILED") };
    ui.say(&format!("{mark} step {step} ({check})"));
    Ok(ok)
}
