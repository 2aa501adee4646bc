//! The note as one self-contained HTML page: inline CSS, no script, no external stylesheet, font
//! or image, so it opens offline and can be attached to a ticket. Every journal string goes
//! through [`escape`].

use crate::journal::event::Tone;
use std::fmt::Write as _;

use super::{Note, StepNote, human_ms, time};

/// Text made safe for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root { --good: #1a7f37; --bad: #cf222e; --undone: #9a6700; --quiet: #6e7781;
  --line: #d0d7de; --soft: #f6f8fa; --text: #1f2328; }
* { box-sizing: border-box; }
body { margin: 0; background: #fff; color: var(--text);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1040px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
  font-size: 13px; }
code { background: var(--soft); padding: 1px 5px; border-radius: 4px; overflow-wrap: anywhere; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px;
  overflow-x: auto; white-space: pre-wrap; overflow-wrap: anywhere; margin: 6px 0; }
header { border-left: 6px solid var(--quiet); padding: 4px 0 4px 16px; }
header.good { border-color: var(--good); } header.bad { border-color: var(--bad); }
header.undone { border-color: var(--undone); }
.status { font-size: 17px; font-weight: 600; margin: 0 0 12px; }
.good .status, .status.good { color: var(--good); } .bad .status { color: var(--bad); }
.undone .status { color: var(--undone); }
dl.summary { display: grid; grid-template-columns: max-content 1fr; gap: 3px 18px; margin: 0; }
dl.summary dt { color: var(--quiet); } dl.summary dd { margin: 0; overflow-wrap: anywhere; }
.counts { margin: 14px 0 0; font-weight: 600; }
.warning { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px; padding: 8px 12px;
  margin: 14px 0 0; }
.undo-cmd { background: #0d1117; color: #e6edf3; border: 0; font-size: 15px; padding: 12px 14px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0; }
th, td { border: 1px solid var(--line); padding: 6px 10px; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
ol.timeline { list-style: none; padding: 0; margin: 0; }
.step { border: 1px solid var(--line); border-left: 6px solid var(--quiet); border-radius: 6px;
  padding: 10px 14px; margin: 0 0 10px; }
.step.good { border-left-color: var(--good); } .step.bad { border-left-color: var(--bad); }
.step.undone { border-left-color: var(--undone); }
.step .head { display: flex; gap: 10px; align-items: baseline; flex-wrap: wrap; }
.step .n { font-weight: 700; color: var(--quiet); min-width: 2ch; }
.step .title { font-weight: 600; font-size: 16px; flex: 1; }
.badge { border-radius: 10px; padding: 1px 9px; font-size: 12px; font-weight: 600; color: #fff;
  background: var(--quiet); white-space: nowrap; }
.good .badge { background: var(--good); } .bad .badge { background: var(--bad); }
.undone .badge { background: var(--undone); }
.dur { color: var(--quiet); font-variant-numeric: tabular-nums; }
.bar { height: 5px; background: var(--soft); border-radius: 3px; margin: 6px 0 8px; }
.bar span { display: block; height: 100%; border-radius: 3px; background: var(--quiet); }
.good .bar span { background: var(--good); } .bad .bar span { background: var(--bad); }
.undone .bar span { background: var(--undone); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0; }
dl.facts dt { color: var(--quiet); } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
details summary { cursor: pointer; color: var(--quiet); margin-top: 6px; }
td.good strong { color: var(--good); } td.bad strong { color: var(--bad); }
footer { margin-top: 40px; color: var(--quiet); font-size: 13px; }
.failure { border: 1px solid var(--bad); background: #ffebe9; border-radius: 6px; padding: 8px 12px;
  margin: 10px 0; }
.failure p { margin: 0 0 6px; } .failure pre { background: #fff; }
@media print { details { display: block; } .step { break-inside: avoid; } }
"#;

pub fn render(note: &Note) -> String {
    let mut out = String::new();
    let title = format!("Run note: {} ({})", note.name, note.ending.status);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        escape(&title)
    );
    header(&mut out, note);
    undo(&mut out, note);
    metrics(&mut out, note);
    timeline(&mut out, note);
    hosts(&mut out, note);
    rollbacks(&mut out, note);
    prompts(&mut out, note);
    backups(&mut out, note);
    flushes(&mut out, note);
    watches(&mut out, note);
    let _ = write!(
        out,
        "<footer>Rebuilt from the journal of run <code>{}</code> alone; secrets were masked when \
         the journal was written.</footer>\n</main>\n</body>\n</html>\n",
        escape(&note.id)
    );
    out
}

/// The colour of the run as a whole.
fn run_tone(note: &Note) -> &'static str {
    match note.ending.tone {
        Tone::Good => "good",
        Tone::Undone => "undone",
        Tone::Bad => "bad",
    }
}

fn header(out: &mut String, n: &Note) {
    let e = &n.ending;
    let _ = write!(
        out,
        "<header class=\"{}\">\n<h1>{}</h1>\n<p class=\"status\">{}</p>\n",
        run_tone(n),
        escape(&n.name),
        escape(&e.status)
    );
    outcome(out, n);
    out.push_str("<dl class=\"summary\">\n");
    let ended = e.finished_at.map_or_else(|| "not recorded".to_string(), time);
    let rows = [
        ("Run", code(&n.id)),
        ("Runbook", code(&n.runbook)),
        ("Content hash", code(&format!("sha256:{}", n.hash))),
        ("Environment", escape(n.env.as_deref().unwrap_or("(none)"))),
        ("Operator", format!("{} on {}", escape(&n.operator), code(&n.host))),
        ("Reason", escape(n.reason.as_deref().unwrap_or("(none given)"))),
        ("Command", code(&format!("runbook {}", n.command))),
        ("Started", time(n.started_at)),
        ("Ended", ended),
        ("Duration", escape(&e.duration(n.started_at))),
        ("Result", escape(e.result.as_deref().unwrap_or("no end recorded"))),
    ];
    for (k, v) in rows {
        let _ = writeln!(out, "<dt>{k}</dt><dd>{v}</dd>");
    }
    let _ = writeln!(out, "</dl>\n<p class=\"counts\">{}</p>\n</header>", escape(&n.summary()[0]));
    for w in &e.warnings {
        let _ = writeln!(out, "<p class=\"warning\"><strong>Note:</strong> {}</p>", escape(w));
    }
}

/// What went wrong, first: each failed step and each failed rollback, with their output.
fn outcome(out: &mut String, n: &Note) {
    for f in &n.failed_steps {
        let expected = if f.expected.is_empty() { "(nothing stated)" } else { &f.expected };
        let _ = write!(
            out,
            "<div class=\"failure\" id=\"failed-step-{}\"><p><strong>Step {} ({}) failed.</strong> \
             Expected: {}. Seen: {}.</p>",
            f.number,
            f.number,
            escape(&f.title),
            escape(expected),
            escape(&f.seen)
        );
        if !f.last_lines.is_empty() {
            let _ =
                write!(out, "<p>Its last output lines:</p><pre>{}</pre>", escape(&f.last_lines));
        }
        out.push_str("</div>\n");
    }
    for r in n.failed_rollbacks() {
        let _ = write!(
            out,
            "<div class=\"failure\"><p><strong>The rollback of step {} ({}) FAILED:</strong> {} \
             ended: {}.</p>",
            r.step,
            escape(&r.title),
            code(&r.command),
            escape(&r.check)
        );
        if !r.output.is_empty() {
            let _ = write!(out, "<p>Its output (last lines):</p><pre>{}</pre>", escape(&r.output));
        }
        if !r.verify_output.is_empty() {
            let _ = write!(
                out,
                "<p>The output of verify_rollback (last lines):</p><pre>{}</pre>",
                escape(&r.verify_output)
            );
        }
        out.push_str("</div>\n");
    }
}

fn undo(out: &mut String, n: &Note) {
    let u = &n.undo;
    let _ = writeln!(
        out,
        "<section id=\"undo\">\n<h2>How to undo</h2>\n<p>{}</p>",
        escape(&u.statement)
    );
    if let Some(failed) = &u.already_failed {
        let _ = writeln!(
            out,
            "<p class=\"warning\"><strong>Already failed:</strong> {}</p>",
            escape(failed)
        );
    }
    if let Some(cmd) = &u.command {
        let _ = writeln!(out, "<pre class=\"undo-cmd\">{}</pre>", escape(cmd));
        out.push_str("<p>It runs these rollbacks, as journalled, newest first:</p>\n<ol>\n");
        for (num, title, rb) in &u.steps {
            let _ = writeln!(out, "<li>step {num} {}: {}</li>", escape(title), code(rb));
        }
        out.push_str("</ol>\n");
    }
    if !u.stays.is_empty() {
        out.push_str("<p>These stay applied (runbook cannot undo them):</p>\n<ul>\n");
        for (num, title, why) in &u.stays {
            let _ = writeln!(out, "<li>step {num} {}: {}</li>", escape(title), escape(why));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</section>\n");
}

fn metrics(out: &mut String, n: &Note) {
    if n.metrics.is_empty() && n.measured_once.is_empty() {
        return;
    }
    out.push_str("<section id=\"metrics\">\n<h2>Metrics before and after</h2>\n");
    if !n.metrics.is_empty() {
        out.push_str(
            "<table class=\"metrics\">\n<thead><tr><th>Metric</th><th>Before</th><th>After</th>\
             <th>Change</th><th>% change</th><th>Measured at</th><th>Judged</th></tr></thead>\n\
             <tbody>\n",
        );
        for m in &n.metrics {
            let arrow = match m.comparison.change {
                c if c < 0.0 => "▼ ",
                c if c > 0.0 => "▲ ",
                _ => "",
            };
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{arrow}{}</td><td class=\"num\">{}</td>\
                 <td>step {} → step {}</td>{}</tr>",
                code(&m.comparison.name),
                escape(&m.before()),
                escape(&m.after()),
                escape(&m.change()),
                escape(&m.change_pct()),
                m.before_step,
                m.after_step,
                judged_cell(m)
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    if !n.measured_once.is_empty() {
        out.push_str("<p>Measured once (nothing to compare with):</p>\n<ul>\n");
        for (step, m) in &n.measured_once {
            let value = super::with_unit(m.value, &m.unit);
            let _ = writeln!(out, "<li>{} = {} (step {step})</li>", code(&m.name), escape(&value));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</section>\n");
}

/// The mark a `fail_if` gave a change: green good, red bad, with the condition's words.
fn judged_cell(m: &super::MetricChange) -> String {
    match (m.good(), &m.judged) {
        (Some(true), Some(j)) => {
            format!("<td class=\"good judged\"><strong>✓ good</strong><br>{}</td>", escape(&j.text))
        }
        (Some(false), Some(j)) => {
            format!("<td class=\"bad judged\"><strong>✗ bad</strong><br>{}</td>", escape(&j.text))
        }
        _ => "<td>-</td>".into(),
    }
}

fn timeline(out: &mut String, n: &Note) {
    out.push_str("<section id=\"steps\">\n<h2>Steps</h2>\n<ol class=\"timeline\">\n");
    let longest = n.steps.iter().map(|s| s.duration_ms).max().unwrap_or(0).max(1);
    for s in &n.steps {
        step_card(out, s, longest);
    }
    out.push_str("</ol>\n</section>\n");
}

fn step_card(out: &mut String, s: &StepNote, longest: u64) {
    let width = (s.duration_ms as f64 / longest as f64 * 100.0).clamp(1.0, 100.0);
    let _ = write!(
        out,
        "<li class=\"step {}\">\n<div class=\"head\"><span class=\"n\">{}</span>\
         <span class=\"title\">{}</span><span class=\"badge\">{}</span>\
         <span class=\"dur\">{}{}</span></div>\n\
         <div class=\"bar\"><span style=\"width: {width:.1}%\"></span></div>\n<dl class=\"facts\">\n",
        s.tone(),
        s.number,
        escape(&s.title),
        escape(&s.result()),
        s.offset_ms.map_or_else(String::new, |ms| format!("at +{} · ", human_ms(ms))),
        human_ms(s.duration_ms)
    );
    let mut fact = |k: &str, v: String| {
        let _ = writeln!(out, "<dt>{k}</dt><dd>{v}</dd>");
    };
    fact("Kind, owner", format!("{}, {}", s.kind, escape(&s.owner)));
    fact("Command", s.command.as_deref().map_or_else(|| "never started".into(), code));
    let expected = if s.expected.is_empty() { "(nothing stated)" } else { &s.expected };
    fact("Expected", escape(expected));
    if !s.actual.is_empty() {
        fact("Actual", escape(&s.actual));
    }
    if let Some(code) = s.exit_code {
        fact("Exit code", code.to_string());
    }
    if s.attempts > 1 {
        fact("Attempts", s.attempts.to_string());
    }
    if let Some(note) = &s.note {
        fact("Note", escape(note));
    }
    match (&s.rollback, &s.irreversible) {
        (Some(rb), _) => fact("Rollback", code(rb)),
        (None, Some(why)) => fact("Rollback", format!("none, irreversible: {}", escape(why))),
        (None, None) => {}
    }
    out.push_str("</dl>\n");
    if !s.output_tail.trim().is_empty() {
        let _ = writeln!(
            out,
            "<details{}><summary>Output (last lines)</summary><pre>{}</pre></details>",
            if s.tone() == "good" { "" } else { " open" },
            escape(s.output_tail.trim_end())
        );
    }
    out.push_str("</li>\n");
}

/// Steps on hosts: a row per host, a column per step.
fn hosts(out: &mut String, n: &Note) {
    let grid = &n.hosts;
    if grid.rows.is_empty() {
        return;
    }
    out.push_str("<section id=\"hosts\">\n<h2>Hosts</h2>\n<table>\n<thead><tr><th>Host</th>");
    for step in &grid.steps {
        let title = n.steps.iter().find(|s| s.number == *step).map_or("", |s| s.title.as_str());
        let _ = write!(out, "<th>{step}. {}</th>", escape(title));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for (host, cells) in &grid.rows {
        let _ = write!(out, "<tr><td>{}</td>", escape(host));
        for c in cells {
            let tone =
                if c.chars().any(|ch| ch.is_ascii_uppercase()) { " class=\"bad\"" } else { "" };
            let shown = if c.is_empty() { "-" } else { c.as_str() };
            let _ = write!(out, "<td{tone}>{}</td>", escape(shown));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn rollbacks(out: &mut String, n: &Note) {
    if n.rollbacks.is_empty() {
        return;
    }
    out.push_str(
        "<section id=\"rollbacks\">\n<h2>Rollbacks, in the order they ran</h2>\n<table>\n\
         <thead><tr><th>#</th><th>Step</th><th>Command</th><th>Result</th><th>Exit</th>\
         <th>Duration</th><th>Why</th></tr></thead>\n<tbody>\n",
    );
    for (i, r) in n.rollbacks.iter().enumerate() {
        let tone = match r.ok {
            Some(true) => "good",
            _ => "bad",
        };
        let exit = r.exit_code.map_or_else(|| "-".into(), |c| c.to_string());
        let mut check =
            if r.check.is_empty() { String::new() } else { format!("<br>{}", escape(&r.check)) };
        if !r.output.is_empty() {
            check.push_str(&format!("<pre>{}</pre>", escape(&r.output)));
        }
        let _ = writeln!(
            out,
            "<tr><td class=\"num\">{}</td><td>{} {}</td><td>{}</td>\
             <td class=\"{tone}\"><strong>{}</strong>{check}</td><td class=\"num\">{exit}</td>\
             <td class=\"num\">{}</td><td>{}</td></tr>",
            i + 1,
            r.step,
            escape(&r.title),
            code(&r.command),
            r.result(),
            human_ms(r.duration_ms),
            escape(&r.reason)
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn prompts(out: &mut String, n: &Note) {
    if n.prompts.is_empty() {
        return;
    }
    out.push_str(
        "<section id=\"prompts\">\n<h2>Answers at prompts</h2>\n<table>\n<thead><tr><th>Time</th>\
         <th>Step</th><th>Question</th><th>Answer</th></tr></thead>\n<tbody>\n",
    );
    for p in &n.prompts {
        let step = p.step.map_or_else(|| "-".to_string(), |s| s.to_string());
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"num\">{step}</td><td>{}</td><td>{}</td></tr>",
            time(p.at),
            escape(&p.question),
            escape(&p.answer)
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn backups(out: &mut String, n: &Note) {
    if n.backups.is_empty() {
        return;
    }
    out.push_str(
        "<section id=\"backups\">\n<h2>Files touched by backup steps</h2>\n<p>The commands of \
         backup steps, as journalled. The paths are the words of each command that look like \
         paths; they were read from the command, not checked on disk.</p>\n<ul>\n",
    );
    for b in &n.backups {
        let paths: Vec<String> = b.paths.iter().map(|p| code(p)).collect();
        let named = if paths.is_empty() {
            String::new()
        } else {
            format!("<br>paths named: {}", paths.join(", "))
        };
        let _ = writeln!(
            out,
            "<li>step {} {} ({}): {}{named}</li>",
            b.step,
            escape(&b.title),
            b.outcome.word(),
            code(&b.command)
        );
    }
    out.push_str("</ul>\n</section>\n");
}

fn flushes(out: &mut String, n: &Note) {
    if n.flushes.is_empty() {
        return;
    }
    out.push_str("<section id=\"flushes\">\n<h2>Cache flushes</h2>\n<ul>\n");
    for f in &n.flushes {
        let patterns: Vec<String> = f.patterns.iter().map(|p| code(p)).collect();
        let _ = write!(
            out,
            "<li>step {} {}: keys {} on {}",
            f.step,
            escape(&f.title),
            patterns.join(", "),
            code(&f.server)
        );
        let _ = match &f.figures {
            Some(r) => write!(
                out,
                "<br>matched {}, deleted {}, backed up {} ({} bytes); {} matching before, {} after; took {}",
                r.matched,
                r.deleted,
                r.backed_up,
                r.backup_bytes,
                r.count_before,
                r.count_after,
                human_ms(r.duration_ms)
            ),
            None => write!(out, "<br>no figures journalled: {}", escape(&f.check)),
        };
        if let Some(file) = &f.backup_file {
            let _ = write!(out, "<br>keys backed up to {}", code(file));
        }
        for (check, _) in &f.restores {
            let _ = write!(out, "<br>restore: {}", escape(check));
        }
        out.push_str("</li>\n");
    }
    out.push_str("</ul>\n</section>\n");
}

fn watches(out: &mut String, n: &Note) {
    if n.watches.is_empty() {
        return;
    }
    out.push_str("<section id=\"watches\">\n<h2>Watches</h2>\n<ul>\n");
    for w in &n.watches {
        let fail_on: Vec<String> = w.fail_on.iter().map(|p| code(p)).collect();
        let _ = write!(
            out,
            "<li>step {} {}: {} failing on {}",
            w.step,
            escape(&w.title),
            code(&w.source),
            fail_on.join(", ")
        );
        match &w.outcome {
            Some(o) => {
                let _ = write!(
                    out,
                    "<br>{} lines read, {} matched, ended: {}",
                    o.lines,
                    o.matches,
                    escape(&super::watch_end(&o.end))
                );
                if !o.matched_lines.is_empty() {
                    let _ = write!(out, "<pre>{}</pre>", escape(&o.matched_lines.join("\n")));
                }
            }
            None => {
                let _ = write!(out, "<br>no figures journalled: {}", escape(&w.check));
            }
        }
        out.push_str("</li>\n");
    }
    out.push_str("</ul>\n</section>\n");
}

fn code(s: &str) -> String {
    format!("<code>{}</code>", escape(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
    }
}
