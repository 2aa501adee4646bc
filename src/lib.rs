//! `runbook`: numbered steps with owners, expected results and rollbacks, run with prompts,
//! rolled back in reverse on failure, and recorded in a crash-safe journal.
//!
//! Data flows one way: file -> `runbook` (parse, validate) -> `plan` (render) -> `engine`
//! (run, roll back) -> `journal` -> `history`/`show`/`report`.

pub mod cli;
mod commands;
pub mod engine;
pub mod fleet;
pub mod gate;
pub mod journal;
pub mod plan;
pub mod private;
pub mod process;
pub mod report;
pub mod rollout;
pub mod runbook;
pub mod runner;
pub mod secret;
pub mod session;
pub mod signals;
pub mod steps;
pub mod term;
pub mod tls;
pub mod ui;

use std::ffi::OsString;

use clap::Parser;

use engine::code;

/// A refusal by policy: nothing was run. Exit code 5.
#[derive(Debug, thiserror::Error)]
#[error("refused: {0}")]
pub struct Refused(pub String);

/// Run the program with these arguments and return the process exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { code::USAGE } else { code::OK };
        }
    };
    match commands::dispatch(cli) {
        Ok(code) => code,
        Err(e) => report_error(&e),
    }
}

fn report_error(e: &anyhow::Error) -> i32 {
    if let Some(runbook::LoadError::Invalid(report)) = e.downcast_ref::<runbook::LoadError>() {
        eprint!("{report}");
        return code::INVALID;
    }
    eprintln!("error: {e:#}");
    if e.downcast_ref::<Refused>().is_some() {
        return code::REFUSED;
    }
    if e.downcast_ref::<runbook::LoadError>().is_some() {
        return code::INVALID;
    }
    code::ERROR
}

/// Who is running this: `RUNBOOK_OPERATOR`, else `$USER`/`$LOGNAME`, else the account's name.
pub fn operator() -> String {
    ["RUNBOOK_OPERATOR", "USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .or_else(account_name)
        .unwrap_or_else(|| format!("uid-{}", nix::unistd::getuid()))
}

/// The name of the account this process runs as, from the password database.
fn account_name() -> Option<String> {
    let user = nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten()?;
    Some(user.name).filter(|n| !n.is_empty())
}

/// This machine's host name, as recorded in every run.
pub fn host() -> String {
    match nix::unistd::gethostname() {
        Ok(name) => name.to_string_lossy().into_owned(),
        Err(_) => "unknown-host".into(),
    }
}
