//! Step kinds. Each kind lives in one file: how it runs and how its result is checked. The engine
//! calls `execute` with a rendered `Work` and gets a `StepResult` back.

pub mod command;
pub mod flush;
pub mod flush_step;
pub mod measure;
pub mod output;
pub mod outputs;
pub mod watch;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::journal::Outcome;
use crate::plan::Work;
use crate::runbook::Expect;
use crate::secret::{self, Masker};
use crate::ui::Ui;

/// What a step needs from the run around it.
pub struct StepContext<'a> {
    pub ui: &'a Ui,
    /// Where the step's shell commands run.
    pub runner: &'a dyn crate::runner::Runner,
    pub masker: &'a Masker,
    /// Secret values, as environment variables for the step's commands.
    pub env: &'a [(String, String)],
    pub interrupt: &'static AtomicBool,
    pub log_path: &'a Path,
    /// Stream output to the terminal as well as the log.
    pub echo: bool,
    /// The run's folder: its journal holds the figures earlier steps measured, which a measure's
    /// `fail_if` compares with (`before`). `None` where no step measures (a rollback).
    pub run_dir: Option<&'a Path>,
    /// The number of the step being run, so its own earlier attempts are not taken for `before`.
    pub step: usize,
}

#[derive(Debug)]
pub struct StepResult {
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
    pub duration: Duration,
    /// What was expected and what happened, in words.
    pub check: String,
    pub output_tail: String,
    /// Kind-specific figures for the journal and the report (flush counts, metrics...).
    pub details: Option<serde_json::Value>,
}

impl StepResult {
    /// The result of a step that has no exit code of its own (flush, watch, measure, manual).
    pub fn without_exit(
        outcome: Outcome,
        check: String,
        duration: Duration,
        details: Option<serde_json::Value>,
    ) -> StepResult {
        StepResult {
            outcome,
            exit_code: None,
            duration,
            check,
            output_tail: String::new(),
            details,
        }
    }

    /// Fold in the result of `verify_rollback`: the rollback only counts when it passed.
    pub fn add_verification(&mut self, check: StepResult) {
        let verdict = if check.outcome == Outcome::Ok { "passed" } else { "FAILED" };
        self.check = format!("{}; verify_rollback {verdict} ({})", self.check, check.check);
        if check.outcome != Outcome::Ok {
            self.outcome = Outcome::Failed;
        }
    }

    /// A step whose work could not even start (bash missing, log not writable) has failed.
    pub fn could_not_run(e: &anyhow::Error) -> StepResult {
        Self::without_exit(Outcome::Failed, format!("could not run: {e:#}"), Duration::ZERO, None)
    }
}

/// Run one step's work (or a rollback, which expects exit 0). The work is as recorded: the
/// values the program uses itself (URLs, patterns, paths) get their secrets here, from the step
/// environment, at the moment of use.
pub fn execute(work: &Work, expect: &Expect, ctx: &StepContext<'_>) -> Result<StepResult> {
    // Step outputs the commands refer to, from the run's journal, as environment variables.
    let env: Vec<(String, String)> =
        ctx.env.iter().cloned().chain(outputs::env_for(work, ctx)?).collect();
    let ctx = &StepContext { env: &env, ..*ctx };
    let x = |text: &str| secret::expand(text, ctx.env);
    let x_opt = |text: &Option<String>| text.as_deref().map(x).transpose();
    match work {
        Work::Shell { run, cwd, timeout_ms } => {
            command::run(run, x_opt(cwd)?.as_deref(), *timeout_ms, expect, ctx)
        }
        Work::Manual { .. } => bail!("a manual step is done by the operator, not executed"),
        Work::Watch { file, command, for_ms, fail_on, max, until, wait_for_file } => {
            let source = match (file, command) {
                (Some(f), _) => watch::WatchSource::File(x(f)?.into()),
                (None, Some(c)) => watch::WatchSource::Command(c.clone()),
                (None, None) => bail!("a watch step needs a file or a command"),
            };
            let spec = watch::WatchSpec {
                source,
                duration: Duration::from_millis(*for_ms),
                fail_on: fail_on.clone(),
                max: *max,
                until: until.clone(),
                env: ctx.env.to_vec(),
                wait_for_file: *wait_for_file,
            };
            watch::run(&spec, ctx)
        }
        Work::Measure {
            run,
            capture,
            http,
            requests,
            redis,
            pattern,
            cwd,
            timeout_ms,
            fail_if,
        } => {
            let source = match (run, http, redis) {
                (Some(run), _, _) => {
                    measure::MeasureSource::Command { run: run.clone(), patterns: capture.clone() }
                }
                (None, Some(url), _) => measure::MeasureSource::Http {
                    url: x(url)?,
                    requests: *requests,
                    timeout: Duration::from_secs(10),
                },
                (None, None, Some(url)) => {
                    measure::MeasureSource::Redis { url: x(url)?, pattern: x_opt(pattern)? }
                }
                (None, None, None) => bail!("a measure step needs run, http or redis"),
            };
            let cwd = x_opt(cwd)?;
            let shell = measure::Shell {
                runner: ctx.runner,
                env: ctx.env,
                cwd: cwd.as_deref().map(Path::new),
                timeout: timeout_ms.map(Duration::from_millis),
                interrupt: ctx.interrupt,
            };
            measure::run(&source, &shell, fail_if, ctx)
        }
        Work::Flush { backup_file, patterns, .. } => {
            let spec = flush_spec(work, ctx.env).unwrap_or_else(|| unreachable!("a flush work"))?;
            flush_step::run_flush(&spec, patterns, Path::new(backup_file), ctx)
        }
        Work::Restore { redis, backup_file, patterns } => {
            let used = patterns.iter().map(|p| x(p)).collect::<Result<Vec<_>>>()?;
            flush_step::run_restore(&x(redis)?, Path::new(backup_file), &used, patterns, ctx)
        }
    }
}

/// The flush spec of a flush work, its secrets filled in from `env`, for running it and for
/// previewing what it would delete. `None` for other work.
pub fn flush_spec(work: &Work, env: &[(String, String)]) -> Option<Result<flush::FlushSpec>> {
    let Work::Flush { redis, patterns, max_keys, backup, batch, .. } = work else { return None };
    let spec = || -> Result<flush::FlushSpec> {
        Ok(flush::FlushSpec {
            url: secret::expand(redis, env)?,
            patterns: patterns.iter().map(|p| secret::expand(p, env)).collect::<Result<_>>()?,
            max_keys: *max_keys,
            backup: *backup,
            batch: *batch,
        })
    };
    Some(spec())
}
