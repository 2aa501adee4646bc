//! Shell steps (backup, apply, check) and shell rollbacks: run the command, stream its output,
//! and compare the result with what the step expects.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::output::OutputSink;
use super::{StepContext, StepResult};
use crate::journal::Outcome;
use crate::runbook::Expect;
use crate::runner::Spawn;

pub fn run(
    command: &str,
    cwd: Option<&str>,
    timeout_ms: Option<u64>,
    expect: &Expect,
    ctx: &StepContext<'_>,
) -> Result<StepResult> {
    let mut sink =
        OutputSink::create(ctx.log_path, ctx.masker, ctx.ui, ctx.echo, expect.stdout.as_ref())?
            .capturing(&expect.capture);
    let spawn = Spawn {
        command,
        cwd: cwd.map(Path::new),
        timeout: timeout_ms.map(Duration::from_millis),
        env: ctx.env,
        interrupt: ctx.interrupt,
    };
    let exit = ctx.runner.run(&spawn, &mut |chunk| sink.feed(chunk));
    let matched = sink.matched;
    let captured = std::mem::take(&mut sink.captured);
    let (output_tail, log_problem) = sink.finish();
    let exit = exit?;
    let (outcome, check) = if exit.timed_out {
        let limit = crate::runbook::duration::human(Duration::from_millis(timeout_ms.unwrap_or(0)));
        (Outcome::TimedOut, format!("timed out after {limit}; its process group was killed"))
    } else if exit.interrupted {
        (Outcome::Interrupted, "interrupted; its process group was stopped".to_string())
    } else if exit.code != Some(expect.exit) {
        (Outcome::Failed, format!("expected exit {}, got {}", expect.exit, exit.describe()))
    } else {
        match &expect.stdout {
            Some(m) if !matched => (
                Outcome::Failed,
                format!("exit {} as expected, but no line had {}", expect.exit, m.describe()),
            ),
            Some(m) => (Outcome::Ok, format!("exit {} and {}", expect.exit, m.describe())),
            None => (Outcome::Ok, format!("exit {}", expect.exit)),
        }
    };
    let (outcome, check, details) = match outcome {
        Outcome::Ok if !expect.capture.is_empty() => {
            match super::outputs::judge(&expect.capture, captured, &output_tail, ctx) {
                Ok(details) => (outcome, check, Some(details)),
                Err(why) => (Outcome::Failed, format!("{check}, but {why}"), None),
            }
        }
        _ => (outcome, check, None),
    };
    let check = match log_problem {
        Some(problem) => format!("{check}; {problem}"),
        None => check,
    };
    Ok(StepResult {
        outcome,
        exit_code: exit.code,
        duration: exit.duration,
        check,
        output_tail,
        details,
    })
}
