//! One module per command; each reads its arguments and returns the exit code.

mod check;
mod docs;
mod history;
mod list;
mod plan;
mod report;
mod resume;
mod rollback;
mod run;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::journal::Store;
use crate::journal::store::state_dir;
use std::io::IsTerminal;

use crate::engine::operator::{Operator, Terminal};
use crate::journal::RunState;
use crate::plan::{Context, Plan};
use crate::runbook::validate::BUILTINS;
use crate::secret::MASK;

pub fn dispatch(cli: Cli) -> Result<i32> {
    if prints_only(&cli.command) {
        die_quietly_on_broken_pipe();
    }
    let store = Store::new(state_dir(cli.state_dir.as_deref()));
    match cli.command {
        Command::Check { files, json } => check::run(&files, json),
        Command::Plan { file, target, json } => plan::run(&file, &target, json),
        Command::Run(args) => run::run(&args, &store),
        Command::Rehearse(args) => run::rehearse(&args, &store),
        Command::Resume { run, yes } => resume::run(&store, &run, yes),
        Command::History(args) => history::history(&store, &args),
        Command::Show { run, json } => history::show(&store, &run, json),
        Command::Logs { run, step, json } => history::logs(&store, &run, step.as_deref(), json),
        Command::Rollback { run, yes } => rollback::run(&store, &run, yes),
        Command::Report { run, format, out } => report::run(&store, &run, &format, out.as_deref()),
        Command::List { dir, json } => list::run(&store, &dir, json),
        Command::Completions { shell } => docs::completions(shell),
        Command::Man => docs::man(),
        Command::Schema => docs::schema(),
    }
}

/// Commands that only print: `runbook history | head` must end quietly, not panic.
fn prints_only(command: &Command) -> bool {
    matches!(
        command,
        Command::Check { .. }
            | Command::Plan { .. }
            | Command::History(_)
            | Command::Show { .. }
            | Command::Logs { .. }
            | Command::Report { .. }
            | Command::List { .. }
            | Command::Completions { .. }
            | Command::Man
            | Command::Schema
    )
}

/// Restore the default SIGPIPE (Rust ignores it) so a closed pipe ends the process like any Unix
/// tool. Not for commands that run steps: a closed stdout must never stop a deploy halfway.
fn die_quietly_on_broken_pipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: restoring the default disposition installs no handler, so nothing can run in
    // signal context. (nix keeps `signal` unsafe for the handler case.)
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// The plan as it was: same run id and folder, same environment, and the variable values the
/// run recorded (secrets are looked up again, since the journal never held them).
pub(crate) fn rebuild_plan(rb: &crate::runbook::Runbook, run: &RunState) -> Result<Plan> {
    let overrides: Vec<(String, String)> = run
        .started
        .vars
        .iter()
        .filter(|(k, v)| !BUILTINS.contains(&k.as_str()) && v.as_str() != MASK)
        .filter(|(k, _)| {
            rb.vars
                .iter()
                .chain(rb.envs.values().flat_map(|e| e.vars.iter()))
                .any(|d| &d.name == *k && !d.secret)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut term = Terminal;
    let mut ask = |label: &str| term.secret(label);
    let terminal = std::io::stdin().is_terminal();
    Plan::build(
        rb,
        Context {
            env: run.started.env.as_deref(),
            overrides: &overrides,
            run_id: run.id.clone(),
            run_dir: run.dir.clone(),
            operator: crate::operator(),
            ask_secret: if terminal { Some(&mut ask) } else { None },
            dry: false,
        },
    )
}
