//! Nothing lost under faults: the engine is SIGKILLed right after each journal event in turn
//! (`RUNBOOK_FAULT_KILL_AFTER_EVENT`), then the run is resumed or rolled back. Every journal must
//! stay readable, and every step must have run exactly once, or twice when it was the one in
//! flight at the crash (a resume runs that step again, as documented).

use std::collections::BTreeMap;

use crate::support::Runbook;

const THREE: &str = r#"[runbook]
name = "three"

[vars]
trail = "{{runbook_dir}}/trail"

[[step]]
title = "one"
kind = "apply"
run = "echo run 1 >> {{trail}}"
rollback = "echo undo 1 >> {{trail}}"

[[step]]
title = "two"
kind = "apply"
run = "echo run 2 >> {{trail}}"
rollback = "echo undo 2 >> {{trail}}"

[[step]]
title = "three"
kind = "apply"
run = "echo run 3 >> {{trail}}{{fail}}"
rollback = "echo undo 3 >> {{trail}}"
"#;

fn runbook(fail: bool) -> String {
    let fail = if fail { " && exit 1" } else { "" };
    THREE.replace("{{fail}}", fail)
}

fn counts(trail: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in trail.lines() {
        *out.entry(line.to_string()).or_default() += 1;
    }
    out
}

/// Which step the journal says was in flight, if any.
fn in_flight(t: &Runbook) -> Option<u64> {
    let show = t.run(&["show", "last", "--json"]).success();
    let run: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["status"] == "in_flight")
        .and_then(|s| s["number"].as_u64())
}

#[test]
fn killed_after_every_event_then_resumed_every_step_runs_once_or_is_in_doubt() {
    // A clean run of three steps writes 1 + 3 * 2 + 1 = 8 events.
    for kill_after in 1..=8 {
        let t = Runbook::new();
        t.file("rb.toml", &runbook(false));
        t.crash_after(kill_after, &["run", "rb.toml", "--yes"]);
        let doubt = in_flight(&t);
        let resumed = t.run(&["resume", "last", "--yes"]);
        if kill_after == 8 {
            assert_eq!(resumed.code, 5, "the run had finished: {resumed:?}");
        } else {
            assert_eq!(resumed.code, 0, "after event {kill_after}: {resumed:?}");
        }
        let seen = counts(&t.read("trail"));
        for step in 1..=3u64 {
            let runs = seen.get(&format!("run {step}")).copied().unwrap_or(0);
            let allowed = if doubt == Some(step) { 1..=2 } else { 1..=1 };
            assert!(
                allowed.contains(&runs),
                "after event {kill_after}: step {step} ran {runs} times; trail {seen:?}"
            );
        }
        let events = t.journal();
        assert_eq!(events.last().unwrap()["event"], "run_finished", "after event {kill_after}");
    }
}

/// How often each step's rollback ran, by step number.
fn undone(t: &Runbook) -> Vec<usize> {
    let seen = counts(&t.read("trail"));
    (1..=3).map(|n| seen.get(&format!("undo {n}")).copied().unwrap_or(0)).collect()
}

#[test]
fn killed_during_a_rollback_then_resume_or_rollback_closes_the_run_and_a_second_call_is_refused() {
    // Failing run: run_started (1), 3 x (started, finished) (2-7), the unattended answer to
    // "step 3 failed" (8), rollbacks of 3, 2, 1 (9-14), run_finished (15).
    for kill_after in 9..=14 {
        for closer in ["resume", "rollback"] {
            let t = Runbook::new();
            t.file("rb.toml", &runbook(true));
            t.crash_after(kill_after, &["run", "rb.toml", "--yes"]);
            let out = t.run(&[closer, "last", "--yes"]);
            assert_eq!(out.code, 0, "{closer} after event {kill_after}: {out:?}");
            if closer == "resume" {
                assert!(out.said().contains("stopped while rolling back"), "{out:?}");
            }
            // A rollback in flight at the crash (after an odd event) may run again; nothing else.
            let in_flight = (kill_after % 2 == 1).then(|| 3 - (kill_after - 9) / 2);
            for (i, n) in undone(&t).into_iter().enumerate() {
                let step = i as u32 + 1;
                let allowed = if Some(step) == in_flight { 1..=2 } else { 1..=1 };
                assert!(
                    allowed.contains(&n),
                    "after event {kill_after} ({closer}): step {step} undone {n} times"
                );
            }
            for again in ["rollback", "resume"] {
                let out = t.run(&[again, "last", "--yes"]);
                assert_eq!(out.code, 5, "a second {again} after {closer} is refused: {out:?}");
            }
        }
    }
}

#[test]
fn killed_right_after_the_last_step_resume_records_the_end_and_rollback_undoes_it() {
    // run_started, 3 x (started, finished): killed after step 3 finished, before run_finished.
    let t = Runbook::new();
    t.file("rb.toml", &runbook(false));
    t.crash_after(7, &["run", "rb.toml", "--yes"]);
    let out = t.run(&["resume", "last", "--yes"]).success();
    assert!(out.said().contains("every step had run"), "{out:?}");
    assert_eq!(t.read("trail"), "run 1\nrun 2\nrun 3\n", "nothing ran twice");
    t.run(&["resume", "last", "--yes"]).code(5);

    let t = Runbook::new();
    t.file("rb.toml", &runbook(false));
    t.crash_after(7, &["run", "rb.toml", "--yes"]);
    t.run(&["rollback", "last", "--yes"]).success();
    assert_eq!(t.read("trail"), "run 1\nrun 2\nrun 3\nundo 3\nundo 2\nundo 1\n");
    t.run(&["rollback", "last", "--yes"]).code(5);
}

#[test]
fn a_crashed_run_can_be_rolled_back_instead_of_resumed() {
    let t = Runbook::new();
    t.file("rb.toml", &runbook(false));
    // After step 2 finished (event 5), before step 3 started.
    t.crash_after(5, &["run", "rb.toml", "--yes"]);
    t.file(
        "rb.toml",
        "[runbook]\nname = \"three\"\n# the file changed; the journal's commands are used\n",
    );
    t.run(&["rollback", "last", "--yes"]).success();
    assert_eq!(t.read("trail"), "run 1\nrun 2\nundo 2\nundo 1\n");
}

#[test]
fn resume_refuses_a_changed_runbook_and_a_finished_run() {
    let t = Runbook::new();
    t.file("rb.toml", &runbook(false));
    t.crash_after(3, &["run", "rb.toml", "--yes"]);
    t.file("rb.toml", &format!("{}\n# edited\n", runbook(false)));
    let out = t.run(&["resume", "last", "--yes"]).code(5);
    assert!(out.said().contains("changed since run"), "{out:?}");
    assert!(out.said().contains("runbook rollback"), "{out:?}");

    let t = Runbook::new();
    t.file("rb.toml", &runbook(false));
    t.run(&["run", "rb.toml", "--yes"]).success();
    let out = t.run(&["resume", "last", "--yes"]).code(5);
    assert!(out.said().contains("already finished"), "{out:?}");
}

#[test]
fn an_unwritable_state_directory_stops_before_any_step() {
    let t = Runbook::new();
    t.file("rb.toml", &runbook(false));
    // A path under a file can never be created, whoever runs the test (root ignores modes).
    let out = t.run(&["run", "rb.toml", "--yes", "--state-dir", "/dev/null/state"]).code(1);
    assert!(
        out.said().contains("cannot create the state directory /dev/null/state/runs"),
        "{out:?}"
    );
    assert!(out.said().contains("--state-dir or RUNBOOK_STATE_DIR"), "{out:?}");
    assert!(!t.path().join("trail").exists(), "no step ran");
}

#[test]
fn killed_after_a_step_failed_resume_rolls_back_unattended_and_never_skips_it() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        &runbook(false).replace("echo run 2 >> {{trail}}\"", "echo run 2 >> {{trail}} && exit 1\""),
    );
    // Event 5 is step 2's step_finished (failed); the process dies before any answer.
    t.crash_after(5, &["run", "rb.toml", "--yes"]);
    let out = t.run(&["resume", "last", "--yes"]).code(3);
    assert!(out.stdout.contains("Step 2 had failed"), "{out:?}");
    assert_eq!(
        t.read("trail"),
        "run 1\nrun 2\nundo 2\nundo 1\n",
        "step 3 never ran; 2 then 1 undone"
    );
}

const SECRET_UNDO: &str = r#"[runbook]
name = "secret-undo"

[vars]
token = { from_env = "DEPLOY_TOKEN", secret = true }

[[step]]
title = "apply with a token"
kind = "apply"
run = "touch {{runbook_dir}}/applied"
rollback = "test -n \"{{token}}\" && rm {{runbook_dir}}/applied && echo undone-$(printf %s \"{{token}}\" | wc -c) >> {{runbook_dir}}/trail"
verify_rollback = "test ! -e {{runbook_dir}}/applied"

[[step]]
title = "never reached"
kind = "check"
run = "true"
"#;

#[test]
fn rollback_of_a_past_run_gets_its_secrets_again_and_checks_verify_rollback() {
    let t = Runbook::new().env("DEPLOY_TOKEN", "tok-123");
    t.file("rb.toml", SECRET_UNDO);
    // After step 1 finished (event 3), before step 2 started.
    t.crash_after(3, &["run", "rb.toml", "--yes"]);
    let out = t.run(&["rollback", "last", "--yes"]).success();
    assert!(out.stdout.contains("verify_rollback passed"), "{out:?}");
    assert_eq!(t.read("trail"), "undone-7\n", "the rollback command got the 7-byte token");
    assert!(!out.said().contains("tok-123") && !out.stdout.contains("tok-123"));
}

#[test]
fn rollback_refuses_when_a_secret_it_needs_cannot_be_read_again() {
    let t = Runbook::new().env("DEPLOY_TOKEN", "tok-123");
    t.file("rb.toml", SECRET_UNDO);
    t.crash_after(3, &["run", "rb.toml", "--yes"]);
    std::fs::remove_file(t.path().join("rb.toml")).unwrap();
    let mut cmd = t.command(&["rollback", "last", "--yes"]);
    cmd.env_remove("DEPLOY_TOKEN");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("RUNBOOK_SECRET_TOKEN"), "{err}");
    assert!(t.path().join("applied").exists(), "nothing was rolled back");
    // Supplied by hand, it works.
    let out = t
        .command(&["rollback", "last", "--yes"])
        .env("RUNBOOK_SECRET_TOKEN", "tok-123")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!t.path().join("applied").exists());
}
