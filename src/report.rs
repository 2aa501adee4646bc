//! The final note of a run, rebuilt from its journal alone: who ran what, why, what each step did
//! against what it expected, what was rolled back, what the metrics did, and how to undo what is
//! left. Nothing comes from outside the journal (not today's runbook file, not the environment),
//! and the journal is already masked, so the note can be shared as it is.
//!
//! [`Note`] is the content; `markdown` and `html` only lay it out.

mod html;
mod markdown;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::journal::{Event, Outcome, RunState, StepStatus};
use crate::plan::Work;
use crate::runbook::Kind;
use crate::steps::flush::{FlushReport, RestoreReport};
use crate::steps::measure::judge::Judgement;
use crate::steps::measure::{self, Comparison, Metric};
use crate::steps::watch::{WatchEnd, WatchOutcome};

pub use html::{escape as html_escape, render as html};
pub use markdown::render as markdown;

/// Everything the note says, in the order it says it. Strings are as journalled (unescaped).
#[derive(Debug, Clone)]
pub struct Note {
    pub id: String,
    pub name: String,
    pub runbook: String,
    pub hash: String,
    pub command: String,
    pub env: Option<String>,
    pub operator: String,
    pub host: String,
    pub reason: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ending: Ending,
    pub steps: Vec<StepNote>,
    pub prompts: Vec<PromptNote>,
    pub rollbacks: Vec<RollbackNote>,
    pub backups: Vec<BackupNote>,
    pub flushes: Vec<FlushNote>,
    pub watches: Vec<WatchNote>,
    pub metrics: Vec<MetricChange>,
    /// Metrics measured only once: nothing to compare them with.
    pub measured_once: Vec<(usize, Metric)>,
    pub undo: Undo,
    /// Steps whose last attempt failed or timed out, in step order: what the note leads with.
    pub failed_steps: Vec<FailedStep>,
    /// Steps on hosts: where each step stands on each host.
    pub hosts: crate::fleet::HostGrid,
}

/// A step that failed, as the head of the note tells it.
#[derive(Debug, Clone)]
pub struct FailedStep {
    pub number: usize,
    pub title: String,
    pub expected: String,
    pub seen: String,
    /// The last lines of its output (masked when they were journalled).
    pub last_lines: String,
}

/// How many lines of output the head of the note quotes.
pub const HEAD_LINES: usize = 10;

/// How the run ended, or that it has no recorded end.
#[derive(Debug, Clone)]
pub struct Ending {
    /// When the run itself finished (its first `run_finished`); `None` when no end is recorded.
    pub finished_at: Option<DateTime<Utc>>,
    pub last_event_at: DateTime<Utc>,
    /// Where the run stands now, e.g. "succeeded", "rolled back" (after a later rollback too).
    pub status: String,
    /// How the run itself ended, e.g. "succeeded (exit 0)"; `None` when no end is recorded.
    pub result: Option<String>,
    /// The colour of where the run stands, from its status (never from the words shown).
    pub tone: crate::journal::event::Tone,
    /// Plain statements a reader must not miss: no end recorded, interrupted, a torn journal line,
    /// a later `runbook rollback`.
    pub warnings: Vec<String>,
}

impl Ending {
    /// From the start to the end, or to the last event when no end is recorded.
    pub fn duration(&self, started: DateTime<Utc>) -> String {
        let end = self.finished_at.unwrap_or(self.last_event_at);
        let ms = (end - started).num_milliseconds().max(0) as u64;
        let took = human_ms(ms);
        if self.finished_at.is_some() { took } else { format!("at least {took} (no end recorded)") }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    Ok,
    Failed,
    TimedOut,
    Interrupted,
    /// Started, and no result was ever journalled.
    InFlight,
    Skipped,
    NotRun,
}

impl StepOutcome {
    pub fn word(self) -> &'static str {
        match self {
            StepOutcome::Ok => "ok",
            StepOutcome::Failed => "failed",
            StepOutcome::TimedOut => "timed out",
            StepOutcome::Interrupted => "interrupted",
            StepOutcome::InFlight => "no result (in flight when the run stopped)",
            StepOutcome::Skipped => "skipped",
            StepOutcome::NotRun => "not run",
        }
    }

    fn from_outcome(o: Outcome) -> StepOutcome {
        match o {
            Outcome::Ok => StepOutcome::Ok,
            Outcome::Failed => StepOutcome::Failed,
            Outcome::TimedOut => StepOutcome::TimedOut,
            Outcome::Interrupted => StepOutcome::Interrupted,
        }
    }
}

/// Whether a step's change was undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undone {
    No,
    RolledBack,
    RollbackFailed,
    /// A rollback started and no result was journalled.
    RollbackInFlight,
}

#[derive(Debug, Clone)]
pub struct StepNote {
    pub number: usize,
    pub title: String,
    pub kind: &'static str,
    pub owner: String,
    /// What ran, as journalled (rendered, secrets masked); `None` when it never started.
    pub command: Option<String>,
    pub rollback: Option<String>,
    pub irreversible: Option<String>,
    pub expected: String,
    pub actual: String,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    /// When it (last) started, counted from the start of the run.
    pub offset_ms: Option<u64>,
    pub attempts: u32,
    pub outcome: StepOutcome,
    pub undone: Undone,
    /// Why it was skipped.
    pub note: Option<String>,
    pub output_tail: String,
}

impl StepNote {
    /// The outcome in words, with what happened to its change.
    pub fn result(&self) -> String {
        let undone = match self.undone {
            Undone::No => "",
            Undone::RolledBack => ", rolled back",
            Undone::RollbackFailed => ", ROLLBACK FAILED",
            Undone::RollbackInFlight => ", rollback started (no result)",
        };
        format!("{}{undone}", self.outcome.word())
    }

    /// A class for colouring: good, bad, undone, quiet.
    pub fn tone(&self) -> &'static str {
        match (self.outcome, self.undone) {
            (_, Undone::RollbackFailed | Undone::RollbackInFlight) => "bad",
            (_, Undone::RolledBack) => "undone",
            (StepOutcome::Ok, _) => "good",
            (StepOutcome::Skipped | StepOutcome::NotRun, _) => "quiet",
            _ => "bad",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PromptNote {
    pub at: DateTime<Utc>,
    pub step: Option<usize>,
    pub question: String,
    pub answer: String,
}

#[derive(Debug, Clone)]
pub struct RollbackNote {
    pub at: DateTime<Utc>,
    pub step: usize,
    pub title: String,
    pub reason: String,
    pub command: String,
    /// `None`: started, no result journalled.
    pub ok: Option<bool>,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    pub check: String,
    pub restore: Option<RestoreReport>,
    /// The last lines of its log in the run's folder (a failed rollback shows them).
    pub output: String,
    /// When `verify_rollback` failed: the last lines of its log.
    pub verify_output: String,
}

impl RollbackNote {
    pub fn result(&self) -> &'static str {
        match self.ok {
            Some(true) => "ok",
            Some(false) => "FAILED",
            None => "no result (interrupted?)",
        }
    }
}

/// A `kind = "backup"` step: its command as journalled and the paths it names.
#[derive(Debug, Clone)]
pub struct BackupNote {
    pub step: usize,
    pub title: String,
    pub command: String,
    /// Words of the command that look like paths; read from the command, not checked on disk.
    pub paths: Vec<String>,
    pub outcome: StepOutcome,
}

#[derive(Debug, Clone)]
pub struct FlushNote {
    pub step: usize,
    pub title: String,
    pub server: String,
    pub patterns: Vec<String>,
    pub backup_file: Option<String>,
    pub figures: Option<FlushReport>,
    pub check: String,
    /// The restores (rollbacks) of this flush: the check in words and the figures.
    pub restores: Vec<(String, Option<RestoreReport>)>,
}

#[derive(Debug, Clone)]
pub struct WatchNote {
    pub step: usize,
    pub title: String,
    pub source: String,
    pub fail_on: Vec<String>,
    pub outcome: Option<WatchOutcome>,
    pub check: String,
}

#[derive(Debug, Clone)]
pub struct MetricChange {
    pub before_step: usize,
    pub after_step: usize,
    pub comparison: Comparison,
    /// The `fail_if` of the later measure that judged this metric, if one did.
    pub judged: Option<Judgement>,
}

impl MetricChange {
    /// `Some(true)` when a `fail_if` judged the change good, `Some(false)` when bad.
    pub fn good(&self) -> Option<bool> {
        self.judged.as_ref().map(|j| !j.failed())
    }

    /// The mark for the change: `good`/`BAD` and the condition that judged it, or `-`.
    pub fn mark(&self) -> String {
        match &self.judged {
            Some(j) if j.failed() => format!("BAD: {}", j.text),
            Some(j) => format!("good: {}", j.text),
            None => "-".into(),
        }
    }

    pub fn before(&self) -> String {
        with_unit(self.comparison.before, &self.comparison.unit)
    }

    pub fn after(&self) -> String {
        with_unit(self.comparison.after, &self.comparison.unit)
    }

    pub fn change(&self) -> String {
        let sign = if self.comparison.change > 0.0 { "+" } else { "" };
        format!("{sign}{}", with_unit(self.comparison.change, &self.comparison.unit))
    }

    pub fn change_pct(&self) -> String {
        self.comparison.change_pct.map_or_else(|| "n/a (was 0)".into(), |p| format!("{p:+.1}%"))
    }
}

/// How to undo what the run left applied.
#[derive(Debug, Clone)]
pub struct Undo {
    /// `runbook rollback <id>`, when some applied step has a rollback.
    pub command: Option<String>,
    /// Steps that command would undo, newest first: number, title, rollback as journalled.
    pub steps: Vec<(usize, String, String)>,
    /// Changes that stay: number, title, why.
    pub stays: Vec<(usize, String, String)>,
    /// One sentence on where things stand.
    pub statement: String,
    /// When the rollback this command would run already failed: when, where, and what to fix
    /// first.
    pub already_failed: Option<String>,
}

impl Note {
    pub fn from_run(run: &RunState) -> Note {
        let s = &run.started;
        Note {
            id: run.id.clone(),
            name: s.name.clone(),
            runbook: s.runbook.clone(),
            hash: s.hash.clone(),
            command: command_line(run),
            env: s.env.clone(),
            operator: s.operator.clone(),
            host: s.host.clone(),
            reason: s.reason.clone(),
            started_at: run.started_at,
            ending: ending(run),
            steps: steps(run),
            prompts: prompts(run),
            rollbacks: rollbacks(run),
            backups: backups(run),
            flushes: flushes(run),
            watches: watches(run),
            metrics: metric_changes(&measurements(run)),
            measured_once: measured_once(&measurements(run)),
            undo: undo(run),
            failed_steps: Vec::new(),
            hosts: crate::fleet::host_grid(&run.records),
        }
        .with_failed_steps()
    }

    fn with_failed_steps(mut self) -> Note {
        self.failed_steps = self
            .steps
            .iter()
            .filter(|s| matches!(s.outcome, StepOutcome::Failed | StepOutcome::TimedOut))
            .map(|s| FailedStep {
                number: s.number,
                title: s.title.clone(),
                expected: s.expected.clone(),
                seen: s.actual.clone(),
                last_lines: last_lines(&s.output_tail, HEAD_LINES),
            })
            .collect();
        self
    }

    /// Rollbacks whose last attempt failed, in the order they ran: one per step (a later
    /// attempt's log replaced the earlier one's), none for a step rolled back since.
    pub fn failed_rollbacks(&self) -> Vec<&RollbackNote> {
        let last_of_step = |r: &RollbackNote| {
            self.rollbacks.iter().rev().find(|o| o.step == r.step && o.ok.is_some())
        };
        self.rollbacks
            .iter()
            .filter(|r| r.ok == Some(false))
            .filter(|r| last_of_step(r).is_some_and(|last| std::ptr::eq(last, *r)))
            .collect()
    }

    /// A few lines for the end of `runbook run`: step counts and metric changes.
    pub fn summary(&self) -> Vec<String> {
        let count = |f: &dyn Fn(&StepNote) -> bool| self.steps.iter().filter(|s| f(s)).count();
        let ok = count(&|s| s.outcome == StepOutcome::Ok);
        let skipped = count(&|s| s.outcome == StepOutcome::Skipped);
        let not_run = count(&|s| s.outcome == StepOutcome::NotRun);
        let failed = self.steps.len() - ok - skipped - not_run;
        let rolled_back = count(&|s| s.undone == Undone::RolledBack);
        let mut lines = vec![format!(
            "steps: {ok} ok, {failed} failed, {skipped} skipped, {rolled_back} rolled back{}",
            if not_run > 0 { format!(", {not_run} not run") } else { String::new() }
        )];
        for m in &self.metrics {
            let mark = match m.good() {
                Some(true) => ", good",
                Some(false) => ", BAD",
                None => "",
            };
            lines.push(format!(
                "{}: {} -> {} ({}, {}{mark})",
                m.comparison.name,
                m.before(),
                m.after(),
                m.change(),
                m.change_pct()
            ));
        }
        lines
    }
}

/// The command that started the run, with its slice when it ran only some steps.
fn command_line(run: &RunState) -> String {
    let s = &run.started;
    match s.range.filter(|r| *r != (1, s.steps.len())) {
        Some((first, last)) => format!("{} --from {first} --to {last}", s.command),
        None => s.command.clone(),
    }
}

fn ending(run: &RunState) -> Ending {
    let finishes: Vec<_> = run
        .records
        .iter()
        .filter_map(|r| match &r.event {
            Event::RunFinished { status, exit_code, .. } => Some((r.ts, *status, *exit_code)),
            _ => None,
        })
        .collect();
    let mut warnings = Vec::new();
    for t in &run.takeovers {
        warnings.push(format!("Taken over later: {}.", t.describe()));
    }
    if let Some((reason, refusal)) = &run.gate_overridden {
        warnings.push(format!(
            "The rehearsal gate was overridden (--override-gate), with the reason: {reason}. It had refused because {refusal}."
        ));
    }
    if finishes.is_empty() {
        warnings.push(no_end_warning(run));
    }
    if let Some(signal) = &run.interrupted {
        warnings.push(format!("The run was interrupted ({signal})."));
    }
    for (at, status, _) in finishes.iter().skip(1) {
        warnings.push(format!(
            "Later, at {}, a rollback of this run (runbook rollback) ended: {}.",
            time(*at),
            status.label()
        ));
    }
    if run.torn_line {
        warnings.push(
            "A journal line could not be read (torn by a crash while writing it); it is left out."
                .into(),
        );
    }
    Ending {
        finished_at: finishes.first().map(|f| f.0),
        last_event_at: run.last_at,
        status: run.status_label(),
        result: finishes
            .first()
            .map(|(_, status, code)| format!("{} (exit {code})", status.label())),
        warnings,
        tone: match run.phase() {
            crate::journal::reader::Phase::Finished(status) => status.tone(),
            _ => crate::journal::event::Tone::Bad,
        },
    }
}

fn no_end_warning(run: &RunState) -> String {
    let in_flight: Vec<String> = run
        .steps
        .values()
        .filter(|s| matches!(s.status, StepStatus::InFlight | StepStatus::RollingBack))
        .map(|s| format!("step {} ({})", s.number, run.step_title(s.number)))
        .collect();
    let during = if in_flight.is_empty() {
        String::new()
    } else {
        format!(" It stopped during {}.", in_flight.join(", "))
    };
    if run.status_label() == "running" {
        return format!(
            "This run is still running (pid {} on {}); this note is as of {}.",
            run.started.pid,
            run.started.host,
            time(run.last_at)
        );
    }
    format!(
        "This run has no recorded end: it was interrupted or its process died. Its last event was at {}.{during}",
        time(run.last_at)
    )
}

fn step_outcomes(run: &RunState) -> BTreeMap<usize, StepOutcome> {
    let mut outcomes = BTreeMap::new();
    for r in &run.records {
        let (step, outcome) = match &r.event {
            Event::StepStarted { step, .. } => (*step, StepOutcome::InFlight),
            Event::StepFinished { step, outcome, .. } => {
                (*step, StepOutcome::from_outcome(*outcome))
            }
            Event::StepSkipped { step, .. } => (*step, StepOutcome::Skipped),
            _ => continue,
        };
        outcomes.insert(step, outcome);
    }
    outcomes
}

fn steps(run: &RunState) -> Vec<StepNote> {
    let outcomes = step_outcomes(run);
    run.started
        .steps
        .iter()
        .map(|info| {
            let state = run.steps.get(&info.number);
            let undone = match state.map(|s| s.status) {
                Some(StepStatus::RolledBack) => Undone::RolledBack,
                Some(StepStatus::RollbackFailed) => Undone::RollbackFailed,
                Some(StepStatus::RollingBack) => Undone::RollbackInFlight,
                _ => Undone::No,
            };
            StepNote {
                number: info.number,
                title: info.title.clone(),
                kind: info.kind.name(),
                owner: info.owner.clone(),
                command: state.and_then(|s| s.work.as_ref()).map(Work::summary),
                rollback: state.and_then(|s| s.rollback.as_ref()).map(Work::summary),
                irreversible: info.irreversible.clone(),
                expected: info.expect.clone(),
                actual: state.map(|s| s.check.clone()).unwrap_or_default(),
                exit_code: state.and_then(|s| s.exit_code),
                duration_ms: state.map_or(0, |s| s.duration_ms),
                offset_ms: last_start(run, info.number),
                attempts: state.map_or(0, |s| s.attempts),
                outcome: outcomes.get(&info.number).copied().unwrap_or(StepOutcome::NotRun),
                undone,
                note: state.and_then(|s| s.note.clone()),
                output_tail: state.map(|s| s.output_tail.clone()).unwrap_or_default(),
            }
        })
        .collect()
}

fn last_start(run: &RunState, step: usize) -> Option<u64> {
    let at = run.records.iter().rev().find_map(|r| match r.event {
        Event::StepStarted { step: s, .. } if s == step => Some(r.ts),
        _ => None,
    })?;
    Some((at - run.started_at).num_milliseconds().max(0) as u64)
}

fn prompts(run: &RunState) -> Vec<PromptNote> {
    run.records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Prompt { step, question, answer, .. } => Some(PromptNote {
                at: r.ts,
                step: *step,
                question: question.clone(),
                answer: answer.clone(),
            }),
            _ => None,
        })
        .collect()
}

fn rollbacks(run: &RunState) -> Vec<RollbackNote> {
    let mut notes: Vec<RollbackNote> = Vec::new();
    let mut logs: Vec<String> = Vec::new();
    for r in &run.records {
        match &r.event {
            Event::RollbackStarted { step, reason, work, log, .. } => {
                logs.push(log.clone());
                notes.push(RollbackNote {
                    at: r.ts,
                    step: *step,
                    title: run.step_title(*step).to_string(),
                    reason: reason.clone(),
                    command: work.summary(),
                    ok: None,
                    exit_code: None,
                    duration_ms: 0,
                    check: String::new(),
                    restore: None,
                    output: String::new(),
                    verify_output: String::new(),
                });
            }
            Event::RollbackFinished {
                step, ok, exit_code, duration_ms, check, details, ..
            } => {
                let Some(note) = notes.iter_mut().rev().find(|n| n.step == *step) else {
                    continue;
                };
                note.ok = Some(*ok);
                note.exit_code = *exit_code;
                note.duration_ms = *duration_ms;
                note.check = check.clone();
                note.restore = details.clone().and_then(|d| serde_json::from_value(d).ok());
            }
            _ => {}
        }
    }
    for (note, log) in notes.iter_mut().zip(&logs) {
        if note.ok == Some(false) {
            fill_output(run, note, log);
        }
    }
    notes
}

/// A failed rollback's own output, from its log in the run's folder (already masked when it was
/// written), and its verification's when that is what failed.
fn fill_output(run: &RunState, note: &mut RollbackNote, log: &str) {
    let tail = |name: &str| {
        std::fs::read(run.dir.join(name))
            .map(|b| last_lines(&String::from_utf8_lossy(&b), HEAD_LINES))
            .unwrap_or_default()
    };
    if !log.is_empty() {
        note.output = tail(log);
    }
    if note.check.contains("verify_rollback FAILED") {
        note.verify_output = tail(&format!("logs/{:02}-verify.log", note.step));
    }
}

/// The last `n` lines of a text, each cut to 500 characters.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let cut = |l: &&str| match l.char_indices().nth(500) {
        Some((at, _)) => format!("{}…", &l[..at]),
        None => l.to_string(),
    };
    lines[lines.len().saturating_sub(n)..].iter().map(cut).collect::<Vec<_>>().join("\n")
}

fn backups(run: &RunState) -> Vec<BackupNote> {
    let outcomes = step_outcomes(run);
    run.started
        .steps
        .iter()
        .filter(|info| info.kind == Kind::Backup)
        .filter_map(|info| {
            let work = run.steps.get(&info.number)?.work.as_ref()?;
            let command = work.summary();
            Some(BackupNote {
                step: info.number,
                title: info.title.clone(),
                paths: paths_in(&command),
                command,
                outcome: outcomes.get(&info.number).copied().unwrap_or(StepOutcome::NotRun),
            })
        })
        .collect()
}

/// Words of a shell command that look like file paths (they contain a `/` and are not options or
/// URLs). A guess from the text, which the note labels as such.
pub fn paths_in(command: &str) -> Vec<String> {
    let mut paths: Vec<String> = Vec::new();
    for word in command.split(|c: char| c.is_whitespace() || ";&|()<>".contains(c)) {
        let word = word.trim_matches(|c| c == '\'' || c == '"');
        let looks_like_path = word.contains('/') && !word.starts_with('-') && !word.contains("://");
        if looks_like_path && !paths.iter().any(|p| p == word) {
            paths.push(word.to_string());
        }
    }
    paths
}

fn flushes(run: &RunState) -> Vec<FlushNote> {
    let rollbacks = rollbacks(run);
    run.steps
        .values()
        .filter_map(|s| {
            let Some(Work::Flush { redis, patterns, backup, backup_file, .. }) = &s.work else {
                return None;
            };
            let restores = rollbacks
                .iter()
                .filter(|r| r.step == s.number && r.ok.is_some())
                .map(|r| (r.check.clone(), r.restore.clone()))
                .collect();
            Some(FlushNote {
                step: s.number,
                title: run.step_title(s.number).to_string(),
                server: crate::secret::redact(redis).into_owned(),
                patterns: patterns.clone(),
                backup_file: backup.then(|| backup_file.clone()),
                figures: s.details.clone().and_then(|d| serde_json::from_value(d).ok()),
                check: s.check.clone(),
                restores,
            })
        })
        .collect()
}

fn watches(run: &RunState) -> Vec<WatchNote> {
    run.steps
        .values()
        .filter_map(|s| {
            let Some(Work::Watch { file, command, fail_on, .. }) = &s.work else { return None };
            let source = match (file, command) {
                (Some(f), _) => format!("file {f}"),
                (None, Some(c)) => format!("command {c}"),
                (None, None) => "?".into(),
            };
            Some(WatchNote {
                step: s.number,
                title: run.step_title(s.number).to_string(),
                source,
                fail_on: fail_on.clone(),
                outcome: s.details.clone().and_then(|d| serde_json::from_value(d).ok()),
                check: s.check.clone(),
            })
        })
        .collect()
}

/// One measurement: which step took it, with which work, and what it read.
struct Measurement {
    step: usize,
    work: Option<Work>,
    metrics: Vec<Metric>,
    judged: Vec<Judgement>,
}

/// Every measurement the journal holds, in the order they were taken.
fn measurements(run: &RunState) -> Vec<Measurement> {
    let mut work_of: BTreeMap<usize, Work> = BTreeMap::new();
    let mut out = Vec::new();
    for r in &run.records {
        match &r.event {
            Event::StepStarted { step, work, .. } => {
                work_of.insert(*step, work.clone());
            }
            Event::StepFinished { step, details: Some(d), .. } => {
                let Some(list) = d.get("metrics") else { continue };
                let Ok(metrics) = serde_json::from_value::<Vec<Metric>>(list.clone()) else {
                    continue;
                };
                let judged = d
                    .get("judged")
                    .and_then(|j| serde_json::from_value(j.clone()).ok())
                    .unwrap_or_default();
                let work = work_of.get(step).cloned();
                out.push(Measurement { step: *step, work, metrics, judged });
            }
            _ => {}
        }
    }
    out
}

/// Pair the first and the last measurement of each metric. A count measured once is paired with
/// another measurement by the same work, where it was 0 (sources only report counts they saw).
fn metric_changes(all: &[Measurement]) -> Vec<MetricChange> {
    let mut changes: Vec<MetricChange> = Vec::new();
    for name in metric_names(all) {
        let holding: Vec<&Measurement> =
            all.iter().filter(|m| m.metrics.iter().any(|x| x.name == name)).collect();
        let (first, last) = match holding.as_slice() {
            [] => continue,
            [only] => match count_partner(all, only, &name) {
                Some(pair) => pair,
                None => continue,
            },
            [first, .., last] => (*first, *last),
        };
        let pick = |m: &Measurement| -> Vec<Metric> {
            m.metrics.iter().filter(|x| x.name == name).cloned().collect()
        };
        for comparison in measure::compare(&pick(first), &pick(last)) {
            changes.push(MetricChange {
                before_step: first.step,
                after_step: last.step,
                comparison,
                judged: judgement_of(last, &name),
            });
        }
    }
    changes
}

/// The condition of `m` about metric `name`: a failed one first, as the reason for a bad mark.
fn judgement_of(m: &Measurement, name: &str) -> Option<Judgement> {
    let about: Vec<&Judgement> =
        m.judged.iter().filter(|j| j.metric.as_deref() == Some(name)).collect();
    about.iter().find(|j| j.failed()).or(about.first()).map(|j| (*j).clone())
}

fn metric_names(all: &[Measurement]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for m in all.iter().flat_map(|m| &m.metrics) {
        if !names.contains(&m.name) {
            names.push(m.name.clone());
        }
    }
    names
}

fn count_partner<'a>(
    all: &'a [Measurement],
    only: &'a Measurement,
    name: &str,
) -> Option<(&'a Measurement, &'a Measurement)> {
    let metric = only.metrics.iter().find(|m| m.name == name)?;
    if metric.unit != "count" || only.work.is_none() {
        return None;
    }
    let pos = all.iter().position(|m| std::ptr::eq(m, only))?;
    let same = |m: &&Measurement| m.work == only.work;
    let before = all[..pos].iter().find(same);
    let after = all[pos + 1..].iter().rev().find(same);
    match (before, after) {
        (Some(b), _) => Some((b, only)),
        (None, Some(a)) => Some((only, a)),
        (None, None) => None,
    }
}

fn measured_once(all: &[Measurement]) -> Vec<(usize, Metric)> {
    let changed: Vec<String> = metric_changes(all).into_iter().map(|c| c.comparison.name).collect();
    let mut once = Vec::new();
    for m in all {
        for metric in &m.metrics {
            if !changed.contains(&metric.name) {
                once.push((m.step, metric.clone()));
            }
        }
    }
    once
}

fn undo(run: &RunState) -> Undo {
    let applied = run.applied_newest_first();
    let info = |n: usize| run.started.steps.iter().find(|s| s.number == n);
    let mut steps = Vec::new();
    let mut stays = Vec::new();
    for s in applied {
        let title = run.step_title(s.number).to_string();
        match (&s.rollback, info(s.number)) {
            (Some(w), _) => steps.push((s.number, title, w.summary())),
            (None, Some(i)) if i.irreversible.is_some() => stays.push((
                s.number,
                title,
                format!("irreversible: {}", i.irreversible.clone().unwrap_or_default()),
            )),
            (None, Some(i)) if i.kind.changes_things() => {
                stays.push((s.number, title, "no rollback was defined".into()))
            }
            _ => {}
        }
    }
    let command = (!steps.is_empty()).then(|| format!("runbook rollback {}", run.id));
    let statement = undo_statement(run, &steps, &stays);
    let already_failed = command.as_ref().and_then(|_| already_failed(run));
    Undo { command, steps, stays, statement, already_failed }
}

/// The last rollback that failed on a step still stuck there: the command the note offers runs
/// that rollback again, so say when it failed, how, and what to fix before running it.
fn already_failed(run: &RunState) -> Option<String> {
    let first_end = run.records.iter().find_map(|r| match r.event {
        Event::RunFinished { .. } => Some(r.seq),
        _ => None,
    });
    let notes = rollbacks(run);
    let stuck =
        |step: usize| run.steps.get(&step).is_some_and(|s| s.status == StepStatus::RollbackFailed);
    let failed = notes.iter().rev().find(|n| n.ok == Some(false) && stuck(n.step))?;
    let seq = run.records.iter().rev().find_map(|r| match &r.event {
        Event::RollbackFinished { step, ok: false, .. } if *step == failed.step => Some(r.seq),
        _ => None,
    });
    let by = match (seq, first_end) {
        (Some(seq), Some(end)) if seq > end => format!("when `runbook rollback {}` ran", run.id),
        _ => "during the run's own rollback".to_string(),
    };
    let last = failed.verify_output.lines().last().or(failed.output.lines().last());
    let fix = match last {
        Some(line) => format!(" Fix what made it fail first (its output ends: {line})"),
        None => " Fix what made it fail first".to_string(),
    };
    Some(format!(
        "This already failed {by}, at {}: the rollback of step {} ({}), `{}`, ended: {}.{fix}, then run the command again; the steps already rolled back are not rolled back twice.",
        time(failed.at),
        failed.step,
        failed.title,
        failed.command,
        failed.check
    ))
}

fn undo_statement(
    run: &RunState,
    steps: &[(usize, String, String)],
    stays: &[(usize, String, String)],
) -> String {
    let rolled_back = run.steps.values().any(|s| s.status == StepStatus::RolledBack);
    match (steps.is_empty(), stays.is_empty()) {
        (false, _) if steps.len() == 1 => {
            "1 step is still applied and can be rolled back with the command below.".into()
        }
        (false, _) => format!(
            "{} steps are still applied and can be rolled back with the command below, newest first.",
            steps.len()
        ),
        (true, false) => {
            "Nothing is left that runbook can roll back; the changes listed below stay in place."
                .into()
        }
        (true, true) if rolled_back => {
            "Nothing is left applied: every change this run made was rolled back.".into()
        }
        (true, true) => {
            "Nothing is left applied: no step of this run changed anything that needs undoing."
                .into()
        }
    }
}

/// A number with its unit, for a reader: `120 ms`, `12%`; counts and ratios are bare numbers.
pub fn with_unit(value: f64, unit: &str) -> String {
    let v = measure::format_value(value);
    match unit {
        "" | "count" | "ratio" => v,
        "%" => format!("{v}%"),
        _ => format!("{v} {unit}"),
    }
}

/// How a watch ended, in words.
pub fn watch_end(end: &WatchEnd) -> String {
    match end {
        WatchEnd::TimeUp => "its time was up".into(),
        WatchEnd::Until { line } => format!("it saw the line it waited for: {line}"),
        WatchEnd::TooManyMatches => "more matches than allowed".into(),
        WatchEnd::Cancelled => "cancelled".into(),
        WatchEnd::FileMissing => "the file did not exist, so nothing was watched".into(),
        WatchEnd::NeverAppeared => "the file never appeared, so nothing was watched".into(),
    }
}

pub fn human_ms(ms: u64) -> String {
    crate::runbook::duration::human(std::time::Duration::from_millis(ms))
}

pub fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}
