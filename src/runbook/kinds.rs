//! The keys of the kinds that are not plain shell commands: flush, watch and measure.

use super::diagnostic::{Diagnostic, Span};
use super::fields::Fields;
use super::model::*;
use super::parse::check_regex;

pub const FLUSH_KEYS: &[&str] =
    &["redis", "pattern", "max_keys", "backup", "batch", "tls_ca", "tls_cert", "tls_key"];
pub const WATCH_KEYS: &[&str] =
    &["file", "command", "for", "fail_on", "max", "until", "wait_for_file"];
pub const MEASURE_KEYS: &[&str] = &[
    "run", "capture", "http", "requests", "redis", "pattern", "fail_if", "tls_ca", "tls_cert",
    "tls_key",
];

const DEFAULT_FLUSH_BATCH: usize = 1000;
const DEFAULT_HTTP_REQUESTS: u32 = 20;

pub fn read_flush(f: &mut Fields<'_, '_>, d: &mut Vec<Diagnostic>) -> Option<Action> {
    for key in ["redis", "pattern"] {
        if !f.has(key) {
            d.push(f.missing(key, "a string"));
        }
    }
    let redis = super::redis_keys::redis_with_tls(f, d);
    let patterns: Vec<Template> = f
        .strings("pattern", d)
        .unwrap_or_default()
        .into_iter()
        .map(|(text, span)| Template { text, span })
        .collect();
    for p in &patterns {
        if p.text.trim().is_empty() || crate::steps::flush::matches_every_key(p.text.trim()) {
            d.push(
                Diagnostic::new(p.span.clone(), "a flush pattern must name the keys that matter")
                    .expected("a key pattern such as \"page:upload:*\"")
                    .hint("clearing every key is FLUSHDB's job, and runbook never does it"),
            );
        }
    }
    let max_keys = f.count("max_keys", d);
    let backup = f.boolean("backup", d).unwrap_or(true);
    let batch = f.count("batch", d).filter(|b: &usize| *b > 0).unwrap_or(DEFAULT_FLUSH_BATCH);
    Some(Action::Flush(FlushDef { redis: redis?, patterns, max_keys, backup, batch }))
}

pub fn read_watch(f: &mut Fields<'_, '_>, d: &mut Vec<Diagnostic>) -> Option<Action> {
    let file = f.template("file", d);
    let command = f.template("command", d);
    let source = match (file, command) {
        (Some(file), None) => Some(WatchSourceDef::File(file)),
        (None, Some(cmd)) => Some(WatchSourceDef::Command(cmd)),
        _ => {
            let msg = format!("{} needs exactly one of `file` and `command`", f.context);
            d.push(Diagnostic::new(f.span.clone(), msg).expected("file = \"/var/log/app.log\""));
            None
        }
    };
    if !f.has("for") {
        d.push(f.missing("for", "how long to watch, such as \"2m\""));
    }
    let duration = f.positive_duration("for", d);
    let fail_on = regexes(f, "fail_on", d);
    let until = regexes(f, "until", d).into_iter().next();
    let max = f.count("max", d).unwrap_or(0);
    let wait_for_file = read_wait_for_file(f, source.as_ref(), d);
    let (source, duration) = (source?, duration?);
    Some(Action::Watch(WatchDef { source, duration, fail_on, max, until, wait_for_file }))
}

/// `wait_for_file = true` only means something for a file.
fn read_wait_for_file(
    f: &mut Fields<'_, '_>,
    source: Option<&WatchSourceDef>,
    d: &mut Vec<Diagnostic>,
) -> bool {
    let span = f.get("wait_for_file").map(|v| v.span());
    let wait = f.boolean("wait_for_file", d).unwrap_or(false);
    if let (Some(span), Some(WatchSourceDef::Command(_))) = (span, source) {
        let msg = format!("`wait_for_file` in {} has no file to wait for", f.context);
        d.push(
            Diagnostic::new(span, msg).expected(
                "`file = \"...\"` with wait_for_file, or no wait_for_file with `command`",
            ),
        );
    }
    wait
}

pub fn read_measure(f: &mut Fields<'_, '_>, d: &mut Vec<Diagnostic>) -> Option<Action> {
    let run = f.template("run", d);
    let http = f.template("http", d);
    let redis = super::redis_keys::redis_with_tls(f, d);
    let capture = regexes(f, "capture", d);
    let requests = match f.count("requests", d) {
        Some(0) => {
            let msg = format!("`requests` in {} is 0", f.context);
            d.push(Diagnostic::new(f.span.clone(), msg).expected("at least 1 request"));
            DEFAULT_HTTP_REQUESTS
        }
        n => n.unwrap_or(DEFAULT_HTTP_REQUESTS),
    };
    let pattern = f.template("pattern", d);
    let def = match (run, http, redis) {
        (Some(run), None, None) => {
            if capture.is_empty() {
                d.push(f.missing(
                    "capture",
                    "regexes with named groups, such as \"(?P<p95_ms>\\\\d+)\"",
                ));
            }
            Some(MeasureDef::Command { run, patterns: capture })
        }
        (None, Some(url), None) => {
            Some(MeasureDef::Http { url, requests, timeout: std::time::Duration::from_secs(10) })
        }
        (None, None, Some(url)) => Some(MeasureDef::Redis { url, pattern }),
        _ => {
            let msg = format!("{} needs exactly one source: `run`, `http` or `redis`", f.context);
            d.push(
                Diagnostic::new(f.span.clone(), msg)
                    .expected("http = \"http://127.0.0.1:8080/health\""),
            );
            None
        }
    };
    def.map(Action::Measure)
}

/// `fail_if = ["error_rate > 0.01"]`: kept as written; `validate` parses each condition and checks
/// its metric names against what the step's source measures.
pub fn read_fail_if(f: &mut Fields<'_, '_>, d: &mut Vec<Diagnostic>) -> Vec<Template> {
    let items = f.strings("fail_if", d).unwrap_or_default();
    items.into_iter().map(|(text, span)| Template { text, span }).collect()
}

/// A string or a list of strings under `key`, each with its span, as templates.
pub fn read_fail_if_like(
    f: &mut Fields<'_, '_>,
    key: &str,
    d: &mut Vec<Diagnostic>,
) -> Vec<Template> {
    let items = f.strings(key, d).unwrap_or_default();
    items.into_iter().map(|(text, span)| Template { text, span }).collect()
}

/// A list of regexes; each bad one is reported at its own span. Placeholders are filled at plan
/// time, each matching its value literally.
fn regexes(f: &mut Fields<'_, '_>, key: &str, d: &mut Vec<Diagnostic>) -> Vec<Template> {
    let items: Vec<(String, Span)> = f.strings(key, d).unwrap_or_default();
    items
        .into_iter()
        .filter(|(p, span)| check_regex(p, span, d).is_some())
        .map(|(text, span)| Template { text, span })
        .collect()
}
