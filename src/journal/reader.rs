//! Rebuilds a run's state from its journal alone. A torn last line (the process died while
//! writing it) is tolerated: everything before it is still the truth.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};

use super::event::{Event, Outcome, Record, RunStarted, RunStatus};
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

#[derive(Debug, Clone)]
pub struct RunState {
    pub id: String,
    pub dir: PathBuf,
    pub started: RunStarted,
    pub started_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    pub last_seq: u64,
    pub steps: BTreeMap<usize, StepState>,
    pub finished: Option<(RunStatus, i32)>,
    pub interrupted: Option<String>,
    pub torn_line: bool,
    /// Operators who resumed the run after it stopped.
    pub resumed_by: Vec<String>,
    /// When `--override-gate` was used: the reason given, and the refusal it overrode.
    pub gate_overridden: Option<(String, String)>,
    pub records: Vec<Record>,
}

impl RunState {
    /// Steps whose change may still be in place, newest first: what a rollback must undo.
    pub fn applied_newest_first(&self) -> Vec<&StepState> {
        let mut applied: Vec<&StepState> = self.steps.values().filter(|s| s.is_applied()).collect();
        applied.sort_by_key(|s| std::cmp::Reverse(self.order_of(s.number)));
        applied
    }

    /// When a step last started, so rollbacks follow the order steps ran, not their numbers.
    fn order_of(&self, step: usize) -> u64 {
        self.records
            .iter()
            .rev()
            .find_map(|r| match r.event {
                Event::StepStarted { step: s, .. } if s == step => Some(r.seq),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// The step that started last: where a run that stopped without an end stood.
    pub fn last_started(&self) -> Option<usize> {
        self.records.iter().rev().find_map(|r| match r.event {
            Event::StepStarted { step, .. } => Some(step),
            _ => None,
        })
    }

    /// Whether a step of this run may leave a change that no rollback undoes (a check or a
    /// measure leaves none).
    pub fn changes_without_rollback(&self, number: usize) -> bool {
        self.started
            .steps
            .iter()
            .find(|s| s.number == number)
            .is_some_and(|s| s.kind.changes_things() || s.irreversible.is_some())
    }

    pub fn step_title(&self, number: usize) -> &str {
        self.started.steps.iter().find(|s| s.number == number).map_or("?", |s| s.title.as_str())
    }

    /// One or two words for where the run stands, for a table.
    pub fn status_word(&self) -> String {
        match self.finished {
            Some((status, _)) => serde_json::to_value(status)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            None if self.status_label() == "running" => "running".into(),
            None => "no_end".into(),
        }
    }

    /// A short word for where the run stands.
    pub fn status_label(&self) -> String {
        match self.finished {
            Some((status, _)) => status.label().to_string(),
            None if process_alive(self.started.pid) && self.started.host == crate::host() => {
                "running".into()
            }
            None => "interrupted (no end recorded)".into(),
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
    let (records, torn_line) = parse_lines(&text);
    replay(dir, records, torn_line)
        .with_context(|| format!("the journal {} cannot be replayed", path.display()))
}

/// Rebuild a run from journal lines held elsewhere (the team's stream).
pub fn from_lines(dir: &Path, lines: &[Vec<u8>]) -> Result<RunState> {
    let text = lines.join(&b'\n');
    let (records, torn_line) = parse_lines(&text);
    replay(dir, records, torn_line)
}

/// Parse every line. A line that does not parse is skipped and reported through the flag: after
/// a crash it is the torn last line; anywhere else it is damage, and the events around it stand.
pub fn parse_lines(text: &[u8]) -> (Vec<Record>, bool) {
    let mut records = Vec::new();
    let mut damaged = false;
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<Record>(line) {
            Ok(r) => records.push(r),
            Err(_) => damaged = true,
        }
    }
    (records, damaged)
}

fn replay(dir: &Path, records: Vec<Record>, torn_line: bool) -> Result<RunState> {
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
        finished: None,
        interrupted: None,
        torn_line,
        resumed_by: Vec::new(),
        gate_overridden: None,
        records: Vec::new(),
    };
    for record in &records {
        apply(&mut state, record);
    }
    state.records = records;
    Ok(state)
}

fn apply(state: &mut RunState, record: &Record) {
    state.last_at = record.ts;
    state.last_seq = record.seq;
    match &record.event {
        Event::RunStarted(_) => {}
        Event::StepStarted { step, attempt, work, rollback, verify, log } => {
            let s = step_of(state, *step);
            s.status = StepStatus::InFlight;
            s.attempts = *attempt;
            s.work = Some(work.clone());
            s.rollback = rollback.clone();
            s.verify = verify.clone();
            s.log = Some(log.clone());
        }
        Event::StepFinished {
            step,
            outcome,
            exit_code,
            duration_ms,
            check,
            output_tail,
            details,
            ..
        } => {
            let s = step_of(state, *step);
            s.status =
                if *outcome == Outcome::Ok { StepStatus::Succeeded } else { StepStatus::Failed };
            s.ran_ok = *outcome == Outcome::Ok;
            s.exit_code = *exit_code;
            s.duration_ms = *duration_ms;
            s.check = check.clone();
            s.output_tail = output_tail.clone();
            s.details = details.clone();
        }
        Event::StepSkipped { step, reason } => {
            let s = step_of(state, *step);
            // A failed step the operator skipped may have partly applied: it stays failed, so a
            // rollback of the run still undoes it.
            if s.status != StepStatus::Failed {
                s.status = StepStatus::Skipped;
            }
            s.note = Some(reason.clone());
        }
        Event::RollbackStarted { step, .. } => {
            step_of(state, *step).status = StepStatus::RollingBack
        }
        Event::RollbackFinished { step, ok, check, details, .. } => {
            let s = step_of(state, *step);
            s.status = if *ok { StepStatus::RolledBack } else { StepStatus::RollbackFailed };
            s.rollback_check = Some(check.clone());
            s.rollback_details = details.clone();
        }
        Event::Interrupted { signal, .. } => state.interrupted = Some(signal.clone()),
        Event::RunFinished { status, exit_code, .. } => {
            state.finished = Some((*status, *exit_code))
        }
        Event::Resumed { operator, host, pid } => {
            state.started.pid = *pid;
            state.started.host = host.clone();
            state.resumed_by.push(operator.clone());
            state.finished = None;
            state.interrupted = None;
        }
        Event::GateOverridden { reason, refusal, .. } => {
            state.gate_overridden = Some((reason.clone(), refusal.clone()));
        }
        Event::Prompt { .. } | Event::LockTaken { .. } => {}
    }
}

fn step_of(state: &mut RunState, n: usize) -> &mut StepState {
    state.steps.entry(n).or_insert_with(|| StepState::new(n))
}
