//! Going forward: each step shown, confirmed, run, checked and journalled, and what a failure,
//! a skip, an abort or a signal leads to.

use std::ops::Range;
use std::path::Path;

use anyhow::Result;

use super::operator::{
    ABORT, Answer, DONE, LEAVE, NO, Question, RETRY, ROLLBACK, RUN, SKIP, UNCONFIRMED, YES,
};
use super::{Engine, Next, RunEnd, code};
use crate::journal::{Event, Outcome, RunStatus};
use crate::plan::{PlannedStep, Work};
use crate::runbook::Expect;
use crate::signals;
use crate::steps::{self, StepContext, StepResult};

impl Engine<'_> {
    /// Run the steps in `range` (indices into the plan) and record how the run ended.
    pub fn run(&mut self, range: Range<usize>) -> Result<RunEnd> {
        match self.forward(range)? {
            Next::Stop(end) => self.finish(end),
            Next::Continue => self.finish(RunEnd::SUCCEEDED),
        }
    }

    /// A rehearsal: every step, then every rollback newest first (each verified where the step
    /// says how). It passes only when both halves do.
    pub fn rehearse(&mut self) -> Result<RunEnd> {
        let all = 0..self.plan().steps.len();
        if let Next::Stop(end) = self.forward(all)? {
            return self.finish(end);
        }
        self.rehearse_rollbacks()
    }

    /// The second half of a rehearsal: every rollback, newest first.
    pub(super) fn rehearse_rollbacks(&mut self) -> Result<RunEnd> {
        let all_ran = !self.incomplete;
        if all_ran {
            self.say(&self.ui.bold("Every step passed. Now every rollback, newest first."));
        } else {
            let gap = "A step was skipped or in doubt: this rehearsal cannot pass. Rolling back what ran.";
            self.say(&self.ui.warn(gap));
        }
        let end = self.rollback("rehearsal: exercising every rollback")?;
        let end = match end.status {
            RunStatus::RolledBack if all_ran => {
                RunEnd { status: RunStatus::Rehearsed, code: code::OK }
            }
            RunStatus::RolledBack => RunEnd { status: RunStatus::Failed, code: code::ROLLED_BACK },
            _ => end,
        };
        self.finish(end)
    }

    /// The steps of `range`, one after the other, until one stops the run.
    pub(super) fn forward(&mut self, range: Range<usize>) -> Result<Next> {
        let mut idx = range.start;
        while idx < range.end {
            let step = &self.plan().steps[idx];
            // Steps `on` a group run as a block over its hosts (see `hosts`).
            let (next, after) = if step.on.is_some() && step.excluded.is_none() {
                self.hosts_block(idx, range.end)?
            } else {
                (self.step(idx)?, idx + 1)
            };
            if let Next::Stop(end) = next {
                return Ok(Next::Stop(end));
            }
            idx = after;
        }
        Ok(Next::Continue)
    }

    fn step(&mut self, idx: usize) -> Result<Next> {
        let step = &self.plan().steps[idx];
        if let Some(why) = &step.excluded {
            self.say_dim(&format!(
                "- step {}/{} {}: not in this environment ({why})",
                step.number,
                self.total(),
                step.title
            ));
            return self
                .record(Event::StepSkipped { step: step.number, reason: why.clone() })
                .map(|()| Next::Continue);
        }
        self.show_card(step);
        let q = Question {
            text: &format!("Run step {}?", step.number),
            choices: &[RUN, SKIP, ABORT],
            unattended: Some(RUN),
        };
        match self.ask_and_record(Some(step.number), q, true)? {
            Answer::Chose(RUN) => {}
            Answer::Chose(SKIP) => {
                self.incomplete = true;
                let reason = "skipped by the operator".to_string();
                self.record(Event::StepSkipped { step: step.number, reason })?;
                return Ok(Next::Continue);
            }
            Answer::Interrupted => return Ok(Next::Stop(self.interrupted(None)?)),
            Answer::Chose(_) => return Ok(Next::Stop(self.abort(step.number)?)),
        }
        if let Work::Manual { instructions } = &step.work {
            return self.manual(step, instructions);
        }
        self.attempts(step, self.state.steps.get(&step.number).map_or(0, |s| s.attempts))
    }

    /// Run a step until it passes, its retries are spent, or the operator decides. `before` is
    /// how many attempts the journal already has (a resumed run numbers its retries on).
    pub(super) fn attempts(&mut self, step: &PlannedStep, before: u32) -> Result<Next> {
        let mut attempt = before;
        let mut retries_left = step.retries;
        loop {
            attempt += 1;
            let result = self.execute(step, attempt)?;
            let result = self.confirm_note(step, result)?;
            self.record_finish(step, attempt, &result)?;
            match result.outcome {
                Outcome::Ok => return Ok(Next::Continue),
                Outcome::Interrupted => {
                    return Ok(Next::Stop(self.interrupted(Some(step.number))?));
                }
                Outcome::Failed | Outcome::TimedOut => {}
            }
            if retries_left > 0 {
                retries_left -= 1;
                self.say(&self.ui.warn(&format!(
                    "  retrying step {} ({} of {} retries left)",
                    step.number, retries_left, step.retries
                )));
                continue;
            }
            match self.after_failure(step.number)? {
                Some(next) => return Ok(next),
                None => continue,
            }
        }
    }

    /// A step failed: retry (`None`), or what the operator's answer leads to.
    pub(super) fn after_failure(&mut self, number: usize) -> Result<Option<Next>> {
        self.show_state();
        let q = Question {
            text: &format!("Step {number} failed. What now?"),
            choices: &[RETRY, ROLLBACK, SKIP, ABORT],
            unattended: Some(ROLLBACK),
        };
        let next = match self.ask(Some(number), q)? {
            Answer::Chose(RETRY) => return Ok(None),
            Answer::Chose(SKIP) => {
                // It failed and may have partly applied: it stays applied, so a later rollback
                // still undoes it.
                self.incomplete = true;
                let reason = "failed; the operator chose to skip it and go on".to_string();
                self.record(Event::StepSkipped { step: number, reason })?;
                Next::Continue
            }
            Answer::Chose(ROLLBACK) => {
                let check = self.state.steps.get(&number).map_or("", |s| s.check.as_str());
                let reason = format!("step {number} failed: {check}");
                Next::Stop(self.rollback(&reason)?)
            }
            Answer::Interrupted => Next::Stop(self.interrupted(Some(number))?),
            Answer::Chose(_) => Next::Stop(self.abort(number)?),
        };
        Ok(Some(next))
    }

    /// Where `expect` is only a note, the operator says whether they saw it.
    fn confirm_note(&mut self, step: &PlannedStep, mut result: StepResult) -> Result<StepResult> {
        let note_only = step.expect.stdout.is_none() && step.expect.note.is_some();
        if result.outcome != Outcome::Ok || !note_only || !matches!(step.work, Work::Shell { .. }) {
            return Ok(result);
        }
        let note = step.expect.note.clone().unwrap_or_default();
        let q = Question {
            text: &format!("Expected: {note}. Did you see it?"),
            choices: &[YES, NO],
            unattended: Some(UNCONFIRMED),
        };
        match self.ask(Some(step.number), q)? {
            Answer::Chose(YES) => result.check.push_str(&format!("; operator confirmed: {note}")),
            Answer::Chose(UNCONFIRMED) => {
                result.check.push_str(&format!("; not confirmed by a person (--yes): {note}"))
            }
            Answer::Interrupted => result.outcome = Outcome::Interrupted,
            Answer::Chose(_) => {
                result.outcome = Outcome::Failed;
                result.check.push_str(&format!("; operator did not see: {note}"));
            }
        }
        Ok(result)
    }

    pub(super) fn manual(&mut self, step: &PlannedStep, instructions: &str) -> Result<Next> {
        let started = std::time::Instant::now();
        self.journal_start(step, 1, String::new())?;
        self.say(&format!("  {}", self.ui.bold("Do this by hand:")));
        for line in self.masker.mask(instructions).lines() {
            self.say(&format!("    {line}"));
        }
        let q = Question {
            text: "When it is done, type done",
            choices: &[DONE, ABORT],
            unattended: None,
        };
        let (outcome, check) = match self.ask(Some(step.number), q)? {
            Answer::Chose(DONE) => (Outcome::Ok, "operator said done".to_string()),
            Answer::Interrupted => (Outcome::Interrupted, "interrupted at the prompt".to_string()),
            Answer::Chose(_) => (Outcome::Failed, "operator aborted".to_string()),
        };
        let result = StepResult::without_exit(outcome, check, started.elapsed(), None);
        self.record_finish(step, 1, &result)?;
        self.show_result(step.number, &result);
        match outcome {
            Outcome::Ok => Ok(Next::Continue),
            Outcome::Interrupted => Ok(Next::Stop(self.interrupted(Some(step.number))?)),
            _ => Ok(Next::Stop(self.abort(step.number)?)),
        }
    }

    pub(super) fn log_name(step: usize, what: &str) -> String {
        format!("logs/{step:02}-{what}.log")
    }

    /// The start of a step, with everything a later rollback of the run needs, exactly as it
    /// will run (secrets only as references), durable before the step goes on.
    fn journal_start(&mut self, step: &PlannedStep, attempt: u32, log: String) -> Result<()> {
        self.record(Event::StepStarted {
            step: step.number,
            target: self.runner.target().to_string(),
            attempt,
            // Recorded exactly as it runs: secrets are `${RUNBOOK_SECRET_X}` references in it,
            // never values, so nothing needs masking and a replay runs the same command.
            work: step.work.clone(),
            rollback: step.rollback.clone(),
            verify: step.verify_rollback.clone(),
            log,
        })?;
        self.sync()
    }

    /// Journal the start, run the work, show the result. The finish is journalled by the caller
    /// once any confirmation is in.
    fn execute(&mut self, step: &PlannedStep, attempt: u32) -> Result<StepResult> {
        let what = if attempt == 1 { "run".to_string() } else { format!("run{attempt}") };
        let log = Self::log_name(step.number, &what);
        self.journal_start(step, attempt, log.clone())?;
        let label = format!("step {}/{} {}", step.number, self.total(), step.title);
        let result = self.run_work(
            step.number,
            &step.work,
            &step.expect,
            &self.run_dir().join(log),
            &label,
            &signals::INTERRUPTED,
        );
        self.show_result(step.number, &result);
        Ok(result)
    }

    /// Run work that stops when `interrupt` is set. Rollbacks pass `signals::NEVER`: a Ctrl-C
    /// must not cut a rollback command in half; the operator is asked after it instead.
    pub(super) fn run_work(
        &self,
        step: usize,
        work: &Work,
        expect: &Expect,
        log: &Path,
        label: &str,
        interrupt: &'static std::sync::atomic::AtomicBool,
    ) -> StepResult {
        let mut env = self.env.clone();
        // By RUNBOOK_STEP `resume` tells one step's leftover processes from another's.
        env.push(("RUNBOOK_STEP".into(), step.to_string()));
        let ctx = StepContext {
            runner: self.runner,
            ui: self.ui,
            masker: &self.masker,
            env: &env,
            interrupt,
            log_path: log,
            echo: true,
            run_dir: Some(&self.state.dir),
            step,
        };
        self.ui.start_spinner(label);
        let result = steps::execute(work, expect, &ctx);
        self.ui.finish_spinner();
        result.unwrap_or_else(|e| StepResult::could_not_run(&e))
    }

    pub(super) fn record_finish(
        &mut self,
        step: &PlannedStep,
        attempt: u32,
        r: &StepResult,
    ) -> Result<()> {
        self.record(Event::StepFinished {
            step: step.number,
            target: self.runner.target().to_string(),
            attempt,
            outcome: r.outcome,
            exit_code: r.exit_code,
            duration_ms: r.duration.as_millis() as u64,
            check: self.masker.mask(&r.check).into_owned(),
            output_tail: r.output_tail.clone(),
            details: r.details.clone(),
        })
    }

    /// The operator stops the run: nothing is rolled back; how to go on or undo is printed.
    pub(super) fn abort(&mut self, at: usize) -> Result<RunEnd> {
        self.say(
            &self
                .ui
                .warn(&format!("Aborted by the operator at step {at}; nothing was rolled back.")),
        );
        self.hint_next();
        Ok(RunEnd::ABORTED)
    }

    /// Ctrl-C or SIGTERM: journal it, then offer a rollback (unattended, a person decides later).
    pub(super) fn interrupted(&mut self, step: Option<usize>) -> Result<RunEnd> {
        let signal = signals::last_name().to_string();
        self.record(Event::Interrupted { step, signal: signal.clone() })?;
        signals::clear();
        if self.operator.attended() {
            // The terminal echoed ^C where the cursor was: start a line of our own.
            self.say("");
        }
        self.say(&self.ui.warn(&format!("Interrupted ({signal}).")));
        if self.still_applied().is_empty() {
            self.hint_next();
            return Ok(RunEnd::INTERRUPTED);
        }
        self.show_state();
        let q = Question {
            text: "Roll back the applied steps now, or leave them applied?",
            choices: &[ROLLBACK, LEAVE],
            unattended: Some(LEAVE),
        };
        match self.ask(step, q)? {
            Answer::Chose(ROLLBACK) => {
                // Rolled back in full: the run is closed as rolled back, its exit code still says
                // it was interrupted.
                let end = self.rollback(&format!("interrupted by {signal}"))?;
                Ok(match end.status {
                    RunStatus::RolledBack => {
                        RunEnd { status: RunStatus::RolledBack, code: code::INTERRUPTED }
                    }
                    _ => end,
                })
            }
            _ => {
                self.hint_next();
                Ok(RunEnd::INTERRUPTED)
            }
        }
    }
}
