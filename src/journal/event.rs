//! The events of a run's journal, one JSON object per line. The journal is the record a resume,
//! a rollback of a past run, `history` and the report are rebuilt from, so each event carries
//! everything they need (the rendered command, the rollback as it was at the time).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::plan::Work;
use crate::runbook::Kind;

/// The journal's format version, written in `run_started`. 2: commands are recorded exactly as
/// they ran (secrets only as `${RUNBOOK_SECRET_X}` references, nothing masked by value), events
/// name their target, and prompts say who answered.
pub const SCHEMA: u32 = 2;

/// Where a step's commands ran when nothing else is said: this machine.
pub fn local() -> String {
    crate::runner::LOCAL.to_string()
}

fn is_local(target: &str) -> bool {
    target == crate::runner::LOCAL
}

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
        /// Where it runs: `local`, or a host.
        #[serde(default = "local", skip_serializing_if = "is_local")]
        target: String,
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
        #[serde(default = "local", skip_serializing_if = "is_local")]
        target: String,
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
        /// Who answered: the operator's name, or `unattended` (the policy of `--yes`).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        by: String,
    },
    RollbackStarted {
        step: usize,
        #[serde(default = "local", skip_serializing_if = "is_local")]
        target: String,
        reason: String,
        work: Work,
        log: String,
    },
    RollbackFinished {
        step: usize,
        #[serde(default = "local", skip_serializing_if = "is_local")]
        target: String,
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
    /// `rehearse --in-gated-env`: a rehearsal, on purpose, in an environment that requires a
    /// rehearsal elsewhere (every rollback ran there too).
    GatedRehearsal {
        env: String,
        reason: String,
    },
    /// The run holds the team's lock in Redis; the fencing token orders every holder ever.
    LockTaken {
        redis: String,
        fencing_token: u64,
    },
    /// A later `runbook resume` or `runbook rollback` took the run over.
    Resumed {
        operator: String,
        host: String,
        pid: u32,
        /// `resume` or `rollback`.
        #[serde(default = "resume_command")]
        command: String,
        /// `resume --from STEP`: the step it went on from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<usize>,
    },
    /// The operator went on although these journal lines (1-based) could not be read
    /// (`--accept-damaged-journal`): the steps they described may be missing from the state.
    DamageAccepted {
        lines: Vec<usize>,
    },
    /// Steps `on` a group start rolling out over its hosts: how (so `rollback RUN` reaches
    /// them the same way) and in which batches.
    RolloutStarted {
        group: String,
        steps: Vec<usize>,
        batches: Vec<Vec<String>>,
        /// Failed hosts the whole run may have.
        budget: usize,
        /// `[ssh] config`, passed as `ssh -F`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ssh_config: Option<String>,
        connect_timeout_ms: u64,
        keepalive_ms: u64,
        rollback: crate::runbook::model::RollbackScope,
    },
    /// A host could not be reached (nothing ran there); it counts as a failed host.
    HostUnreachable {
        step: usize,
        target: String,
        reason: String,
    },
    /// A crash had torn the last line while it was being written; it was cut off before this
    /// event (an event that never reached the disk whole never let its step go on).
    TornTailDropped {
        bytes: u64,
    },
    RunFinished {
        status: RunStatus,
        exit_code: i32,
        /// Steps whose change is still in place (not rolled back), newest last.
        still_applied: Vec<usize>,
    },
}

fn resume_command() -> String {
    "resume".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunStarted {
    /// The journal format ([`SCHEMA`]); 1 when absent (journals written before it was recorded).
    #[serde(default = "schema_one")]
    pub schema: u32,
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
    /// Non-secret variable values, exactly as used (a replay needs them verbatim).
    pub vars: BTreeMap<String, String>,
    /// The names of the secret variables: their values are never journalled; commands refer to
    /// them as `${RUNBOOK_SECRET_NAME}`, and a resume or rollback reads them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Variables given with `--var`: a replay cannot read them again from the runbook, so a
    /// secret among them must be supplied (`RUNBOOK_SECRET_NAME`), never taken from the file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub given: Vec<String>,
    pub steps: Vec<StepInfo>,
    /// The steps selected by --from/--to, as numbers (all of them when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<(usize, usize)>,
}

fn schema_one() -> u32 {
    1
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

/// The colour of an outcome: it went well, it was undone or stopped, or something is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Undone,
    Bad,
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
    /// As the journal and `--json` spell it.
    pub fn word(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Rehearsed => "rehearsed",
            RunStatus::RolledBack => "rolled_back",
            RunStatus::RollbackFailed => "rollback_failed",
            RunStatus::Aborted => "aborted",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Failed => "failed",
        }
    }

    /// How the run ended, in words, as a tone the terminal and the note colour it by.
    pub fn tone(self) -> Tone {
        match self {
            RunStatus::Succeeded | RunStatus::Rehearsed => Tone::Good,
            RunStatus::RolledBack | RunStatus::Aborted | RunStatus::Interrupted => Tone::Undone,
            RunStatus::RollbackFailed | RunStatus::Failed => Tone::Bad,
        }
    }

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
