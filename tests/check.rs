//! `runbook check`: every problem at once, each at its exact line and column with a caret,
//! what was expected and a hint; exit code 2.

use crate::support::Runbook;

/// The `--> file:line:col` locations in check's output, in order.
fn locations(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--> "))
        .map(|l| {
            l.rsplitn(3, ':')
                .take(2)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join(":")
        })
        .collect()
}

fn check(source: &str) -> (i32, String) {
    let t = Runbook::new();
    t.file("rb.toml", source);
    let out = t.run(&["check", "rb.toml"]);
    (out.code, out.stderr)
}

const HEADER: &str = "[runbook]\nname = \"t\"\n\n[vars]\ndir = \"/tmp\"\n";

#[test]
fn a_valid_runbook_passes() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        &format!("{HEADER}\n[[step]]\ntitle = \"a\"\nkind = \"check\"\nrun = \"ls {{{{dir}}}}\"\n"),
    );
    let out = t.run(&["check", "rb.toml"]).success();
    assert!(out.stdout.contains("ok: rb.toml (t, 1 step)"), "{out:?}");
}

#[test]
fn unknown_key_suggests_the_nearest() {
    let src = format!(
        "{HEADER}\n[[step]]\ntitle = \"a\"\nkind = \"check\"\nrun = \"true\"\nrollbak = \"x\"\n"
    );
    let (code, err) = check(&src);
    assert_eq!(code, 2);
    assert_eq!(locations(&err), ["11:1"]);
    assert!(err.contains("unknown key `rollbak` in step 1"), "{err}");
    assert!(err.contains("did you mean `rollback`?"), "{err}");
    assert!(err.contains("11 | rollbak = \"x\"\n   | ^^^^^^^ expected one of:"), "{err}");
}

#[test]
fn unknown_variable_points_inside_the_string() {
    let src = format!(
        "{HEADER}\n[[step]]\ntitle = \"a\"\nkind = \"check\"\nrun = \"ls {{{{dri}}}}/x\"\n"
    );
    let (code, err) = check(&src);
    assert_eq!(code, 2);
    assert_eq!(locations(&err), ["10:11"]);
    assert!(err.contains("unknown variable `dri`"), "{err}");
    assert!(err.contains("^^^^^^^ expected a variable"), "{err}");
    assert!(err.contains("did you mean `dir`?"), "{err}");
}

#[test]
fn apply_without_rollback_or_irreversible() {
    let src = format!("{HEADER}\n[[step]]\ntitle = \"a\"\nkind = \"apply\"\nrun = \"true\"\n");
    let (code, err) = check(&src);
    assert_eq!(code, 2);
    assert_eq!(locations(&err), ["7:1"]);
    assert!(err.contains("step 1 is an apply step with no way back"), "{err}");
    assert!(
        err.contains("irreversible = \\\"why\\\"") || err.contains("irreversible = \"why\""),
        "{err}"
    );

    let ok = format!(
        "{HEADER}\n[[step]]\ntitle = \"a\"\nkind = \"apply\"\nrun = \"true\"\nirreversible = \"drops a table\"\n"
    );
    assert_eq!(check(&ok).0, 0);
}

#[test]
fn duplicate_ids_bad_durations_and_regexes_all_at_once() {
    let src = format!(
        "{HEADER}\n[[step]]\nid = \"x\"\ntitle = \"a\"\nkind = \"check\"\nrun = \"true\"\ntimeout = \"30 seconds\"\n\n[[step]]\nid = \"x\"\ntitle = \"b\"\nkind = \"check\"\nrun = \"true\"\nexpect = {{ stdout = \"/(open/\" }}\n"
    );
    let (code, err) = check(&src);
    assert_eq!(code, 2);
    assert_eq!(locations(&err), ["12:11", "15:6", "19:21"], "{err}");
    assert!(err.contains("not a duration: \"30 seconds\""), "{err}");
    assert!(err.contains("duplicate id \"x\" in step 2"), "{err}");
    assert!(err.contains("step 1 already has this id"), "{err}");
    assert!(err.contains("invalid regular expression /(open/"), "{err}");
    assert!(err.contains("3 problems"), "{err}");
}

#[test]
fn unknown_kind_and_missing_fields() {
    let src = format!(
        "{HEADER}\n[[step]]\ntitle = \"a\"\nkind = \"chek\"\nrun = \"true\"\n\n[[step]]\nkind = \"check\"\n"
    );
    let (code, err) = check(&src);
    assert_eq!(code, 2);
    assert!(err.contains("unknown kind \"chek\" in step 1"), "{err}");
    assert!(err.contains("did you mean \"check\"?"), "{err}");
    assert!(err.contains("step 2 has no `title`"), "{err}");
    assert!(err.contains("step 2 has no `run`"), "{err}");
    assert_eq!(locations(&err)[0], "9:8");
}

#[test]
fn broken_toml_is_reported_at_its_position() {
    let (code, err) = check("[runbook]\nname = \"t\"\n\n[[step]]\ntitle = \"a\nkind = \"check\"\n");
    assert_eq!(code, 2);
    assert!(err.contains("not valid TOML"), "{err}");
    assert_eq!(locations(&err).len(), 1);
    assert!(locations(&err)[0].starts_with("5:"), "{err}");
}

#[test]
fn every_file_is_checked_and_a_missing_file_is_clear() {
    let t = Runbook::new();
    t.file(
        "good.toml",
        "[runbook]\nname = \"g\"\n[[step]]\ntitle = \"a\"\nkind = \"check\"\nrun = \"true\"\n",
    );
    let out = t.run(&["check", "good.toml", "missing.toml"]);
    assert_eq!(out.code, 2);
    assert!(out.stdout.contains("ok: good.toml"));
    assert!(out.stderr.contains("cannot read runbook missing.toml"), "{out:?}");
}

#[test]
fn examples_in_the_repository_are_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/runbooks");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let t = Runbook::new();
            t.run(&["check", path.to_str().unwrap()]).success();
        }
    }
}

#[test]
fn variable_names_that_differ_only_in_case_are_refused() {
    let src = "[runbook]\nname = \"t\"\n\n[vars]\ntoken = { from_env = \"A\", secret = true }\nTOKEN = \"x\"\n\n[[step]]\ntitle = \"a\"\nkind = \"check\"\nrun = \"true\"\n";
    let (code, err) = check(src);
    assert_eq!(code, 2);
    assert!(err.contains("variables `token` and `TOKEN` differ only in case"), "{err}");
    assert_eq!(locations(&err), ["6:9"], "{err}");
}

#[test]
fn an_empty_list_of_steps_is_an_error_not_a_crash() {
    let (code, err) = check("step = []\n[runbook]\nname = \"e\"\n");
    assert_eq!(code, 2);
    assert!(err.contains("the runbook has no steps"), "{err}");
    assert_eq!(locations(&err), ["1:8"], "{err}");
    let t = Runbook::new();
    t.file("rb.toml", "step = []\n[runbook]\nname = \"e\"\n");
    let out = t.run(&["run", "rb.toml", "--yes"]);
    assert_eq!(out.code, 2, "{out:?}");
}

#[test]
fn a_bad_gate_and_an_unknown_kind_are_reported_with_everything_else() {
    let src = "[runbook]\nname = \"x\"\n[env.staging]\n[env.production]\nrequire_rehearsal = { env = \"stagin\", within = \"7 days\" }\n[[step]]\ntitle = \"t\"\nkind = \"aply\"\nrun = \"true\"\n";
    let (code, err) = check(src);
    assert_eq!(code, 2);
    assert_eq!(locations(&err), ["5:29", "5:48", "8:8"], "{err}");
    assert!(!err.contains("unknown key `run`"), "a known key of some kind is not reported: {err}");
}

#[test]
fn an_unsafe_name_and_an_empty_stdout_expectation_are_refused() {
    let (code, err) = check(
        "[runbook]\nname = \"../../escape me\"\n[[step]]\ntitle = \"a\"\nkind = \"check\"\nrun = \"true\"\nexpect = { stdout = \"\" }\n",
    );
    assert_eq!(code, 2);
    assert!(err.contains("runbook name \"../../escape me\" is not a plain name"), "{err}");
    assert!(err.contains("an empty `stdout` expectation matches any output"), "{err}");
    assert_eq!(locations(&err), ["2:8", "7:21"], "{err}");
}
