//! Checks that need the whole runbook: variables that exist, ids that are unique, and steps that
//! change something carrying a way back.

use std::collections::{BTreeMap, BTreeSet};

use super::diagnostic::Diagnostic;
use super::fields::nearest;
use super::model::*;
use super::template::{Placeholder, is_valid_name, locate, placeholders};

/// Variables every run defines.
pub const BUILTINS: &[&str] = &["run_id", "run_dir", "runbook_dir", "env", "operator", "now"];

pub fn check(rb: &Runbook, d: &mut Vec<Diagnostic>) {
    check_variables(rb, d);
    check_placeholder_spots(rb, d);
    check_name_case(rb, d);
    check_ids(rb, d);
    check_rollbacks(rb, d);
    check_env_names(rb, d);
    super::measure_check::check(rb, d);
    super::outputs::check(rb, d);
    check_secret_literals(rb, d);
    super::hosts::check(rb, d);
}

fn declared_names(rb: &Runbook) -> BTreeSet<&str> {
    let env_vars = rb.envs.values().flat_map(|e| e.vars.iter());
    let mut names: BTreeSet<&str> =
        rb.vars.iter().chain(env_vars).map(|v| v.name.as_str()).collect();
    names.extend(BUILTINS);
    // The host a step `on` a group runs on; its use elsewhere is reported by hosts::check.
    names.insert("host");
    names
}

/// The values written in the runbook (`from_env`, `from_file` and `--var` values are never
/// filled, so they hold no placeholders).
fn var_templates(rb: &Runbook) -> Vec<Template> {
    let env_vars = rb.envs.values().flat_map(|e| e.vars.iter());
    rb.vars
        .iter()
        .chain(env_vars)
        .filter_map(|v| match &v.source {
            VarSource::Value(text) => Some(Template { text: text.clone(), span: v.span.clone() }),
            _ => None,
        })
        .collect()
}

/// Every template in the runbook: variable values, then each step's texts.
fn templates(rb: &Runbook) -> Vec<Template> {
    let mut out = var_templates(rb);
    for step in &rb.steps {
        out.extend(step_templates(step).into_iter().cloned());
    }
    out.extend(rb.lock_redis.iter().chain(&rb.store_redis).cloned());
    out
}

/// Every text of a step that may hold placeholders.
pub fn step_templates(step: &Step) -> Vec<&Template> {
    let mut out: Vec<&Template> = vec![&step.title];
    out.extend([&step.expect.stdout, &step.expect.note, &step.cwd].into_iter().flatten());
    out.extend(shell_templates(step));
    let regex: Vec<&Template> =
        regex_templates(step).into_iter().filter(|t| !out.iter().any(|o| same(o, t))).collect();
    out.extend(regex);
    match &step.action {
        Action::Manual(t) => out.push(t),
        Action::Flush(f) => {
            out.push(&f.redis);
            out.extend(&f.patterns);
        }
        Action::Watch(WatchDef { source: WatchSourceDef::File(t), .. }) => out.push(t),
        Action::Measure(MeasureDef::Http { url, .. }) => out.push(url),
        Action::Measure(MeasureDef::Redis { url, pattern }) => {
            out.push(url);
            out.extend(pattern);
        }
        _ => {}
    }
    out
}

fn same(a: &Template, b: &Template) -> bool {
    std::ptr::eq(a, b)
}

/// The texts of a step that bash runs: each placeholder's value is quoted for where it sits.
pub fn shell_templates(step: &Step) -> Vec<&Template> {
    let mut out: Vec<&Template> =
        [&step.rollback, &step.verify_rollback].into_iter().flatten().collect();
    match &step.action {
        Action::Shell(t)
        | Action::Watch(WatchDef { source: WatchSourceDef::Command(t), .. })
        | Action::Measure(MeasureDef::Command { run: t, .. }) => out.push(t),
        _ => {}
    }
    out
}

/// The regular expressions of a step: each placeholder's value is matched literally.
pub fn regex_templates(step: &Step) -> Vec<&Template> {
    let mut out: Vec<&Template> = Vec::new();
    out.extend(step.expect.stdout.iter().filter(|t| super::parse::regex_of(&t.text).is_some()));
    match &step.action {
        Action::Watch(w) => out.extend(w.fail_on.iter().chain(&w.until)),
        Action::Measure(MeasureDef::Command { patterns, .. }) => out.extend(patterns),
        _ => {}
    }
    out
}

fn check_variables(rb: &Runbook, d: &mut Vec<Diagnostic>) {
    let names = declared_names(rb);
    let candidates: Vec<&str> = names.iter().copied().collect();
    for t in templates(rb) {
        let found = match placeholders(&t.text) {
            Ok(found) => found,
            Err(at) => {
                let span = locate(&rb.source, &t, &t.text[at..]);
                d.push(
                    Diagnostic::new(span, "`{{` is never closed")
                        .expected("`{{name}}`")
                        .hint("close the placeholder with `}}`"),
                );
                continue;
            }
        };
        // `{{steps.ID.NAME}}` is a step output, checked by `outputs`.
        let unknown = |p: &&Placeholder<'_>| {
            !names.contains(p.name) && super::outputs::parse_ref(p.name).is_none()
        };
        for p in found.iter().filter(unknown) {
            let span = locate(&rb.source, &t, &t.text[p.range.clone()]);
            let mut diag = Diagnostic::new(span, format!("unknown variable `{}`", p.name))
                .expected("a variable from [vars], [env.NAME.vars] or a built-in");
            diag = match nearest(p.name, &candidates) {
                Some(near) => diag.hint(format!("did you mean `{near}`?")),
                None if !is_valid_name(p.name) => diag.hint("names are letters, digits and _"),
                None => diag
                    .hint(format!("declare it in [vars]; built-ins are {}", BUILTINS.join(", "))),
            };
            d.push(diag);
        }
    }
}

/// In a command, a placeholder must sit where its value can be quoted as data (not in backquotes,
/// not right after `\` or `$`), and each `{{raw:name}}` is pointed out. In a regex, a raw one is
/// spliced as regex syntax and pointed out too; anywhere else `raw:` means nothing, so it is an
/// error rather than a false promise.
fn check_placeholder_spots(rb: &Runbook, d: &mut Vec<Diagnostic>) {
    for step in &rb.steps {
        let shell = shell_templates(step);
        let regex = regex_templates(step);
        for t in &shell {
            check_shell_spots(rb, t, d);
        }
        for t in &regex {
            for p in raw_ones(t) {
                let span = locate(&rb.source, t, &t.text[p.range.clone()]);
                let msg = format!("`{{{{raw:{}}}}}` is spliced into the regex as syntax", p.name);
                d.push(Diagnostic::warning(span, msg).hint(
                    "its characters keep their regex meaning; write {{name}} to match it literally",
                ));
            }
        }
        let elsewhere = step_templates(step)
            .into_iter()
            .filter(|t| !shell.iter().chain(&regex).any(|o| same(o, t)));
        for t in elsewhere {
            raw_without_effect(rb, t, d);
        }
    }
    let outside_steps =
        var_templates(rb).into_iter().chain(rb.lock_redis.iter().chain(&rb.store_redis).cloned());
    for t in outside_steps {
        raw_without_effect(rb, &t, d);
    }
}

fn raw_ones(t: &Template) -> Vec<Placeholder<'_>> {
    placeholders(&t.text).unwrap_or_default().into_iter().filter(|p| p.raw).collect()
}

fn check_shell_spots(rb: &Runbook, t: &Template, d: &mut Vec<Diagnostic>) {
    let Ok(found) = placeholders(&t.text) else { return };
    let spots = super::shell::spots(&t.text, &found);
    for (p, spot) in found.iter().zip(spots) {
        let span = locate(&rb.source, t, &t.text[p.range.clone()]);
        if p.raw {
            let msg =
                format!("`{{{{raw:{}}}}}` is spliced into the command as shell syntax", p.name);
            d.push(
                Diagnostic::warning(span, msg).hint(
                    "its value can run commands; write {{name}} to pass it as one quoted word",
                ),
            );
        } else if let Err(m) = spot {
            let (what, hint) = m.explain();
            d.push(
                Diagnostic::new(span, what)
                    .expected("a placeholder where its value can be quoted as data")
                    .hint(hint),
            );
        }
    }
}

fn raw_without_effect(rb: &Runbook, t: &Template, d: &mut Vec<Diagnostic>) {
    for p in raw_ones(t) {
        let span = locate(&rb.source, t, &t.text[p.range.clone()]);
        d.push(
            Diagnostic::new(span, format!("`raw:` has no effect on `{}` here", p.name))
                .expected(format!("`{{{{{}}}}}`", p.name))
                .hint("`raw:` only applies in shell commands and regular expressions"),
        );
    }
}

/// Secrets reach commands as RUNBOOK_SECRET_<NAME in capitals>, so two names that differ only
/// in case would hand one command the other's value.
fn check_name_case(rb: &Runbook, d: &mut Vec<Diagnostic>) {
    let all: Vec<&VarDef> =
        rb.vars.iter().chain(rb.envs.values().flat_map(|e| e.vars.iter())).collect();
    for (i, v) in all.iter().enumerate() {
        let clash =
            all[..i].iter().find(|o| o.name != v.name && o.name.eq_ignore_ascii_case(&v.name));
        if let Some(o) = clash {
            d.push(
                Diagnostic::new(
                    v.span.clone(),
                    format!("variables `{}` and `{}` differ only in case", o.name, v.name),
                )
                .expected("names that differ by more than case")
                .hint(format!(
                    "both would reach commands as RUNBOOK_SECRET_{}",
                    v.name.to_ascii_uppercase()
                )),
            );
        }
    }
}

fn check_ids(rb: &Runbook, d: &mut Vec<Diagnostic>) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for step in &rb.steps {
        let Some(id) = &step.id else { continue };
        let span = step.id_span.clone();
        if id.parse::<usize>().is_ok() || id.is_empty() {
            d.push(
                Diagnostic::new(span.clone(), format!("step {} has id {id:?}", step.number))
                    .expected("a name with at least one letter, such as \"backup-config\"")
                    .hint("numbers already name steps by position"),
            );
        }
        if let Some(first) = seen.insert(id, step.number) {
            d.push(
                Diagnostic::new(span, format!("duplicate id {id:?} in step {}", step.number))
                    .expected("an id no other step uses")
                    .hint(format!("step {first} already has this id")),
            );
            seen.insert(id, first);
        }
    }
}

fn check_rollbacks(rb: &Runbook, d: &mut Vec<Diagnostic>) {
    for step in rb.steps.iter().filter(|s| s.kind.changes_things()) {
        let automatic = matches!(&step.action, Action::Flush(f) if f.backup);
        if step.rollback.is_none() && step.irreversible.is_none() && !automatic {
            let what = match step.kind {
                Kind::Flush => "a flush step with backup = false",
                _ => "an apply step",
            };
            d.push(
                Diagnostic::new(
                    step.span.clone(),
                    format!("step {} is {what} with no way back", step.number),
                )
                .expected("`rollback = \"...\"`, or `irreversible = \"why\"`")
                .hint("every change carries its undo; say why when there is none"),
            );
        }
    }
}

fn check_env_names(rb: &Runbook, d: &mut Vec<Diagnostic>) {
    let names: Vec<&str> = rb.envs.keys().map(String::as_str).collect();
    for (name, env) in &rb.envs {
        if let Some(gate) = &env.require_rehearsal
            && !rb.envs.contains_key(&gate.env)
        {
            let span = locate_text(rb, &format!("\"{}\"", gate.env));
            d.push(unknown_env(
                span,
                &gate.env,
                &format!("[env.{name}] require_rehearsal"),
                &names,
            ));
        }
    }
    for step in &rb.steps {
        for env in step.only_env.iter().flatten().filter(|e| !rb.envs.contains_key(&e.text)) {
            let place = format!("only_env of step {}", step.number);
            d.push(unknown_env(env.span.clone(), &env.text, &place, &names));
        }
    }
}

fn locate_text(rb: &Runbook, text: &str) -> std::ops::Range<usize> {
    let at = rb.source.find("require_rehearsal").unwrap_or(0);
    match rb.source[at..].find(text) {
        Some(i) => at + i..at + i + text.len(),
        None => at..at,
    }
}

fn unknown_env(span: std::ops::Range<usize>, env: &str, place: &str, names: &[&str]) -> Diagnostic {
    let expected = if names.is_empty() {
        "an environment defined as [env.NAME]".to_string()
    } else {
        format!("one of {}", names.join(", "))
    };
    let diag =
        Diagnostic::new(span, format!("unknown environment {env:?} in {place}")).expected(expected);
    match nearest(env, names) {
        Some(near) => diag.hint(format!("did you mean {near:?}?")),
        None => diag.hint("define it as [env.NAME]"),
    }
}

/// Secrets written in the file itself: a secret value too short to mask safely, and a URL
/// password written out in a step (it could be neither recorded, nor replayed, without being
/// written down: in a variable it becomes a secret and is recorded as a reference).
fn check_secret_literals(rb: &Runbook, d: &mut Vec<Diagnostic>) {
    let all = rb.vars.iter().chain(rb.envs.values().flat_map(|e| e.vars.iter()));
    for v in all.filter(|v| v.secret) {
        let VarSource::Value(text) = &v.source else { continue };
        if placeholders(text).is_ok_and(|p| p.is_empty()) && crate::secret::too_short(text) {
            d.push(
                Diagnostic::new(
                    v.span.clone(),
                    format!("secret `{}` is {} characters long", v.name, text.chars().count()),
                )
                .expected(format!("a secret of at least {} characters", crate::secret::MIN_SECRET))
                .hint(crate::secret::SHORT_REASON),
            );
        }
    }
    for step in &rb.steps {
        for t in step_templates(step).into_iter().filter(|t| writes_a_password(&t.text)) {
            d.push(
                Diagnostic::new(
                    t.span.clone(),
                    format!("step {} writes a URL password in the runbook", step.number),
                )
                .expected("the password in a variable, written as `{{name}}`")
                .hint("declare it as `name = { from_env = \"VAR\", secret = true }` (or a whole URL as a variable: a value holding a URL with a password is a secret)"),
            );
        }
    }
}

/// Whether `text` holds a URL whose password is written out, not a placeholder (nor, in a shell
/// command, a shell variable such as `$TOKEN`).
fn writes_a_password(text: &str) -> bool {
    let filled = super::template::substitute(text, |n| Some(crate::secret::reference(n)));
    crate::secret::url_passwords(&filled).iter().any(|p| !is_shell_variable(p))
}

/// `$NAME` or `${...}`, one or more of them.
fn is_shell_variable(text: &str) -> bool {
    static VARIABLE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = VARIABLE.get_or_init(|| {
        regex::Regex::new(r"^(\$[A-Za-z_][A-Za-z0-9_]*|\$\{[^}]*\})+$").expect("a valid regex")
    });
    re.is_match(text)
}
