//! Unit tests of the state machine, driven by the scripted operator with no terminal: every
//! transition (ok; fail -> retry / rollback / skip / abort; a rollback that fails) and a resume
//! from every point the journal of a run can stop at.

use std::path::{Path, PathBuf};

use super::operator::{ABORT, Answer, RETRY, ROLLBACK, SKIP, Scripted};
use super::{Engine, Parts, RunEnd, code};
use crate::journal::{Event, Record, RunStatus, Writer, reader};
use crate::plan::{Context, Plan};
use crate::runner::Local;
use crate::secret::Masker;
use crate::ui::Ui;

/// Three apply steps writing to `trail`; step 2 fails while `break2` exists, and its rollback
/// fails while `break_undo` exists.
const THREE: &str = r#"[runbook]
name = "unit"

[[step]]
title = "one"
kind = "apply"
run = "echo run 1 >> {{runbook_dir}}/trail"
rollback = "echo undo 1 >> {{runbook_dir}}/trail"

[[step]]
title = "two"
kind = "apply"
run = "echo run 2 >> {{runbook_dir}}/trail; test ! -e {{runbook_dir}}/break2"
rollback = "echo undo 2 >> {{runbook_dir}}/trail; test ! -e {{runbook_dir}}/break_undo"

[[step]]
title = "three"
kind = "apply"
run = "echo run 3 >> {{runbook_dir}}/trail"
rollback = "echo undo 3 >> {{runbook_dir}}/trail"
"#;

struct Fixture {
    dir: tempfile::TempDir,
    plan: Plan,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rb.toml"), THREE).unwrap();
        let rb = crate::runbook::load(&dir.path().join("rb.toml")).unwrap();
        let run_dir = dir.path().join("run");
        std::fs::create_dir_all(run_dir.join("logs")).unwrap();
        let plan = Plan::build(
            &rb,
            Context {
                env: None,
                overrides: &[],
                // Unique per test: leftovers are found by run id, and tests run side by side.
                run_id: format!("unit-{}", dir.path().display()).replace('/', "-"),
                run_dir,
                operator: "tester".into(),
                ask_secret: None,
                dry: false,
            },
        )
        .unwrap();
        Fixture { dir, plan }
    }

    fn touch(&self, name: &str) {
        std::fs::write(self.dir.path().join(name), "").unwrap();
    }

    fn trail(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("trail")).unwrap_or_default()
    }

    fn journal(&self) -> PathBuf {
        self.plan.run_dir.join("journal.jsonl")
    }

    /// A new run's journal and state: `run_started` only.
    fn start(&self) -> (Writer, crate::journal::RunState) {
        let rb = crate::runbook::load(&self.dir.path().join("rb.toml")).unwrap();
        let started = crate::commands::run::run_started(&rb, &self.plan, "run", None);
        let mut journal = Writer::open(&self.journal(), 0).unwrap();
        let first = journal.append(Event::RunStarted(started)).unwrap();
        let state = reader::from_records(&self.plan.run_dir, vec![first]).unwrap();
        (journal, state)
    }

    /// Run all steps with these answers; return how it ended and what was asked.
    fn run(
        &self,
        answers: Vec<(&'static str, Answer)>,
    ) -> (RunEnd, crate::journal::RunState, Vec<String>) {
        let (journal, state) = self.start();
        let mut operator = Scripted::new(answers);
        let (end, state) = self.drive(journal, state, &mut operator, |e| e.run(0..3));
        (end, state, operator.asked)
    }

    fn drive(
        &self,
        journal: Writer,
        state: crate::journal::RunState,
        operator: &mut dyn super::operator::Operator,
        op: impl FnOnce(&mut Engine<'_>) -> anyhow::Result<RunEnd>,
    ) -> (RunEnd, crate::journal::RunState) {
        let ui = Ui::new();
        let parts = Parts {
            journal,
            ui: &ui,
            operator,
            runner: &Local,
            env: self.plan.step_env.clone(),
            masker: Masker::default(),
        };
        let mut engine = Engine::new(Some(&self.plan), state, parts);
        let end = op(&mut engine).unwrap();
        (end, engine.state().clone())
    }
}

fn chose(c: super::operator::Choice) -> Answer {
    Answer::Chose(c)
}

fn applied(state: &crate::journal::RunState) -> Vec<usize> {
    state.applied.iter().map(|a| a.step).collect()
}

#[test]
fn every_step_passes_and_stays_applied() {
    let f = Fixture::new();
    let (end, state, _) = f.run(vec![]);
    assert_eq!(end, RunEnd::SUCCEEDED);
    assert_eq!(f.trail(), "run 1\nrun 2\nrun 3\n");
    assert_eq!(applied(&state), [1, 2, 3]);
    // The state the engine kept is the one the journal replays.
    let replayed = reader::read(&f.plan.run_dir).unwrap();
    assert_eq!(applied(&replayed), applied(&state));
    assert_eq!(replayed.finished, Some((RunStatus::Succeeded, code::OK)));
}

#[test]
fn a_failure_rolled_back_undoes_the_failed_step_first_then_the_others_newest_first() {
    let f = Fixture::new();
    f.touch("break2");
    let (end, state, asked) = f.run(vec![("failed", chose(ROLLBACK))]);
    assert_eq!(end.status, RunStatus::RolledBack);
    assert_eq!(f.trail(), "run 1\nrun 2\nundo 2\nundo 1\n");
    assert!(applied(&state).is_empty());
    assert!(asked.iter().any(|q| q == "Step 2 failed. What now?"), "{asked:?}");
}

#[test]
fn a_failure_retried_after_the_cause_is_fixed_goes_on() {
    let f = Fixture::new();
    f.touch("break2");
    let (journal, state) = f.start();
    // The operator fixes the cause, then answers retry.
    let mut fixer = FixThenRetry { path: f.dir.path().join("break2") };
    let (end, _) = f.drive(journal, state, &mut fixer, |e| e.run(0..3));
    assert_eq!(end, RunEnd::SUCCEEDED);
    assert_eq!(f.trail(), "run 1\nrun 2\nrun 2\nrun 3\n");
}

/// Answers "retry" once it has removed the file that makes step 2 fail.
struct FixThenRetry {
    path: PathBuf,
}

impl super::operator::Operator for FixThenRetry {
    fn choose(&mut self, q: &super::operator::Question<'_>) -> anyhow::Result<Answer> {
        if q.choices.contains(&RETRY) {
            let _ = std::fs::remove_file(&self.path);
            return Ok(chose(RETRY));
        }
        Ok(chose(q.choices[0]))
    }
    fn secret(&mut self, _: &str) -> anyhow::Result<String> {
        anyhow::bail!("no secrets")
    }
    fn who(&self) -> &str {
        "fixer"
    }
    fn attended(&self) -> bool {
        true
    }
}

#[test]
fn a_failure_skipped_stays_applied_and_an_abort_leaves_everything_applied() {
    let f = Fixture::new();
    f.touch("break2");
    let (end, state, _) = f.run(vec![("failed", chose(SKIP))]);
    assert_eq!(end, RunEnd::SUCCEEDED);
    assert_eq!(applied(&state), [1, 2, 3], "the failed, skipped step may have partly applied");

    let f = Fixture::new();
    f.touch("break2");
    let (end, state, _) = f.run(vec![("failed", chose(ABORT))]);
    assert_eq!(end, RunEnd::ABORTED);
    assert_eq!(applied(&state), [1, 2]);
    assert_eq!(f.trail(), "run 1\nrun 2\n", "nothing was rolled back");
}

#[test]
fn a_rollback_that_fails_stops_and_keeps_what_is_still_applied() {
    let f = Fixture::new();
    f.touch("break2");
    f.touch("break_undo");
    let (end, state, _) = f.run(vec![("failed", chose(ROLLBACK))]);
    assert_eq!(end.status, RunStatus::RollbackFailed);
    assert_eq!(end.code, code::ROLLBACK_FAILED);
    assert_eq!(applied(&state), [1, 2], "step 2's rollback failed; step 1 was never reached");
    assert_eq!(f.trail(), "run 1\nrun 2\nundo 2\n");
}

/// Cut the journal of a whole run after every event in turn, as a crash would, and resume each
/// cut unattended: it always ends with an end recorded, and the state it replays agrees.
#[test]
fn a_resume_from_every_point_of_the_journal_closes_the_run() {
    let full = Fixture::new();
    full.run(vec![]);
    let records = reader::read(&full.plan.run_dir).unwrap().records;
    for cut in 1..records.len() {
        let f = Fixture::new();
        let kept: Vec<Record> = records[..cut].to_vec();
        write_journal(&f.journal(), &kept);
        let state = reader::read(&f.plan.run_dir).unwrap();
        let journal = Writer::open(&f.journal(), state.last_seq).unwrap();
        let mut unattended = Scripted::default();
        let (end, state) = f.drive(journal, state, &mut unattended, |e| e.resume(None));
        assert_eq!(end, RunEnd::SUCCEEDED, "cut after event {cut}");
        assert_eq!(applied(&state), [1, 2, 3], "cut after event {cut}");
        let replayed = reader::read(&f.plan.run_dir).unwrap();
        assert!(replayed.finished.is_some(), "cut after event {cut}: closed");
        assert!(replayed.damaged.is_empty() && !replayed.torn_line);
    }
}

fn write_journal(path: &Path, records: &[Record]) {
    let mut text = Vec::new();
    for r in records {
        text.extend(serde_json::to_vec(r).unwrap());
        text.push(b'\n');
    }
    std::fs::write(path, text).unwrap();
}
