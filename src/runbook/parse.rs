//! From TOML text to a checked `Runbook`: every problem in the file is collected, each with its
//! span, and the file is accepted only when there are none.

use std::collections::BTreeMap;
use std::path::Path;

use regex::Regex;
use sha2::{Digest, Sha256};
use toml::de::{DeTable, DeValue};

use super::diagnostic::{Diagnostic, Report, Span};
use super::fields::{Fields, Value, type_error};
use super::hosts;
use super::model::*;
use super::validate;

pub(crate) const TOP_KEYS: &[&str] =
    &["runbook", "vars", "env", "step", "lock", "store", "ssh", "rollout"];
pub(crate) const RUNBOOK_KEYS: &[&str] = &["name", "description", "owner"];
pub(crate) const ENV_KEYS: &[&str] = &["vars", "require_rehearsal", "hosts"];
pub(crate) const COMMON_STEP_KEYS: &[&str] = &[
    "title",
    "kind",
    "id",
    "owner",
    "expect",
    "rollback",
    "irreversible",
    "timeout",
    "retries",
    "cwd",
    "only_env",
    "verify_rollback",
    "on",
];
pub(crate) const EXPECT_KEYS: &[&str] = &["exit", "stdout", "note"];

/// Why a runbook could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read runbook {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{0}")]
    Invalid(Box<Report>),
}

/// Read and check a runbook file.
pub fn load(path: &Path) -> Result<Runbook, LoadError> {
    let source = std::fs::read_to_string(path)
        .map_err(|source| LoadError::Read { path: path.display().to_string(), source })?;
    parse(path, source)
}

/// Check runbook text; `path` is used for messages and `runbook_dir`.
pub fn parse(path: &Path, source: String) -> Result<Runbook, LoadError> {
    let mut d = Vec::new();
    let runbook = match DeTable::parse(&source) {
        Ok(doc) => read_document(path, &source, doc.get_ref(), doc.span(), &mut d),
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            d.push(Diagnostic::new(span, format!("not valid TOML: {}", e.message().trim())));
            None
        }
    };
    if let Some(rb) = &runbook {
        validate::check(rb, &mut d);
    }
    match runbook {
        Some(mut rb) if !d.iter().any(Diagnostic::is_error) => {
            rb.warnings = d;
            Ok(rb)
        }
        _ => Err(LoadError::Invalid(Box::new(Report::new(path, &source, d)))),
    }
}

fn read_document(
    path: &Path,
    source: &str,
    doc: &DeTable<'_>,
    span: Span,
    d: &mut Vec<Diagnostic>,
) -> Option<Runbook> {
    let mut top = Fields::new(doc, span, "the runbook file");
    let header = read_header(&mut top, d);
    let vars = top.table("vars", d).map(|mut t| read_vars(&mut t, d)).unwrap_or_default();
    let envs = top.table("env", d).map(|mut t| read_envs(&mut t, d)).unwrap_or_default();
    let steps = read_steps(&mut top, d);
    let lock_redis = top.table("lock", d).and_then(|t| read_redis_table(t, d));
    let store_redis = top.table("store", d).and_then(|t| read_redis_table(t, d));
    let ssh = top.table("ssh", d).map(|t| hosts::read_ssh(t, d)).unwrap_or_default();
    let rollout = top.table("rollout", d).map(|t| hosts::read_rollout(t, d)).unwrap_or_default();
    top.finish(TOP_KEYS, d);
    let (name, description, owner) = header?;
    Some(Runbook {
        path: path.to_path_buf(),
        hash: hex::encode(Sha256::digest(source.as_bytes())),
        source: source.to_string(),
        name,
        description,
        owner,
        vars,
        envs,
        steps,
        lock_redis,
        store_redis,
        ssh,
        rollout,
        warnings: Vec::new(),
    })
}

/// `[lock]` and `[store]`: `redis = "redis://..."`, and the TLS files of a `rediss://` one.
fn read_redis_table(mut t: Fields<'_, '_>, d: &mut Vec<Diagnostic>) -> Option<Template> {
    if !t.has("redis") {
        d.push(t.missing("redis", "a Redis URL such as \"redis://cache:6379/0\""));
    }
    let url = super::redis_keys::redis_with_tls(&mut t, d);
    t.finish(&["redis", "tls_ca", "tls_cert", "tls_key"], d);
    url
}

fn read_header(
    top: &mut Fields<'_, '_>,
    d: &mut Vec<Diagnostic>,
) -> Option<(String, String, Option<String>)> {
    let Some(mut t) = top.table("runbook", d) else {
        d.push(top.missing("runbook", "a [runbook] table with a name"));
        return None;
    };
    let name = t.string("name", d);
    if name.is_none() && !t.has("name") {
        d.push(t.missing("name", "a string"));
    }
    if let Some((text, span)) = &name
        && !is_good_name(text)
    {
        d.push(
            Diagnostic::new(span.clone(), format!("runbook name {text:?} is not a plain name"))
                .expected("letters, digits, '-', '_' and '.', starting with a letter or digit")
                .hint("the name names run folders, locks and the team store's keys"),
        );
    }
    let name = name.map(|(s, _)| s);
    let description = t.string("description", d).map(|(s, _)| s).unwrap_or_default();
    let owner = t.string("owner", d).map(|(s, _)| s);
    t.finish(RUNBOOK_KEYS, d);
    Some((name?, description, owner))
}

fn is_good_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn read_vars(table: &mut Fields<'_, '_>, d: &mut Vec<Diagnostic>) -> Vec<VarDef> {
    let mut vars = Vec::new();
    for (name, span, value) in table.entries() {
        if let Some(var) = read_var(&name, span, value, d) {
            vars.push(var);
        }
    }
    vars
}

pub(crate) const VAR_KEYS: &[&str] = &["value", "from_env", "from_file", "prompt", "secret"];

fn read_var(name: &str, _key: Span, value: &Value<'_>, d: &mut Vec<Diagnostic>) -> Option<VarDef> {
    let context = format!("variable `{name}`");
    let span = value.span();
    let plain =
        |source| Some(VarDef { name: name.to_string(), source, secret: false, span: span.clone() });
    match value.get_ref() {
        DeValue::String(s) => plain(VarSource::Value(s.to_string())),
        // Hex, octal and binary literals keep their value, not just their digits.
        DeValue::Integer(i) => plain(VarSource::Value(
            i64::from_str_radix(i.as_str(), i.radix())
                .map_or_else(|_| i.as_str().to_string(), |n| n.to_string()),
        )),
        DeValue::Boolean(b) => plain(VarSource::Value(b.to_string())),
        DeValue::Table(t) => {
            let mut f = Fields::new(t, value.span(), context);
            let source = read_var_source(&mut f, d);
            let secret = f.boolean("secret", d).unwrap_or(false);
            f.finish(VAR_KEYS, d);
            Some(VarDef { name: name.to_string(), source: source?, secret, span })
        }
        _ => {
            let expected = "a string, or a table with one of value, from_env, from_file, prompt";
            d.push(type_error(value, name, "[vars]", expected));
            None
        }
    }
}

fn read_var_source(f: &mut Fields<'_, '_>, d: &mut Vec<Diagnostic>) -> Option<VarSource> {
    let mut found = Vec::new();
    if let Some((v, _)) = f.string("value", d) {
        found.push(VarSource::Value(v));
    }
    if let Some((v, _)) = f.string("from_env", d) {
        found.push(VarSource::FromEnv(v));
    }
    if let Some((v, _)) = f.string("from_file", d) {
        found.push(VarSource::FromFile(v));
    }
    if let Some((v, _)) = f.string("prompt", d) {
        found.push(VarSource::Prompt(v));
    }
    if found.len() != 1 {
        let msg = format!("{} needs exactly one source", f.context);
        d.push(
            Diagnostic::new(f.span.clone(), msg)
                .expected("one of value, from_env, from_file, prompt"),
        );
        return None;
    }
    found.pop()
}

fn read_envs(table: &mut Fields<'_, '_>, d: &mut Vec<Diagnostic>) -> BTreeMap<String, EnvDef> {
    let mut envs = BTreeMap::new();
    for (name, _, value) in table.entries() {
        let DeValue::Table(t) = value.get_ref() else {
            d.push(type_error(value, &name, "[env]", "a table such as [env.staging]"));
            continue;
        };
        let mut f = Fields::new(t, value.span(), format!("[env.{name}]"));
        let vars = f.table("vars", d).map(|mut v| read_vars(&mut v, d)).unwrap_or_default();
        let require_rehearsal = f.table("require_rehearsal", d).and_then(|g| read_gate(g, d));
        let hosts = f.table("hosts", d).map(|mut h| hosts::read_groups(&mut h, d));
        f.finish(ENV_KEYS, d);
        envs.insert(name, EnvDef { vars, require_rehearsal, hosts: hosts.unwrap_or_default() });
    }
    envs
}

fn read_gate(mut g: Fields<'_, '_>, d: &mut Vec<Diagnostic>) -> Option<Gate> {
    let env = g.required_string("env", d);
    if !g.has("within") {
        d.push(g.missing("within", "a duration such as \"7d\""));
    }
    // A bad `within` is already reported; the gate is kept so its `env` is still checked.
    let within = g.duration("within", d).unwrap_or_default();
    g.finish(&["env", "within"], d);
    Some(Gate { env: env?, within })
}

fn read_steps(top: &mut Fields<'_, '_>, d: &mut Vec<Diagnostic>) -> Vec<Step> {
    let Some(value) = top.get("step") else {
        d.push(top.missing("step", "at least one [[step]]"));
        return Vec::new();
    };
    let DeValue::Array(items) = value.get_ref() else {
        d.push(type_error(value, "step", "the runbook file", "a list of [[step]] tables"));
        return Vec::new();
    };
    if items.is_empty() {
        d.push(
            Diagnostic::new(value.span(), "the runbook has no steps")
                .expected("at least one [[step]]"),
        );
    }
    let mut steps = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item.get_ref() {
            DeValue::Table(t) => {
                let f = Fields::new(t, item.span(), format!("step {}", i + 1));
                if let Some(step) = read_step(i + 1, f, d) {
                    steps.push(step);
                }
            }
            _ => d.push(type_error(item, "step", "the runbook file", "a [[step]] table")),
        }
    }
    steps
}

fn read_step(number: usize, mut f: Fields<'_, '_>, d: &mut Vec<Diagnostic>) -> Option<Step> {
    if !f.has("title") {
        d.push(f.missing("title", "a string"));
    }
    let title = f.template("title", d);
    let kind = read_kind(&mut f, d);
    let expect = f.table("expect", d).map(|e| read_expect(e, d)).unwrap_or_default();
    let only_env = f
        .strings("only_env", d)
        .map(|v| v.into_iter().map(|(text, span)| Template { text, span }).collect());
    let id = f.string("id", d);
    let step = Step {
        number,
        id_span: id.as_ref().map_or(f.span.clone(), |(_, span)| span.clone()),
        id: id.map(|(s, _)| s),
        title: title.unwrap_or(Template { text: String::new(), span: f.span.clone() }),
        kind: kind.unwrap_or(Kind::Check),
        owner: f.string("owner", d).map(|(s, _)| s),
        action: Action::Shell(Template { text: String::new(), span: 0..0 }),
        expect,
        rollback: f.template("rollback", d),
        irreversible: f.string("irreversible", d).map(|(s, _)| s),
        timeout: f.positive_duration("timeout", d),
        retries: f.count("retries", d).unwrap_or(0),
        cwd: f.template("cwd", d),
        only_env,
        verify_rollback: f.template("verify_rollback", d),
        fail_if: Vec::new(),
        on: f.string("on", d).map(|(text, span)| Named { text, span }),
        span: f.span.clone(),
    };
    let Some(kind) = kind else {
        // The kind is already reported; keep the step so ids and variables are still checked,
        // and accept any kind's keys rather than guess which were meant.
        let mut allowed = COMMON_STEP_KEYS.to_vec();
        allowed.extend(["run", "instructions"]);
        allowed.extend(
            super::kinds::FLUSH_KEYS
                .iter()
                .chain(super::kinds::WATCH_KEYS)
                .chain(super::kinds::MEASURE_KEYS),
        );
        allowed.sort_unstable();
        allowed.dedup();
        for key in &allowed {
            f.get(key);
        }
        f.finish(&allowed, d);
        return Some(step);
    };
    let (action, kind_keys) = read_action(kind, &mut f, d);
    let fail_if = match kind {
        Kind::Measure => super::kinds::read_fail_if(&mut f, d),
        _ => Vec::new(),
    };
    let mut step = step;
    if matches!(kind, Kind::Backup | Kind::Apply | Kind::Check) {
        let patterns = super::kinds::read_fail_if_like(&mut f, "capture", d);
        super::outputs::check_captures(&step, &patterns, d);
        step.expect.capture = super::outputs::compile(&patterns, d);
    }
    let allowed: Vec<&str> = COMMON_STEP_KEYS.iter().chain(kind_keys).copied().collect();
    f.finish(&allowed, d);
    Some(Step { action: action?, fail_if, ..step })
}

fn read_kind(f: &mut Fields<'_, '_>, d: &mut Vec<Diagnostic>) -> Option<Kind> {
    let names: Vec<&str> = Kind::ALL.iter().map(|(n, _)| *n).collect();
    if !f.has("kind") {
        d.push(f.missing("kind", &format!("one of {}", names.join(", "))));
        return None;
    }
    let (text, span) = f.string("kind", d)?;
    let kind = Kind::ALL.iter().find(|(n, _)| *n == text).map(|(_, k)| *k);
    if kind.is_none() {
        let mut diag = Diagnostic::new(span, format!("unknown kind {text:?} in {}", f.context))
            .expected(format!("one of {}", names.join(", ")));
        if let Some(near) = super::fields::nearest(&text, &names) {
            diag = diag.hint(format!("did you mean {near:?}?"));
        }
        d.push(diag);
    }
    kind
}

fn read_expect(mut e: Fields<'_, '_>, d: &mut Vec<Diagnostic>) -> ExpectDef {
    let exit = e.integer("exit", d).and_then(|(n, _)| i32::try_from(n).ok()).unwrap_or(0);
    let stdout = e.string("stdout", d).and_then(|(s, span)| read_output_match(s, span, d));
    let note = e.template("note", d);
    e.finish(EXPECT_KEYS, d);
    ExpectDef { exit, stdout, note, capture: Vec::new() }
}

/// `"/regex/"` is a regular expression; anything else is a substring to find in one line.
/// Placeholders are filled at plan time; here each stands for some literal text.
fn read_output_match(text: String, span: Span, d: &mut Vec<Diagnostic>) -> Option<Template> {
    if text.is_empty() || text == "//" {
        d.push(
            Diagnostic::new(span, "an empty `stdout` expectation matches any output")
                .expected("a text or /regex/ that the output must contain")
                .hint("leave `stdout` out to check only the exit code"),
        );
        return None;
    }
    if let Some(pattern) = regex_of(&text) {
        check_regex(pattern, &span, d)?;
    }
    Some(Template { text, span })
}

/// The pattern of a `"/regex/"` expectation; `None` for a plain text.
pub fn regex_of(text: &str) -> Option<&str> {
    text.strip_prefix('/').and_then(|t| t.strip_suffix('/'))
}

/// Compile `pattern` with its placeholders standing for literal text; a bad one is reported.
pub fn check_regex(pattern: &str, span: &Span, d: &mut Vec<Diagnostic>) -> Option<()> {
    match Regex::new(&super::template::regex_stand_in(pattern)) {
        Ok(_) => Some(()),
        Err(e) => {
            d.push(bad_regex(span.clone(), pattern, &e));
            None
        }
    }
}

pub fn bad_regex(span: Span, pattern: &str, e: &regex::Error) -> Diagnostic {
    let text = e.to_string();
    let last = text.lines().last().unwrap_or("").trim();
    let detail = last.strip_prefix("error: ").unwrap_or(last).to_string();
    Diagnostic::new(span, format!("invalid regular expression /{pattern}/: {detail}"))
        .expected("a regular expression (Rust regex syntax)")
        .hint("escape literal characters such as ( [ . * with a backslash")
}

/// Read the keys that belong to this kind; returns the action and the keys the kind accepts.
fn read_action(
    kind: Kind,
    f: &mut Fields<'_, '_>,
    d: &mut Vec<Diagnostic>,
) -> (Option<Action>, &'static [&'static str]) {
    let action = match kind {
        Kind::Backup | Kind::Apply | Kind::Check => read_shell(f, d),
        Kind::Manual => read_manual(f, d),
        Kind::Flush => super::kinds::read_flush(f, d),
        Kind::Watch => super::kinds::read_watch(f, d),
        Kind::Measure => super::kinds::read_measure(f, d),
    };
    (action, kind_keys(kind))
}

/// The keys a kind accepts beside the common ones (the JSON Schema reads them too).
pub(crate) fn kind_keys(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Backup | Kind::Apply | Kind::Check => &["run", "capture"],
        Kind::Manual => &["instructions"],
        Kind::Flush => super::kinds::FLUSH_KEYS,
        Kind::Watch => super::kinds::WATCH_KEYS,
        Kind::Measure => super::kinds::MEASURE_KEYS,
    }
}

fn read_shell(f: &mut Fields<'_, '_>, d: &mut Vec<Diagnostic>) -> Option<Action> {
    if !f.has("run") {
        d.push(f.missing("run", "the shell command to run"));
    }
    f.template("run", d).map(Action::Shell)
}

fn read_manual(f: &mut Fields<'_, '_>, d: &mut Vec<Diagnostic>) -> Option<Action> {
    if !f.has("instructions") {
        d.push(f.missing("instructions", "what the operator must do by hand"));
    }
    f.template("instructions", d).map(Action::Manual)
}
