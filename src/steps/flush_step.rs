//! The flush kind as the engine runs it: the targeted delete (with its backup) as a step, and the
//! restore from that backup as its rollback. The Redis work itself lives in `flush`.

use std::path::Path;

use anyhow::{Result, bail};

use super::flush::{self, FlushError, FlushSpec};
use super::{StepContext, StepResult};
use crate::journal::Outcome;
use crate::secret::{MASK, redact_url};

/// How many sample keys the plan and the prompt show.
pub const SAMPLES: usize = 5;

/// What would go: the count of matching keys and a few of them, read-only.
pub fn describe_preview(spec: &FlushSpec) -> String {
    match flush::preview(spec, SAMPLES) {
        Ok(p) if p.samples.is_empty() => format!("{} keys match now", p.matched),
        Ok(p) => format!("{} keys match now, e.g. {}", p.matched, p.samples.join(", ")),
        Err(e) => format!("cannot count the matching keys: {e}"),
    }
}

pub fn run_flush(
    spec: &FlushSpec,
    backup_file: &Path,
    ctx: &StepContext<'_>,
) -> Result<StepResult> {
    let started = std::time::Instant::now();
    let mut progress =
        |deleted: u64| ctx.ui.set_spinner_message(format!("flushing: {deleted} keys deleted"));
    let outcome = flush::flush(spec, backup_file, &mut progress);
    let (outcome, check, details) = match outcome {
        Ok(report) => {
            let check = format!(
                "deleted {} of {} matching keys on {}{}",
                report.deleted,
                report.matched,
                report.server,
                if spec.backup {
                    format!("; {} backed up ({} bytes)", report.backed_up, report.backup_bytes)
                } else {
                    String::new()
                }
            );
            (Outcome::Ok, check, serde_json::to_value(&report).ok())
        }
        Err(e) => (Outcome::Failed, failure_text(&e), None),
    };
    finish(ctx, started, outcome, check, details)
}

pub fn run_restore(url: &str, backup_file: &Path, ctx: &StepContext<'_>) -> Result<StepResult> {
    let started = std::time::Instant::now();
    let url = with_password(url)?;
    if !backup_file.exists() {
        // The flush failed before it backed anything up, so it deleted nothing either.
        let check = format!("no backup at {}: the flush deleted nothing", backup_file.display());
        return finish(ctx, started, Outcome::Ok, check, None);
    }
    let mut progress = |n: u64| ctx.ui.set_spinner_message(format!("restoring: {n} keys"));
    let (outcome, check, details) = match flush::restore(&url, backup_file, &mut progress) {
        Ok(r) => (
            Outcome::Ok,
            format!(
                "restored {} keys ({} already present, {} expired)",
                r.restored, r.already_present, r.expired
            ),
            serde_json::to_value(&r).ok(),
        ),
        Err(e) => (Outcome::Failed, failure_text(&e), None),
    };
    finish(ctx, started, outcome, check, details)
}

/// The step log gets the result line; the engine gets the result.
fn finish(
    ctx: &StepContext<'_>,
    started: std::time::Instant,
    outcome: Outcome,
    check: String,
    details: Option<serde_json::Value>,
) -> Result<StepResult> {
    std::fs::write(ctx.log_path, format!("{check}\n"))?;
    Ok(StepResult::without_exit(outcome, check, started.elapsed(), details))
}

fn failure_text(e: &FlushError) -> String {
    let text = e.to_string();
    if text.contains("retry") {
        return text;
    }
    let retry = if e.retry_safe() { "a retry is safe" } else { "do not simply retry" };
    format!("{text} ({retry})")
}

/// The journal keeps no passwords: a rollback of a past run gets it from REDISCLI_AUTH, the
/// variable redis-cli itself reads.
fn with_password(url: &str) -> Result<String> {
    let masked = format!(":{MASK}@");
    if !url.contains(&masked) {
        return Ok(url.to_string());
    }
    match std::env::var("REDISCLI_AUTH") {
        Ok(pw) if !pw.is_empty() => Ok(url.replacen(&masked, &format!(":{pw}@"), 1)),
        _ => bail!(
            "the journal keeps no password for {}; set REDISCLI_AUTH to it and run again (safe to retry: keys already present are left alone)",
            redact_url(url)
        ),
    }
}
