//! `runbook report RUN`: the final note, rebuilt from the run's journal alone, as Markdown or as
//! one self-contained HTML page, to standard output or `--out FILE`.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use crate::engine::code;
use crate::journal::Store;
use crate::report::{self, Note};

pub fn run(store: &Store, wanted: &str, format: &str, out: Option<&Path>) -> Result<i32> {
    let state = store.find(wanted)?;
    let note = Note::from_run(&state);
    let text = if format == "html" { report::html(&note) } else { report::markdown(&note) };
    match out {
        Some(path) => {
            std::fs::write(path, &text)
                .with_context(|| format!("cannot write the note to {} (--out)", path.display()))?;
            eprintln!("note of run {} written to {}", state.id, path.display());
        }
        None => print(&text)?,
    }
    Ok(code::OK)
}

/// A closed pipe (`| head`) is not an error.
fn print(text: &str) -> Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
