//! What the engine shows: the card before a step, its result, and, at every decision, what is
//! applied now and what a rollback would run, so someone woken at 3 a.m. sees the state on the
//! screen instead of working it out.

use crate::journal::Outcome;
use crate::plan::PlannedStep;
use crate::runbook::Kind;
use crate::steps::{self, StepResult};

use super::Engine;

impl Engine<'_> {
    pub(super) fn say_dim(&self, line: &str) {
        self.ui.say(&self.ui.dim(line));
    }

    pub(super) fn show_card(&self, step: &PlannedStep) {
        let m = &self.masker;
        let head = format!("▶ step {}/{} {}", step.number, self.total(), step.title);
        self.say(&format!(
            "{}  {}",
            self.ui.bold(&head),
            self.ui.dim(&format!("[{}] owner: {}", step.kind.name(), step.owner))
        ));
        if !self.operator.attended() && step.kind != Kind::Manual {
            self.say(&self.ui.dim(&format!("  $ {}", m.mask(&step.work.summary()))));
            return;
        }
        self.say(&format!("  do:       {}", m.mask(&step.work.summary())));
        if let Some(preview) = steps::flush_step::preview_line(&step.work, &self.env) {
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

    pub(super) fn show_result(&self, number: usize, r: &StepResult) {
        let took = crate::runbook::duration::human(r.duration);
        let line = match r.outcome {
            Outcome::Ok => self.ui.good(&format!("✓ step {number} ok")),
            _ => self.ui.bad(&format!("✗ step {number} failed")),
        };
        self.say(&format!("{line} ({}, {took})", self.masker.mask(&r.check)));
    }

    /// What is applied now, and what a rollback would run, in order.
    pub(super) fn show_state(&self) {
        let order = self.rollback_order();
        if order.is_empty() {
            self.say("  Applied now: nothing (no step that ran changed anything).");
            return;
        }
        let mut numbers: Vec<String> = order.iter().map(super::rollback::Undo::label).collect();
        numbers.reverse();
        self.say(&format!("  Applied now: steps {}.", numbers.join(", ")));
        self.say("  A rollback would run, in this order:");
        for undo in &order {
            let title = self.state.step_title(undo.step);
            let what = match &undo.work {
                Some(w) => format!("$ {}", self.masker.mask(&w.summary())),
                None => {
                    let why = self.state.info(undo.step).and_then(|i| i.irreversible.clone());
                    format!("(stays: {})", why.unwrap_or_else(|| "no rollback".into()))
                }
            };
            self.say(&format!("    {:>3}. {title}  {what}", undo.label()));
        }
    }

    /// The in-flight step of a stopped run and the last lines it printed.
    pub(super) fn show_in_flight(&self, number: usize, how: &str) {
        self.say(&self.ui.warn(&format!(
            "Step {number} ({}) was {how} when the run stopped.",
            self.state.step_title(number)
        )));
        let log = self.state.steps.get(&number).and_then(|s| s.log.clone());
        let text = log.and_then(|l| std::fs::read(self.run_dir().join(l)).ok()).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().collect();
        if lines.is_empty() {
            self.say("  (it printed nothing)");
            return;
        }
        self.say("  its last output:");
        for line in &lines[lines.len().saturating_sub(10)..] {
            self.say(&format!("  | {line}"));
        }
    }

    /// After an abort, a "leave" or an interruption: how to go on inside this run, and how to
    /// undo what it left applied. Never a new run: a new run knows nothing of what this one did.
    pub(super) fn hint_next(&self) {
        let id = &self.state.id;
        let still = self.still_applied();
        if !still.is_empty() {
            let steps: Vec<String> = still.iter().map(|n| n.to_string()).collect();
            self.say(&format!(
                "Steps still applied: {}. To undo them: runbook rollback {id}",
                steps.join(", ")
            ));
        }
        if self.state.rolling_back {
            self.say(&format!("To finish the rollback: runbook resume {id}"));
        } else {
            self.say(&format!(
                "To go on from where it stopped: runbook resume {id} (or `--from STEP` to run a step of it again)"
            ));
        }
    }
}
