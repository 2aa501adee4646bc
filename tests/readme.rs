//! The README's promises about commands: what it shows after the quick start works as written.

use std::process::Command;

use crate::support::Runbook;

/// The commands of the block after "Then look at what happened:", without their comments.
fn commands_after_the_quick_start() -> Vec<String> {
    let readme = include_str!("../README.md");
    let (_, after) = readme.split_once("Then look at what happened:").expect("the quick start");
    let block = after.split("```").nth(1).expect("a code block after the quick start");
    block
        .lines()
        .filter_map(|l| l.split('#').next())
        .map(str::trim)
        .filter(|l| l.starts_with("runbook "))
        .map(String::from)
        .collect()
}

#[test]
fn every_command_the_readme_shows_after_the_quick_start_works_as_written() {
    let t = Runbook::new();
    // Any run will do for the commands that read it (the quick start's own run needs a free
    // port the example runbook names); as many steps as `logs last N` could name.
    let step =
        |n: u32| format!("[[step]]\ntitle = \"s{n}\"\nkind = \"check\"\nrun = \"echo {n}\"\n");
    let steps: String = (1..=12).map(step).collect();
    let file = t.file("rb.toml", &format!("[runbook]\nname = \"readme\"\n\n{steps}"));
    t.run(&["run", file.to_str().unwrap(), "--yes"]).success();

    let commands = commands_after_the_quick_start();
    assert!(commands.len() >= 5, "{commands:?}");
    for line in commands {
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
            .args(&words)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("RUNBOOK_STATE_DIR", t.state_dir())
            .env("NO_COLOR", "1")
            .output()
            .expect("run runbook");
        assert!(out.status.success(), "`{line}` failed: {out:?}");
        assert!(!out.stdout.is_empty(), "`{line}` printed nothing");
    }
}
