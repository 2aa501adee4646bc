//! Output for editors and CI: `check --json` and `plan --json`.

use crate::support::Runbook;

#[test]
fn check_json_gives_each_problem_with_file_line_column_and_hint() {
    let t = Runbook::new();
    t.file(
        "good.toml",
        "[runbook]\nname = \"g\"\n[[step]]\ntitle = \"a\"\nkind = \"check\"\nrun = \"true\"\n",
    );
    t.file(
        "bad.toml",
        "[runbook]\nname = \"b\"\n[[step]]\ntitle = \"a\"\nkind = \"check\"\nrun = \"true\"\nrollbak = \"x\"\n",
    );
    let out = t.run(&["check", "--json", "good.toml", "bad.toml"]).code(2);
    assert_eq!(out.stderr, "", "JSON mode prints nothing else");
    let files: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(files[0]["ok"], true);
    assert_eq!(files[0]["steps"], 1);
    assert_eq!(files[1]["ok"], false);
    let d = &files[1]["diagnostics"][0];
    assert_eq!(d["file"], "bad.toml");
    assert_eq!((d["line"].as_u64(), d["column"].as_u64()), (Some(7), Some(1)));
    assert_eq!((d["end_line"].as_u64(), d["end_column"].as_u64()), (Some(7), Some(8)));
    assert_eq!(d["message"], "unknown key `rollbak` in step 1");
    assert_eq!(d["hint"], "did you mean `rollback`?");
    assert_eq!(d["severity"], "error");
}

#[test]
fn check_json_of_a_missing_file_is_a_diagnostic_too() {
    let out = Runbook::new().run(&["check", "--json", "nowhere.toml"]).code(2);
    let files: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(files[0]["diagnostics"][0]["file"], "nowhere.toml");
    assert!(files[0]["diagnostics"][0]["message"].as_str().unwrap().contains("nowhere.toml"));
}

#[test]
fn plan_json_has_every_step_with_its_command_rollback_and_failure_path() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        "[runbook]\nname = \"p\"\n[vars]\ntoken = { from_env = \"RB_TEST_TOKEN\", secret = true }\n\
         url = { from_env = \"RB_TEST_URL\" }\n\
         [[step]]\nid = \"first\"\ntitle = \"a\"\nkind = \"apply\"\nrun = \"echo \\\"{{token}}\\\"\"\nrollback = \"echo undo\"\n\
         [[step]]\ntitle = \"b\"\nkind = \"check\"\nrun = \"curl -s {{url}}\"\n",
    );
    let t = t
        .env("RB_TEST_TOKEN", "hunter2-secret")
        .env("RB_TEST_URL", "https://user:pw-in-url@example.com/");
    let out = t.run(&["plan", "rb.toml", "--json"]).success();
    assert!(!out.stdout.contains("hunter2-secret"), "{out:?}");
    assert!(!out.stdout.contains("pw-in-url"), "{out:?}");
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(plan["name"], "p");
    assert_eq!(plan["vars"]["token"], "***");
    assert!(plan["hash"].as_str().is_some_and(|h| h.len() == 64));
    let steps = plan["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["id"], "first");
    assert_eq!(steps[0]["command"], "echo \"${RUNBOOK_SECRET_TOKEN}\"", "as bash gets it");
    assert_eq!(steps[0]["rollback"], "echo undo");
    assert_eq!(steps[1]["kind"], "check");
    assert_eq!(steps[1]["on_failure"], "roll back 1");
}

#[test]
fn plan_of_a_runbook_whose_command_uses_a_secret_is_not_an_undefined_variable_error() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        "[runbook]\nname = \"p\"\n[vars]\ntoken = { value = \"hunter2\", secret = true }\n\
         [[step]]\ntitle = \"a\"\nkind = \"check\"\nrun = \"echo \\\"{{token}}\\\"\"\n",
    );
    let out = t.run(&["plan", "rb.toml"]).success();
    assert!(out.stdout.contains("do:       echo \"${RUNBOOK_SECRET_TOKEN}\""), "{out:?}");
    assert!(!out.stdout.contains("hunter2"), "{out:?}");
}
