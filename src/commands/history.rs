//! `history`, `show` and `logs`: what happened, read from the journals (`history` through the
//! index kept beside them, which it brings up to date first).

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::IntoDeserializer;
use serde::de::value::StrDeserializer;
use serde_json::json;

use crate::cli::HistoryArgs;
use crate::engine::code;
use crate::journal::index::{self, Run, Summary};
use crate::journal::{Event, RunState, RunStatus, Store, reader, shared};
use crate::plan::find_step;
use crate::runbook::duration;
use crate::ui::Ui;

pub fn history(store: &Store, args: &HistoryArgs) -> Result<i32> {
    let filter = Filter::new(args)?;
    // With a team store, its runs are merged in by date: keep every local match until then.
    let room = if args.store.is_some() { usize::MAX } else { args.limit };
    let mut runs: Vec<Summary> = Vec::new();
    let unreadable = index::each_run(&store.runs_dir(), |run| {
        if runs.len() < room && filter.keeps(run) {
            runs.push(run.summary());
        }
    })?;
    if let Some(url) = &args.store {
        add_team_runs(&mut runs, url, &filter);
        runs.sort_by(|a, b| b.id.cmp(&a.id));
    }
    runs.truncate(args.limit);
    if args.json {
        let list: Vec<_> = runs.iter().map(summary_json).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if runs.is_empty() {
        match filter.any {
            true => println!("no runs match in {}", store.runs_dir().display()),
            false => println!("no runs yet in {}", store.runs_dir().display()),
        }
    } else {
        print_table(&runs);
    }
    for problem in unreadable {
        eprintln!("warning: cannot read run {problem}");
    }
    Ok(code::OK)
}

/// `--runbook`, `--env`, `--status`, `--since`: every one given must match.
struct Filter<'a> {
    runbook: Option<&'a str>,
    env: Option<&'a str>,
    /// The status asked for as the journal spells an end (`rolled_back`), or `running`/`no_end`.
    status: Option<(Option<RunStatus>, &'a str)>,
    since: Option<DateTime<Utc>>,
    any: bool,
}

impl<'a> Filter<'a> {
    fn new(args: &'a HistoryArgs) -> Result<Filter<'a>> {
        let since = match &args.since {
            Some(text) => {
                let d = duration::parse(text).with_context(|| {
                    format!("--since {text:?} is not a duration (expected e.g. 90m, 24h, 7d)")
                })?;
                let d = chrono::Duration::from_std(d).context("--since is too long")?;
                Some(Utc::now().checked_sub_signed(d).unwrap_or(DateTime::<Utc>::MIN_UTC))
            }
            None => None,
        };
        let status = args.status.as_deref().map(|text| {
            let name: StrDeserializer<'_, serde::de::value::Error> = text.into_deserializer();
            (RunStatus::deserialize(name).ok(), text)
        });
        let any = args.runbook.is_some() || args.env.is_some() || status.is_some();
        Ok(Filter {
            runbook: args.runbook.as_deref(),
            env: args.env.as_deref(),
            status,
            since,
            any: any || since.is_some(),
        })
    }

    /// The cheap tests first: most of the runs of a long history are only looked at here.
    fn keeps(&self, run: &Run<'_>) -> bool {
        self.status.is_none_or(|wanted| match wanted {
            (Some(ended), _) => run.finished() == Some(ended),
            (None, word) => run.finished().is_none() && run.status_word() == word,
        }) && self.runbook.is_none_or(|n| run.name() == n)
            && self.env.is_none_or(|e| run.env().as_deref() == Some(e))
            && self.since.is_none_or(|t| run.started_at() >= t)
    }
}

/// Runs recorded in the team's streams that this machine does not have. An unreachable store
/// is a warning: the local history is still true.
fn add_team_runs(runs: &mut Vec<Summary>, url: &str, filter: &Filter<'_>) {
    let found = shared::stream_names(url).and_then(|names| {
        let mut out = Vec::new();
        for stream in names {
            out.extend(shared::read_journals(url, &stream)?);
        }
        Ok(out)
    });
    match found {
        Ok(journals) => {
            for (id, lines) in journals {
                if runs.iter().any(|r| r.id == id) {
                    continue;
                }
                let place = std::path::PathBuf::from(format!("(team store) {id}"));
                if let Ok(state) = reader::from_lines(&place, &lines) {
                    let run = Run::Read(Summary::of(&state));
                    if filter.keeps(&run) {
                        runs.push(run.summary());
                    }
                }
            }
        }
        Err(e) => eprintln!(
            "warning: the team store {} is unreachable ({e:#}); showing this machine's runs only",
            crate::secret::redact(url)
        ),
    }
}

fn summary_json(run: &Summary) -> serde_json::Value {
    json!({
        "id": run.id,
        "runbook": run.name,
        "path": run.path,
        "hash": run.hash,
        "command": run.command,
        "env": run.env,
        "operator": run.operator,
        "host": run.host,
        "reason": run.reason,
        "started_at": run.started_at,
        "last_event_at": run.last_at,
        "status": run.finished.map(|(s, _)| index::status_name(s)),
        "status_label": run.status_label(),
        "exit_code": run.finished.map(|(_, c)| c),
        "steps_succeeded": run.steps_ok,
        "steps_total": run.steps_total,
    })
}

/// The runs as a table whose columns fit their contents.
fn print_table(runs: &[Summary]) {
    let header = ["RUN", "STATUS", "RUNBOOK", "ENV", "STEPS OK", "STARTED (UTC)", "OPERATOR"];
    let rows: Vec<[String; 7]> = runs
        .iter()
        .map(|run| {
            [
                run.id.clone(),
                run.status_word(),
                run.name.clone(),
                run.env.clone().unwrap_or_else(|| "-".into()),
                format!("{}/{}", run.steps_ok, run.steps_total),
                run.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                run.operator.clone(),
            ]
        })
        .collect();
    print_columns(&header, &rows);
}

/// Rows under a header, each column as wide as its widest cell.
pub(crate) fn print_columns<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> =
            cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub fn show(store: &Store, wanted: &str, json: bool) -> Result<i32> {
    let run = store.find(wanted)?;
    if json {
        let steps: Vec<_> = run.steps.values().collect();
        let mut out = summary_json(&Summary::of(&run));
        out["steps"] = serde_json::to_value(&steps)?;
        out["vars"] = serde_json::to_value(&run.started.vars)?;
        out["events"] = serde_json::to_value(&run.records)?;
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(code::OK);
    }
    print_run(&run);
    Ok(code::OK)
}

fn print_run(run: &RunState) {
    let ui = Ui::new();
    let s = &run.started;
    println!("{}  {}", ui.bold(&run.id), run.status_label());
    println!("runbook  {} ({}, sha256 {})", s.name, s.runbook, &s.hash[..12.min(s.hash.len())]);
    println!("env      {}", s.env.as_deref().unwrap_or("-"));
    println!("operator {} on {}", s.operator, s.host);
    println!("reason   {}", s.reason.as_deref().unwrap_or("-"));
    if let Some((reason, refusal)) = &run.gate_overridden {
        println!(
            "{}",
            ui.warn(&format!("gate     OVERRIDDEN ({reason}); it had refused: {refusal}"))
        );
    }
    println!("started  {}   last event {}", run.started_at.to_rfc3339(), run.last_at.to_rfc3339());
    if let Some((first, last)) = s.range.filter(|r| *r != (1, s.steps.len())) {
        println!("steps    {first}-{last} of {} (a slice: run --from/--to)", s.steps.len());
    }
    for t in &run.takeovers {
        println!("then     {}", t.describe());
    }
    if !run.damaged.is_empty() {
        let lines: Vec<String> = run.damaged.iter().map(|n| n.to_string()).collect();
        println!("{}", ui.warn(&format!("note: journal lines {} cannot be read (damage, not a crash); resume and rollback refuse without --accept-damaged-journal", lines.join(", "))));
    }
    if run.torn_line {
        println!(
            "{}",
            ui.warn(
                "note: a journal line could not be read (torn by a crash while writing it); it was skipped"
            )
        );
    }
    println!();
    for info in &s.steps {
        let Some(step) = run.steps.get(&info.number) else { continue };
        let status = serde_json::to_value(step.status)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let tries = if step.attempts > 1 {
            format!(" ({} attempts)", step.attempts)
        } else {
            String::new()
        };
        println!("{:>3}. {:<40} {:<14} {}{tries}", info.number, info.title, status, step.check);
        if let Some(rb) = &step.rollback_check {
            println!("     rollback: {rb}");
        }
        if let Some(note) = &step.note {
            println!("     {note}");
        }
    }
    let prompts: Vec<String> = run
        .records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Prompt { question, answer, by, .. } if !by.is_empty() => {
                Some(format!("  {question} -> {answer} ({by})"))
            }
            Event::Prompt { question, answer, .. } => Some(format!("  {question} -> {answer}")),
            _ => None,
        })
        .collect();
    if !prompts.is_empty() {
        println!("\nanswers at prompts:");
        for p in prompts {
            println!("{p}");
        }
    }
}

pub fn logs(store: &Store, wanted: &str, step: Option<&str>, json: bool) -> Result<i32> {
    let run = store.find(wanted)?;
    let infos = &run.started.steps;
    let chosen: Vec<usize> = match step {
        Some(s) => {
            let i = find_step(infos.iter().map(|i| (i.number, i.id.as_deref())), s)?;
            vec![infos[i].number]
        }
        None => infos.iter().map(|i| i.number).collect(),
    };
    let mut files = Vec::new();
    for n in chosen {
        let mut names: Vec<_> = std::fs::read_dir(run.dir.join("logs"))
            .with_context(|| format!("cannot list the logs of run {}", run.id))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(&format!("{n:02}-")))
            .collect();
        names.sort();
        files.extend(names.into_iter().map(|name| (n, name)));
    }
    if json {
        let list: Result<Vec<_>> = files
            .iter()
            .map(|(n, name)| {
                let text = std::fs::read(run.dir.join("logs").join(name))?;
                Ok(json!({"step": n, "log": name, "output": String::from_utf8_lossy(&text)}))
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list?)?);
        return Ok(code::OK);
    }
    for (n, name) in files {
        println!("==> step {n} {} ({name}) <==", run.step_title(n));
        let mut file = std::fs::File::open(run.dir.join("logs").join(&name))?;
        let mut out = std::io::stdout().lock();
        if let Err(e) = std::io::copy(&mut file, &mut out)
            && e.kind() != std::io::ErrorKind::BrokenPipe
        {
            return Err(e.into());
        }
    }
    Ok(code::OK)
}
