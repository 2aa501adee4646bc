//! Rehearsals, the production gate, secrets and one run at a time, through the binary.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::Runbook;

const GATED: &str = r#"[runbook]
name = "gated"

[vars]
trail = "{{runbook_dir}}/trail"

[env.staging.vars]
where = "staging"

[env.production]
require_rehearsal = { env = "staging", within = "7d" }
[env.production.vars]
where = "production"

[[step]]
title = "first"
kind = "apply"
run = "echo run 1 {{where}} >> {{trail}} && touch {{runbook_dir}}/flag"
rollback = "echo undo 1 >> {{trail}} && rm -f {{runbook_dir}}/flag"
verify_rollback = "test ! -e {{runbook_dir}}/flag"

[[step]]
title = "second"
kind = "apply"
run = "echo run 2 {{where}} >> {{trail}}"
rollback = "echo undo 2 >> {{trail}}"

[[step]]
title = "staging only"
kind = "check"
only_env = ["staging"]
run = "echo check {{where}} >> {{trail}}"
"#;

#[test]
fn rehearse_runs_every_step_then_every_rollback_in_reverse() {
    let t = Runbook::new();
    t.file("rb.toml", GATED);
    let out = t.run(&["rehearse", "rb.toml", "--env", "staging", "--yes"]).success();
    assert_eq!(
        t.read("trail"),
        "run 1 staging\nrun 2 staging\ncheck staging\nundo 2\nundo 1\n",
        "{out:?}"
    );
    assert!(out.stdout.contains("verify_rollback passed"), "{out:?}");
    let events = t.journal();
    assert_eq!(events[0]["command"], "rehearse");
    assert_eq!(events.last().unwrap()["status"], "rehearsed");
}

#[test]
fn a_rollback_that_does_not_verify_fails_the_rehearsal() {
    let t = Runbook::new();
    t.file("rb.toml", &GATED.replace("&& rm -f {{runbook_dir}}/flag", ""));
    let out = t.run(&["rehearse", "rb.toml", "--env", "staging", "--yes"]).code(4);
    assert!(out.stdout.contains("verify_rollback FAILED"), "{out:?}");
    let gate = t.run(&["run", "rb.toml", "--env", "production", "--yes"]).code(5);
    assert!(gate.stderr.contains("never passed a rehearsal in staging"), "{gate:?}");
}

#[test]
fn the_gate_refuses_passes_after_a_rehearsal_and_refuses_again_after_a_change() {
    let t = Runbook::new();
    t.file("rb.toml", GATED);
    let refused = t.run(&["run", "rb.toml", "--env", "production", "--yes"]).code(5);
    assert!(
        refused.stderr.contains("production requires a passed rehearsal in staging within 7d"),
        "{refused:?}"
    );
    assert!(refused.stderr.contains("runbook rehearse rb.toml --env staging"), "{refused:?}");
    assert!(!t.path().join("trail").exists(), "nothing ran");

    t.run(&["rehearse", "rb.toml", "--env", "staging", "--yes"]).success();
    std::fs::remove_file(t.path().join("trail")).unwrap();
    t.run(&["run", "rb.toml", "--env", "production", "--yes"]).success();
    assert_eq!(
        t.read("trail"),
        "run 1 production\nrun 2 production\n",
        "only_env skipped the check"
    );

    t.file("rb.toml", &format!("{GATED}\n# a change\n"));
    let changed = t.run(&["run", "rb.toml", "--env", "production", "--yes"]).code(5);
    assert!(
        changed.stderr.contains("the runbook changed since its last rehearsal in staging"),
        "{changed:?}"
    );
}

#[test]
fn override_gate_needs_a_reason_and_is_recorded() {
    let t = Runbook::new();
    t.file("rb.toml", GATED);
    let usage = t.run(&["run", "rb.toml", "--env", "production", "--yes", "--override-gate"]);
    assert_eq!(usage.code, 64, "{usage:?}");
    t.run(&[
        "run",
        "rb.toml",
        "--env",
        "production",
        "--yes",
        "--override-gate",
        "--reason",
        "INC-42 hotfix",
    ])
    .success();
    let events = t.journal();
    let overridden = events.iter().find(|e| e["event"] == "gate_overridden").expect("journalled");
    assert_eq!(overridden["reason"], "INC-42 hotfix");
    assert!(overridden["refusal"].as_str().unwrap().contains("never passed"));
    let note = t.run(&["report", "last"]).success().stdout;
    assert!(note.contains("The rehearsal gate was overridden"), "{note}");
    assert!(note.contains("INC-42 hotfix"), "{note}");
    let show = t.run(&["show", "last"]).success().stdout;
    assert!(show.contains("OVERRIDDEN (INC-42 hotfix)"), "{show}");
}

#[test]
fn an_unknown_environment_is_a_clear_error() {
    let t = Runbook::new();
    t.file("rb.toml", GATED);
    let out = t.run(&["run", "rb.toml", "--env", "prod", "--yes"]).code(1);
    assert!(
        out.stderr.contains("unknown environment \"prod\"; expected one of: production, staging"),
        "{out:?}"
    );
    let out = t.run(&["run", "rb.toml", "--yes"]).code(1);
    assert!(out.stderr.contains("choose one with --env"), "{out:?}");
}

#[test]
fn a_secret_never_reaches_the_state_directory_the_note_or_the_process_list() {
    let secret = "tok-9f8e7d6c5b4a";
    let t = Runbook::new().env("DEPLOY_TOKEN", secret);
    t.file(
        "rb.toml",
        r#"[runbook]
name = "secret"

[vars]
token = { from_env = "DEPLOY_TOKEN", secret = true }

[[step]]
title = "use the token"
kind = "check"
run = "echo using {{token}} now; sleep 2; echo done"
expect = { stdout = "using *** now" }
"#,
    );
    let child = t
        .command(&["run", "rb.toml", "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut saw_step = false;
    while Instant::now() < deadline {
        for cmdline in all_cmdlines() {
            assert!(!cmdline.contains(secret), "secret on a command line: {cmdline}");
            saw_step |= cmdline.contains("RUNBOOK_SECRET_TOKEN");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(saw_step, "the step's command line refers to the variable, not the value");
    let printed = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(printed.contains("using *** now"), "{printed}");
    assert!(!printed.contains(secret));
    let report = t.run(&["report", "last"]).success();
    assert!(!report.stdout.contains(secret));
    let json = t.run(&["show", "last", "--json"]).success();
    assert!(!json.stdout.contains(secret));
    crate::support::assert_nowhere_below(&t.state_dir(), secret);
}

fn all_cmdlines() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .collect()
}

#[test]
fn two_concurrent_runs_one_runs_the_other_is_refused_naming_the_holder() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        "[runbook]\nname = \"one-at-a-time\"\n[[step]]\ntitle = \"hold\"\nkind = \"check\"\nrun = \"sleep 2\"\n",
    );
    let first = t
        .command(&["run", "rb.toml", "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = t.state_dir().join("locks/one-at-a-time@default.lock");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::metadata(&lock).map(|m| m.len()).unwrap_or(0) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = t.run(&["run", "rb.toml", "--yes"]).code(5);
    assert!(second.stderr.contains("already running in this environment: tester on"), "{second:?}");
    assert!(second.stderr.contains(&format!("pid {}", first.id())), "{second:?}");
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success());
    t.run(&["run", "rb.toml", "--yes"]).success();
}

#[test]
fn a_lock_left_by_a_killed_run_is_stale() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        "[runbook]\nname = \"stale\"\n[[step]]\ntitle = \"hold\"\nkind = \"check\"\nrun = \"sleep 30.4242\"\n",
    );
    let mut first = t
        .command(&["run", "rb.toml", "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = t.state_dir().join("locks/stale@default.lock");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::metadata(&lock).map(|m| m.len()).unwrap_or(0) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    t.file("rb.toml", "[runbook]\nname = \"stale\"\n[[step]]\ntitle = \"quick\"\nkind = \"check\"\nrun = \"true\"\n");
    let out = t.run(&["run", "rb.toml", "--yes"]).success();
    assert!(out.stdout.contains("died holding the lock; it was stale"), "{out:?}");
    let _ = std::process::Command::new("pkill").args(["-f", "sleep 30.4242"]).status();
}

#[test]
fn a_value_built_from_a_secret_is_masked_too() {
    let secret = "pw-4d3c2b1a";
    let t = Runbook::new().env("CACHE_PW", secret);
    t.file(
        "rb.toml",
        r#"[runbook]
name = "derived"

[vars]
pw = { from_env = "CACHE_PW", secret = true }
url = "redis://:{{pw}}@cache:6379/0"

[[step]]
title = "print the url"
kind = "check"
run = "echo connecting to {{url}}"
expect = { stdout = "connecting to ***" }
"#,
    );
    let out = t.run(&["run", "rb.toml", "--yes"]).success();
    assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret), "{out:?}");
    let events = t.journal();
    // A secret's value is never journalled, not even masked: only its name.
    assert!(events[0]["vars"].get("url").is_none(), "{}", events[0]);
    assert_eq!(events[0]["secrets"], serde_json::json!(["pw", "url"]));
    assert!(
        events[1]["work"]["run"].as_str().unwrap().contains("${RUNBOOK_SECRET_URL}"),
        "{}",
        events[1]
    );
    crate::support::assert_nowhere_below(&t.state_dir(), secret);
}

#[test]
fn a_variable_defined_only_for_another_environment_is_a_clear_error() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        "[runbook]\nname = \"envonly\"\n[env.staging]\n[env.production.vars]\ntoken = \"p\"\n[[step]]\ntitle = \"use it\"\nkind = \"check\"\nrun = \"echo {{token}} > {{runbook_dir}}/seen\"\n",
    );
    let out = t.run(&["run", "rb.toml", "--env", "staging", "--yes"]).code(1);
    assert!(out.stderr.contains("step 1 uses `token`, which is not defined in environment staging (only in [env.production.vars])"), "{out:?}");
    assert!(!t.path().join("seen").exists(), "nothing ran");
    let plan = t.run(&["plan", "rb.toml", "--env", "staging"]);
    assert_eq!(plan.code, 1, "{plan:?}");
    t.run(&["run", "rb.toml", "--env", "production", "--yes"]).success();
    assert_eq!(t.read("seen"), "p\n");
}
