//! `runbook list [DIR]`: the runbooks of a folder, each with its description, steps,
//! environments and how its last run went.

use crate::support::Runbook;

fn runbook(name: &str, description: &str, run: &str, envs: &str) -> String {
    format!(
        "[runbook]\nname = \"{name}\"\ndescription = \"{description}\"\n{envs}\n\
         [[step]]\ntitle = \"one\"\nkind = \"check\"\nrun = \"{run}\"\n\n\
         [[step]]\ntitle = \"two\"\nkind = \"check\"\nrun = \"true\"\n"
    )
}

#[test]
fn list_shows_each_runbook_with_its_steps_envs_and_last_run() {
    let t = Runbook::new();
    t.file("runbooks/a.toml", &runbook("alpha", "Does a", "true", ""));
    let envs = "[env.staging]\n[env.production]\n";
    t.file("runbooks/b.toml", &runbook("beta", "Does b", "exit 1", envs));
    t.file("runbooks/notes.txt", "not a runbook");
    t.run(&["run", "runbooks/a.toml", "--yes"]).success();
    t.run(&["run", "runbooks/b.toml", "--env", "staging", "--yes"]).code(3);

    let out = t.run(&["list"]).success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "Runbooks in runbooks:", "{out:?}");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let alpha =
        format!("    alpha  2 steps  no envs             last: succeeded {today}    # Does a");
    let beta =
        format!("    beta   2 steps  production,staging  last: rolled_back {today}  # Does b");
    assert_eq!(lines[1..], [alpha.as_str(), beta.as_str()], "{}", out.stdout);

    let json: serde_json::Value = serde_json::from_str(&t.run(&["list", "--json"]).stdout).unwrap();
    assert_eq!(json[1]["name"], "beta");
    assert_eq!(json[1]["envs"], serde_json::json!(["production", "staging"]));
    assert_eq!(json[1]["steps"], 2);
    assert_eq!(json[1]["last_run"]["status"], "rolled_back");
    assert_eq!(json[0]["last_run"]["env"], serde_json::Value::Null);
}

#[test]
fn list_of_another_folder_says_which_files_are_not_valid_runbooks() {
    let t = Runbook::new();
    t.file("ops/good.toml", &runbook("good", "Fine", "true", ""));
    t.file("ops/bad.toml", "[runbook]\nname = \"bad\"\n");
    let out = t.run(&["list", "ops"]).code(2);
    assert!(out.stdout.contains("    bad.toml"), "{out:?}");
    assert!(out.stdout.contains("# invalid: 1 problem (runbook check)"), "{out:?}");
    assert!(out.stdout.contains("    good      2 steps  no envs  never run  # Fine"), "{out:?}");
}

#[test]
fn list_of_a_missing_folder_is_a_clear_error() {
    let out = Runbook::new().run(&["list"]).code(1);
    assert!(out.stderr.contains("cannot list runbooks (expected a folder of runbooks"), "{out:?}");
}
