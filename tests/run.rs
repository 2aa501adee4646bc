//! `runbook run --yes`: the success path, and a failure that rolls back in reverse order.

use crate::support::Runbook;

/// Five steps that each append to `trail`; step `fail_at` fails after it has partly applied.
fn five_steps(fail_at: usize) -> String {
    let mut rb = String::from(
        "[runbook]\nname = \"five\"\nowner = \"ops\"\n\n[vars]\ntrail = \"{{runbook_dir}}/trail\"\n",
    );
    for n in 1..=5 {
        let fail = if n == fail_at { " && exit 7" } else { "" };
        rb.push_str(&format!(
            "\n[[step]]\ntitle = \"step {n}\"\nkind = \"apply\"\nrun = \"echo run {n} >> {{{{trail}}}}{fail}\"\nrollback = \"echo undo {n} >> {{{{trail}}}}\"\n"
        ));
    }
    rb
}

#[test]
fn all_steps_run_in_order_and_the_journal_says_so() {
    let t = Runbook::new();
    t.file("five.toml", &five_steps(0));
    let out = t.run(&["run", "five.toml", "--yes", "--reason", "JIRA-1"]).success();
    assert_eq!(t.read("trail"), "run 1\nrun 2\nrun 3\nrun 4\nrun 5\n");
    assert!(out.stdout.contains("succeeded"), "{out:?}");

    let events = t.journal();
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"run_started"));
    assert_eq!(kinds.last(), Some(&"run_finished"));
    assert_eq!(kinds.iter().filter(|k| **k == "step_finished").count(), 5);
    let started = &events[0];
    assert_eq!(started["reason"], "JIRA-1");
    assert_eq!(started["operator"], "tester");
    assert_eq!(started["hash"].as_str().unwrap().len(), 64);
    assert_eq!(events.last().unwrap()["status"], "succeeded");
    let step3 = events.iter().find(|e| e["event"] == "step_started" && e["step"] == 3).unwrap();
    assert!(
        step3["work"]["run"].as_str().unwrap().ends_with("/trail"),
        "rendered command journalled: {step3}"
    );
}

#[test]
fn a_failure_at_step_3_of_5_rolls_back_3_2_1() {
    let t = Runbook::new();
    t.file("five.toml", &five_steps(3));
    let out = t.run(&["run", "five.toml", "--yes"]).code(3);
    assert_eq!(
        t.read("trail"),
        "run 1\nrun 2\nrun 3\nundo 3\nundo 2\nundo 1\n",
        "the failed step's own rollback first, then the applied ones newest first; {out:?}"
    );
    let events = t.journal();
    let undone: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "rollback_finished")
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    assert_eq!(undone, [3, 2, 1]);
    let finished = events.last().unwrap();
    assert_eq!(finished["status"], "rolled_back");
    assert_eq!(finished["still_applied"], serde_json::json!([]));
    assert!(out.stdout.contains("expected exit 0, got exit 7"), "{out:?}");
}

#[test]
fn expect_stdout_must_match_a_line() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        "[runbook]\nname = \"m\"\n[[step]]\ntitle = \"c\"\nkind = \"check\"\nrun = \"echo version 1.2\"\nexpect = { stdout = \"/version 2\\\\.\\\\d/\" }\n",
    );
    let out = t.run(&["run", "rb.toml", "--yes"]).code(3);
    assert!(out.stdout.contains("no line had output matching /version 2\\.\\d/"), "{out:?}");
    // The step's output streams to stdout, inside the record, on a line of its own.
    assert!(out.stdout.lines().any(|l| l == "version 1.2"), "{out:?}");
}

#[test]
fn plan_shows_rendered_steps_and_rollback_sequences_without_running() {
    let t = Runbook::new();
    t.file("five.toml", &five_steps(0));
    let out = t.run(&["plan", "five.toml"]).success();
    assert!(out.stdout.contains("3. step 3  [apply] owner: ops"), "{}", out.stdout);
    assert!(
        out.stdout.contains("on failure here: roll back 3, roll back 2, roll back 1"),
        "{}",
        out.stdout
    );
    assert!(!t.path().join("trail").exists(), "plan must run nothing");
}

#[test]
fn a_step_that_leaves_a_background_process_ends_when_bash_does() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        "[runbook]\nname = \"daemon\"\n[[step]]\ntitle = \"start a daemon\"\nkind = \"check\"\nrun = \"sleep 7.3131 & echo started\"\nexpect = { stdout = \"started\" }\n",
    );
    let started = std::time::Instant::now();
    t.run(&["run", "rb.toml", "--yes"]).success();
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
    let _ = std::process::Command::new("pkill").args(["-f", "sleep 7.3131"]).status();
}

#[test]
fn plan_shows_prompted_and_unset_variables_instead_of_failing() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        "[runbook]\nname = \"p\"\n[vars]\nversion = { prompt = \"Version to deploy\" }\nregion = { from_env = \"RUNBOOK_TEST_UNSET_REGION\" }\n[[step]]\ntitle = \"t\"\nkind = \"check\"\nrun = \"echo {{version}} {{region}}\"\n",
    );
    let out = t.run(&["plan", "rb.toml"]).success();
    assert!(
        out.stdout.contains(
            "echo '<asked at run time: Version to deploy>' '<$RUNBOOK_TEST_UNSET_REGION is not set>'"
        ),
        "{out:?}"
    );
    let run = t.run(&["run", "rb.toml", "--yes"]).code(1);
    assert!(run.stderr.contains("RUNBOOK_TEST_UNSET_REGION, which is not set"), "{run:?}");
}

#[test]
fn checks_and_measures_are_never_listed_as_still_applied() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        "[runbook]\nname = \"c\"\n[[step]]\ntitle = \"look\"\nkind = \"check\"\nrun = \"true\"\n\n[[step]]\ntitle = \"count\"\nkind = \"measure\"\nrun = \"echo n=1\"\ncapture = [\"n=(?P<n>\\\\d)\"]\n\n[[step]]\ntitle = \"fails\"\nkind = \"check\"\nrun = \"exit 1\"\n",
    );
    let out = t.run(&["run", "rb.toml", "--yes"]).code(3);
    assert!(
        out.stdout.contains("nothing to roll back: no step that ran changed anything"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("still applied"), "{out:?}");
    assert_eq!(t.journal().last().unwrap()["still_applied"], serde_json::json!([]));
}
