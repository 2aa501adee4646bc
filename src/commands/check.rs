//! `runbook check FILE...`: every problem in every file, then one line per file.

use std::path::PathBuf;

use crate::engine::code;
use crate::runbook::{LoadError, load};

pub fn run(files: &[PathBuf]) -> i32 {
    let mut worst = code::OK;
    for file in files {
        match load(file) {
            Ok(rb) => println!("ok: {} ({}, {} steps)", file.display(), rb.name, rb.steps.len()),
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
