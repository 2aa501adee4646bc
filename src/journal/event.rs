//! The events of a run's journal, one JSON object per line. The journal is the record a resume,
//! a rollback of a past run, `history` and the report are rebuilt from, so each event carries
//! everything they need (the rendered command, the rollback as it was at the time).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::plan::Work;
use crate::runbook::Kind;

/// One line of `journal.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub ts: DateTime<Utc>,
    pub seq: u64,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
// Events are made one at a time and written at once; their size in memory does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    RunStarted(RunStarted),
    StepStarted {
        step: usize,
        attempt: u32,
        work: Work,
        rollback: Option<Work>,
        /// `verify_rollback`, so a rollback of the run later checks it too.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        verify: Option<Work>,
        log: String,
    },
    StepFinished {
        step: usize,
        attempt: u32,
        outcome: Outcome,
        exit_code: Option<i32>,
        duration_ms: u64,
        /// What was expected and what happened, in words.
        check: String,
        output_tail: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        details: Option<serde_json::Value>,
    },
    StepSkipped {
        step: usize,
        reason: String,
    },
    Prompt {
        step: Option<usize>,
        question: String,
        answer: String,
    },
    RollbackStarted {
        step: usize,
        reason: String,
        work: Work,
        log: String,
    },
    RollbackFinished {
        step: usize,
        ok: bool,
        exit_code: Option<i32>,
        duration_ms: u64,
        check: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        details: Option<serde_json::Value>,
    },
    Interrupted {
        step: Option<usize>,
        signal: String,
    },
    /// `--override-gate`: the run went ahead without the rehearsal its environment requires.
    GateOverridden {
        required_env: String,
        within: String,
        refusal: String,
        reason: String,
    },
    /// The run holds the team's lock in Redis; the fencing token orders every holder ever.
    LockTaken {
        redis: String,
        fencing_token: u64,
    },
    /// A later `runbook resume` took the run over.
    Resumed {
        operator: String,
        host: String,
        pid: u32,
    },
    RunFinished {
        status: RunStatus,
        exit_code: i32,
        /// Steps whose change is still in place (not rolled back), newest last.
        still_applied: Vec<usize>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunStarted {
    pub run_id: String,
    pub command: String,
    pub runbook: String,
    pub name: String,
    pub hash: String,
    pub operator: String,
    pub host: String,
    pub pid: u32,
    pub reason: Option<String>,
    pub env: Option<String>,
    /// Variable values as used, secrets shown as `***`.
    pub vars: BTreeMap<String, String>,
    pub steps: Vec<StepInfo>,
    /// The steps selected by --from/--to, as numbers (all of them when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<(usize, usize)>,
}

/// What a run knows of each step of its runbook.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepInfo {
    pub number: usize,
    pub id: Option<String>,
    pub title: String,
    pub kind: Kind,
    pub owner: String,
    pub expect: String,
    pub irreversible: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failed,
    TimedOut,
    Interrupted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    /// A rehearsal: every step ran and every rollback (and its verification) passed.
    Rehearsed,
    RolledBack,
    RollbackFailed,
    Aborted,
    Interrupted,
    Failed,
}

impl RunStatus {
    pub fn label(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Rehearsed => "rehearsed: steps and rollbacks passed",
            RunStatus::RolledBack => "rolled back",
            RunStatus::RollbackFailed => "ROLLBACK FAILED",
            RunStatus::Aborted => "aborted",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Failed => "failed",
        }
    }
}
