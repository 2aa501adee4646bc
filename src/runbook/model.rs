//! The runbook as parsed and validated: every value the engine will need, with the span it came
//! from so later stages (rendering) can still point at the file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::diagnostic::Span;

/// A checked runbook file. Only `parse::load` makes one, so holding one means the file is valid.
#[derive(Debug)]
pub struct Runbook {
    pub path: PathBuf,
    pub source: String,
    /// SHA-256 of the file's bytes: the revision a run, a rehearsal and a report refer to.
    pub hash: String,
    pub name: String,
    pub description: String,
    pub owner: Option<String>,
    pub vars: Vec<VarDef>,
    pub envs: BTreeMap<String, EnvDef>,
    pub steps: Vec<Step>,
    /// `[lock] redis = "..."`: one run at a time across machines, not just on this one.
    pub lock_redis: Option<Template>,
    /// `[store] redis = "..."`: every journal event also goes to a Redis stream the team shares.
    pub store_redis: Option<Template>,
    /// `[ssh]`: how hosts are reached.
    pub ssh: SshDef,
    /// `[rollout]`: how steps `on` a group spread over its hosts.
    pub rollout: RolloutDef,
    /// What `check` shows without refusing the file (such as each `{{raw:name}}` in a command).
    pub warnings: Vec<super::diagnostic::Diagnostic>,
}

/// A text that may hold `{{var}}` placeholders, and where it sits in the file.
#[derive(Debug, Clone)]
pub struct Template {
    pub text: String,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct VarDef {
    pub name: String,
    pub source: VarSource,
    pub secret: bool,
    pub span: Span,
}

/// Where a variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VarSource {
    Value(String),
    FromEnv(String),
    FromFile(String),
    Prompt(String),
}

#[derive(Debug, Default)]
pub struct EnvDef {
    pub vars: Vec<VarDef>,
    pub require_rehearsal: Option<Gate>,
    /// `[env.NAME.hosts]`: groups of hosts, in file order.
    pub hosts: Vec<HostGroup>,
}

/// A name written in the file (a host, a group), and where.
#[derive(Debug, Clone)]
pub struct Named {
    pub text: String,
    pub span: Span,
}

/// `web = ["web-1", "deploy@10.0.0.12:2222"]` in `[env.NAME.hosts]`.
#[derive(Debug, Clone)]
pub struct HostGroup {
    pub name: Named,
    pub hosts: Vec<Named>,
}

/// `[ssh]`
#[derive(Debug, Clone, Default)]
pub struct SshDef {
    /// Passed as `ssh -F`; without it ssh reads the user's own configuration.
    pub config: Option<Template>,
    pub connect_timeout: Option<Duration>,
    pub keepalive: Option<Duration>,
}

/// A number of hosts, or a share of them: `serial = [1, "50%"]`, `max_fail = "10%"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Amount {
    Count(usize),
    Percent(u8),
}

impl Amount {
    /// How many of `total` hosts this is (a share rounds down).
    pub fn of(self, total: usize) -> usize {
        match self {
            Amount::Count(n) => n,
            Amount::Percent(p) => total * usize::from(p) / 100,
        }
    }

    pub fn describe(self) -> String {
        match self {
            Amount::Count(n) => n.to_string(),
            Amount::Percent(p) => format!("{p}%"),
        }
    }
}

/// `[rollout] rollback`: which hosts a rollback undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackScope {
    /// Every host the run touched (the default).
    All,
    /// Only the hosts that failed.
    Failed,
}

/// `[rollout]`
#[derive(Debug, Clone)]
pub struct RolloutDef {
    /// Batch sizes, canary first; the last one repeats until every host has had its turn.
    pub serial: Vec<Amount>,
    /// Hosts that may fail over the whole run.
    pub max_fail: Amount,
    /// Hosts at once within a batch.
    pub concurrency: usize,
    pub rollback: RollbackScope,
}

impl Default for RolloutDef {
    fn default() -> Self {
        RolloutDef {
            serial: vec![Amount::Percent(100)],
            max_fail: Amount::Count(0),
            concurrency: 10,
            rollback: RollbackScope::All,
        }
    }
}

/// `require_rehearsal = { env = "staging", within = "7d" }`
#[derive(Debug, Clone)]
pub struct Gate {
    pub env: String,
    pub within: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Backup,
    Apply,
    Check,
    Manual,
    Flush,
    Watch,
    Measure,
}

impl Kind {
    pub const ALL: [(&'static str, Kind); 7] = [
        ("backup", Kind::Backup),
        ("apply", Kind::Apply),
        ("check", Kind::Check),
        ("manual", Kind::Manual),
        ("flush", Kind::Flush),
        ("watch", Kind::Watch),
        ("measure", Kind::Measure),
    ];

    pub fn name(self) -> &'static str {
        Kind::ALL.iter().find(|(_, k)| *k == self).map_or("?", |(n, _)| n)
    }

    /// Kinds that change something: they need a rollback or a reason they cannot have one.
    pub fn changes_things(self) -> bool {
        matches!(self, Kind::Apply | Kind::Flush)
    }
}

#[derive(Debug)]
pub struct Step {
    /// 1-based position in the file: the number shown everywhere.
    pub number: usize,
    pub id: Option<String>,
    pub id_span: Span,
    pub title: Template,
    pub kind: Kind,
    pub owner: Option<String>,
    pub action: Action,
    pub expect: ExpectDef,
    pub rollback: Option<Template>,
    pub irreversible: Option<String>,
    pub timeout: Option<Duration>,
    pub retries: u32,
    pub cwd: Option<Template>,
    /// Environment names, each with where it is written.
    pub only_env: Option<Vec<Template>>,
    pub verify_rollback: Option<Template>,
    /// `fail_if` of a measure step: conditions on its figures (see `condition`), each failing
    /// the step when it holds. Checked by `validate`; empty for other kinds.
    pub fail_if: Vec<Template>,
    /// `on = "web"`: the group of hosts this step runs on; `None` runs it here, once.
    pub on: Option<Named>,
    pub span: Span,
}

/// What a step does, by kind.
#[derive(Debug)]
pub enum Action {
    Shell(Template),
    Manual(Template),
    Flush(FlushDef),
    Watch(WatchDef),
    Measure(MeasureDef),
}

#[derive(Debug)]
pub struct FlushDef {
    pub redis: Template,
    pub patterns: Vec<Template>,
    pub max_keys: Option<u64>,
    pub backup: bool,
    pub batch: usize,
}

#[derive(Debug)]
pub enum WatchSourceDef {
    File(Template),
    Command(Template),
}

#[derive(Debug)]
pub struct WatchDef {
    pub source: WatchSourceDef,
    pub duration: Duration,
    /// Regexes; a placeholder's value in them is matched literally.
    pub fail_on: Vec<Template>,
    pub max: u64,
    pub until: Option<Template>,
    /// `wait_for_file = true`: the file may appear during the watch; without it, a file that does
    /// not exist when the watch starts fails the step at once.
    pub wait_for_file: bool,
}

#[derive(Debug)]
pub enum MeasureDef {
    Command { run: Template, patterns: Vec<Template> },
    Http { url: Template, requests: u32, timeout: Duration },
    Redis { url: Template, pattern: Option<Template> },
}

/// What a step's result must look like, as written: its texts may hold placeholders.
#[derive(Debug, Clone, Default)]
pub struct ExpectDef {
    pub exit: i32,
    /// `"text"` or `"/regex/"`, checked (with placeholders standing for any literal text).
    pub stdout: Option<Template>,
    pub note: Option<Template>,
    /// `capture` of a shell step, compiled (see `Expect::capture`).
    pub capture: Vec<Regex>,
}

/// What a step's result must look like, filled in for one run.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub exit: i32,
    pub stdout: Option<OutputMatch>,
    /// The expected result in words; when it is the only expectation, the operator confirms it.
    pub note: Option<String>,
    /// `capture` of a shell step: each pattern (multi-line: `^` and `$` are line ends) must
    /// match its output, and its named groups become the step's outputs.
    pub capture: Vec<Regex>,
}

/// `stdout = "text"` (a substring of one line) or `stdout = "/regex/"`.
#[derive(Debug, Clone)]
pub enum OutputMatch {
    Contains(String),
    Regex(Regex),
}

impl OutputMatch {
    pub fn matches(&self, line: &str) -> bool {
        match self {
            OutputMatch::Contains(s) => line.contains(s.as_str()),
            OutputMatch::Regex(r) => r.is_match(line),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            OutputMatch::Contains(s) => format!("output containing {s:?}"),
            OutputMatch::Regex(r) => format!("output matching /{}/", r.as_str()),
        }
    }
}
