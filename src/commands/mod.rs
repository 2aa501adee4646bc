//! One module per command; each reads its arguments and returns the exit code.

mod check;
mod docs;
mod history;
mod list;
mod plan;
mod report;
mod resume;
mod rollback;
pub(crate) mod run;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::journal::Store;
use crate::journal::store::state_dir;
use std::io::IsTerminal;

use std::path::Path;

use crate::engine::operator::{Operator, Terminal};
use crate::journal::event::Tone;
use crate::journal::{RunStarted, RunState};
use crate::plan::{Context, Plan};
use crate::runbook::validate::BUILTINS;
use crate::secret::MASK;
use crate::ui::Ui;

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
        Command::Resume { run, yes, from, accept_damaged_journal, failed_hosts } => {
            let how = resume::How { from: from.as_deref(), accept_damaged_journal, failed_hosts };
            resume::run(&store, &run, yes, how)
        }
        Command::History(args) => history::history(&store, &args),
        Command::Show { run, json } => history::show(&store, &run, json),
        Command::Logs { run, step, json } => history::logs(&store, &run, step.as_deref(), json),
        Command::Rollback { run, yes, accept_damaged_journal } => {
            rollback::run(&store, &run, yes, accept_damaged_journal)
        }
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
/// run recorded (secrets are read again from their sources, since the journal never held them).
pub(crate) fn rebuild_plan(
    rb: &crate::runbook::Runbook,
    started: &RunStarted,
    dir: &Path,
) -> Result<Plan> {
    let overrides: Vec<(String, String)> = started
        .vars
        .iter()
        // Journals of schema 1 held secrets (and masked text) as `***`: never a value to reuse.
        .filter(|(k, v)| !BUILTINS.contains(&k.as_str()) && v.as_str() != MASK)
        .filter(|(k, _)| {
            rb.vars
                .iter()
                .chain(rb.envs.values().flat_map(|e| e.vars.iter()))
                .any(|d| &d.name == *k && !d.secret)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(given_secrets(started)?)
        .collect();
    let mut term = Terminal { name: crate::operator() };
    let mut ask = |label: &str| term.secret(label);
    let terminal = std::io::stdin().is_terminal();
    Plan::build(
        rb,
        Context {
            env: started.env.as_deref(),
            overrides: &overrides,
            run_id: started.run_id.clone(),
            run_dir: dir.to_path_buf(),
            operator: crate::operator(),
            ask_secret: if terminal { Some(&mut ask) } else { None },
            dry: false,
        },
    )
}

/// A secret given with `--var` when the run started was never recorded, and the runbook's own
/// value may point somewhere else (another server): it must come from `RUNBOOK_SECRET_NAME`.
fn given_secrets(started: &RunStarted) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for name in started.given.iter().filter(|n| started.secrets.contains(n)) {
        let var = format!("RUNBOOK_SECRET_{}", name.to_ascii_uppercase());
        match std::env::var(&var) {
            Ok(value) => out.push((name.clone(), value)),
            Err(_) => {
                return Err(crate::Refused(format!(
                    "variable `{name}` was given with --var when run {} started, and it is a secret, so its value was never recorded (the runbook's own value may point elsewhere); set {var} to it and run again. Nothing was run",
                    started.run_id
                ))
                .into());
            }
        }
    }
    Ok(out)
}

/// The end of a run that wrote to the journal: its status, where to look, and the final note
/// written beside the journal.
pub(crate) fn summarize(ui: &Ui, state: &RunState, end: crate::engine::RunEnd) {
    let label = end.status.label();
    let line = match end.status.tone() {
        Tone::Good => ui.good(label),
        Tone::Undone => ui.warn(label),
        Tone::Bad => ui.bad(label),
    };
    ui.say(&format!("\nrun {} {line} (exit {})", state.id, end.code));
    ui.say(&format!("journal: {}", state.dir.join("journal.jsonl").display()));
    ui.say(&format!("details: runbook show {}", state.id));
    write_note(ui, state);
}

/// The run's counts and metric changes, and its final note in `<run_dir>/report.md`. A note that
/// cannot be written is a warning: the run itself is over and journalled.
fn write_note(ui: &Ui, state: &RunState) {
    let path = state.dir.join("report.md");
    let note = crate::report::Note::from_run(state);
    match crate::private::write(&path, crate::report::markdown(&note).as_bytes()) {
        Ok(()) => {
            note.summary().iter().for_each(|l| ui.say(l));
            ui.say(&format!("note: {}", path.display()));
        }
        Err(e) => ui.say(&ui.warn(&format!("cannot write the note {}: {e:#}", path.display()))),
    }
}

/// Refuse to start when nobody can answer and `--yes` was not given: a prompt with no terminal
/// would hang or guess.
pub(crate) fn need_terminal_or_yes(yes: bool, what: &str) -> Result<()> {
    if yes || std::io::stdin().is_terminal() {
        return Ok(());
    }
    Err(crate::Refused(format!("there is no terminal to {what}; pass --yes to go on unattended"))
        .into())
}
