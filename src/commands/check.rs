//! `runbook check FILE...`: every problem in every file, then one line per file.

use std::path::PathBuf;

use crate::engine::code;
use crate::runbook::{LoadError, load};

pub fn run(files: &[PathBuf]) -> i32 {
    let mut worst = code::OK;
    for file in files {
        match load(file) {
            Ok(rb) => {
                let n = rb.steps.len();
                let steps = if n == 1 { "1 step".to_string() } else { format!("{n} steps") };
                println!("ok: {} ({}, {steps})", file.display(), rb.name);
            }
            Err(LoadError::Invalid(report)) => {
                eprint!("{report}");
                let n = report.diagnostics.len();
                eprintln!("\n{}: {n} problem{}\n", file.display(), if n == 1 { "" } else { "s" });
                worst = code::INVALID;
            }
            Err(e) => {
                eprintln!("error: {e}");
                worst = code::INVALID;
            }
        }
    }
    worst
}
