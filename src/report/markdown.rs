//! The note as Markdown: readable as plain text in a terminal or a ticket, and rendered anywhere
//! Markdown is. Journal text is escaped so a title or an output line cannot become markup.

use std::fmt::Write as _;

use super::{Note, human_ms, time};

pub fn render(note: &Note) -> String {
    let mut out = String::new();
    header(&mut out, note);
    undo(&mut out, note);
    metrics(&mut out, note);
    steps(&mut out, note);
    hosts(&mut out, note);
    rollbacks(&mut out, note);
    prompts(&mut out, note);
    backups(&mut out, note);
    flushes(&mut out, note);
    watches(&mut out, note);
    out
}

fn header(out: &mut String, n: &Note) {
    let _ = writeln!(out, "# Run note: {} ({})\n", text(&n.name), text(&n.ending.status));
    outcome(out, n);
    for w in &n.ending.warnings {
        let _ = writeln!(out, "> **Note:** {}\n", text(w));
    }
    let e = &n.ending;
    let ended = e.finished_at.map_or_else(|| "not recorded".to_string(), time);
    let rows = [
        ("Run", code(&n.id)),
        ("Runbook", format!("{} ({})", text(&n.name), code(&n.runbook))),
        ("Content hash", code(&format!("sha256:{}", n.hash))),
        ("Environment", text(n.env.as_deref().unwrap_or("(none)"))),
        ("Operator", format!("{} on host {}", text(&n.operator), code(&n.host))),
        ("Reason", text(n.reason.as_deref().unwrap_or("(none given)"))),
        ("Command", code(&format!("runbook {}", n.command))),
        ("Started", time(n.started_at)),
        ("Ended", ended),
        ("Duration", e.duration(n.started_at)),
        ("Result", text(e.result.as_deref().unwrap_or("no end recorded"))),
        ("Now", text(&e.status)),
    ];
    out.push_str("| | |\n|---|---|\n");
    for (k, v) in rows {
        let _ = writeln!(out, "| {k} | {} |", v.replace('|', "\\|"));
    }
    let _ = writeln!(out, "\n**{}**\n", text(&n.summary()[0]));
}

/// What went wrong, first: each failed step with what was expected, what was seen and its last
/// output lines; each failed rollback with its own output.
fn outcome(out: &mut String, n: &Note) {
    for f in &n.failed_steps {
        let expected = if f.expected.is_empty() { "(nothing stated)" } else { &f.expected };
        let _ = writeln!(
            out,
            "**Step {} ({}) failed.** Expected: {}. Seen: {}.\n",
            f.number,
            text(&f.title),
            text(expected),
            text(&f.seen)
        );
        if !f.last_lines.is_empty() {
            let _ = writeln!(out, "Its last output lines:\n\n{}", block("text", &f.last_lines));
        }
    }
    for r in n.failed_rollbacks() {
        let _ = writeln!(
            out,
            "**The rollback of step {} ({}) FAILED:** {} ended: {}.\n",
            r.step,
            text(&r.title),
            code(&r.command),
            text(&r.check)
        );
        if !r.output.is_empty() {
            let _ = writeln!(out, "Its output (last lines):\n\n{}", block("text", &r.output));
        }
        if !r.verify_output.is_empty() {
            let _ = writeln!(
                out,
                "The output of verify_rollback (last lines):\n\n{}",
                block("text", &r.verify_output)
            );
        }
    }
}

fn undo(out: &mut String, n: &Note) {
    let u = &n.undo;
    out.push_str("## How to undo\n\n");
    let _ = writeln!(out, "{}\n", text(&u.statement));
    if let Some(failed) = &u.already_failed {
        let _ = writeln!(out, "> **Already failed:** {}\n", text(failed));
    }
    if let Some(cmd) = &u.command {
        let _ = writeln!(out, "{}", block("sh", cmd));
        out.push_str("It runs these rollbacks, as journalled, newest first:\n\n");
        for (num, title, rb) in &u.steps {
            let _ = writeln!(out, "1. step {num} {}: {}", text(title), code(rb));
        }
        out.push('\n');
    }
    if !u.stays.is_empty() {
        out.push_str("These stay applied (runbook cannot undo them):\n\n");
        for (num, title, why) in &u.stays {
            let _ = writeln!(out, "- step {num} {}: {}", text(title), text(why));
        }
        out.push('\n');
    }
}

fn metrics(out: &mut String, n: &Note) {
    if n.metrics.is_empty() && n.measured_once.is_empty() {
        return;
    }
    out.push_str("## Metrics before and after\n\n");
    if !n.metrics.is_empty() {
        out.push_str("| Metric | Before | After | Change | % change | Measured at | Judged |\n");
        out.push_str("|---|---:|---:|---:|---:|---|---|\n");
        for m in &n.metrics {
            let judged = match (m.good(), &m.judged) {
                (Some(true), Some(j)) => format!("good: {}", cell(&j.text)),
                (Some(false), Some(j)) => format!("**BAD**: {}", cell(&j.text)),
                _ => "-".into(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | step {} -> step {} | {judged} |",
                code(&m.comparison.name),
                m.before(),
                m.after(),
                m.change(),
                m.change_pct(),
                m.before_step,
                m.after_step
            );
        }
        out.push('\n');
    }
    if !n.measured_once.is_empty() {
        out.push_str("Measured once (nothing to compare with):\n\n");
        for (step, m) in &n.measured_once {
            let value = super::with_unit(m.value, &m.unit);
            let _ = writeln!(out, "- {} = {value} (step {step})", code(&m.name));
        }
        out.push('\n');
    }
}

fn steps(out: &mut String, n: &Note) {
    out.push_str("## Steps\n\n");
    out.push_str("| # | Step | Kind | Owner | Outcome | Exit | Duration |\n");
    out.push_str("|---:|---|---|---|---|---:|---:|\n");
    for s in &n.steps {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            s.number,
            cell(&s.title),
            s.kind,
            cell(&s.owner),
            cell(&s.result()),
            exit_code(s.exit_code),
            if s.attempts > 0 { human_ms(s.duration_ms) } else { "-".into() }
        );
    }
    out.push('\n');
    for s in &n.steps {
        step_detail(out, s);
    }
}

/// Steps on hosts: a row per host, a column per step.
fn hosts(out: &mut String, n: &Note) {
    let grid = &n.hosts;
    if grid.rows.is_empty() {
        return;
    }
    out.push_str("## Hosts\n\n| Host |");
    for step in &grid.steps {
        let title = n.steps.iter().find(|s| s.number == *step).map_or("", |s| s.title.as_str());
        let _ = write!(out, " {step}. {} |", cell(title));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(grid.steps.len()));
    out.push('\n');
    for (host, cells) in &grid.rows {
        let _ = write!(out, "| {} |", cell(host));
        for c in cells {
            let _ = write!(out, " {} |", if c.is_empty() { "-" } else { c.as_str() });
        }
        out.push('\n');
    }
    out.push('\n');
}

fn step_detail(out: &mut String, s: &super::StepNote) {
    let _ = writeln!(out, "### {}. {}\n", s.number, text(&s.title));
    let _ = writeln!(out, "- Kind: {}; owner: {}", s.kind, text(&s.owner));
    match &s.command {
        Some(c) => {
            let _ = writeln!(out, "- Command (as journalled): {}", code(c));
        }
        None => out.push_str("- Command: never started\n"),
    }
    let expected = if s.expected.is_empty() { "(nothing stated)" } else { &s.expected };
    let _ = writeln!(out, "- Expected: {}", text(expected));
    if !s.actual.is_empty() {
        let _ = writeln!(out, "- Actual: {}", text(&s.actual));
    }
    if s.attempts > 0 {
        let _ = writeln!(
            out,
            "- Exit code: {}; duration: {}; attempts: {}",
            exit_code(s.exit_code),
            human_ms(s.duration_ms),
            s.attempts
        );
    }
    let _ = writeln!(out, "- Outcome: **{}**", text(&s.result()));
    if let Some(note) = &s.note {
        let _ = writeln!(out, "- Note: {}", text(note));
    }
    match (&s.rollback, &s.irreversible) {
        (Some(rb), _) => {
            let _ = writeln!(out, "- Rollback (as journalled): {}", code(rb));
        }
        (None, Some(why)) => {
            let _ = writeln!(out, "- Rollback: none, irreversible: {}", text(why));
        }
        (None, None) => {}
    }
    if !s.output_tail.trim().is_empty() {
        let _ = write!(out, "\nOutput (last lines):\n\n{}", block("text", &s.output_tail));
    }
    out.push('\n');
}

fn rollbacks(out: &mut String, n: &Note) {
    if n.rollbacks.is_empty() {
        return;
    }
    out.push_str("## Rollbacks, in the order they ran\n\n");
    for r in &n.rollbacks {
        let _ = writeln!(
            out,
            "1. step {} {}: **{}** (exit {}, {}) at {}\n   - command: {}\n   - why: {}",
            r.step,
            text(&r.title),
            r.result(),
            exit_code(r.exit_code),
            human_ms(r.duration_ms),
            time(r.at),
            code(&r.command),
            text(&r.reason)
        );
        if !r.check.is_empty() {
            let _ = writeln!(out, "   - result: {}", text(&r.check));
        }
        if !r.output.is_empty() {
            let _ = writeln!(
                out,
                "   - output (last lines):\n\n{}",
                indent(&block("text", &r.output), "     ")
            );
        }
    }
    out.push('\n');
}

fn prompts(out: &mut String, n: &Note) {
    if n.prompts.is_empty() {
        return;
    }
    out.push_str(
        "## Answers at prompts\n\n| Time | Step | Question | Answer |\n|---|---:|---|---|\n",
    );
    for p in &n.prompts {
        let step = p.step.map_or_else(|| "-".to_string(), |s| s.to_string());
        let _ = writeln!(
            out,
            "| {} | {step} | {} | {} |",
            time(p.at),
            cell(&p.question),
            cell(&p.answer)
        );
    }
    out.push('\n');
}

fn backups(out: &mut String, n: &Note) {
    if n.backups.is_empty() {
        return;
    }
    out.push_str("## Files touched by backup steps\n\n");
    out.push_str(
        "The commands of backup steps, as journalled. The paths are the words of each command \
         that look like paths; they were read from the command, not checked on disk.\n\n",
    );
    for b in &n.backups {
        let _ = writeln!(
            out,
            "- step {} {} ({}): {}",
            b.step,
            text(&b.title),
            b.outcome.word(),
            code(&b.command)
        );
        if !b.paths.is_empty() {
            let paths: Vec<String> = b.paths.iter().map(|p| code(p)).collect();
            let _ = writeln!(out, "  - paths named: {}", paths.join(", "));
        }
    }
    out.push('\n');
}

fn flushes(out: &mut String, n: &Note) {
    if n.flushes.is_empty() {
        return;
    }
    out.push_str("## Cache flushes\n\n");
    for f in &n.flushes {
        let patterns: Vec<String> = f.patterns.iter().map(|p| code(p)).collect();
        let _ = writeln!(
            out,
            "- step {} {}: keys {} on {}",
            f.step,
            text(&f.title),
            patterns.join(", "),
            code(&f.server)
        );
        match &f.figures {
            Some(r) => {
                let _ = writeln!(
                    out,
                    "  - matched {}, deleted {}, backed up {} ({} bytes); {} matching before, {} after; took {}",
                    r.matched,
                    r.deleted,
                    r.backed_up,
                    r.backup_bytes,
                    r.count_before,
                    r.count_after,
                    human_ms(r.duration_ms)
                );
            }
            None => {
                let _ = writeln!(out, "  - no figures journalled: {}", text(&f.check));
            }
        }
        if let Some(file) = &f.backup_file {
            let _ = writeln!(out, "  - keys backed up to {}", code(file));
        }
        for (check, _) in &f.restores {
            let _ = writeln!(out, "  - restore: {}", text(check));
        }
    }
    out.push('\n');
}

fn watches(out: &mut String, n: &Note) {
    if n.watches.is_empty() {
        return;
    }
    out.push_str("## Watches\n\n");
    for w in &n.watches {
        let fail_on: Vec<String> = w.fail_on.iter().map(|p| code(p)).collect();
        let _ = writeln!(
            out,
            "- step {} {}: {} failing on {}",
            w.step,
            text(&w.title),
            code(&w.source),
            fail_on.join(", ")
        );
        match &w.outcome {
            Some(o) => {
                let _ = writeln!(
                    out,
                    "  - {} lines read, {} matched, ended: {}",
                    o.lines,
                    o.matches,
                    text(&super::watch_end(&o.end))
                );
                if !o.matched_lines.is_empty() {
                    let lines = o.matched_lines.join("\n");
                    let _ = writeln!(out, "\n{}", indent(&block("text", &lines), "  "));
                }
            }
            None => {
                let _ = writeln!(out, "  - no figures journalled: {}", text(&w.check));
            }
        }
    }
    out.push('\n');
}

fn exit_code(code: Option<i32>) -> String {
    code.map_or_else(|| "-".into(), |c| c.to_string())
}

/// Journal text in running Markdown: one line, markup characters escaped.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\r' => out.push(' '),
            // A backslash is literal unless punctuation follows it.
            '\\' if chars.peek().is_some_and(char::is_ascii_punctuation) => out.push_str("\\\\"),
            '`' | '*' | '<' | '>' | '[' | ']' | '#' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// Text in a table cell: as [`text`], and a `|` cannot end the cell.
fn cell(s: &str) -> String {
    text(s).replace('|', "\\|")
}

/// An inline code span that holds any text: the fence is longer than any run of backticks in it.
pub fn code(s: &str) -> String {
    let one_line = s.replace(['\n', '\r'], " ");
    let fence = "`".repeat(longest_run(&one_line, '`') + 1);
    let pad = if one_line.starts_with('`') || one_line.ends_with('`') { " " } else { "" };
    format!("{fence}{pad}{one_line}{pad}{fence}")
}

/// A fenced block that holds any text.
fn block(lang: &str, s: &str) -> String {
    let fence = "`".repeat(longest_run(s, '`').max(2) + 1);
    format!("{fence}{lang}\n{}\n{fence}\n", s.trim_end_matches('\n'))
}

fn longest_run(s: &str, c: char) -> usize {
    let (mut best, mut run) = (0, 0);
    for x in s.chars() {
        run = if x == c { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

fn indent(s: &str, by: &str) -> String {
    s.lines().map(|l| format!("{by}{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_spans_hold_backticks() {
        assert_eq!(code("echo `date`"), "`` echo `date` ``");
        assert_eq!(code("a"), "`a`");
        assert_eq!(code("`x`"), "`` `x` ``");
    }

    #[test]
    fn text_cannot_open_a_tag() {
        assert_eq!(text("<script>*x*"), "\\<script\\>\\*x\\*");
        assert_eq!(text(r"a\n b\*"), r"a\n b\\\*");
    }
}
