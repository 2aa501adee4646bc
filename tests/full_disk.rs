//! History stays true on a full disk: the state directory is a tiny tmpfs the test mounts (root
//! only; without the right to mount, each test says so and is skipped). A step whose log cannot
//! be written is recorded as it ran, not as "could not run"; when the journal itself cannot be
//! written, the terminal says what happened and that the journal is incomplete.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::Runbook;

/// A 64 KiB tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mount it at `dir`, or say why not (and the test is skipped).
    fn mount(dir: &Path) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        if out.status.success() {
            return Some(Tmpfs(dir.to_path_buf()));
        }
        eprintln!(
            "SKIPPED: cannot mount a tmpfs to fill ({}); the full-disk tests need root",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn step_finished(journal: &[Value], step: u64) -> &Value {
    journal
        .iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == step)
        .unwrap_or_else(|| panic!("no step_finished for step {step}: {journal:#?}"))
}

#[test]
fn a_step_whose_log_filled_the_disk_was_recorded_as_could_not_run() {
    let rb = Runbook::new();
    let Some(_disk) = Tmpfs::mount(&rb.state_dir()) else { return };
    // The step fills the disk, prints while it is full, then frees the space again: its log
    // cannot take the output, and the journal can still take the events.
    let file = rb.file(
        "rb.toml",
        r#"[runbook]
name = "full"

[[step]]
title = "loud"
kind = "apply"
run = """
dd if=/dev/zero of={{run_dir}}/filler bs=1k count=200 2>/dev/null
seq 1 20000
rm {{run_dir}}/filler
echo two >> {{runbook_dir}}/ran.log
"""
rollback = "echo undo >> {{runbook_dir}}/undo.log"

[[step]]
title = "after"
kind = "check"
run = "echo three >> {{runbook_dir}}/ran.log"
"#,
    );
    let out = rb.run(&["run", file.to_str().unwrap(), "--yes"]);
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(said.contains("is incomplete (No space left on device"), "{out:#?}");
    assert_eq!(rb.read("undo.log"), "", "a step that ran fine was rolled back");
    // Freed space is not always usable at once on a loaded machine: the journal may fail too,
    // and then the terminal shows the event it could not record. Either way, it is the truth.
    let loud = if out.code == 0 {
        assert_eq!(rb.read("ran.log"), "two\nthree\n");
        step_finished(&rb.journal(), 1).clone()
    } else {
        assert!(out.stderr.contains("THE JOURNAL IS INCOMPLETE"), "{out:#?}");
        assert_eq!(rb.read("ran.log"), "two\n");
        shown_event(&out.stderr)
    };
    assert_eq!(loud["outcome"], "ok", "{loud}");
    assert_eq!(loud["exit_code"], 0, "{loud}");
    let check = loud["check"].as_str().unwrap();
    assert!(!check.contains("could not run"), "{check}");
    assert!(check.contains("is incomplete (No space left on device"), "{check}");
}

/// The event the terminal shows because the journal could not hold it.
fn shown_event(said: &str) -> Value {
    let shown = said
        .lines()
        .find(|l| l.trim_start().starts_with("{\"ts\""))
        .unwrap_or_else(|| panic!("the event is not shown: {said}"));
    serde_json::from_str(shown.trim()).unwrap()
}

#[test]
fn a_journal_that_could_not_be_written_was_not_said_plainly() {
    let rb = Runbook::new();
    let Some(_disk) = Tmpfs::mount(&rb.state_dir()) else { return };
    // The step fills the disk and prints 4 KiB and more: the tail in its step_finished event
    // needs a page the disk no longer has.
    let file = rb.file(
        "rb.toml",
        r#"[runbook]
name = "full"

[[step]]
title = "fill"
kind = "apply"
run = "dd if=/dev/zero of={{run_dir}}/filler bs=1k count=200 2>/dev/null; seq 1 3000"
rollback = "true"

[[step]]
title = "never"
kind = "check"
run = "echo ran >> {{runbook_dir}}/ran.log"
"#,
    );
    let out = rb.run(&["run", file.to_str().unwrap(), "--yes"]);
    assert_ne!(out.code, 0, "{out:#?}");
    assert_eq!(rb.read("ran.log"), "", "a step ran after the journal failed");
    let said = &out.stderr;
    assert!(said.contains("THE JOURNAL IS INCOMPLETE"), "{said}");
    assert!(said.contains("No space left on device"), "{said}");
    assert!(said.contains("The run stops here and runs nothing more"), "{said}");
    // The event it could not record is on the terminal, and not in the journal.
    let event = shown_event(said);
    assert_eq!(event["event"], "step_finished", "{event}");
    assert_eq!(event["step"], 1);
    assert_eq!(event["exit_code"], 0);
    // What the journal holds: whole events only (a write cut short by the full disk leaves a torn
    // last line, which every reader passes over).
    let id = rb.last_run_id();
    let text = std::fs::read_to_string(rb.state_dir().join("runs").join(&id).join("journal.jsonl"));
    let recorded: Vec<Value> =
        text.unwrap().lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(recorded.iter().all(|e| e["seq"] != event["seq"]), "{recorded:#?}");
    let shown = rb.run(&["show", &id, "--json"]).success();
    assert!(shown.stdout.contains("\"step_started\""), "{shown:#?}");
}
