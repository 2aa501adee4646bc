//! Rebuilds a run's state from its journal alone. A torn last line (the process died while
//! writing it) is tolerated: everything before it is still the truth.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};

use super::event::{Event, Outcome, Record, RunStarted, RunStatus, StepInfo};
use crate::plan::Work;

/// Where a step stands, as far as the journal knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    /// Started and never finished: the process died (or is still running) during it.
    InFlight,
    Succeeded,
    Failed,
    Skipped,
    RollingBack,
    RolledBack,
    RollbackFailed,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StepState {
    pub number: usize,
    pub status: StepStatus,
    pub attempts: u32,
    pub work: Option<Work>,
    pub rollback: Option<Work>,
    pub verify: Option<Work>,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    pub check: String,
    pub output_tail: String,
    pub log: Option<String>,
    pub details: Option<serde_json::Value>,
    /// The step's last attempt finished as expected (whatever happened to it afterwards).
    pub ran_ok: bool,
    pub rollback_check: Option<String>,
    pub rollback_details: Option<serde_json::Value>,
    pub note: Option<String>,
    /// Its last attempt was stopped by a signal, not failed: going on runs it again.
    pub interrupted: bool,
}

impl StepState {
    fn new(number: usize) -> StepState {
        StepState {
            number,
            status: StepStatus::Pending,
            attempts: 0,
            work: None,
            rollback: None,
            verify: None,
            exit_code: None,
            duration_ms: 0,
            check: String::new(),
            output_tail: String::new(),
            log: None,
            details: None,
            ran_ok: false,
            rollback_check: None,
            rollback_details: None,
            note: None,
            interrupted: false,
        }
    }

    /// The step may have changed something that is still in place.
    pub fn is_applied(&self) -> bool {
        matches!(
            self.status,
            StepStatus::Succeeded
                | StepStatus::Failed
                | StepStatus::InFlight
                | StepStatus::RollingBack
                | StepStatus::RollbackFailed
        )
    }
}

/// A step applied on a target: its change may be in place.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    pub step: usize,
    pub target: String,
}

#[derive(Debug, Clone)]
pub struct RunState {
    pub id: String,
    pub dir: PathBuf,
    pub started: RunStarted,
    pub started_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    pub last_seq: u64,
    pub steps: BTreeMap<usize, StepState>,
    /// What may still be changed, in the order it (last) started: a rollback undoes it from the
    /// end. Kept as events are applied, so reading it costs nothing however long the run.
    pub applied: Vec<Applied>,
    pub finished: Option<(RunStatus, i32)>,
    pub interrupted: Option<String>,
    /// The last line was torn by a crash while it was written (tolerated: it never took effect).
    pub torn_line: bool,
    /// Lines (1-based) that could not be read and are not the last one: damage, not a crash.
    /// `resume` and `rollback` refuse such a journal unless the operator accepts it.
    pub damaged: Vec<usize>,
    /// A rollback has started in this run: going on means going on with the rollback.
    pub rolling_back: bool,
    /// Operators who took the run over after it stopped.
    pub resumed_by: Vec<String>,
    /// Every later `resume` or `rollback` of the run: who, when, how, and whether the run had
    /// stopped without an end (a crash) before it.
    pub takeovers: Vec<Takeover>,
    /// When `--override-gate` was used: the reason given, and the refusal it overrode.
    pub gate_overridden: Option<(String, String)>,
    pub records: Vec<Record>,
}

impl RunState {
    /// Steps whose change may still be in place, newest first: what a rollback must undo.
    pub fn applied_newest_first(&self) -> Vec<&StepState> {
        self.applied.iter().rev().filter_map(|a| self.steps.get(&a.step)).collect()
    }

    /// The step that started last: where a run that stopped without an end stood.
    pub fn last_started(&self) -> Option<usize> {
        self.records.iter().rev().find_map(|r| match r.event {
            Event::StepStarted { step, .. } => Some(step),
            _ => None,
        })
    }

    /// What the run knows of a step from its start (title, kind, owner).
    pub fn info(&self, number: usize) -> Option<&StepInfo> {
        number.checked_sub(1).and_then(|i| self.started.steps.get(i)).filter(|s| s.number == number)
    }

    /// Whether a step of this run may leave a change that no rollback undoes (a check or a
    /// measure leaves none).
    pub fn changes_without_rollback(&self, number: usize) -> bool {
        self.info(number).is_some_and(|s| s.kind.changes_things() || s.irreversible.is_some())
    }

    /// Whether this step, having run, may have left something to undo.
    pub fn leaves_a_change(&self, number: usize) -> bool {
        self.steps.get(&number).is_some_and(|s| s.rollback.is_some())
            || self.changes_without_rollback(number)
    }

    pub fn step_title(&self, number: usize) -> &str {
        self.info(number).map_or("?", |s| s.title.as_str())
    }

    /// Where the run stands, for a table and for `--json`.
    pub fn phase(&self) -> Phase {
        match self.finished {
            Some((status, _)) => Phase::Finished(status),
            None if process_alive(self.started.pid) && self.started.host == crate::host() => {
                Phase::Running
            }
            None => Phase::NoEnd,
        }
    }

    /// One or two words for where the run stands, for a table.
    pub fn status_word(&self) -> String {
        self.phase().word().to_string()
    }

    /// A short phrase for where the run stands.
    pub fn status_label(&self) -> String {
        self.phase().label().to_string()
    }
}

/// A later `resume` or `rollback` of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Takeover {
    pub at: DateTime<Utc>,
    pub operator: String,
    pub host: String,
    /// `resume` or `rollback`.
    pub command: String,
    /// `resume --from STEP`.
    pub from: Option<usize>,
    /// The run had stopped without recording an end: it crashed, or its process was killed.
    pub after_crash: bool,
}

impl Takeover {
    /// One line for `show` and the note.
    pub fn describe(&self) -> String {
        let from = self.from.map_or(String::new(), |n| format!(" --from {n}"));
        let crash =
            if self.after_crash { ", after a stop with no end recorded (a crash)" } else { "" };
        format!(
            "{} `runbook {}{from}` by {} on {}{crash}",
            self.at.format("%Y-%m-%d %H:%M:%SZ"),
            self.command,
            self.operator,
            self.host
        )
    }
}

/// Where a run stands: still running, stopped without an end, or finished with a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    NoEnd,
    Finished(RunStatus),
}

impl Phase {
    /// As `--json` and the history table spell it.
    pub fn word(self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::NoEnd => "no_end",
            Phase::Finished(status) => status.word(),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::NoEnd => "interrupted (no end recorded)",
            Phase::Finished(status) => status.label(),
        }
    }
}

pub fn process_alive(pid: u32) -> bool {
    // Signal 0 checks that the process exists without touching it.
    use nix::errno::Errno;
    let Ok(pid) = i32::try_from(pid) else { return false };
    // EPERM: it exists, under another user.
    matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Ok(()) | Err(Errno::EPERM)
    )
}

/// Read the journal of the run in `dir`.
pub fn read(dir: &Path) -> Result<RunState> {
    let path = dir.join("journal.jsonl");
    let text = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let parsed = parse(&text);
    replay(dir, parsed)
        .with_context(|| format!("the journal {} cannot be replayed", path.display()))
}

/// The first event of a run's journal, read alone: it names the runbook, the environment and so
/// the lock, which must be held before the rest of the state is read.
pub fn read_started(dir: &Path) -> Result<RunStarted> {
    use std::io::BufRead;
    let path = dir.join("journal.jsonl");
    let file =
        std::fs::File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut first = Vec::new();
    std::io::BufReader::new(file).read_until(b'\n', &mut first)?;
    match serde_json::from_slice::<Record>(&first) {
        Ok(Record { event: Event::RunStarted(started), .. }) => Ok(started),
        _ => {
            bail!("the journal {} does not start with a readable run_started event", path.display())
        }
    }
}

/// The state of a run made of these events (a new run: its `run_started`).
pub fn from_records(dir: &Path, records: Vec<Record>) -> Result<RunState> {
    replay(dir, Parsed { records, torn_tail: false, damaged: Vec::new() })
}

/// Rebuild a run from journal lines held elsewhere (the team's stream).
pub fn from_lines(dir: &Path, lines: &[Vec<u8>]) -> Result<RunState> {
    let text = lines.join(&b'\n');
    replay(dir, parse(&text))
}

/// The events of a journal, and what could not be read.
pub struct Parsed {
    pub records: Vec<Record>,
    /// The last line does not parse: torn by a crash while it was written.
    pub torn_tail: bool,
    /// Other lines that do not parse (1-based line numbers).
    pub damaged: Vec<usize>,
}

/// Parse every line. Only the last line can be torn by a crash (events are appended one at a
/// time); a bad line anywhere else is damage, reported by its number, never passed over quietly.
pub fn parse(text: &[u8]) -> Parsed {
    let mut records: Vec<Record> = Vec::new();
    let mut bad = Vec::new();
    let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    let mut after_bad = false;
    for (i, line) in lines.iter().enumerate().filter(|(_, l)| !l.is_empty()) {
        match serde_json::from_slice::<Record>(line) {
            // Events are numbered one after the other: a gap right after a line that read well
            // is a line lost (deleted), reported at the line after it.
            Ok(r) if !after_bad && records.last().is_some_and(|p| p.seq + 1 != r.seq) => {
                bad.push(i + 1);
                records.push(r);
            }
            Ok(r) => {
                after_bad = false;
                records.push(r);
            }
            Err(_) => {
                after_bad = true;
                bad.push(i + 1);
            }
        }
    }
    // Only a line the crash cut before its newline is torn; a whole line that does not read is
    // damage like any other.
    let last = lines.iter().rposition(|l| !l.is_empty()).map(|i| i + 1);
    let unended = !text.is_empty() && text.last() != Some(&b'\n');
    let torn_tail = unended && last.is_some() && bad.last() == last.as_ref();
    if torn_tail {
        bad.pop();
    }
    Parsed { records, torn_tail, damaged: bad }
}

/// The records of a journal, and whether any line could not be read.
pub fn parse_lines(text: &[u8]) -> (Vec<Record>, bool) {
    let parsed = parse(text);
    let bad = parsed.torn_tail || !parsed.damaged.is_empty();
    (parsed.records, bad)
}

fn replay(dir: &Path, parsed: Parsed) -> Result<RunState> {
    let Parsed { records, torn_tail, damaged } = parsed;
    let Some(first) = records.first() else { bail!("it holds no complete event") };
    let Event::RunStarted(started) = &first.event else {
        bail!("its first event is not run_started")
    };
    let mut state = RunState {
        id: started.run_id.clone(),
        dir: dir.to_path_buf(),
        steps: started.steps.iter().map(|s| (s.number, StepState::new(s.number))).collect(),
        started: started.clone(),
        started_at: first.ts,
        last_at: first.ts,
        last_seq: 0,
        applied: Vec::new(),
        finished: None,
        interrupted: None,
        torn_line: torn_tail,
        damaged,
        rolling_back: false,
        resumed_by: Vec::new(),
        takeovers: Vec::new(),
        gate_overridden: None,
        records: Vec::with_capacity(records.len()),
    };
    for record in records {
        state.apply(record);
    }
    Ok(state)
}

impl RunState {
    /// Fold one more event into the state: the reader replays a journal with it, and the engine
    /// applies each event it writes, so the state it decides on is always the journal's.
    pub fn apply(&mut self, record: Record) {
        self.last_at = record.ts;
        self.last_seq = record.seq;
        if let Event::Resumed { operator, host, command, from, .. } = &record.event {
            self.takeovers.push(Takeover {
                at: record.ts,
                operator: operator.clone(),
                host: host.clone(),
                command: command.clone(),
                from: *from,
                after_crash: self.finished.is_none(),
            });
        }
        self.apply_event(&record.event);
        self.records.push(record);
    }

    fn apply_event(&mut self, event: &Event) {
        match event {
            Event::StepStarted { step, target, attempt, work, rollback, verify, log } => {
                let s = step_of(self, *step);
                // A step that never started cannot be applied yet: no need to look for it.
                let ran_before = s.status != StepStatus::Pending;
                s.status = StepStatus::InFlight;
                s.attempts = *attempt;
                s.work = Some(work.clone());
                s.rollback = rollback.clone();
                s.verify = verify.clone();
                s.log = Some(log.clone());
                if ran_before {
                    self.unapply(*step, target);
                }
                self.applied.push(Applied { step: *step, target: target.clone() });
            }
            Event::StepFinished { step, .. } => finish_step(step_of(self, *step), event),
            Event::StepSkipped { step, reason } => {
                let s = step_of(self, *step);
                // A failed step the operator skipped may have partly applied: it stays failed,
                // so a rollback of the run still undoes it.
                if s.status != StepStatus::Failed {
                    s.status = StepStatus::Skipped;
                }
                s.note = Some(reason.clone());
            }
            Event::RollbackStarted { step, .. } => {
                self.rolling_back = true;
                step_of(self, *step).status = StepStatus::RollingBack;
            }
            Event::RollbackFinished { step, target, ok, check, details, .. } => {
                let s = step_of(self, *step);
                s.status = if *ok { StepStatus::RolledBack } else { StepStatus::RollbackFailed };
                s.rollback_check = Some(check.clone());
                s.rollback_details = details.clone();
                if *ok {
                    self.unapply(*step, target);
                }
            }
            Event::Interrupted { signal, .. } => self.interrupted = Some(signal.clone()),
            Event::RunFinished { status, exit_code, .. } => {
                self.finished = Some((*status, *exit_code))
            }
            Event::Resumed { operator, host, pid, .. } => {
                self.started.pid = *pid;
                self.started.host = host.clone();
                self.resumed_by.push(operator.clone());
                self.finished = None;
                self.interrupted = None;
            }
            Event::GateOverridden { reason, refusal, .. } => {
                self.gate_overridden = Some((reason.clone(), refusal.clone()));
            }
            Event::RunStarted(_)
            | Event::Prompt { .. }
            | Event::LockTaken { .. }
            | Event::DamageAccepted { .. }
            | Event::GatedRehearsal { .. }
            | Event::TornTailDropped { .. }
            | Event::RolloutStarted { .. }
            | Event::HostUnreachable { .. } => {}
        }
    }

    /// The step is no longer applied on this target (undone, or about to run again).
    fn unapply(&mut self, step: usize, target: &str) {
        if let Some(i) = self.applied.iter().rposition(|a| a.step == step && a.target == target) {
            self.applied.remove(i);
        }
    }
}

fn finish_step(s: &mut StepState, event: &Event) {
    let Event::StepFinished {
        outcome, exit_code, duration_ms, check, output_tail, details, ..
    } = event
    else {
        return;
    };
    s.status = if *outcome == Outcome::Ok { StepStatus::Succeeded } else { StepStatus::Failed };
    s.ran_ok = *outcome == Outcome::Ok;
    s.interrupted = *outcome == Outcome::Interrupted;
    s.exit_code = *exit_code;
    s.duration_ms = *duration_ms;
    s.check = check.clone();
    s.output_tail = output_tail.clone();
    s.details = details.clone();
}

fn step_of(state: &mut RunState, n: usize) -> &mut StepState {
    state.steps.entry(n).or_insert_with(|| StepState::new(n))
}
