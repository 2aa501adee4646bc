//! `runbook history`: filters, and the index kept beside the runs, which must always agree with
//! the journals (it is rebuilt when missing, damaged or behind).

use crate::support::Runbook;

fn runbook(name: &str, second_step: &str) -> String {
    format!(
        "[runbook]\nname = \"{name}\"\n[env.staging]\n[env.production]\n\n\
         [[step]]\ntitle = \"one\"\nkind = \"apply\"\nrun = \"true\"\n\
         rollback = \"test -e {{{{runbook_dir}}}}/fixed\"\n\n\
         [[step]]\ntitle = \"two\"\nkind = \"check\"\nrun = \"{second_step}\"\n"
    )
}

/// The ids and statuses `history --json` lists for these arguments.
fn listed(t: &Runbook, args: &[&str]) -> Vec<(String, String)> {
    let mut all = vec!["history", "--json"];
    all.extend(args);
    let out = t.run(&all).success();
    let runs: serde_json::Value = serde_json::from_str(&out.stdout).expect("history --json");
    runs.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["runbook"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

fn three_runs() -> Runbook {
    let t = Runbook::new();
    t.file("ok.toml", &runbook("good", "true"));
    t.file("fails.toml", &runbook("bad", "exit 1"));
    t.file("fixed", "");
    t.run(&["run", "ok.toml", "--env", "staging", "--yes"]).success();
    t.run(&["run", "fails.toml", "--env", "production", "--yes"]).code(3);
    t.run(&["run", "ok.toml", "--env", "production", "--yes"]).success();
    t
}

#[test]
fn history_filters_by_runbook_env_status_and_age() {
    let t = three_runs();
    let good = || ("good".to_string(), "succeeded".to_string());
    let bad = || ("bad".to_string(), "rolled_back".to_string());
    assert_eq!(listed(&t, &[]), [good(), bad(), good()]);
    assert_eq!(listed(&t, &["--runbook", "good"]), [good(), good()]);
    assert_eq!(listed(&t, &["--env", "production"]), [good(), bad()]);
    assert_eq!(listed(&t, &["--status", "rolled_back"]), [bad()]);
    assert_eq!(listed(&t, &["--runbook", "good", "--env", "staging", "--since", "1h"]), [good()]);
    assert_eq!(listed(&t, &["--since", "7d", "--limit", "1"]), [good()]);
    let none = t.run(&["history", "--runbook", "nope"]).success();
    assert!(none.stdout.starts_with("no runs match in "), "{none:?}");
}

#[test]
fn history_refuses_a_bad_status_or_duration_and_says_what_it_expected() {
    let t = Runbook::new();
    let out = t.run(&["history", "--status", "done"]).code(64);
    assert!(out.stderr.contains("possible values: succeeded, rehearsed, rolled_back"), "{out:?}");
    let out = t.run(&["history", "--since", "a week"]).code(1);
    assert!(
        out.stderr.contains("--since \"a week\" is not a duration (expected e.g. 90m, 24h, 7d)"),
        "{out:?}"
    );
}

#[test]
fn the_index_is_built_on_first_use_and_rebuilt_when_missing_or_damaged() {
    let t = three_runs();
    let index = t.state_dir().join("history.index");
    let first = t.run(&["history"]).success().stdout;
    assert!(index.exists(), "history wrote its index");
    std::fs::remove_file(&index).unwrap();
    assert_eq!(t.run(&["history"]).success().stdout, first, "rebuilt from the journals");
    std::fs::write(&index, "runbook-history-index 1\ngarbage\tline\n\u{0}\n").unwrap();
    assert_eq!(t.run(&["history"]).success().stdout, first, "a damaged index is not believed");
    std::fs::write(&index, "something else entirely\n").unwrap();
    assert_eq!(t.run(&["history"]).success().stdout, first, "a foreign index is replaced");
}

#[test]
fn the_index_follows_new_and_deleted_runs() {
    let t = three_runs();
    assert_eq!(listed(&t, &[]).len(), 3);
    t.run(&["run", "fails.toml", "--env", "staging", "--yes"]).code(3);
    assert_eq!(listed(&t, &[]).len(), 4, "a run made after the index is listed");
    let newest = t.last_run_id();
    std::fs::remove_dir_all(t.state_dir().join("runs").join(newest)).unwrap();
    assert_eq!(listed(&t, &[]).len(), 3, "a deleted run is not listed");
}

#[test]
fn a_rolled_back_run_is_not_listed_with_its_old_status_from_the_index() {
    let t = Runbook::new();
    t.file("fails.toml", &runbook("bad", "exit 1"));
    // No `fixed` file: the rollback of step 1 fails.
    t.run(&["run", "fails.toml", "--env", "staging", "--yes"]).code(4);
    assert_eq!(listed(&t, &[]), [("bad".into(), "rollback_failed".into())]);
    t.file("fixed", "");
    t.run(&["rollback", "last", "--yes"]).success();
    assert_eq!(listed(&t, &[]), [("bad".into(), "rolled_back".into())]);
    assert_eq!(listed(&t, &["--status", "rollback_failed"]), []);
}
