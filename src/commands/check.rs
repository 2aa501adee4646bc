//! `runbook check FILE...`: every problem in every file, then one line per file; with `--json`,
//! one entry per file with its diagnostics, for editors and CI.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::{Value, json};

use crate::engine::code;
use crate::runbook::diagnostic::{Report, position};
use crate::runbook::{LoadError, load};

pub fn run(files: &[PathBuf], as_json: bool) -> Result<i32> {
    if as_json {
        return run_json(files);
    }
    let mut worst = code::OK;
    for file in files {
        match load(file) {
            Ok(rb) => {
                let n = rb.steps.len();
                let steps = if n == 1 { "1 step".to_string() } else { format!("{n} steps") };
                let warned = rb.warnings.len();
                if warned > 0 {
                    eprintln!("{}", Report::new(file, &rb.source, rb.warnings.clone()));
                }
                let warnings = match warned {
                    0 => String::new(),
                    1 => ", 1 warning".to_string(),
                    n => format!(", {n} warnings"),
                };
                println!("ok: {} ({}, {steps}{warnings})", file.display(), rb.name);
            }
            Err(LoadError::Invalid(report)) => {
                eprint!("{report}");
                let n = report.errors();
                eprintln!("\n{}: {n} problem{}\n", file.display(), if n == 1 { "" } else { "s" });
                worst = code::INVALID;
            }
            Err(e) => {
                eprintln!("error: {e}");
                worst = code::INVALID;
            }
        }
    }
    Ok(worst)
}

/// `[{file, ok, name, steps, diagnostics: [...]}]` on stdout; the exit code as without --json.
fn run_json(files: &[PathBuf]) -> Result<i32> {
    let mut worst = code::OK;
    let mut out = Vec::new();
    for file in files {
        let path = file.display().to_string();
        let entry = match load(file) {
            Ok(rb) => {
                let warnings = diagnostics(&Report::new(file, &rb.source, rb.warnings.clone()));
                json!({
                    "file": path, "ok": true, "name": rb.name, "steps": rb.steps.len(),
                    "diagnostics": warnings
                })
            }
            Err(LoadError::Invalid(report)) => {
                worst = code::INVALID;
                json!({ "file": path, "ok": false, "diagnostics": diagnostics(&report) })
            }
            Err(e) => {
                worst = code::INVALID;
                let whole = json!({
                    "file": path, "line": null, "column": null, "end_line": null,
                    "end_column": null, "message": e.to_string(), "expected": null, "hint": null,
                    "severity": "error"
                });
                json!({ "file": path, "ok": false, "diagnostics": [whole] })
            }
        };
        out.push(entry);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(worst)
}

/// Each diagnostic with 1-based line and column (in characters) of where it starts and ends.
fn diagnostics(report: &Report) -> Vec<Value> {
    let file = report.path.display().to_string();
    report
        .diagnostics
        .iter()
        .map(|d| {
            let start = position(&report.source, d.span.start);
            let end = position(&report.source, d.span.end.max(d.span.start));
            json!({
                "file": file,
                "line": start.line,
                "column": start.column,
                "end_line": end.line,
                "end_column": end.column,
                "message": d.message,
                "expected": d.expected,
                "hint": d.hint,
                "severity": if d.is_error() { "error" } else { "warning" },
            })
        })
        .collect()
}
