//! `runbook list [DIR]`: the runbooks in a folder, the way `just --list` shows recipes: name,
//! description, steps, environments, and how the last run of each went.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::engine::code;
use crate::journal::Store;
use crate::journal::index::{self, Summary};
use crate::runbook::{LoadError, Runbook, load};

/// One file of the folder: its runbook, or why it is not one.
struct Entry {
    file: PathBuf,
    runbook: Result<Runbook, String>,
}

pub fn run(store: &Store, dir: &Path, as_json: bool) -> Result<i32> {
    let entries = read_folder(dir)?;
    let mut latest: HashMap<String, Summary> = HashMap::new();
    index::each_run(&store.runs_dir(), |run| {
        // Newest first: the first run seen of a runbook is its last.
        if !latest.contains_key(run.name().as_ref()) {
            latest.insert(run.name().into_owned(), run.summary());
        }
    })?;
    let last: HashMap<&str, &Summary> = latest.iter().map(|(k, v)| (k.as_str(), v)).collect();
    if as_json {
        let list: Vec<Value> = entries.iter().map(|e| entry_json(e, &last)).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if entries.is_empty() {
        println!("no runbooks (*.toml) in {}", dir.display());
    } else {
        print_list(dir, &entries, &last);
    }
    let invalid = entries.iter().any(|e| e.runbook.is_err());
    Ok(if invalid { code::INVALID } else { code::OK })
}

/// Every `*.toml` of the folder, by file name.
fn read_folder(dir: &Path) -> Result<Vec<Entry>> {
    let listing = std::fs::read_dir(dir).with_context(|| {
        format!("cannot list {} (expected a folder of runbooks, e.g. runbooks/)", dir.display())
    })?;
    let mut files: Vec<PathBuf> = listing
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    Ok(files
        .into_iter()
        .map(|file| {
            let runbook = load(&file).map_err(|e| match e {
                LoadError::Invalid(r) => {
                    let n = r.errors();
                    format!("invalid: {n} problem{} (runbook check)", if n == 1 { "" } else { "s" })
                }
                other => other.to_string(),
            });
            Entry { file, runbook }
        })
        .collect())
}

fn print_list(dir: &Path, entries: &[Entry], last: &HashMap<&str, &Summary>) {
    println!("Runbooks in {}:", dir.display());
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|e| {
            let file = e.file.file_name().map_or(String::new(), |n| n.to_string_lossy().into());
            match &e.runbook {
                Ok(rb) => [
                    format!("    {}", rb.name),
                    steps_text(rb.steps.len()),
                    envs_text(rb),
                    last_text(last.get(rb.name.as_str()).copied()),
                    format!(
                        "# {}",
                        if rb.description.is_empty() { &file } else { &rb.description }
                    ),
                ],
                Err(why) => [
                    format!("    {file}"),
                    String::new(),
                    String::new(),
                    String::new(),
                    format!("# {why}"),
                ],
            }
        })
        .collect();
    print_rows(&rows);
}

/// Columns padded to their widest cell, without a header (like `just --list`).
fn print_rows(rows: &[[String; 5]]) {
    let mut widths = [0usize; 5];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let cells: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

fn steps_text(n: usize) -> String {
    if n == 1 { "1 step".into() } else { format!("{n} steps") }
}

fn envs_text(rb: &Runbook) -> String {
    if rb.envs.is_empty() {
        "no envs".into()
    } else {
        rb.envs.keys().cloned().collect::<Vec<_>>().join(",")
    }
}

fn last_text(run: Option<&Summary>) -> String {
    match run {
        Some(r) => format!("last: {} {}", r.status_word(), r.started_at.format("%Y-%m-%d")),
        None => "never run".into(),
    }
}

fn entry_json(e: &Entry, last: &HashMap<&str, &Summary>) -> Value {
    let file = e.file.display().to_string();
    match &e.runbook {
        Ok(rb) => {
            let run = last.get(rb.name.as_str()).map(|r| {
                json!({
                    "id": r.id,
                    "status": r.status_word(),
                    "env": r.env,
                    "started_at": r.started_at,
                })
            });
            json!({
                "file": file,
                "name": rb.name,
                "description": rb.description,
                "steps": rb.steps.len(),
                "envs": rb.envs.keys().collect::<Vec<_>>(),
                "last_run": run,
            })
        }
        Err(why) => json!({ "file": file, "error": why }),
    }
}
