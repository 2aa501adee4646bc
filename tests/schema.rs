//! `runbook schema`: a JSON Schema of the runbook file that every example runbook passes and a
//! wrong one fails, so editors can trust it.

use crate::support::Runbook;

fn schema() -> jsonschema::Validator {
    let out = Runbook::new().run(&["schema"]).success();
    let schema: serde_json::Value = serde_json::from_str(&out.stdout).expect("schema is JSON");
    jsonschema::draft7::new(&schema).expect("a valid draft-07 schema")
}

fn as_json(toml_text: &str) -> serde_json::Value {
    let value: toml::Value = toml::from_str(toml_text).expect("TOML");
    serde_json::to_value(value).unwrap()
}

/// The problems the schema finds, as `path: message`.
fn problems(validator: &jsonschema::Validator, toml_text: &str) -> Vec<String> {
    let doc = as_json(toml_text);
    validator.iter_errors(&doc).map(|e| format!("{}: {e}", e.instance_path())).collect()
}

#[test]
fn every_example_runbook_passes_the_schema() {
    let validator = schema();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/runbooks");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(problems(&validator, &text), Vec::<String>::new(), "{}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 2, "the examples were found");
}

#[test]
fn a_runbook_using_every_kind_and_key_passes_the_schema() {
    let text = r#"
[runbook]
name = "all.kinds"
description = "d"
owner = "o"
[vars]
a = "x"
n = 3
b = true
s = { from_env = "S", secret = true }
[env.staging]
[env.production]
require_rehearsal = { env = "staging", within = "7d" }
[env.production.vars]
a = "y"
[lock]
redis = "redis://h:6379/0"
[store]
redis = "redis://h:6379/0"
[[step]]
id = "one"
title = "t"
kind = "apply"
owner = "p"
run = "true"
expect = { exit = 0, stdout = "/ok/", note = "n" }
rollback = "true"
timeout = "1h30m"
retries = 1
cwd = "/tmp"
only_env = ["production"]
verify_rollback = "true"
[[step]]
title = "m"
kind = "manual"
instructions = "do it"
[[step]]
title = "f"
kind = "flush"
redis = "redis://h:6379/0"
pattern = ["a:*", "b:*"]
max_keys = 10
backup = false
batch = 5
irreversible = "no backup"
[[step]]
title = "w"
kind = "watch"
file = "/var/log/x"
for = "2m"
fail_on = ["ERROR"]
max = 0
until = "done"
wait_for_file = true
[[step]]
title = "h"
kind = "measure"
http = "http://127.0.0.1/"
requests = 3
fail_if = ["error_rate > 0.01"]
"#;
    assert_eq!(problems(&schema(), text), Vec::<String>::new());
    let t = Runbook::new();
    t.file("all.toml", text);
    t.run(&["check", "all.toml"]).success();
}

#[test]
fn a_wrong_runbook_fails_the_schema_where_it_is_wrong() {
    let text = r#"
[runbook]
name = "has space"
[[step]]
title = "t"
kind = "aply"
run = "true"
[[step]]
title = "f"
kind = "flush"
redis = "redis://h/0"
pattern = "a:*"
for = "2m"
[[step]]
kind = "check"
run = "true"
timeout = "soon"
"#;
    let found = problems(&schema(), text).join("\n");
    for expected in [
        "/runbook/name",
        "/step/0/kind",
        "/step/1",
        "/step/2: \"title\" is a required",
        "/step/2/timeout",
    ] {
        assert!(found.contains(expected), "{expected:?} not in\n{found}");
    }
}
