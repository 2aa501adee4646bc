//! Output streams: the record of a run (step headers, outcomes, the summary) on stdout, prompts
//! and the spinner on the terminal only, so a pipe or a file keeps a clean, readable record.

use std::time::Duration;

use rexpect::session::spawn_command;

use crate::support::Runbook;

const TIMEOUT_MS: u64 = 20_000;

/// Two steps; the first lasts long enough for the spinner to draw several frames.
const RUNBOOK: &str = r#"[runbook]
name = "streams"

[[step]]
title = "slow one"
kind = "check"
run = "sleep 1.2; echo slow done"

[[step]]
title = "quick one"
kind = "check"
run = "echo quick done"
"#;

/// Run `shell` (which runs the binary as `$RUNBOOK`) in a pseudo-terminal, and return what the
/// terminal showed.
fn in_terminal(t: &Runbook, shell: &str, answers: &[(&str, &str)]) -> String {
    let cmd = t.command(&[]);
    let program = cmd.get_program().to_owned();
    let mut bash = std::process::Command::new("bash");
    bash.args(["-c", shell]).current_dir(t.path()).env("RUNBOOK", program);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => bash.env(k, v),
            None => bash.env_remove(k),
        };
    }
    let mut p = spawn_command(bash, Some(TIMEOUT_MS)).expect("start bash in a pseudo-terminal");
    for (question, reply) in answers {
        p.exp_string(question).unwrap_or_else(|e| panic!("waiting for {question:?}: {e}"));
        p.send_line(reply).expect("type an answer");
    }
    p.exp_eof().expect("the run ends")
}

fn control_characters(text: &str) -> Vec<char> {
    text.chars().filter(|c| c.is_control() && *c != '\n').collect()
}

#[test]
fn piped_run_keeps_the_record_on_stdout_without_spinner_frames() {
    let t = Runbook::new();
    t.file("rb.toml", RUNBOOK);
    let terminal = in_terminal(&t, "$RUNBOOK run rb.toml --yes | cat > record.log", &[]);
    let record = t.read("record.log");
    let lines: Vec<&str> = record.lines().collect();
    for expected in [
        "▶ step 1/2 slow one  [check] owner: unassigned",
        "slow done",
        "▶ step 2/2 quick one  [check] owner: unassigned",
        "quick done",
        "steps: 2 ok, 0 failed, 0 skipped, 0 rolled back",
    ] {
        assert!(lines.contains(&expected), "no line {expected:?} in the record:\n{record}");
    }
    assert!(lines.iter().any(|l| l.starts_with("✓ step 1 ok")), "{record}");
    assert_eq!(control_characters(&record), Vec::<char>::new(), "the record:\n{record:?}");
    // The spinner was on the terminal, and the record was not.
    assert!(terminal.contains("step 1/2"), "the terminal showed no spinner: {terminal:?}");
    assert!(!terminal.contains("steps: 2 ok"), "{terminal:?}");
}

#[test]
fn prompts_go_to_the_terminal_and_never_into_the_record() {
    let t = Runbook::new();
    t.file("rb.toml", RUNBOOK);
    let answers = [("Run step 1?", "r"), ("Run step 2?", "s")];
    in_terminal(&t, "$RUNBOOK run rb.toml > record.log", &answers);
    let record = t.read("record.log");
    assert!(record.contains("▶ step 1/2 slow one"), "{record}");
    assert!(record.contains("steps: 1 ok, 0 failed, 1 skipped"), "{record}");
    assert!(!record.contains("Run step"), "a prompt reached the record:\n{record}");
    assert_eq!(control_characters(&record), Vec::<char>::new(), "the record:\n{record:?}");
}

#[test]
fn a_run_into_a_closed_pipe_still_runs_every_step() {
    let t = Runbook::new();
    t.file("rb.toml", &RUNBOOK.replace("sleep 1.2; ", ""));
    // `head -n 1` exits after the first line: the run goes on, and its journal says so.
    in_terminal(&t, "$RUNBOOK run rb.toml --yes | head -n 1 > first.log", &[]);
    std::thread::sleep(Duration::from_millis(100));
    let journal = t.journal();
    let end = journal.iter().rev().find(|e| e["event"] == "run_finished").expect("an end");
    assert_eq!(end["status"], "succeeded", "{journal:?}");
    assert_eq!(t.read("first.log").lines().count(), 1);
}
