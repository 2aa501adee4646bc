//! The history index: one line per run (`history.index` beside `runs/`), so `history` and
//! `list` over a hundred thousand runs read one file instead of every journal. It is a cache,
//! never the source of truth: it is brought up to date from the journals each time it is read.
//!
//! - A run folder with no line (a new run, an index that is missing or was deleted) is read from
//!   its journal and added; a line whose folder is gone is dropped.
//! - A run with no end recorded is read from its journal every time (it may be running, or be
//!   resumed): the index only trusts finished runs.
//! - A writer that records an end or a resume appends `changed <id>`, so a finished run that is
//!   later rolled back or resumed is read again.
//! - An unreadable or foreign index is rebuilt. Lines are tab-separated (tabs, newlines and
//!   backslashes escaped), parsed without a JSON parser, because parsing is most of the cost.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use super::event::RunStatus;
use super::reader::{self, RunState};

const HEADER: &str = "runbook-history-index 1";
const FILE: &str = "history.index";

/// What `history` and `list` show of a run, without its events.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub id: String,
    pub name: String,
    pub path: String,
    pub hash: String,
    pub command: String,
    pub env: Option<String>,
    pub operator: String,
    pub host: String,
    pub reason: Option<String>,
    pub started_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    /// The last recorded end, if any.
    pub finished: Option<(RunStatus, i32)>,
    pub steps_ok: usize,
    pub steps_total: usize,
    /// For runs with no end: `running` or `interrupted (no end recorded)`, worked out when read.
    pub open_label: Option<String>,
}

impl Summary {
    pub fn of(run: &RunState) -> Summary {
        let s = &run.started;
        Summary {
            id: run.id.clone(),
            name: s.name.clone(),
            path: s.runbook.clone(),
            hash: s.hash.clone(),
            command: s.command.clone(),
            env: s.env.clone(),
            operator: s.operator.clone(),
            host: s.host.clone(),
            reason: s.reason.clone(),
            started_at: run.started_at,
            last_at: run.last_at,
            finished: run.finished,
            steps_ok: run.steps.values().filter(|st| st.ran_ok).count(),
            steps_total: run.steps.len(),
            open_label: run.finished.is_none().then(|| run.status_label()),
        }
    }

    /// One or two words for where the run stands, as `history` prints and `--status` takes.
    pub fn status_word(&self) -> String {
        match (self.finished, self.open_label.as_deref()) {
            (Some((status, _)), _) => status_name(status),
            (None, Some("running")) => "running".into(),
            (None, _) => "no_end".into(),
        }
    }

    /// A short phrase for where the run stands.
    pub fn status_label(&self) -> String {
        match self.finished {
            Some((status, _)) => status.label().to_string(),
            None => {
                self.open_label.clone().unwrap_or_else(|| "interrupted (no end recorded)".into())
            }
        }
    }
}

/// A status as the journal and `--json` spell it (`rolled_back`).
pub fn status_name(status: RunStatus) -> String {
    serde_json::to_value(status).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

/// Every readable run in `runs_dir`, newest first, with the index brought up to date; and the
/// runs whose journals could not be read, with why.
pub fn summaries(runs_dir: &Path) -> Result<(Vec<Summary>, Vec<String>)> {
    let ids = folder_ids(runs_dir)?;
    let index_path = index_path(runs_dir);
    let (mut known, changed) = load(&index_path);
    let mut dirty = !changed.is_empty();
    let mut unreadable = Vec::new();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(summary) = known.remove(&id).filter(|_| !changed.contains(&id)) {
            out.push(summary);
            continue;
        }
        match reader::read(&runs_dir.join(&id)) {
            Ok(run) => {
                let summary = Summary::of(&run);
                dirty |= summary.finished.is_some();
                out.push(summary);
            }
            // A folder made a moment ago has no journal yet: not a problem, not a run yet.
            Err(_) if !runs_dir.join(&id).join("journal.jsonl").exists() => {}
            Err(e) => unreadable.push(format!("{id}: {e:#}")),
        }
    }
    // Lines left over are runs whose folders are gone.
    dirty |= !known.is_empty();
    out.sort_unstable_by(|a, b| b.id.cmp(&a.id));
    if dirty {
        // Best effort: an index that cannot be written is rebuilt next time, nothing more.
        let _ = save(&index_path, &out);
    }
    Ok((out, unreadable))
}

/// Note that a run's journal changed after its end (a resume, a rollback of the run), so the
/// index reads it again. Called by the journal writer; best effort, like the index itself.
pub fn mark_changed(journal: &Path) {
    let Some(run_dir) = journal.parent() else { return };
    let Some(runs_dir) = run_dir.parent().filter(|d| d.file_name() == Some("runs".as_ref())) else {
        return;
    };
    let Some(id) = run_dir.file_name().and_then(|n| n.to_str()) else { return };
    let path = index_path(runs_dir);
    if !path.exists() {
        return;
    }
    let line = format!("changed\t{}\n", escape(id));
    if let Ok(mut file) = std::fs::OpenOptions::new().append(true).open(&path) {
        let _ = file.write_all(line.as_bytes());
    }
}

fn index_path(runs_dir: &Path) -> PathBuf {
    runs_dir.parent().unwrap_or(runs_dir).join(FILE)
}

/// The names of the run folders (names only: no stat per folder).
fn folder_ids(runs_dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(runs_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", runs_dir.display())),
    };
    Ok(entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| !name.starts_with('.'))
        .collect())
}

/// The index's runs and the ids marked changed; empty when it is missing or not ours.
fn load(path: &Path) -> (HashMap<String, Summary>, HashSet<String>) {
    let mut known = HashMap::new();
    let mut changed = HashSet::new();
    let Ok(text) = std::fs::read_to_string(path) else { return (known, changed) };
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return (known, changed);
    }
    for line in lines {
        if let Some(id) = line.strip_prefix("changed\t") {
            changed.insert(unescape(id));
        } else if let Some(summary) = parse(line) {
            changed.remove(&summary.id);
            known.insert(summary.id.clone(), summary);
        }
        // A line that does not parse (torn by a crash) is skipped: its run is read again.
    }
    (known, changed)
}

/// Write the whole index to a temporary file and rename it over the old one, so a reader sees
/// the old index or the new one, never half of one.
fn save(path: &Path, runs: &[Summary]) -> Result<()> {
    let mut text = String::with_capacity(runs.len() * 256);
    text.push_str(HEADER);
    text.push('\n');
    // Only finished runs: the others are read from their journals every time anyway.
    for summary in runs.iter().filter(|s| s.finished.is_some()) {
        text.push_str(&format(summary));
        text.push('\n');
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn format(s: &Summary) -> String {
    let (status, code) = match s.finished {
        Some((status, code)) => (status_name(status), code.to_string()),
        None => (String::new(), String::new()),
    };
    let fields = [
        s.id.as_str(),
        &s.name,
        &s.path,
        &s.hash,
        &s.command,
        s.env.as_deref().unwrap_or("\0"),
        &s.operator,
        &s.host,
        s.reason.as_deref().unwrap_or("\0"),
        &s.started_at.to_rfc3339(),
        &s.last_at.to_rfc3339(),
        &status,
        &code,
        &s.steps_ok.to_string(),
        &s.steps_total.to_string(),
    ];
    fields.iter().map(|f| escape(f)).collect::<Vec<_>>().join("\t")
}

fn parse(line: &str) -> Option<Summary> {
    let f: Vec<String> = line.split('\t').map(unescape).collect();
    let [
        id,
        name,
        path,
        hash,
        command,
        env,
        operator,
        host,
        reason,
        started,
        last,
        status,
        code,
        ok,
        total,
    ] = <[String; 15]>::try_from(f).ok()?;
    let optional = |v: String| (v != "\0").then_some(v);
    let status: RunStatus = serde_json::from_value(serde_json::Value::String(status)).ok()?;
    Some(Summary {
        id,
        name,
        path,
        hash,
        command,
        env: optional(env),
        operator,
        host,
        reason: optional(reason),
        started_at: DateTime::parse_from_rfc3339(&started).ok()?.with_timezone(&Utc),
        last_at: DateTime::parse_from_rfc3339(&last).ok()?.with_timezone(&Utc),
        finished: Some((status, code.parse().ok()?)),
        steps_ok: ok.parse().ok()?,
        steps_total: total.parse().ok()?,
        open_label: None,
    })
}

fn escape(text: &str) -> String {
    if !text.contains(['\\', '\t', '\n', '\r']) {
        return text.to_string();
    }
    text.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n").replace('\r', "\\r")
}

fn unescape(text: &str) -> String {
    if !text.contains('\\') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_survives_the_index_line_whatever_its_text() {
        let when = DateTime::parse_from_rfc3339("2026-11-23T05:47:00.123Z").unwrap().to_utc();
        let s = Summary {
            id: "20261123T054700.123Z-x-0001".into(),
            name: "x".into(),
            path: "/tmp/a\tb\\c\nd.toml".into(),
            hash: "ab".into(),
            command: "run".into(),
            env: None,
            operator: "eve \\t".into(),
            host: "h".into(),
            reason: Some(String::new()),
            started_at: when,
            last_at: when,
            finished: Some((RunStatus::RolledBack, 3)),
            steps_ok: 2,
            steps_total: 5,
            open_label: None,
        };
        let line = format(&s);
        assert!(!line.contains('\n'));
        assert_eq!(parse(&line), Some(s));
    }
}
