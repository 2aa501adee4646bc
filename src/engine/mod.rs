//! THE run state machine. `run`, `rehearse`, `resume` and `rollback RUN` are operations of this
//! one engine on one state, and that state is always the journal's: every event the engine
//! writes is folded into the same `RunState` the reader rebuilds from the file, so a run that
//! goes on after a crash decides exactly as the run that crashed would have.
//!
//! Each step is shown, confirmed, run, checked and journalled; a failure leads to retry,
//! rollback, skip or abort; a rollback undoes every applied step newest first (the failed one,
//! which started last, first), with the commands recorded when the step started.

mod forward;
mod hosts;
pub mod leftovers;
pub mod operator;
mod resume;
mod rollback;
mod screen;

use std::path::PathBuf;

use anyhow::Result;

use crate::journal::{Event, RunState, RunStatus, Writer};
use crate::plan::Plan;
use crate::runner::Runner;
use crate::secret::Masker;
use crate::ui::Ui;
use operator::{Answer, Operator, Question};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunEnd {
    pub status: RunStatus,
    pub code: i32,
}

impl RunEnd {
    pub const SUCCEEDED: RunEnd = RunEnd { status: RunStatus::Succeeded, code: code::OK };
    pub const INTERRUPTED: RunEnd =
        RunEnd { status: RunStatus::Interrupted, code: code::INTERRUPTED };
    pub const ABORTED: RunEnd = RunEnd { status: RunStatus::Aborted, code: code::ABORTED };
}

/// What a step (or a stop) leads to next.
enum Next {
    Continue,
    Stop(RunEnd),
}

/// What the engine needs besides the run's state: where it writes, whom it asks, where
/// processes run, and the environment they get (the secrets and `RUNBOOK_RUN_ID`).
pub struct Parts<'a> {
    pub journal: Writer,
    pub ui: &'a Ui,
    pub operator: &'a mut dyn Operator,
    pub runner: &'a dyn Runner,
    pub env: Vec<(String, String)>,
    pub masker: Masker,
}

pub struct Engine<'a> {
    /// The runbook made concrete for this run: needed to go forward, not to roll back (a past
    /// run rolls back with the commands its journal recorded, whatever today's file says).
    plan: Option<&'a Plan>,
    state: RunState,
    journal: Writer,
    ui: &'a Ui,
    operator: &'a mut dyn Operator,
    runner: &'a dyn Runner,
    env: Vec<(String, String)>,
    masker: Masker,
    /// A step was skipped, or the run crashed in a rehearsal: a rehearsal with a gap does not
    /// pass.
    incomplete: bool,
    /// The ssh masters of the hosts this run reached, opened on first use and closed when the
    /// engine is dropped.
    hosts: Option<crate::fleet::Fleet>,
}

impl<'a> Engine<'a> {
    /// An engine on a run's state as replayed from its journal (a new run's holds only
    /// `run_started`).
    pub fn new(plan: Option<&'a Plan>, state: RunState, parts: Parts<'a>) -> Engine<'a> {
        let Parts { journal, ui, operator, runner, env, masker } = parts;
        Engine {
            plan,
            state,
            journal,
            ui,
            operator,
            runner,
            env,
            masker,
            incomplete: false,
            hosts: None,
        }
    }

    /// The run's state as the journal now says.
    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// Write an event and fold it into the state.
    fn record(&mut self, event: Event) -> Result<()> {
        let record = self.journal.append(event)?;
        self.state.apply(record);
        Ok(())
    }

    /// Make what is journalled durable before the run acts on it.
    fn sync(&mut self) -> Result<()> {
        self.journal.sync()
    }

    fn plan(&self) -> &'a Plan {
        self.plan.expect("going forward needs the plan; the commands check it")
    }

    fn total(&self) -> usize {
        self.state.started.steps.len()
    }

    fn run_dir(&self) -> PathBuf {
        self.state.dir.clone()
    }

    /// Record how the run ended, durably.
    fn finish(&mut self, end: RunEnd) -> Result<RunEnd> {
        let still_applied = self.still_applied();
        self.record(Event::RunFinished { status: end.status, exit_code: end.code, still_applied })?;
        self.sync()?;
        Ok(end)
    }

    /// Ask the operator (or its unattended policy) and journal the question, the answer and who
    /// gave it. What the question is about is on disk before anyone answers.
    fn ask(&mut self, step: Option<usize>, q: Question<'_>) -> Result<Answer> {
        self.ask_and_record(step, q, false)
    }

    /// As `ask`; a routine question (run the next step?) answered by the unattended policy is
    /// not journalled: the step's own events say it ran.
    fn ask_and_record(
        &mut self,
        step: Option<usize>,
        q: Question<'_>,
        routine: bool,
    ) -> Result<Answer> {
        let attended = self.operator.attended();
        if attended {
            self.sync()?;
        }
        let answer = self.operator.choose(&q)?;
        if routine && !attended {
            return Ok(answer);
        }
        let said = match answer {
            Answer::Chose(c) => c.0.to_string(),
            Answer::Interrupted => "interrupted".to_string(),
        };
        let by = self.operator.who().to_string();
        self.record(Event::Prompt { step, question: q.text.to_string(), answer: said, by })?;
        Ok(answer)
    }

    /// Step numbers whose change is still in place (a check or a measure leaves none), in the
    /// order they ran.
    fn still_applied(&self) -> Vec<usize> {
        let mut seen = std::collections::BTreeSet::new();
        let applied = self.state.applied.iter().map(|a| a.step);
        applied.filter(|n| self.state.leaves_a_change(*n) && seen.insert(*n)).collect()
    }

    fn say(&self, line: &str) {
        self.ui.say(line);
    }
}

#[cfg(test)]
mod tests;
