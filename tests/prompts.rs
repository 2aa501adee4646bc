//! The interactive prompts, answered through a real pseudo-terminal: run, skip and abort before a
//! step; retry and roll back after a failure; manual steps; expectations a person must confirm;
//! and Ctrl-C during a step.

use std::path::Path;
use std::time::{Duration, Instant};

use rexpect::process::WaitStatus;
use rexpect::session::{PtySession, spawn_command};
use serde_json::Value;

use crate::support::Runbook;

/// Generous: a slow CI machine must not fail a prompt test, and a hang still ends.
const TIMEOUT_MS: u64 = 20_000;

fn start(rb: &Runbook, file: &Path) -> PtySession {
    let cmd = rb.command(&["run", file.to_str().expect("a UTF-8 path")]);
    spawn_command(cmd, Some(TIMEOUT_MS)).expect("start runbook in a pseudo-terminal")
}

/// Wait for `question`, then type `reply` and Enter.
fn answer(p: &mut PtySession, question: &str, reply: &str) {
    p.exp_string(question).unwrap_or_else(|e| panic!("waiting for {question:?}: {e}"));
    p.send_line(reply).expect("type an answer");
}

/// Read until the program closes the terminal and return its exit code.
fn exit_code(mut p: PtySession) -> i32 {
    p.exp_eof().expect("the run ends");
    match p.process().wait().expect("wait for runbook") {
        WaitStatus::Exited(_, code) => code,
        other => panic!("runbook did not exit normally: {other:?}"),
    }
}

fn events<'a>(journal: &'a [Value], name: &str) -> Vec<&'a Value> {
    journal.iter().filter(|e| e["event"] == name).collect()
}

fn run_finished(journal: &[Value]) -> &Value {
    events(journal, "run_finished").pop().expect("a run_finished event")
}

const HEADER: &str = "[runbook]\nname = \"prompts\"\n\n";

fn runbook(rb: &Runbook, steps: &str) -> std::path::PathBuf {
    rb.file("rb.toml", &format!("{HEADER}{steps}"))
}

/// Three steps, each appending its number to `ran.log` and its undo to `undo.log`.
const THREE_STEPS: &str = r#"
[[step]]
title = "one"
kind = "apply"
run = "echo 1 >> {{runbook_dir}}/ran.log"
rollback = "echo undo1 >> {{runbook_dir}}/undo.log"

[[step]]
title = "two"
kind = "apply"
run = "echo 2 >> {{runbook_dir}}/ran.log"
rollback = "echo undo2 >> {{runbook_dir}}/undo.log"

[[step]]
title = "three"
kind = "apply"
run = "echo 3 >> {{runbook_dir}}/ran.log"
rollback = "echo undo3 >> {{runbook_dir}}/undo.log"
"#;

#[test]
fn answering_run_runs_the_step_and_journals_the_answer() {
    let rb = Runbook::new();
    let file = runbook(
        &rb,
        r#"
[[step]]
title = "make a file"
kind = "apply"
run = "touch {{runbook_dir}}/made"
rollback = "rm -f {{runbook_dir}}/made"
"#,
    );
    let mut p = start(&rb, &file);
    answer(&mut p, "Run step 1?", "r");
    assert_eq!(exit_code(p), 0);
    assert!(rb.path().join("made").exists(), "step 1 did not run");
    let journal = rb.journal();
    let prompts = events(&journal, "prompt");
    assert_eq!(prompts.len(), 1, "{prompts:#?}");
    assert_eq!(prompts[0]["answer"], "run");
    assert_eq!(prompts[0]["step"], 1);
    assert_eq!(run_finished(&journal)["status"], "succeeded");
}

#[test]
fn answering_skip_skips_the_step() {
    let rb = Runbook::new();
    let file = runbook(&rb, THREE_STEPS);
    let mut p = start(&rb, &file);
    answer(&mut p, "Run step 1?", "s");
    answer(&mut p, "Run step 2?", "run");
    answer(&mut p, "Run step 3?", "skip");
    assert_eq!(exit_code(p), 0);
    assert_eq!(rb.read("ran.log"), "2\n", "only step 2 should have run");
    let journal = rb.journal();
    let skipped: Vec<&Value> =
        events(&journal, "step_skipped").into_iter().map(|e| &e["step"]).collect();
    assert_eq!(skipped, [1, 3]);
    assert_eq!(events(&journal, "step_started").len(), 1);
}

#[test]
fn answering_abort_stops_without_running_later_steps() {
    let rb = Runbook::new();
    let file = runbook(&rb, THREE_STEPS);
    let mut p = start(&rb, &file);
    answer(&mut p, "Run step 1?", "r");
    answer(&mut p, "Run step 2?", "a");
    assert_eq!(exit_code(p), 6);
    assert_eq!(rb.read("ran.log"), "1\n");
    assert_eq!(rb.read("undo.log"), "", "an abort rolls nothing back");
    let journal = rb.journal();
    let end = run_finished(&journal);
    assert_eq!(end["status"], "aborted");
    assert_eq!(end["exit_code"], 6);
    assert_eq!(end["still_applied"], serde_json::json!([1]));

    // The aborted run can be undone later, from its journal.
    let id = rb.last_run_id();
    rb.run(&["rollback", &id, "--yes"]).success();
    assert_eq!(rb.read("undo.log"), "undo1\n");
}

#[test]
fn retry_after_a_failure_runs_the_step_again() {
    let rb = Runbook::new();
    let file = runbook(
        &rb,
        r#"
[[step]]
title = "wait for the flag"
kind = "check"
run = "echo attempt >> {{runbook_dir}}/attempts; test -f {{runbook_dir}}/flag"
"#,
    );
    let mut p = start(&rb, &file);
    answer(&mut p, "Run step 1?", "r");
    p.exp_string("Step 1 failed. What now?").expect("the failure prompt");
    rb.file("flag", "");
    p.send_line("retry").unwrap();
    assert_eq!(exit_code(p), 0);
    assert_eq!(rb.read("attempts"), "attempt\nattempt\n");
    let journal = rb.journal();
    let outcomes: Vec<&Value> =
        events(&journal, "step_finished").into_iter().map(|e| &e["outcome"]).collect();
    assert_eq!(outcomes, ["failed", "ok"]);
    let answers: Vec<&Value> =
        events(&journal, "prompt").into_iter().map(|e| &e["answer"]).collect();
    assert_eq!(answers, ["run", "retry"]);
    assert_eq!(run_finished(&journal)["status"], "succeeded");
}

#[test]
fn rollback_after_a_failure_undoes_the_steps_newest_first() {
    let rb = Runbook::new();
    let file = runbook(
        &rb,
        &THREE_STEPS.replace(
            "echo 3 >> {{runbook_dir}}/ran.log",
            "echo 3 >> {{runbook_dir}}/ran.log; false",
        ),
    );
    let mut p = start(&rb, &file);
    answer(&mut p, "Run step 1?", "r");
    answer(&mut p, "Run step 2?", "r");
    answer(&mut p, "Run step 3?", "r");
    // At 3 a.m. the state is on the screen before the question: what is applied, and what a
    // rollback would run, in order.
    p.exp_string("Applied now: steps 1, 2, 3.").expect("the applied steps are listed");
    p.exp_string("A rollback would run, in this order:").expect("the rollback plan is shown");
    p.exp_string("3. ").expect("step 3's rollback first");
    answer(&mut p, "Step 3 failed. What now?", "rollback");
    assert_eq!(exit_code(p), 3);
    // The failed step may have partly applied, so it is undone first.
    assert_eq!(rb.read("undo.log"), "undo3\nundo2\nundo1\n");
    let journal = rb.journal();
    let order: Vec<&Value> =
        events(&journal, "rollback_finished").into_iter().map(|e| &e["step"]).collect();
    assert_eq!(order, [3, 2, 1]);
    let end = run_finished(&journal);
    assert_eq!(end["status"], "rolled_back");
    assert_eq!(end["still_applied"], serde_json::json!([]));
}

#[test]
fn a_manual_step_waits_for_done() {
    let rb = Runbook::new();
    let file = runbook(
        &rb,
        r#"
[[step]]
title = "restart by hand"
kind = "manual"
instructions = "Restart the widget from the console"

[[step]]
title = "after"
kind = "check"
run = "touch {{runbook_dir}}/after"
"#,
    );
    let mut p = start(&rb, &file);
    answer(&mut p, "Run step 1?", "r");
    p.exp_string("Restart the widget from the console").expect("the instructions");
    answer(&mut p, "When it is done, type done", "later");
    p.exp_string("please answer one of: done, abort").expect("an unknown answer is refused");
    assert!(!rb.path().join("after").exists(), "step 2 ran before the operator said done");
    p.send_line("done").unwrap();
    answer(&mut p, "Run step 2?", "r");
    assert_eq!(exit_code(p), 0);
    assert!(rb.path().join("after").exists());
    let journal = rb.journal();
    let first = events(&journal, "step_finished")[0];
    assert_eq!(first["step"], 1);
    assert_eq!(first["outcome"], "ok");
    assert_eq!(first["check"], "operator said done");
}

#[test]
fn a_note_only_expectation_fails_when_the_operator_did_not_see_it() {
    let rb = Runbook::new();
    let file = runbook(
        &rb,
        r#"
[[step]]
title = "look at the banner"
kind = "check"
run = "echo the banner says hello"
expect = { exit = 0, note = "the banner says goodbye" }
"#,
    );
    let mut p = start(&rb, &file);
    answer(&mut p, "Run step 1?", "r");
    answer(&mut p, "Expected: the banner says goodbye. Did you see it?", "n");
    answer(&mut p, "Step 1 failed. What now?", "abort");
    assert_eq!(exit_code(p), 6);
    let journal = rb.journal();
    let finished = events(&journal, "step_finished")[0];
    assert_eq!(finished["outcome"], "failed");
    let check = finished["check"].as_str().unwrap();
    assert!(check.contains("operator did not see"), "{check}");
}

#[test]
fn ctrl_c_during_a_step_stops_it_and_offers_a_rollback() {
    let rb = Runbook::new();
    let file = runbook(
        &rb,
        r#"
[[step]]
title = "quick"
kind = "apply"
run = "echo 1 >> {{runbook_dir}}/ran.log"
rollback = "echo undo1 >> {{runbook_dir}}/undo.log"

[[step]]
title = "long"
kind = "apply"
run = "echo long-step-started; sleep 30; echo 2 >> {{runbook_dir}}/ran.log"
rollback = "echo undo2 >> {{runbook_dir}}/undo.log"

[[step]]
title = "never"
kind = "apply"
run = "echo 3 >> {{runbook_dir}}/ran.log"
rollback = "echo undo3 >> {{runbook_dir}}/undo.log"
"#,
    );
    let mut p = start(&rb, &file);
    answer(&mut p, "Run step 1?", "r");
    answer(&mut p, "Run step 2?", "r");
    p.exp_string("long-step-started").expect("the long step runs");
    let pressed = Instant::now();
    p.send_control('c').expect("press Ctrl-C");
    p.exp_string("Roll back the applied steps now, or leave them applied?")
        .expect("a rollback is offered");
    assert!(pressed.elapsed() < Duration::from_secs(5), "took {:?}", pressed.elapsed());
    p.send_line("rollback").unwrap();
    assert_eq!(exit_code(p), 130);

    assert_eq!(rb.read("ran.log"), "1\n", "the long step finished or step 3 ran");
    assert_eq!(rb.read("undo.log"), "undo2\nundo1\n");
    let journal = rb.journal();
    let interrupted = events(&journal, "interrupted");
    assert_eq!(interrupted.len(), 1, "{journal:#?}");
    assert_eq!(interrupted[0]["step"], 2);
    assert_eq!(interrupted[0]["signal"], "SIGINT");
    let long = events(&journal, "step_finished")[1];
    assert_eq!(long["outcome"], "interrupted");
    assert!(long["duration_ms"].as_u64().unwrap() < 5_000, "{long}");
    // Rolled back in full: closed as rolled back; the exit code still says it was interrupted.
    assert_eq!(run_finished(&journal)["status"], "rolled_back");
    assert_eq!(run_finished(&journal)["exit_code"], 130);
}

#[test]
fn ctrl_c_during_a_rollback_lets_the_rollback_command_finish_then_asks_before_abandoning() {
    let rb = Runbook::new();
    let file = runbook(
        &rb,
        r#"
[[step]]
title = "one"
kind = "apply"
run = "echo 1 >> {{runbook_dir}}/ran.log"
rollback = "echo undo1 >> {{runbook_dir}}/undo.log"

[[step]]
title = "two fails"
kind = "apply"
run = "exit 1"
rollback = "echo slow-undo-started; sleep 1; echo undo2 >> {{runbook_dir}}/undo.log"
"#,
    );
    let mut p = start(&rb, &file);
    answer(&mut p, "Run step 1?", "r");
    answer(&mut p, "Run step 2?", "r");
    answer(&mut p, "What now?", "rollback");
    p.exp_string("slow-undo-started").expect("the rollback of step 2 runs");
    p.send_control('c').expect("press Ctrl-C");
    answer(&mut p, "abandon the rollback and leave the remaining steps applied?", "y");
    assert_eq!(exit_code(p), 130);

    assert_eq!(rb.read("undo.log"), "undo2\n", "step 2's rollback finished; step 1's never ran");
    let journal = rb.journal();
    let finished = run_finished(&journal);
    assert_eq!(finished["status"], "interrupted");
    assert_eq!(finished["still_applied"], serde_json::json!([1]));
    let asked = events(&journal, "prompt");
    assert_eq!(asked.last().unwrap()["answer"], "yes");

    // What was left is undone later from the journal.
    rb.run(&["rollback", "last", "--yes"]).success();
    assert_eq!(rb.read("undo.log"), "undo2\nundo1\n");
}

#[test]
fn a_prompted_secret_is_asked_without_echo_and_never_written_down() {
    let rb = Runbook::new();
    let file = runbook(
        &rb,
        r#"
[vars]
token = { prompt = "Deploy token", secret = true }

[[step]]
title = "use it"
kind = "check"
run = "test \"${RUNBOOK_SECRET_TOKEN}\" = {{token}} && echo token-len-${#RUNBOOK_SECRET_TOKEN} && echo {{token}} > {{runbook_dir}}/seen"
"#,
    );
    let mut p = start(&rb, &file);
    p.exp_string("Deploy token:").expect("the secret is asked for");
    p.send_line("hunter2-xyz").unwrap();
    answer(&mut p, "Run step 1?", "r");
    let before = p.exp_string("token-len-11").expect("the step got the value");
    assert!(!before.contains("hunter2-xyz"), "the typed secret is not echoed: {before}");
    assert_eq!(exit_code(p), 0);
    assert_eq!(rb.read("seen"), "hunter2-xyz\n", "the command received the value");
    let journal = std::fs::read_to_string(
        rb.state_dir().join("runs").join(rb.last_run_id()).join("journal.jsonl"),
    )
    .unwrap();
    assert!(!journal.contains("hunter2-xyz"));
    assert!(
        journal.contains("${RUNBOOK_SECRET_TOKEN}"),
        "the journal has the reference, not the value"
    );
}

#[test]
fn a_rehearsal_with_a_skipped_step_does_not_pass() {
    let rb = Runbook::new();
    let file = rb.file(
        "rb.toml",
        &format!(
            "[runbook]\nname = \"skip-rehearsal\"\n\n[env.staging.vars]\nx = \"1\"\n{THREE_STEPS}"
        ),
    );
    let cmd = rb.command(&["rehearse", file.to_str().unwrap(), "--env", "staging"]);
    let mut p =
        spawn_command(cmd, Some(TIMEOUT_MS)).expect("start a rehearsal in a pseudo-terminal");
    answer(&mut p, "Run step 1?", "r");
    answer(&mut p, "Run step 2?", "s");
    answer(&mut p, "Run step 3?", "r");
    assert_eq!(exit_code(p), 3);
    assert_eq!(rb.read("ran.log"), "1\n3\n");
    assert_eq!(rb.read("undo.log"), "undo3\nundo1\n", "what ran is still rolled back");
    let journal = rb.journal();
    assert_eq!(run_finished(&journal)["status"], "failed");
    assert!(!rb.state_dir().join("rehearsals.jsonl").exists(), "nothing recorded as passed");
}

/// Reads restart after a signal (SA_RESTART, so no Redis or HTTP read is cut in half): the prompt
/// must still end its wait on Ctrl-C by itself, not through a read failing with EINTR.
#[test]
fn ctrl_c_at_a_prompt_ends_the_wait_though_reads_restart() {
    let rb = Runbook::new();
    let file = runbook(&rb, THREE_STEPS);
    let mut p = start(&rb, &file);
    answer(&mut p, "Run step 1?", "r");
    p.exp_string("Run step 2?").expect("the second prompt");
    let pressed = Instant::now();
    p.send_control('c').expect("press Ctrl-C");
    answer(&mut p, "Roll back the applied steps now, or leave them applied?", "leave");
    assert!(pressed.elapsed() < Duration::from_secs(5), "took {:?}", pressed.elapsed());
    assert_eq!(exit_code(p), 130);
    assert_eq!(rb.read("ran.log"), "1\n", "a step ran after Ctrl-C at its prompt");
    assert_eq!(run_finished(&rb.journal())["status"], "interrupted");
}
