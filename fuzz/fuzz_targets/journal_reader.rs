//! Any bytes in a journal are read back as a run's state or an error, never a panic: first as
//! lines in memory, then as `journal.jsonl` in a run folder.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use runbook::journal::reader::{parse_lines, read};

/// One run folder per fuzzing process, its journal rewritten for every input.
fn run_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("runbook-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the fuzzing run folder");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_lines(data);
    let dir = run_dir();
    std::fs::write(dir.join("journal.jsonl"), data).expect("write journal.jsonl");
    let _ = read(dir);
});
