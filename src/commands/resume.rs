//! `runbook resume RUN [--from STEP]`: go on with a run that stopped, inside that run. The
//! engine decides from the run's journal; this only checks the runbook is the same revision,
//! rebuilds the plan and opens the session.

use std::path::Path;

use anyhow::Result;

use super::{need_terminal_or_yes, rebuild_plan, summarize};
use crate::Refused;
use crate::engine::operator;
use crate::engine::{Engine, Parts};
use crate::journal::{RunStarted, Store, reader};
use crate::runbook::load;
use crate::runner::Local;
use crate::session::{Session, Team};
use crate::ui::Ui;

/// How to go on: `--from`, `--accept-damaged-journal`, `--failed-hosts`.
pub struct How<'a> {
    pub from: Option<&'a str>,
    pub accept_damaged_journal: bool,
    pub failed_hosts: bool,
}

pub fn run(store: &Store, wanted: &str, yes: bool, how: How<'_>) -> Result<i32> {
    let (from, accept_damage) = (how.from, how.accept_damaged_journal);
    let dir = store.find_dir(wanted)?;
    let started = reader::read_started(&dir)?;
    need_terminal_or_yes(yes, "ask how to resume (--yes runs the in-flight step again)")?;
    let rb = load(Path::new(&started.runbook))?;
    refuse_changed(&started, &rb.hash)?;
    let plan = rebuild_plan(&rb, &started, &dir)?;
    let from = from.map(|s| plan.step_index(s)).transpose()?;
    let team =
        Team { lock_redis: plan.lock_redis.as_deref(), store_redis: plan.store_redis.as_deref() };
    let session = Session::reopen(store.root(), &dir, &started, team, accept_damage)?;
    let ui = Ui::new();
    let mut operator = operator::for_command(yes);
    let parts = Parts {
        journal: session.journal,
        ui: &ui,
        operator: operator.as_mut(),
        runner: &Local,
        env: plan.step_env.clone(),
        masker: plan.masker.clone(),
    };
    let mut engine = Engine::new(Some(&plan), session.state, parts);
    let end = if how.failed_hosts { engine.resume_failed_hosts()? } else { engine.resume(from)? };
    summarize(&ui, engine.state(), end);
    Ok(end.code)
}

/// Going forward needs the runbook the run started from; a changed one may have different
/// steps. Undoing does not: it uses the commands the journal recorded.
fn refuse_changed(started: &RunStarted, hash: &str) -> Result<()> {
    if hash == started.hash {
        return Ok(());
    }
    Err(Refused(format!(
        "{} changed since run {} started (sha256 {} then, {} now); resume needs the same revision. To undo what the run did: runbook rollback {}",
        started.runbook,
        started.run_id,
        started.hash.get(..12).unwrap_or(&started.hash),
        hash.get(..12).unwrap_or(hash),
        started.run_id
    ))
    .into())
}
