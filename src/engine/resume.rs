//! Going on with a run that stopped: after a crash, a closed terminal, an abort, a "leave" or an
//! interruption, inside the same run (same folder, same applied steps, same journal). Where it
//! stopped is read from the state the journal replays; the operator decides what happens to a
//! step that was in flight or had failed; a run that was rolling back goes on rolling back.

use anyhow::Result;

use super::operator::{ABORT, Answer, DONE, Question, ROLLBACK, RUN, STOP, WAIT};
use super::{Engine, Next, RunEnd, leftovers};
use crate::Refused;
use crate::journal::{Event, Outcome, RunStatus, StepStatus};
use crate::signals;
use crate::steps::StepResult;

/// Where the run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    /// A step had started and not finished: it may or may not have done its work.
    InFlight(usize),
    /// A step was stopped by a signal: it may have done part of its work.
    Interrupted(usize),
    /// A step had failed and the operator's answer (retry, rollback, skip) never came.
    Failed(usize),
    /// Between steps: the next one to run (an index into the plan), if any is left.
    Between(Option<usize>),
}

impl Engine<'_> {
    /// `runbook resume RUN [--from STEP]`: go on from where the run stopped (or from `from`, an
    /// index into the plan), with the run's own state.
    pub fn resume(&mut self, from: Option<usize>) -> Result<RunEnd> {
        self.refuse_unresumable(from)?;
        if let Some(idx) = from {
            self.refuse_from(idx)?;
        }
        if self.state.rolling_back {
            return self.resume_rollback();
        }
        let stopped = self.stopped_at();
        self.say(&format!(
            "{} {}: resuming run {}",
            self.ui.bold("runbook"),
            self.state.started.name,
            self.state.id
        ));
        self.show_state();
        self.record_takeover("resume", from.map(|i| i + 1))?;
        let next = match (from, stopped) {
            (Some(idx), _) => {
                self.settle_leftovers()?;
                self.forward(idx..self.last())?
            }
            // Steps on hosts go on per host: those that finished are not run again.
            (None, Stopped::InFlight(idx) | Stopped::Interrupted(idx) | Stopped::Failed(idx))
                if self.on_hosts(idx) =>
            {
                self.resume_hosts(idx, self.last())?
            }
            (None, Stopped::InFlight(idx)) => self.in_flight(idx, "in flight")?,
            (None, Stopped::Interrupted(idx)) => self.in_flight(idx, "interrupted")?,
            (None, Stopped::Failed(idx)) => self.failed_before(idx)?,
            (None, Stopped::Between(Some(idx))) => self.forward(idx..self.last())?,
            (None, Stopped::Between(None)) => {
                self.say("  every step had run; recording the run's end");
                Next::Continue
            }
        };
        match next {
            Next::Stop(end) => self.finish(end),
            Next::Continue if self.state.started.command == "rehearse" => {
                // A rehearsal that stopped on the way cannot pass: the step in doubt ran twice.
                self.incomplete = true;
                self.rehearse_rollbacks()
            }
            Next::Continue => self.finish(RunEnd::SUCCEEDED),
        }
    }

    /// A run that finished for good, or that was undone, has nothing to go on with.
    fn refuse_unresumable(&self, from: Option<usize>) -> Result<()> {
        let id = &self.state.id;
        let undo = if self.still_applied().is_empty() {
            String::new()
        } else {
            format!(". To undo it: runbook rollback {id}")
        };
        let refuse = |why: String| Err(Refused(why).into());
        match self.state.finished {
            Some((RunStatus::RolledBack | RunStatus::Failed | RunStatus::Rehearsed, _)) => {
                refuse(format!(
                    "run {id} already finished ({}); there is nothing to resume{undo}",
                    self.state.status_label()
                ))
            }
            Some((RunStatus::Succeeded, _)) if from.is_none() => refuse(format!(
                "run {id} already finished (succeeded); there is nothing to resume (`--from STEP` runs steps of it again){undo}"
            )),
            _ if self.state.rolling_back && from.is_some() => refuse(format!(
                "run {id} was rolling back; it does not go forward again. `runbook resume {id}` or `runbook rollback {id}` finishes the rollback"
            )),
            _ => Ok(()),
        }
    }

    /// `--from` goes on inside the run's range, and never jumps over a step left in doubt.
    fn refuse_from(&self, idx: usize) -> Result<()> {
        let (_, last) = self.range_numbers();
        let id = &self.state.id;
        if idx + 1 > last {
            return Err(Refused(format!(
                "--from {}: run {id} covers steps up to {last}; a step after that is a new run (`runbook run FILE --from {}`)",
                idx + 1,
                idx + 1
            ))
            .into());
        }
        let doubt = self.state.steps.values().find(|s| {
            s.number <= idx
                && (s.status == StepStatus::InFlight
                    || (s.status == StepStatus::Failed && s.note.is_none()))
        });
        match doubt {
            Some(s) => Err(Refused(format!(
                "step {} of run {id} is in doubt (it was in flight or had failed when the run stopped); `runbook resume {id}` without --from decides about it first",
                s.number
            ))
            .into()),
            None => Ok(()),
        }
    }

    /// The run had started rolling back when it stopped: the only way on is to finish that.
    fn resume_rollback(&mut self) -> Result<RunEnd> {
        self.say(&self.ui.warn(&format!(
            "Run {} stopped while rolling back; going on means finishing the rollback.",
            self.state.id
        )));
        self.rollback_run()
    }

    fn stopped_at(&self) -> Stopped {
        let last = self.state.last_started().and_then(|n| self.state.steps.get(&n));
        match last {
            Some(s) if s.status == StepStatus::InFlight => Stopped::InFlight(s.number - 1),
            Some(s) if s.status == StepStatus::Failed && s.interrupted && s.note.is_none() => {
                Stopped::Interrupted(s.number - 1)
            }
            Some(s) if s.status == StepStatus::Failed && s.note.is_none() => {
                Stopped::Failed(s.number - 1)
            }
            _ => Stopped::Between(self.next_pending()),
        }
    }

    /// The first step of the run's range that has not run, been skipped or started.
    fn next_pending(&self) -> Option<usize> {
        let (first, _) = self.range_numbers();
        (first - 1..self.last()).find(|i| {
            self.state.steps.get(&(i + 1)).is_some_and(|s| s.status == StepStatus::Pending)
        })
    }

    /// The run's `--from/--to` slice, as step numbers (all steps when none was chosen).
    fn range_numbers(&self) -> (usize, usize) {
        self.state.started.range.unwrap_or((1, self.total()))
    }

    /// The end of the run's range, as an exclusive plan index.
    fn last(&self) -> usize {
        self.range_numbers().1
    }

    /// A step was in flight (or interrupted): show its last output, settle what it left
    /// running, then ask.
    fn in_flight(&mut self, idx: usize, how: &str) -> Result<Next> {
        let number = idx + 1;
        self.show_in_flight(number, how);
        self.settle_leftovers()?;
        let q = Question {
            text: &format!("Step {number} was {how}. What now?"),
            choices: &[RUN, DONE, ROLLBACK, ABORT],
            unattended: Some(RUN),
        };
        let step = &self.plan().steps[idx];
        let attempts = self.state.steps.get(&number).map_or(0, |s| s.attempts);
        match self.ask(Some(number), q)? {
            Answer::Chose(RUN) => {
                self.show_card(step);
                let next = self.again(step, attempts)?;
                self.and_on(next, idx + 1)
            }
            Answer::Chose(DONE) => {
                let check = "marked done by the operator at resume".to_string();
                let result =
                    StepResult::without_exit(Outcome::Ok, check, std::time::Duration::ZERO, None);
                self.record_finish(step, attempts, &result)?;
                self.forward(idx + 1..self.last())
            }
            Answer::Chose(ROLLBACK) => Ok(Next::Stop(
                self.rollback(&format!("rollback chosen at resume (step {number} was in flight)"))?,
            )),
            _ => Ok(Next::Stop(self.leave_open())),
        }
    }

    /// A step had failed and nobody had decided: ask again (unattended: roll back, as `--yes`).
    fn failed_before(&mut self, idx: usize) -> Result<Next> {
        let number = idx + 1;
        let check = self.state.steps.get(&number).map_or(String::new(), |s| s.check.clone());
        self.say(&self.ui.warn(&format!(
            "Step {number} had failed ({check}); the run stopped there before going on."
        )));
        match self.after_failure(number)? {
            None => {
                let step = &self.plan().steps[idx];
                let attempts = self.state.steps.get(&number).map_or(0, |s| s.attempts);
                let next = self.again(step, attempts)?;
                self.and_on(next, idx + 1)
            }
            Some(Next::Continue) => self.forward(idx + 1..self.last()),
            Some(stop) => Ok(stop),
        }
    }

    /// Run a step again at resume: a manual one is asked of the operator again (it is never a
    /// process), any other runs its attempts.
    fn again(&mut self, step: &crate::plan::PlannedStep, attempts: u32) -> Result<Next> {
        match &step.work {
            crate::plan::Work::Manual { instructions } => self.manual(step, instructions),
            _ => self.attempts(step, attempts),
        }
    }

    /// After one step at resume: the rest of the range, unless it stopped the run.
    fn and_on(&mut self, next: Next, from: usize) -> Result<Next> {
        match next {
            Next::Continue => self.forward(from..self.last()),
            stop => Ok(stop),
        }
    }

    /// The operator chose not to go on now: the run stays open for a later resume or rollback.
    fn leave_open(&self) -> RunEnd {
        self.say("Nothing was run. The run stays open.");
        self.hint_next();
        RunEnd::ABORTED
    }

    /// Journal that this process takes the run over (`resume` or `rollback`).
    pub(super) fn record_takeover(&mut self, command: &str, from: Option<usize>) -> Result<()> {
        self.record(Event::Resumed {
            operator: crate::operator(),
            host: crate::host(),
            pid: std::process::id(),
            command: command.to_string(),
            from,
        })
    }

    /// Processes the in-flight step started may outlive the engine that crashed: find them by
    /// their environment and, on the operator's word, wait for them or stop them, before
    /// anything else runs (unattended, they are stopped).
    pub(super) fn settle_leftovers(&mut self) -> Result<()> {
        // The step in flight, or the step whose rollback was in flight, at the stop.
        let Some(step) = self.state.steps.values().rev().find_map(|s| {
            matches!(s.status, StepStatus::InFlight | StepStatus::RollingBack).then_some(s.number)
        }) else {
            return Ok(());
        };
        let pids = leftovers::step_processes(&self.state.id, step);
        if pids.is_empty() {
            return Ok(());
        }
        let listed: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
        self.say(&self.ui.warn(&format!(
            "Step {step}'s processes are still running: pids {}",
            listed.join(", ")
        )));
        let q = Question {
            text: "Wait for them to finish, or stop them?",
            choices: &[WAIT, STOP],
            unattended: Some(STOP),
        };
        let stop = match self.ask(Some(step), q)? {
            Answer::Chose(c) => c == STOP,
            Answer::Interrupted => {
                anyhow::bail!(
                    "interrupted while deciding about the step's processes; nothing was run (a retry is safe)"
                )
            }
        };
        leftovers::settle(&self.state.id, step, stop, &signals::INTERRUPTED)?;
        let gone = if stop { "stopped" } else { "finished" };
        self.say(&format!("  the step's processes have {gone}"));
        Ok(())
    }
}
