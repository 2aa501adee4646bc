//! The flush kind as the engine runs it: the targeted delete (with its backup) as a step, and the
//! restore from that backup as its rollback. The Redis work itself lives in `flush`.

use std::path::Path;

use anyhow::Result;

use super::flush::{self, FlushError, FlushSpec, RestoreReport};
use super::{StepContext, StepResult};
use crate::journal::Outcome;
use crate::plan::Work;

/// How many sample keys the plan and the prompt show.
pub const SAMPLES: usize = 5;

/// For a flush work, what would go, with the secrets of `env` filled in; `None` for other work.
pub fn preview_line(work: &Work, env: &[(String, String)]) -> Option<String> {
    match super::flush_spec(work, env)? {
        Ok(spec) => Some(describe_preview(&spec)),
        Err(e) => Some(format!("cannot count the matching keys: {e:#}")),
    }
}

/// What would go: the count of matching keys and a few of them, read-only.
pub fn describe_preview(spec: &FlushSpec) -> String {
    match flush::preview(spec, SAMPLES) {
        Ok(p) if p.samples.is_empty() => format!("{} keys match now", p.matched),
        Ok(p) => {
            // Key names are data: a CR or an escape in one must not repaint this line.
            let samples: Vec<_> = p.samples.iter().map(|k| crate::term::escape(k)).collect();
            format!("{} keys match now, e.g. {}", p.matched, samples.join(", "))
        }
        Err(e) => format!("cannot count the matching keys: {e}"),
    }
}

/// Run the flush of `spec` (secrets filled in); the report names the patterns as recorded
/// (`recorded`, secrets as references), never as used.
pub fn run_flush(
    spec: &FlushSpec,
    recorded: &[String],
    backup_file: &Path,
    ctx: &StepContext<'_>,
) -> Result<StepResult> {
    let started = std::time::Instant::now();
    let mut progress =
        |deleted: u64| ctx.ui.set_spinner_message(format!("flushing: {deleted} keys deleted"));
    let outcome = flush::flush_until(spec, backup_file, &mut progress, ctx.interrupt);
    let (outcome, check, details) = match outcome {
        Ok(mut report) => {
            report.patterns = recorded.to_vec();
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
        Err(e @ FlushError::Interrupted { .. }) => (Outcome::Interrupted, e.to_string(), None),
        Err(e) => (Outcome::Failed, failure_text(&e), None),
    };
    finish(ctx, started, outcome, check, details)
}

/// Restore a flush's backup with `patterns` (secrets filled in) for the sweep of keys written
/// since; the check names the patterns as recorded.
pub fn run_restore(
    url: &str,
    backup_file: &Path,
    patterns: &[String],
    recorded: &[String],
    ctx: &StepContext<'_>,
) -> Result<StepResult> {
    let started = std::time::Instant::now();
    if !backup_file.exists() {
        // The flush failed before it backed anything up, so it deleted nothing either.
        let check = format!("no backup at {}: the flush deleted nothing", backup_file.display());
        return finish(ctx, started, Outcome::Ok, check, None);
    }
    let mut progress = |n: u64| ctx.ui.set_spinner_message(format!("restoring: {n} keys"));
    let (outcome, check, details) = match flush::restore(url, backup_file, patterns, &mut progress)
    {
        Ok(r) => (Outcome::Ok, restore_text(&r, recorded), serde_json::to_value(&r).ok()),
        // The flush was killed mid-way: its backup ends inside a page. A page is written before
        // its keys are unlinked, so every key it deleted is in the intact part, now restored;
        // the rollback of the run goes on to the earlier steps. Keys it never reached were
        // never deleted, and cannot be told from new ones, so none is swept.
        Err(FlushError::BackupIncomplete { report, detail, .. }) => (
            Outcome::Ok,
            format!(
                "{} (the flush had stopped mid-way, so its backup ends early: {detail}; every key it deleted was backed up first, and keys written since were left as they are)",
                restore_text(&report, recorded)
            ),
            serde_json::to_value(&report).ok(),
        ),
        Err(e) => (Outcome::Failed, failure_text(&e), None),
    };
    finish(ctx, started, outcome, check, details)
}

/// What a restore did, in words: the journal's check and the note's line.
pub fn restore_text(r: &RestoreReport, patterns: &[String]) -> String {
    let mut text = format!(
        "restored {} keys from the backup ({} replaced a value written since the flush), {} expired",
        r.restored, r.replaced, r.expired
    );
    if r.already_present > 0 {
        text.push_str(&format!(", {} already present (left alone)", r.already_present));
    }
    if r.swept {
        text.push_str(&format!(
            "; deleted {} keys matching {} written after the flush",
            r.deleted_new,
            patterns.join(", ")
        ));
    } else if patterns.is_empty() {
        text.push_str("; keys written after the flush were not looked for (no patterns recorded)");
    } else {
        text.push_str(&format!(
            "; keys matching {} were left as they are: the flush had stopped before deleting them all, so they may be keys it never reached",
            patterns.join(", ")
        ));
    }
    text
}

/// The step log gets the result line; the engine gets the result, even when the log cannot be
/// written. The line is masked: an error may quote a pattern or a detail holding a secret.
fn finish(
    ctx: &StepContext<'_>,
    started: std::time::Instant,
    outcome: Outcome,
    check: String,
    details: Option<serde_json::Value>,
) -> Result<StepResult> {
    let check = ctx.masker.mask(&check).into_owned();
    // The Redis work is done whatever the disk says: a log that cannot be written (a full disk)
    // must not turn a flush that deleted and backed up keys, or a restore that put them back,
    // into "could not run" or a failed rollback. The result says the log is missing instead.
    let check = match crate::private::write(ctx.log_path, format!("{check}\n").as_bytes()) {
        Ok(()) => check,
        Err(e) => {
            format!("{check}; its log {} could not be written ({e:#})", ctx.log_path.display())
        }
    };
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
