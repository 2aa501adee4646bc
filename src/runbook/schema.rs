//! A JSON Schema (draft-07) of the runbook file, printed by `runbook schema`, so editors (taplo,
//! Even Better TOML) complete keys and flag mistakes as a runbook is typed. The key lists come
//! from the parser's own constants; a unit test fails when a key has no description here, so
//! the schema cannot silently fall behind the parser. `runbook check` stays the authority: the
//! schema cannot see unknown placeholders, bad regexes or the rest of validation.

use serde_json::{Map, Value, json};

use super::Kind;
use super::parse::{
    COMMON_STEP_KEYS, ENV_KEYS, EXPECT_KEYS, RUNBOOK_KEYS, TOP_KEYS, VAR_KEYS, kind_keys,
};

/// The schema of a whole runbook file.
pub fn schema() -> Value {
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://github.com/runbook/runbook/runbook.schema.json",
        "title": "runbook",
        "description": "A runbook: numbered steps with owners, expected results and rollbacks. `runbook check` validates the rest (placeholders, regexes).",
        "type": "object",
        "required": ["runbook", "step"],
        "properties": described(TOP_KEYS, top_key),
        "additionalProperties": false,
        "definitions": {
            "duration": {
                "type": "string",
                "pattern": "^([0-9]+(ms|s|m|h|d))+$",
                "description": "A duration: 500ms, 30s, 2m, 1h30m, 7d"
            },
            "strings": {
                "oneOf": [{ "type": "string" }, { "type": "array", "items": { "type": "string" } }]
            },
            "redis_table": {
                "type": "object",
                "required": ["redis"],
                "properties": {
                    "redis": { "type": "string", "description": "A Redis URL, e.g. redis://locks.internal:6379/0" },
                    "tls_ca": { "type": "string", "description": "rediss:// only: the CA file that signed the server's certificate (absolute path)" },
                    "tls_cert": { "type": "string", "description": "rediss:// only: a client certificate file, with tls_key" },
                    "tls_key": { "type": "string", "description": "rediss:// only: the client certificate's key file, with tls_cert" }
                },
                "additionalProperties": false
            },
            "vars": {
                "type": "object",
                "description": "Variables, used as {{name}} in commands",
                "additionalProperties": var()
            },
            "step": step()
        }
    })
}

/// An object's properties, one per key, each from `describe`.
fn described(keys: &[&str], describe: fn(&str) -> Value) -> Value {
    let map: Map<String, Value> = keys.iter().map(|k| (k.to_string(), describe(k))).collect();
    Value::Object(map)
}

fn top_key(key: &str) -> Value {
    match key {
        "runbook" => json!({
            "type": "object",
            "description": "The runbook's name, description and default owner",
            "required": ["name"],
            "properties": described(RUNBOOK_KEYS, runbook_key),
            "additionalProperties": false
        }),
        "vars" => json!({ "$ref": "#/definitions/vars" }),
        "env" => json!({
            "type": "object",
            "description": "Environments ([env.NAME]); when any is defined, --env is required",
            "additionalProperties": {
                "type": "object",
                "properties": described(ENV_KEYS, env_key),
                "additionalProperties": false
            }
        }),
        "step" => json!({
            "type": "array",
            "description": "The steps ([[step]]), numbered by position from 1",
            "minItems": 1,
            "items": { "$ref": "#/definitions/step" }
        }),
        "lock" => {
            json!({ "$ref": "#/definitions/redis_table", "description": "A team lock in Redis (SET NX with expiry)" })
        }
        "store" => {
            json!({ "$ref": "#/definitions/redis_table", "description": "A team store: every journal event also goes to a Redis stream" })
        }
        "ssh" => json!({
            "type": "object",
            "description": "How hosts are reached (the system OpenSSH client)",
            "properties": {
                "config": { "type": "string", "description": "An ssh_config passed as ssh -F" },
                "connect_timeout": { "$ref": "#/definitions/duration" },
                "keepalive": { "$ref": "#/definitions/duration" }
            },
            "additionalProperties": false
        }),
        "rollout" => {
            let amount = json!({ "oneOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^[0-9]{1,3}%$" }
            ] });
            json!({
                "type": "object",
                "description": "How steps `on` a group spread over its hosts",
                "properties": {
                    "serial": { "description": "Batch sizes, canary first", "oneOf": [amount.clone(), { "type": "array", "items": amount.clone() }] },
                    "max_fail": { "description": "Hosts that may fail in the whole run", "oneOf": [amount] },
                    "concurrency": { "type": "integer", "minimum": 1, "description": "Hosts at once within a batch" },
                    "rollback": { "enum": ["all", "failed"], "description": "Which hosts a rollback undoes" }
                },
                "additionalProperties": false
            })
        }
        _ => unknown(key),
    }
}

fn runbook_key(key: &str) -> Value {
    match key {
        "name" => json!({
            "type": "string",
            "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$",
            "description": "Names run folders, the lock and the team store's keys"
        }),
        "description" => {
            json!({ "type": "string", "description": "One line on what the runbook does" })
        }
        "owner" => {
            json!({ "type": "string", "description": "The default owner of steps that name none" })
        }
        _ => unknown(key),
    }
}

fn env_key(key: &str) -> Value {
    match key {
        "vars" => json!({ "$ref": "#/definitions/vars" }),
        "hosts" => json!({
            "type": "object",
            "description": "Groups of hosts: GROUP = [\"web-1\", \"deploy@10.0.0.12:2222\"]",
            "additionalProperties": { "type": "array", "items": { "type": "string" }, "minItems": 1 }
        }),
        "require_rehearsal" => json!({
            "type": "object",
            "description": "Refuse a run unless this revision passed a rehearsal in `env` within `within`",
            "required": ["env", "within"],
            "properties": {
                "env": { "type": "string" },
                "within": { "$ref": "#/definitions/duration" }
            },
            "additionalProperties": false
        }),
        _ => unknown(key),
    }
}

/// A variable: a plain value, or a table with exactly one source.
fn var() -> Value {
    let sources: Vec<Value> = ["value", "from_env", "from_file", "prompt"]
        .iter()
        .map(|s| json!({ "required": [s] }))
        .collect();
    json!({
        "oneOf": [
            { "type": ["string", "integer", "boolean"] },
            {
                "type": "object",
                "properties": described(VAR_KEYS, var_key),
                "additionalProperties": false,
                "oneOf": sources
            }
        ]
    })
}

fn var_key(key: &str) -> Value {
    match key {
        "value" => {
            json!({ "type": "string", "description": "The value, with placeholders filled in" })
        }
        "from_env" => {
            json!({ "type": "string", "description": "An environment variable read when the run starts" })
        }
        "from_file" => {
            json!({ "type": "string", "description": "A file's contents (relative to the runbook)" })
        }
        "prompt" => {
            json!({ "type": "string", "description": "Asked on the terminal when the run starts" })
        }
        "secret" => {
            json!({ "type": "boolean", "description": "Masked everywhere; passed to commands in an environment variable" })
        }
        _ => unknown(key),
    }
}

/// Every key any kind accepts, each kind limited to its own by `propertyNames`.
fn step() -> Value {
    let mut keys: Vec<&str> = COMMON_STEP_KEYS.to_vec();
    for (_, kind) in Kind::ALL {
        keys.extend(kind_keys(kind));
    }
    keys.sort_unstable();
    keys.dedup();
    let per_kind: Vec<Value> =
        Kind::ALL.iter().map(|(name, kind)| kind_rule(name, *kind)).collect();
    json!({
        "type": "object",
        "required": ["title", "kind"],
        "properties": described(&keys, step_key),
        "additionalProperties": false,
        "allOf": per_kind
    })
}

/// For one kind: the keys it accepts and the ones it needs.
fn kind_rule(name: &str, kind: Kind) -> Value {
    let allowed: Vec<&str> = COMMON_STEP_KEYS.iter().chain(kind_keys(kind)).copied().collect();
    let required: &[&str] = match kind {
        Kind::Backup | Kind::Apply | Kind::Check => &["run"],
        Kind::Manual => &["instructions"],
        Kind::Flush => &["redis", "pattern"],
        Kind::Watch => &["for"],
        Kind::Measure => &[],
    };
    json!({
        "if": { "properties": { "kind": { "const": name } }, "required": ["kind"] },
        "then": { "propertyNames": { "enum": allowed }, "required": required }
    })
}

fn step_key(key: &str) -> Value {
    let text = |d: &str| json!({ "type": "string", "description": d });
    let count = |d: &str| json!({ "type": "integer", "minimum": 0, "description": d });
    let duration = |d: &str| json!({ "$ref": "#/definitions/duration", "description": d });
    let strings = |d: &str| json!({ "$ref": "#/definitions/strings", "description": d });
    match key {
        "title" => text("What the step does, in words"),
        "kind" => {
            let names: Vec<&str> = Kind::ALL.iter().map(|(n, _)| *n).collect();
            json!({ "enum": names, "description": "What sort of step this is" })
        }
        "id" => text("A stable name, accepted wherever a step number is"),
        "owner" => text("Who answers for this step"),
        "expect" => json!({
            "type": "object",
            "description": "The expected result",
            "properties": described(EXPECT_KEYS, expect_key),
            "additionalProperties": false
        }),
        "rollback" => text("A shell command that undoes the step (safe to run twice)"),
        "irreversible" => text("Why this step cannot be undone"),
        "timeout" => duration("Stop the step's process group after this long"),
        "retries" => count("Automatic retries of a failing step"),
        "cwd" => text("The working directory of the command and its rollback"),
        "only_env" => strings("Run only in these environments"),
        "verify_rollback" => text("A shell command that must pass after the rollback"),
        "on" => text(
            "A group of [env.NAME.hosts]: the step runs on each of its hosts; {{host}} is the host",
        ),
        "run" => text("The shell command (bash -c)"),
        "instructions" => text("What the operator does by hand"),
        _ => kind_key(key),
    }
}

/// The keys of flush, watch and measure steps.
fn kind_key(key: &str) -> Value {
    let text = |d: &str| json!({ "type": "string", "description": d });
    let count = |d: &str| json!({ "type": "integer", "minimum": 0, "description": d });
    let strings = |d: &str| json!({ "$ref": "#/definitions/strings", "description": d });
    match key {
        "redis" => text("A Redis URL: redis://[user:password@]host:port/db or rediss://"),
        "pattern" => strings("Key pattern(s), e.g. page:upload:*; \"*\" alone is refused"),
        "max_keys" => count("Refuse before deleting anything when more keys match"),
        "backup" => {
            json!({ "type": "boolean", "description": "DUMP every key before it goes (default true)" })
        }
        "batch" => {
            json!({ "type": "integer", "minimum": 1, "description": "Keys per UNLINK pipeline" })
        }
        "file" => text("A log file to follow like tail -F"),
        "command" => text("A command whose output is watched"),
        "for" => json!({ "$ref": "#/definitions/duration", "description": "How long to watch" }),
        "fail_on" => strings("Regexes that fail the step"),
        "max" => count("Matches allowed before failing"),
        "until" => text("A regex that ends the watch early, successfully"),
        "wait_for_file" => {
            json!({ "type": "boolean", "description": "Wait (within `for`) for a file that does not exist yet instead of failing" })
        }
        "fail_if" => strings(
            "Conditions that fail the step, e.g. \"error_rate > 0.01\", \"latency_p95_ms > before * 1.2\"",
        ),
        "capture" => strings("Regexes with named groups; each group becomes a metric"),
        "http" => text("A URL to GET `requests` times"),
        "requests" => json!({ "type": "integer", "minimum": 1, "description": "How many GETs" }),
        "tls_ca" => text("rediss:// only: the CA file that signed the server's certificate"),
        "tls_cert" => text("rediss:// only: a client certificate file, with tls_key"),
        "tls_key" => text("rediss:// only: the client certificate's key file, with tls_cert"),
        _ => unknown(key),
    }
}

fn expect_key(key: &str) -> Value {
    match key {
        "exit" => json!({ "type": "integer", "description": "The expected exit code (default 0)" }),
        "stdout" => {
            json!({ "type": "string", "description": "Text, or /regex/, one output line must match" })
        }
        "note" => json!({ "type": "string", "description": "The expected result in words" }),
        _ => unknown(key),
    }
}

/// A key the parser accepts that this schema does not describe yet: accepted as anything, and
/// the unit test below fails until it is described.
fn unknown(key: &str) -> Value {
    json!({ "description": format!("{key} (not described in the schema yet)") })
}

#[cfg(test)]
mod tests {
    use super::super::kinds::{FLUSH_KEYS, MEASURE_KEYS, WATCH_KEYS};
    use super::*;

    #[test]
    fn every_key_the_parser_accepts_is_described() {
        let text = schema().to_string();
        assert!(!text.contains("not described in the schema yet"), "{text}");
    }

    #[test]
    fn the_step_schema_accepts_no_key_the_parser_refuses() {
        let schema = schema();
        let props = schema["definitions"]["step"]["properties"].as_object().unwrap();
        let all: Vec<&str> = COMMON_STEP_KEYS
            .iter()
            .chain(FLUSH_KEYS)
            .chain(WATCH_KEYS)
            .chain(MEASURE_KEYS)
            .chain(&["run", "instructions"])
            .copied()
            .collect();
        for key in props.keys() {
            assert!(all.contains(&key.as_str()), "{key}");
        }
    }
}
