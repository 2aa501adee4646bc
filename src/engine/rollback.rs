//! Rolling back: every applied step newest first, with the rollback recorded when the step
//! started (so a rollback of a past run runs the commands of that time, not today's file), each
//! checked by its `verify_rollback`. One path, for a run's own rollback, a rehearsal's second
//! half, a rollback chosen at resume and `runbook rollback RUN`.

use anyhow::Result;

use super::operator::{Answer, NO, Question, YES};
use super::{Engine, RunEnd, code};
use crate::Refused;
use crate::journal::{Event, Outcome, RunStatus};
use crate::plan::Work;
use crate::runbook::Expect;
use crate::signals;
use crate::steps::StepResult;

/// One step to undo: its number, and the rollback and verification it recorded.
#[derive(Debug, Clone)]
pub(super) struct Undo {
    pub step: usize,
    pub target: String,
    pub work: Option<Work>,
    pub verify: Option<Work>,
}

impl Engine<'_> {
    /// What a rollback would do now, in order: every applied step that changed something,
    /// newest first (those without a rollback stay, and are said to).
    pub(super) fn rollback_order(&self) -> Vec<Undo> {
        let mut order: Vec<Undo> = Vec::new();
        for a in self.state.applied.iter().rev() {
            if !self.state.leaves_a_change(a.step) {
                continue;
            }
            let Some(s) = self.state.steps.get(&a.step) else { continue };
            order.push(Undo {
                step: a.step,
                target: a.target.clone(),
                work: s.rollback.clone(),
                verify: s.verify.clone(),
            });
        }
        self.host_order(order)
    }

    /// `runbook rollback RUN`: confirm, then undo what the run left applied.
    pub fn rollback_run(&mut self) -> Result<RunEnd> {
        let order = self.rollback_order();
        if !order.iter().any(|u| u.work.is_some()) {
            if self.state.finished.is_none() {
                self.settle_leftovers()?;
                return self.close_without_rollback();
            }
            return Err(Refused(format!(
                "run {} has nothing to roll back ({}): no applied step with a rollback",
                self.state.id,
                self.state.status_label()
            ))
            .into());
        }
        self.settle_leftovers()?;
        self.show_state();
        let steps: Vec<String> =
            order.iter().filter(|u| u.work.is_some()).map(Undo::label).collect();
        let q = Question {
            text: &format!("Roll back steps {}, in that order?", steps.join(", ")),
            choices: &[YES, NO],
            unattended: Some(YES),
        };
        if self.ask(None, q)? != Answer::Chose(YES) {
            self.say("Nothing was rolled back.");
            return Ok(RunEnd::ABORTED);
        }
        self.record_takeover("rollback", None)?;
        let end = self.rollback(&format!("runbook rollback {}", self.state.id))?;
        let end = match end.status {
            RunStatus::RolledBack => {
                let msg = format!("run {} rolled back (steps {})", self.state.id, steps.join(", "));
                self.say(&self.ui.good(&msg));
                let stays: Vec<String> =
                    self.still_applied().iter().map(|n| n.to_string()).collect();
                if !stays.is_empty() {
                    let stays =
                        format!("still applied, with no rollback: steps {}", stays.join(", "));
                    self.say(&self.ui.warn(&stays));
                }
                RunEnd { status: RunStatus::RolledBack, code: code::OK }
            }
            _ => end,
        };
        self.finish(end)
    }

    /// A run that stopped with nothing left to undo (killed right after its last rollback, say)
    /// still gets its end recorded, so it is closed and a second call says so.
    fn close_without_rollback(&mut self) -> Result<RunEnd> {
        self.say(&format!(
            "Run {} has nothing left to roll back; recording its end.",
            self.state.id
        ));
        self.record_takeover("rollback", None)?;
        self.finish(RunEnd { status: RunStatus::RolledBack, code: code::OK })
    }

    /// Undo every applied step, newest first, until one fails or the operator abandons it.
    pub(super) fn rollback(&mut self, reason: &str) -> Result<RunEnd> {
        self.say(&self.ui.warn(&format!("Rolling back: {}", self.masker.mask(reason))));
        let order = self.rollback_order();
        if order.is_empty() {
            self.say("  nothing to roll back: no step that ran changed anything");
        }
        for (pos, undo) in order.iter().enumerate() {
            let Some(work) = &undo.work else {
                let why = self.state.info(undo.step).and_then(|i| i.irreversible.clone());
                let why = why.unwrap_or_else(|| "it has no rollback".into());
                let line = format!("  step {} cannot be undone: {why}; it stays", undo.step);
                self.say(&self.ui.warn(&line));
                continue;
            };
            if !self.rollback_one(undo, work, reason)? {
                self.explain_stuck();
                return Ok(RunEnd {
                    status: RunStatus::RollbackFailed,
                    code: code::ROLLBACK_FAILED,
                });
            }
            let more = || order[pos + 1..].iter().any(|u| u.work.is_some());
            if signals::interrupted() && more() && self.abandon_rollback(undo.step)? {
                self.hint_next();
                return Ok(RunEnd::INTERRUPTED);
            }
        }
        signals::clear();
        Ok(RunEnd { status: RunStatus::RolledBack, code: code::ROLLED_BACK })
    }

    fn rollback_one(&mut self, undo: &Undo, work: &Work, reason: &str) -> Result<bool> {
        let log = match undo.target.as_str() {
            crate::runner::LOCAL => Self::log_name(undo.step, "rollback"),
            host => crate::fleet::log_name(undo.step, host, "rollback"),
        };
        self.record(Event::RollbackStarted {
            step: undo.step,
            target: undo.target.clone(),
            reason: self.masker.mask(reason).into_owned(),
            work: work.clone(),
            log: log.clone(),
        })?;
        self.sync()?;
        let title = self.state.step_title(undo.step).to_string();
        self.say(&format!(
            "  ↩ step {} {title}: {}",
            undo.label(),
            self.masker.mask(&work.summary())
        ));
        let label = format!("rollback of step {}", undo.step);
        let mut result = self.undo_on(undo, work, "rollback", &label);
        if result.outcome == Outcome::Ok
            && let Some(verify) = &undo.verify
        {
            let label = format!("verifying the rollback of step {}", undo.step);
            let check = self.undo_on(undo, verify, "verify", &label);
            result.add_verification(check);
        }
        self.record_rollback(undo, &result)
    }

    /// A rollback or its verification, where the step ran: here, or over ssh on its host.
    fn undo_on(&mut self, undo: &Undo, work: &Work, what: &str, label: &str) -> StepResult {
        if undo.target != crate::runner::LOCAL {
            return self.run_on_host(&undo.target, undo.step, work, what);
        }
        let log = self.run_dir().join(Self::log_name(undo.step, what));
        self.run_to_the_end(undo.step, work, &log, label)
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
    }

    /// Journal a rollback's result and show it; true when it worked.
    fn record_rollback(&mut self, undo: &Undo, result: &StepResult) -> Result<bool> {
        let ok = result.outcome == Outcome::Ok;
        let check = self.masker.mask(&result.check).into_owned();
        self.record(Event::RollbackFinished {
            step: undo.step,
            target: undo.target.clone(),
            ok,
            exit_code: result.exit_code,
            duration_ms: result.duration.as_millis() as u64,
            check: check.clone(),
            details: result.details.clone(),
        })?;
        let mark = if ok {
            self.ui.good("  ✓ rolled back")
        } else {
            self.ui.bad("  ✗ ROLLBACK FAILED")
        };
        self.say(&format!("{mark} step {} ({check})", undo.label()));
        Ok(ok)
    }

    /// Ctrl-C during a rollback: the rollback command in progress was let finish; now ask before
    /// abandoning the rest. Unattended runs keep rolling back (the journal says they were asked).
    fn abandon_rollback(&mut self, after_step: usize) -> Result<bool> {
        let signal = signals::last_name().to_string();
        signals::clear();
        self.record(Event::Interrupted { step: Some(after_step), signal: signal.clone() })?;
        self.show_state();
        let q = Question {
            text: &format!("{signal}: abandon the rollback and leave the remaining steps applied?"),
            choices: &[YES, NO],
            unattended: Some(NO),
        };
        let answer = self.ask(Some(after_step), q)?;
        if answer == Answer::Chose(NO) && !self.operator.attended() {
            self.say(
                &self.ui.warn(&format!("{signal} during the rollback: unattended, it goes on")),
            );
        }
        signals::clear();
        Ok(matches!(answer, Answer::Chose(YES) | Answer::Interrupted))
    }

    /// A rollback failed: say plainly what is still applied and what to run by hand.
    fn explain_stuck(&self) {
        self.say(&self.ui.bad("Rollback stopped. These steps are still applied, newest first:"));
        for undo in self.rollback_order() {
            let title = self.state.step_title(undo.step);
            let how = match &undo.work {
                Some(w) => format!("undo by hand with: {}", self.masker.mask(&w.summary())),
                None => "it has no rollback".to_string(),
            };
            self.say(&format!("  step {} {title}: {how}", undo.label()));
        }
        self.say(&format!(
            "  when fixed, `runbook rollback {}` retries the rollback from there",
            self.state.id
        ));
    }
}
