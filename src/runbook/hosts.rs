//! The keys for many hosts: `[env.NAME.hosts]` groups, `[ssh]` and `[rollout]`. Every bad value
//! is reported at its own span; a bad one is replaced by its default so the rest is still checked.

use toml::de::DeValue;

use super::diagnostic::{Diagnostic, Span};
use super::fields::{Fields, Value, type_error};
use super::model::*;
use crate::runner::ssh::Destination;

pub const SSH_KEYS: &[&str] = &["config", "connect_timeout", "keepalive"];
pub const ROLLOUT_KEYS: &[&str] = &["serial", "max_fail", "concurrency", "rollback"];

/// `[env.NAME.hosts]`: `group = ["host", ...]`.
pub fn read_groups(t: &mut Fields<'_, '_>, d: &mut Vec<Diagnostic>) -> Vec<HostGroup> {
    let mut groups = Vec::new();
    for (name, span, value) in t.entries() {
        if !super::template::is_valid_name(&name.replace('-', "_")) {
            d.push(
                Diagnostic::new(
                    span.clone(),
                    format!("host group name {name:?} is not a plain name"),
                )
                .expected("letters, digits, '-' and '_', starting with a letter"),
            );
        }
        let context = format!("group `{name}`");
        let DeValue::Array(items) = value.get_ref() else {
            d.push(type_error(value, &name, &t.context, "a list of hosts such as [\"web-1\"]"));
            continue;
        };
        if items.is_empty() {
            d.push(
                Diagnostic::new(value.span(), format!("{context} has no hosts"))
                    .expected("at least one host, such as [\"web-1\"]"),
            );
        }
        let hosts = read_hosts(items.iter(), &context, d);
        groups.push(HostGroup { name: Named { text: name, span }, hosts });
    }
    groups
}

fn read_hosts<'a, 'i: 'a>(
    items: impl Iterator<Item = &'a Value<'i>>,
    context: &str,
    d: &mut Vec<Diagnostic>,
) -> Vec<Named> {
    let mut hosts: Vec<Named> = Vec::new();
    for item in items {
        let DeValue::String(text) = item.get_ref() else {
            d.push(type_error(item, "host", context, "a host as ssh knows it, such as \"web-1\""));
            continue;
        };
        let span = item.span();
        if let Err(why) = Destination::parse(text) {
            d.push(
                Diagnostic::new(span.clone(), format!("host {text:?} in {context} is {why}"))
                    .expected("a host as ssh knows it: name, user@name, or name:port")
                    .hint(
                        "letters, digits, '.', '-', '_'; IPv6 addresses in [brackets] with a port",
                    ),
            );
            continue;
        }
        if hosts.iter().any(|h| h.text == **text) {
            d.push(
                Diagnostic::new(span.clone(), format!("host {text:?} is twice in {context}"))
                    .expected("each host once"),
            );
            continue;
        }
        hosts.push(Named { text: text.to_string(), span });
    }
    hosts
}

/// `[ssh]`
pub fn read_ssh(mut t: Fields<'_, '_>, d: &mut Vec<Diagnostic>) -> SshDef {
    let def = SshDef {
        config: t.template("config", d),
        connect_timeout: t.positive_duration("connect_timeout", d),
        keepalive: t.positive_duration("keepalive", d),
    };
    t.finish(SSH_KEYS, d);
    def
}

/// `[rollout]`
pub fn read_rollout(mut t: Fields<'_, '_>, d: &mut Vec<Diagnostic>) -> RolloutDef {
    let default = RolloutDef::default();
    let serial = t.get("serial").map(|v| read_serial(v, d)).filter(|s| !s.is_empty());
    let max_fail = t.get("max_fail").and_then(|v| read_amount(v, "max_fail", 0, d));
    let concurrency = match t.count::<usize>("concurrency", d) {
        Some(0) => {
            let span = t.get("concurrency").map_or(t.span.clone(), |v| v.span());
            d.push(
                Diagnostic::new(span, "`concurrency` in [rollout] is 0")
                    .expected("at least 1 host at once"),
            );
            None
        }
        n => n,
    };
    let rollback = t.string("rollback", d).and_then(|(text, span)| match text.as_str() {
        "all" => Some(RollbackScope::All),
        "failed" => Some(RollbackScope::Failed),
        _ => {
            d.push(
                Diagnostic::new(span, format!("unknown rollback scope {text:?} in [rollout]"))
                    .expected("\"all\" (every host the run touched) or \"failed\""),
            );
            None
        }
    });
    t.finish(ROLLOUT_KEYS, d);
    RolloutDef {
        serial: serial.unwrap_or(default.serial),
        max_fail: max_fail.unwrap_or(default.max_fail),
        concurrency: concurrency.unwrap_or(default.concurrency),
        rollback: rollback.unwrap_or(default.rollback),
    }
}

fn read_serial(value: &Value<'_>, d: &mut Vec<Diagnostic>) -> Vec<Amount> {
    match value.get_ref() {
        DeValue::Array(items) => {
            if items.is_empty() {
                d.push(
                    Diagnostic::new(value.span(), "`serial` in [rollout] is empty")
                        .expected("batch sizes such as [1, \"50%\", \"100%\"]"),
                );
            }
            items.iter().filter_map(|i| read_amount(i, "serial", 1, d)).collect()
        }
        _ => read_amount(value, "serial", 1, d).into_iter().collect(),
    }
}

/// A whole number from `min` up, or a percentage `"N%"` from `min` to 100.
fn read_amount(
    value: &Value<'_>,
    key: &str,
    min: usize,
    d: &mut Vec<Diagnostic>,
) -> Option<Amount> {
    let expected = if min == 0 {
        "a number of hosts from 0 up, or a share such as \"10%\" (0% to 100%)"
    } else {
        "a number of hosts from 1 up, or a share such as \"50%\" (1% to 100%)"
    };
    let bad = |span: Span, what: String| {
        Diagnostic::new(span, format!("`{key}` in [rollout] is {what}")).expected(expected)
    };
    match value.get_ref() {
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) if n >= min as i64 => usize::try_from(n).ok().map(Amount::Count),
            _ => {
                d.push(bad(value.span(), i.as_str().to_string()));
                None
            }
        },
        DeValue::String(s) => {
            let parsed = s.strip_suffix('%').and_then(|n| n.trim().parse::<u8>().ok());
            match parsed {
                Some(p) if p <= 100 && usize::from(p) >= min => Some(Amount::Percent(p)),
                Some(_) => {
                    d.push(bad(value.span(), format!("{s:?}, out of range")));
                    None
                }
                None => {
                    d.push(bad(value.span(), format!("{s:?}, not a percentage")));
                    None
                }
            }
        }
        _ => {
            d.push(type_error(value, key, "[rollout]", expected));
            None
        }
    }
}

/// Steps `on` a group: the group exists in every environment the step runs in, the step's kind
/// can run on a host, and `{{host}}` is used only in such steps.
pub fn check(rb: &Runbook, d: &mut Vec<Diagnostic>) {
    for step in &rb.steps {
        match &step.on {
            Some(on) => {
                check_group(rb, step, on, d);
                check_kind(step, on, d);
            }
            None => check_host_placeholder(rb, step, d),
        }
    }
}

fn check_group(rb: &Runbook, step: &Step, on: &Named, d: &mut Vec<Diagnostic>) {
    let applies =
        |env: &str| step.only_env.as_ref().is_none_or(|only| only.iter().any(|o| o.text == env));
    let missing: Vec<&str> = rb
        .envs
        .iter()
        .filter(|(name, env)| applies(name) && !env.hosts.iter().any(|g| g.name.text == on.text))
        .map(|(name, _)| name.as_str())
        .collect();
    let all: Vec<&str> =
        rb.envs.values().flat_map(|e| e.hosts.iter().map(|g| g.name.text.as_str())).collect();
    if rb.envs.is_empty() || !missing.is_empty() {
        let place = match missing.as_slice() {
            [] => "any environment".to_string(),
            envs => envs.iter().map(|e| format!("[env.{e}.hosts]")).collect::<Vec<_>>().join(", "),
        };
        let mut diag = Diagnostic::new(
            on.span.clone(),
            format!(
                "step {} runs on group {:?}, which is not defined in {place}",
                step.number, on.text
            ),
        )
        .expected("a group of hosts defined as [env.NAME.hosts] NAME = [\"host\", ...]");
        if all.contains(&on.text.as_str()) {
            diag = diag.hint("define the group in every environment the step runs in, or limit the step with only_env");
        } else if let Some(near) = super::fields::nearest(&on.text, &all) {
            diag = diag.hint(format!("did you mean {near:?}?"));
        } else if !missing.is_empty() {
            diag = diag.hint("define the group in every environment the step runs in, or limit the step with only_env");
        }
        d.push(diag);
    }
}

fn check_kind(step: &Step, on: &Named, d: &mut Vec<Diagnostic>) {
    let why = match &step.action {
        Action::Manual(_) => "a manual step is done by the operator, not on hosts",
        Action::Flush(_) => "a flush step talks to Redis from this machine",
        Action::Measure(MeasureDef::Http { .. } | MeasureDef::Redis { .. }) => {
            "an http or redis measure runs from this machine"
        }
        // A watch reads its file or command on this machine; on hosts it is not built yet.
        Action::Watch(_) => "a watch step reads its file or command on this machine",
        Action::Shell(_) | Action::Measure(MeasureDef::Command { .. }) => return,
    };
    d.push(
        Diagnostic::new(
            on.span.clone(),
            format!("step {} cannot run `on` hosts: {why}", step.number),
        )
        .expected("`on` only on backup, apply, check and measure (run) steps")
        .hint("remove `on`, or make it a step that runs a command"),
    );
}

fn check_host_placeholder(rb: &Runbook, step: &Step, d: &mut Vec<Diagnostic>) {
    for t in super::validate::step_templates(step) {
        let Ok(found) = super::template::placeholders(&t.text) else { continue };
        for p in found.iter().filter(|p| p.name == "host") {
            let span = super::template::locate(&rb.source, t, &t.text[p.range.clone()]);
            d.push(
                Diagnostic::new(
                    span,
                    format!("`{{{{host}}}}` in step {}, which runs on no host", step.number),
                )
                .expected("`{{host}}` only in a step with `on = \"GROUP\"`")
                .hint("add `on = \"GROUP\"` to run the step on each host of a group"),
            );
        }
    }
}
