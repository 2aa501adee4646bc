//! `runbook rollback RUN`: undo what a past run left applied, newest first, with the rollback
//! commands its journal recorded (not today's file), appending to that run's journal. The
//! engine's one rollback does the work; this finds the secrets the recorded commands refer to
//! (read again from their sources, since the journal never held them) and opens the session.

use std::path::Path;

use anyhow::Result;
use regex::Regex;

use super::{need_terminal_or_yes, rebuild_plan, summarize};
use crate::Refused;
use crate::engine::operator;
use crate::engine::{Engine, Parts};
use crate::journal::{RunState, Store, reader};
use crate::plan::Plan;
use crate::runbook::load;
use crate::runner::Local;
use crate::secret::Masker;
use crate::session::{Session, Team};
use crate::ui::Ui;

pub fn run(store: &Store, wanted: &str, yes: bool, accept_damage: bool) -> Result<i32> {
    let dir = store.find_dir(wanted)?;
    let started = reader::read_started(&dir)?;
    need_terminal_or_yes(yes, "confirm the rollback")?;
    // Today's file, when it still loads, only supplies the secrets and the team's Redis.
    let plan = load(Path::new(&started.runbook))
        .ok()
        .and_then(|rb| rebuild_plan(&rb, &started, &dir).ok());
    let team = Team {
        lock_redis: plan.as_ref().and_then(|p| p.lock_redis.as_deref()),
        store_redis: plan.as_ref().and_then(|p| p.store_redis.as_deref()),
    };
    let session = Session::reopen(store.root(), &dir, &started, team, accept_damage)?;
    let (env, masker) = secrets_for(&session.state, plan.as_ref())?;
    let ui = Ui::new();
    let mut operator = operator::for_command(yes);
    let parts = Parts {
        journal: session.journal,
        ui: &ui,
        operator: operator.as_mut(),
        runner: &Local,
        env,
        masker,
    };
    let mut engine = Engine::new(None, session.state, parts);
    let end = engine.rollback_run()?;
    summarize(&ui, engine.state(), end);
    Ok(end.code)
}

/// The secrets the recorded rollback commands refer to (`${RUNBOOK_SECRET_NAME}`): from the
/// runbook's own sources when it can still be read, else from this process's environment.
/// A missing one is a refusal before anything runs: a rollback with an empty token is worse
/// than none.
fn secrets_for(run: &RunState, plan: Option<&Plan>) -> Result<(Vec<(String, String)>, Masker)> {
    let reference = Regex::new(r"RUNBOOK_SECRET_[A-Z0-9_]+").expect("a valid regex");
    let mut names: Vec<String> = Vec::new();
    for step in run.applied_newest_first() {
        let text = serde_json::to_string(&(&step.rollback, &step.verify)).unwrap_or_default();
        names.extend(reference.find_iter(&text).map(|m| m.as_str().to_string()));
    }
    names.sort();
    names.dedup();
    let from_plan = |name: &str| {
        plan.and_then(|p| p.step_env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    };
    let mut env = vec![("RUNBOOK_RUN_ID".to_string(), run.id.clone())];
    let mut missing = Vec::new();
    for name in names {
        match from_plan(&name).or_else(|| std::env::var(&name).ok()) {
            Some(value) => env.push((name, value)),
            None => missing.push(name),
        }
    }
    if !missing.is_empty() {
        return Err(Refused(format!(
            "the rollback commands use {}, which cannot be read again from {} (it is missing or changed); set {} in the environment and run again. Nothing was rolled back",
            missing.join(", "),
            run.started.runbook,
            if missing.len() == 1 { "it" } else { "them" }
        ))
        .into());
    }
    let masker = Masker::new(env.iter().skip(1).map(|(_, v)| v.clone()));
    Ok((env, masker))
}
