//! Step outputs through the binary: `capture` on a shell step with an `id`, `{{steps.ID.NAME}}`
//! in later steps, rollbacks and `verify_rollback`; the value journalled, so `rollback RUN` later
//! uses the value captured then; a hostile value stays one word; a secret never reaches the disk;
//! `check` and `plan` on references; a capture that matches nothing fails the step.

use crate::support::Runbook;

/// Step 1 reads the current release from the file `current`; step 2 switches to v42 and its
/// rollback (checked by verify_rollback) switches back to what step 1 captured.
const RELEASE: &str = r#"
[runbook]
name = "release"

[[step]]
id = "current"
title = "Record the current release"
kind = "check"
run = "cat {{runbook_dir}}/current"
capture = ["^release: (?P<release>.+)$"]

[[step]]
id = "switch"
title = "Switch to the new release"
kind = "apply"
run = "printf 'release: %s\n' v42 > {{runbook_dir}}/current && echo from {{steps.current.release}}"
rollback = "printf 'release: %s\n' {{steps.current.release}} > {{runbook_dir}}/current"
verify_rollback = "grep -qxF 'release: {{steps.current.release}}' {{runbook_dir}}/current"
"#;

#[test]
fn a_captured_value_reaches_later_commands_and_rollbacks_as_one_word() {
    let t = Runbook::new();
    let hostile = "v41; touch pwned $(touch pwned2) `touch pwned3` *";
    t.file("current", &format!("release: {hostile}\n"));
    t.file(
        "rb.toml",
        &format!("{RELEASE}\n[[step]]\ntitle = \"fails\"\nkind = \"check\"\nrun = \"exit 1\"\n"),
    );
    let out = t.run(&["run", "rb.toml", "--yes"]).code(3);
    assert!(out.stdout.contains(&format!("from {hostile}")), "{out:?}");
    assert!(out.stdout.contains("verify_rollback passed"), "{out:?}");
    assert_eq!(
        t.read("current"),
        format!("release: {hostile}\n"),
        "rolled back to the captured one"
    );
    for file in ["pwned", "pwned2", "pwned3"] {
        assert!(!t.path().join(file).exists(), "the value ran as shell: {file}");
    }
    let events = t.journal();
    let first = events.iter().find(|e| e["event"] == "step_finished" && e["step"] == 1).unwrap();
    assert_eq!(first["details"]["outputs"]["release"], hostile);
    let started = events.iter().find(|e| e["event"] == "step_started" && e["step"] == 2).unwrap();
    let rollback = started["rollback"]["run"].as_str().unwrap();
    assert!(rollback.contains("\"${RUNBOOK_OUTPUT_CURRENT__RELEASE}\""), "{rollback}");
}

#[test]
fn rollback_of_a_past_run_uses_the_value_captured_then() {
    let t = Runbook::new();
    t.file("current", "release: v41\n");
    t.file("rb.toml", RELEASE);
    t.run(&["run", "rb.toml", "--yes"]).success();
    assert_eq!(t.read("current"), "release: v42\n");
    // Weeks later the file says something else; the rollback still goes back to v41.
    let id = t.last_run_id();
    t.file("rb.toml", "[runbook]\nname = \"release\"\n[[step]]\ntitle = \"changed\"\nkind = \"check\"\nrun = \"true\"\n");
    t.run(&["rollback", &id, "--yes"]).success();
    assert_eq!(t.read("current"), "release: v41\n");
}

/// How many journal events a run of RELEASE writes up to step 1's result, from a run of its own.
fn events_through_step_1() -> u32 {
    let t = Runbook::new();
    t.file("current", "release: v41\n");
    t.file("rb.toml", RELEASE);
    t.run(&["run", "rb.toml", "--yes"]).success();
    let events = t.journal();
    let at = events.iter().position(|e| e["event"] == "step_finished" && e["step"] == 1);
    at.expect("step 1 finished") as u32 + 1
}

#[test]
fn a_resume_after_a_crash_uses_the_value_captured_before_it() {
    let t = Runbook::new();
    t.file("current", "release: v41\n");
    t.file("rb.toml", RELEASE);
    // Killed once step 1's result (and its output) is on disk; by the resume the file has
    // changed, and step 2 must still see the release captured before the crash.
    let after = events_through_step_1();
    t.crash_after(after, &["run", "rb.toml", "--yes"]);
    t.file("current", "release: v99\n");
    let out = t.run(&["resume", "last", "--yes"]).success();
    assert!(out.stdout.contains("from v41"), "{out:?}");
    assert!(!out.stdout.contains("from v99"), "{out:?}");
}

#[test]
fn plan_shows_where_an_output_comes_from() {
    let t = Runbook::new();
    t.file("rb.toml", RELEASE);
    let out = t.run(&["plan", "rb.toml"]).success();
    assert!(out.stdout.contains("echo from '<release from step 1>'"), "{out:?}");
    assert!(out.stdout.contains("captures release"), "{out:?}");
}

#[test]
fn a_capture_that_matches_nothing_fails_the_step_with_the_pattern_and_the_last_lines() {
    let t = Runbook::new();
    t.file("current", "version v41\nall good\n");
    t.file("rb.toml", RELEASE);
    let out = t.run(&["run", "rb.toml", "--yes"]).code(3);
    assert!(
        out.stdout.contains("exit 0, but capture `^release: (?P<release>.+)$` matched no line of the output, so `release` has no value; the output ends with:\nversion v41\nall good"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("Switch to the new release\n"), "step 2 never ran: {out:?}");
    assert_eq!(t.read("current"), "version v41\nall good\n");
}

#[test]
fn an_output_holding_a_secret_is_used_but_never_written_down() {
    let secret = "s3cr3t-token-value";
    let t = Runbook::new().env("API_TOKEN", secret);
    t.file(
        "rb.toml",
        r#"
[runbook]
name = "token"

[vars]
token = { from_env = "API_TOKEN", secret = true }

[[step]]
id = "login"
title = "Log in"
kind = "check"
run = "echo session: {{token}}"
capture = ["^session: (?P<session>\\S+)$"]

[[step]]
title = "Use the session"
kind = "check"
run = "test {{steps.login.session}} = $RUNBOOK_SECRET_TOKEN && echo same"
expect = { stdout = "same" }
"#,
    );
    t.run(&["run", "rb.toml", "--yes"]).success();
    let events = t.journal();
    let first = events.iter().find(|e| e["event"] == "step_finished" && e["step"] == 1).unwrap();
    assert_eq!(first["details"]["outputs"]["session"], "***");
    assert_eq!(first["details"]["secret_outputs"][0], "session");
    crate::support::assert_nowhere_below(&t.state_dir(), secret);
}

#[test]
fn check_refuses_unknown_steps_and_outputs_and_a_use_before_the_capture() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        r#"[runbook]
name = "bad"

[[step]]
title = "too early"
kind = "check"
run = "echo {{steps.current.release}}"

[[step]]
id = "current"
title = "capture"
kind = "check"
run = "echo release: v1"
capture = ["^release: (?P<release>\\S+)$"]

[[step]]
title = "typos"
kind = "check"
run = "echo {{steps.curent.release}} {{steps.current.relase}}"

[[step]]
title = "no id"
kind = "check"
run = "echo x"
capture = ["(?P<x>x)", "no group"]

[[step]]
title = "not a command"
kind = "watch"
file = "/var/log/{{steps.current.release}}.log"
for = "1s"
"#,
    );
    let err = t.run(&["check", "rb.toml"]).code(2).stderr;
    assert!(
        err.contains("{{steps.current.release}} is used in step 1 before step 2 captures it"),
        "{err}"
    );
    assert!(err.contains("rb.toml:7:13"), "{err}");
    assert!(err.contains("{{steps.curent.release}}: no step has id \"curent\""), "{err}");
    assert!(err.contains("did you mean \"current\"?"), "{err}");
    assert!(
        err.contains("{{steps.current.relase}}: step 2 (current) has no output `relase`"),
        "{err}"
    );
    assert!(err.contains("did you mean `release`?"), "{err}");
    assert!(err.contains("step 4 captures outputs but has no id"), "{err}");
    assert!(err.contains("capture \"no group\" has no named group"), "{err}");
    assert!(err.contains("{{steps.current.release}} in step 5 is not in a command"), "{err}");
}
