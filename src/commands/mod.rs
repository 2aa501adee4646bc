//! One module per command; each reads its arguments and returns the exit code.

mod check;
mod history;
mod plan;
mod report;
mod rollback;
mod run;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::journal::Store;
use crate::journal::store::state_dir;

pub fn dispatch(cli: Cli) -> Result<i32> {
    let store = Store::new(state_dir(cli.state_dir.as_deref()));
    match cli.command {
        Command::Check { files } => Ok(check::run(&files)),
        Command::Plan { file, target } => plan::run(&file, &target),
        Command::Run(args) => run::run(&args, &store),
        Command::History { json, limit } => history::history(&store, json, limit),
        Command::Show { run, json } => history::show(&store, &run, json),
        Command::Logs { run, step, json } => history::logs(&store, &run, step.as_deref(), json),
        Command::Rollback { run, yes } => rollback::run(&store, &run, yes),
        Command::Report { run, format, out } => report::run(&store, &run, &format, out.as_deref()),
    }
}
