//! Values are data: whatever a variable holds reaches bash as exactly that value, in every
//! quoting context; `{{raw:name}}` is the one way to splice syntax, and `check` points at it.
//! Placeholders are filled wherever text is shown or compared.

use crate::support::Runbook;

/// Writes `message` through three quoting contexts into three files, and fails if anything
/// else (a `PWNED` file) appears.
const ECHO: &str = r#"[runbook]
name = "echo"

[vars]
message = "hello"

[[step]]
title = "write the message"
kind = "apply"
run = "printf %s {{message}} > {{runbook_dir}}/plain; printf %s \"{{message}}\" > {{runbook_dir}}/double; printf %s 'msg={{message}}' > {{runbook_dir}}/single"
rollback = "true"
"#;

const HOSTILE: &[&str] = &[
    "x; touch PWNED",
    "$(touch PWNED)",
    "`touch PWNED`",
    "a|tee PWNED",
    "it's",
    "two words",
    "\"quoted\" \\ back",
    "line one\nline two\ntouch PWNED",
    "*",
    "${HOME} $HOME ~ #not a comment",
    "tab\tand \x1b[31mred\x07 \u{202e}",
    "",
];

fn assert_untouched(t: &Runbook) {
    let stray: Vec<String> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("PWNED"))
        .collect();
    assert!(stray.is_empty(), "a value ran as a command: {stray:?}");
}

#[test]
fn hostile_var_values_reach_bash_as_exactly_that_value_in_every_quoting_context() {
    for value in HOSTILE {
        let t = Runbook::new();
        t.file("echo.toml", ECHO);
        let arg = format!("message={value}");
        let out = t.run(&["run", "echo.toml", "--yes", "--var", &arg]);
        assert_eq!(out.code, 0, "value {value:?}: {out:?}");
        assert_eq!(t.read("plain"), *value, "unquoted, value {value:?}");
        assert_eq!(t.read("double"), *value, "inside \"...\", value {value:?}");
        assert_eq!(t.read("single"), format!("msg={value}"), "inside '...', value {value:?}");
        assert_untouched(&t);
    }
}

#[test]
fn a_from_env_value_with_a_command_substitution_is_not_run() {
    let t = Runbook::new().env("RUNBOOK_TEST_MESSAGE", "$(touch PWNED)");
    t.file(
        "echo.toml",
        &ECHO.replace("message = \"hello\"", "message = { from_env = \"RUNBOOK_TEST_MESSAGE\" }"),
    );
    t.run(&["run", "echo.toml", "--yes"]).success();
    assert_eq!(t.read("plain"), "$(touch PWNED)");
    assert_untouched(&t);
}

#[test]
fn a_placeholder_inside_a_var_or_file_value_is_not_filled() {
    let t = Runbook::new();
    t.file("value.txt", "{{run_dir}} stays\n");
    let rb = ECHO.replace(
        "message = \"hello\"",
        "message = \"hello\"\nfrom_file = { from_file = \"value.txt\" }",
    );
    let rb = rb.replace("printf %s {{message}}", "printf %s {{from_file}}");
    t.file("echo.toml", &rb);
    t.run(&["run", "echo.toml", "--yes", "--var", "message={{run_dir}}"]).success();
    assert_eq!(t.read("double"), "{{run_dir}}", "a --var value is taken as it is");
    assert_eq!(t.read("plain"), "{{run_dir}} stays", "a from_file value is taken as it is");
}

#[test]
fn a_state_dir_with_a_space_does_not_make_the_rollback_delete_another_folder() {
    let t = Runbook::new();
    let state = t.path().join("ops state");
    t.file("ops/keep", "precious");
    t.file(
        "rb.toml",
        r#"[runbook]
name = "space"

[[step]]
title = "make the app folder, then fail"
kind = "apply"
run = "mkdir -p {{run_dir}}/app && false"
rollback = "rm -rf {{run_dir}}/app"
"#,
    );
    let t = t.env("RUNBOOK_STATE_DIR", state.to_str().unwrap());
    let out = t.run(&["run", "rb.toml", "--yes"]).code(3);
    assert_eq!(t.read("ops/keep"), "precious", "rm -rf reached a path outside the run; {out:?}");
    let runs: Vec<_> = std::fs::read_dir(state.join("runs")).unwrap().collect();
    assert_eq!(runs.len(), 1);
    let run_dir = runs[0].as_ref().unwrap().path();
    assert!(!run_dir.join("app").exists(), "the rollback removed the run's own app folder");
}

#[test]
fn values_work_as_an_author_expects_in_sed_cp_and_echo() {
    let t = Runbook::new();
    t.file("upload.conf", "max=10m\n");
    t.file("my file.txt", "data");
    t.file(
        "rb.toml",
        r#"[runbook]
name = "deploy"

[vars]
old = "10m"
new = "25m"
src = "{{runbook_dir}}/my file.txt"
dst = "{{runbook_dir}}/copy of it.txt"

[[step]]
title = "raise the limit"
kind = "apply"
run = "sed -i 's/max={{old}}/max={{new}}/' {{runbook_dir}}/upload.conf && cp {{src}} {{dst}} && echo \"deploying {{new}}\""
rollback = "true"
expect = { stdout = "deploying 25m" }
"#,
    );
    t.run(&["run", "rb.toml", "--yes"]).success();
    assert_eq!(t.read("upload.conf"), "max=25m\n");
    assert_eq!(t.read("copy of it.txt"), "data");
}

#[test]
fn a_here_document_gets_the_value_as_text_and_a_value_that_would_end_it_is_refused() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        "[runbook]\nname = \"doc\"\n[vars]\nv = \"x\"\n[[step]]\ntitle = \"write\"\nkind = \"apply\"\nrun = \"\"\"\ncat > {{runbook_dir}}/conf <<EOF\nmax={{v}}\nEOF\n\"\"\"\nrollback = \"true\"\n",
    );
    t.run(&["run", "rb.toml", "--yes", "--var", "v=$(touch PWNED) `x` \\n"]).success();
    assert_eq!(t.read("conf"), "max=$(touch PWNED) `x` \\n\n");
    let out = t.run(&["run", "rb.toml", "--yes", "--var", "v=a\nEOF\ntouch PWNED"]).code(1);
    assert!(out.stderr.contains("would end its here-document early"), "{out:?}");
    assert!(out.stderr.contains("nothing was run"), "{out:?}");
    assert_untouched(&t);
}

#[test]
fn a_value_used_as_arithmetic_must_be_a_whole_number() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        "[runbook]\nname = \"arith\"\n[vars]\nn = \"1\"\n[[step]]\ntitle = \"count\"\nkind = \"check\"\nrun = \"echo $(( {{n}} + 1 )) > {{runbook_dir}}/sum\"\n",
    );
    t.run(&["run", "rb.toml", "--yes", "--var", "n=41"]).success();
    assert_eq!(t.read("sum"), "42\n");
    let out = t.run(&["run", "rb.toml", "--yes", "--var", "n=a[$(touch PWNED)]"]).code(1);
    assert!(out.stderr.contains("is not a whole number"), "{out:?}");
    assert_untouched(&t);
}

#[test]
fn a_secret_stays_a_reference_double_quoted_so_it_never_splits_or_globs() {
    let t = Runbook::new().env("RUNBOOK_TEST_PW", "s3cret * two  spaces");
    t.file(
        "rb.toml",
        "[runbook]\nname = \"pw\"\n[vars]\npw = { from_env = \"RUNBOOK_TEST_PW\", secret = true }\n[[step]]\ntitle = \"use it\"\nkind = \"check\"\nrun = \"printf %s {{pw}} > {{runbook_dir}}/pw; printf %s 'pw={{pw}}' > {{runbook_dir}}/pw2\"\n",
    );
    let plan = t.run(&["plan", "rb.toml"]).success();
    assert!(
        plan.stdout.contains("printf %s \"${RUNBOOK_SECRET_PW}\" > ")
            && plan.stdout.contains("printf %s 'pw='\"${RUNBOOK_SECRET_PW}\"'' > "),
        "{plan:?}"
    );
    t.run(&["run", "rb.toml", "--yes"]).success();
    assert_eq!(t.read("pw"), "s3cret * two  spaces");
    assert_eq!(t.read("pw2"), "pw=s3cret * two  spaces");
}

#[test]
fn plan_prints_commands_exactly_as_bash_gets_them() {
    let t = Runbook::new();
    t.file("echo.toml", ECHO);
    let out = t.run(&["plan", "echo.toml", "--var", "message=it's here"]).success();
    let want = r#"printf %s 'it'\''s here' > "#;
    assert!(out.stdout.contains(want), "{out:?}");
    assert!(out.stdout.contains(r#"printf %s "it's here" > "#), "{out:?}");
    assert!(out.stdout.contains(r#"printf %s 'msg=''it'\''s here''' > "#), "{out:?}");
}

#[test]
fn check_warns_at_each_raw_placeholder_and_still_passes() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        "[runbook]\nname = \"raw\"\n[vars]\nflags = \"-n\"\n[[step]]\ntitle = \"t\"\nkind = \"check\"\nrun = \"echo {{raw:flags}} hi > {{runbook_dir}}/out\"\n",
    );
    let out = t.run(&["check", "rb.toml"]).success();
    assert!(
        out.stderr.contains("warning: `{{raw:flags}}` is spliced into the command as shell syntax"),
        "{out:?}"
    );
    assert!(out.stderr.contains("rb.toml:8:13"), "at its line and column; {out:?}");
    assert!(out.stdout.contains("1 warning"), "{out:?}");
    t.run(&["run", "rb.toml", "--yes"]).success();
    assert_eq!(t.read("out"), "hi", "the raw value was spliced as a flag");
}

#[test]
fn check_refuses_a_placeholder_where_no_quoting_is_sound() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        "[runbook]\nname = \"bad\"\n[vars]\nv = \"x\"\n[[step]]\ntitle = \"{{raw:v}}\"\nkind = \"check\"\nrun = \"echo `cat {{v}}` ${{v}}\"\n",
    );
    let out = t.run(&["check", "rb.toml"]).code(2);
    assert!(
        out.stderr.contains("a placeholder inside backquotes cannot be quoted safely"),
        "{out:?}"
    );
    assert!(out.stderr.contains("rb.toml:8:18"), "{out:?}");
    assert!(out.stderr.contains("right after `$`"), "{out:?}");
    assert!(out.stderr.contains("`raw:` has no effect on `v` here"), "{out:?}");
    assert!(out.stderr.contains("rb.toml:6:10"), "{out:?}");
    assert!(out.stderr.contains("3 problems"), "{out:?}");
}

const REHEARSAL: &str = r#"[runbook]
name = "limits"

[vars]
new_limit = "25"
version = "1.2(beta)+"

[env.staging.vars]
where = "staging"

[[step]]
title = "Raise the upload limit to {{new_limit}} MB"
kind = "apply"
run = "echo upload_limit_mb={{new_limit}}; echo version {{version}}"
expect = { stdout = "upload_limit_mb={{new_limit}}", note = "the app reads {{new_limit}}" }
rollback = "echo upload_limit_mb=10"

[[step]]
title = "Check the version"
kind = "check"
run = "echo version {{version}} ok"
expect = { stdout = "/^version {{version}} ok$/" }
"#;

const TELL: &str = r#"
[[step]]
title = "Tell {{where}}"
kind = "manual"
instructions = "Post 'limit now {{new_limit}} MB' in #{{where}}"
"#;

#[test]
fn a_rehearsal_with_placeholders_in_expectations_passes_and_plan_shows_them_filled() {
    let t = Runbook::new();
    t.file("limits.toml", REHEARSAL);
    t.file("tell.toml", &format!("{REHEARSAL}{TELL}"));
    t.run(&["check", "tell.toml"]).success();
    let plan = t.run(&["plan", "tell.toml", "--env", "staging"]).success();
    for filled in [
        "1. Raise the upload limit to 25 MB",
        "output containing \"upload_limit_mb=25\"; the app reads 25",
        r"output matching /^version 1\.2\(beta\)\+ ok$/",
        "3. Tell staging",
        "(by hand) Post 'limit now 25 MB' in #staging",
    ] {
        assert!(plan.stdout.contains(filled), "{filled:?} in {plan:?}");
    }
    assert!(!plan.stdout.contains("{{"), "{plan:?}");
    let out = t.run(&["rehearse", "limits.toml", "--env", "staging", "--yes"]);
    assert_eq!(out.code, 0, "{out:?}");
    let started = t.journal().into_iter().find(|e| e["event"] == "run_started").unwrap();
    assert_eq!(started["steps"][0]["title"], "Raise the upload limit to 25 MB");
}

#[test]
fn an_unknown_placeholder_in_an_expectation_is_an_error_at_its_line_and_column() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        "[runbook]\nname = \"x\"\n[[step]]\ntitle = \"t\"\nkind = \"check\"\nrun = \"true\"\nexpect = { stdout = \"/a{{nosuch}}+/\" }\n",
    );
    let out = t.run(&["check", "rb.toml"]).code(2);
    assert!(out.stderr.contains("unknown variable `nosuch`"), "{out:?}");
    assert!(out.stderr.contains("rb.toml:7:24"), "{out:?}");
    assert!(!out.stderr.contains("repetition"), "a placeholder is not a bad repetition; {out:?}");
}

#[test]
fn watch_patterns_match_a_placeholders_value_literally() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        r#"[runbook]
name = "w"

[vars]
code = "E.1"

[[step]]
title = "watch"
kind = "watch"
command = "echo 'error EX1'; sleep 3"
for = "1s"
fail_on = ["error {{code}}$"]
"#,
    );
    let plan = t.run(&["plan", "rb.toml"]).success();
    assert!(plan.stdout.contains(r"failing on error E\.1$"), "{plan:?}");
    let out = t.run(&["run", "rb.toml", "--yes"]);
    assert_eq!(out.code, 0, "`.` in the value is a dot, not any character; {out:?}");
}

#[test]
fn a_rehearsal_runs_rollback_and_verify_rollback_with_a_hostile_value_as_data() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        r#"[runbook]
name = "files"

[vars]
f = "{{runbook_dir}}/a file; touch PWNED *"

[env.staging.vars]
where = "staging"

[[step]]
title = "make the file"
kind = "apply"
run = "touch {{f}} && test -e \"{{f}}\""
rollback = "rm {{f}}"
verify_rollback = "test ! -e {{f}}"
"#,
    );
    let out = t.run(&["rehearse", "rb.toml", "--env", "staging", "--yes"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!t.path().join("a file; touch PWNED *").exists(), "the rollback removed it");
    assert_untouched(&t);
}

#[test]
fn check_json_lists_a_raw_placeholder_as_a_warning_of_a_valid_file() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        "[runbook]\nname = \"raw\"\n[vars]\nflags = \"-n\"\n[[step]]\ntitle = \"t\"\nkind = \"check\"\nrun = \"echo {{raw:flags}} hi\"\n",
    );
    let out = t.run(&["check", "--json", "rb.toml"]).success();
    let files: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(files[0]["ok"], true, "{out:?}");
    let d = &files[0]["diagnostics"][0];
    assert_eq!(d["severity"], "warning", "{out:?}");
    assert_eq!((d["line"].as_u64(), d["column"].as_u64()), (Some(8), Some(13)), "{out:?}");
}
