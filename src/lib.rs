//! `runbook`: numbered steps with owners, expected results and rollbacks, run with prompts,
//! rolled back in reverse on failure, and recorded in a crash-safe journal.
//!
//! Data flows one way: file -> `runbook` (parse, validate) -> `plan` (render) -> `engine`
//! (run, roll back) -> `journal` -> `history`/`show`/`report`.

pub mod cli;
mod commands;
pub mod engine;
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
pub mod signals;
pub mod steps;
pub mod term;
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
        .unwrap_or_else(|| format!("uid-{}", unsafe { libc::getuid() }))
}

/// The name of the account this process runs as, from the password database.
fn account_name() -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes into the buffers we own and sets `found` to `&pwd` or null.
    let rc = unsafe {
        libc::getpwuid_r(libc::getuid(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found)
    };
    if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name points into `buf`, NUL-terminated, and `buf` is still alive.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    name.to_str().ok().filter(|n| !n.is_empty()).map(String::from)
}

/// This machine's host name, as recorded in every run.
pub fn host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into a valid buffer.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    if ok { String::from_utf8_lossy(&buf[..end]).into_owned() } else { "unknown-host".into() }
}
