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

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::IntoDeserializer;
use serde::de::value::StrDeserializer;

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

/// A run as `history` and `list` see it: a line of the index, parsed only as far as a filter
/// needs (most of a hundred thousand lines are only looked at), or a run read from its journal.
pub enum Run<'a> {
    Indexed(Entry<'a>),
    Read(Summary),
}

impl Run<'_> {
    pub fn id(&self) -> &str {
        match self {
            Run::Indexed(e) => e.fields[0],
            Run::Read(s) => &s.id,
        }
    }

    pub fn name(&self) -> Cow<'_, str> {
        match self {
            Run::Indexed(e) => unescape(e.fields[1]),
            Run::Read(s) => Cow::Borrowed(&s.name),
        }
    }

    pub fn env(&self) -> Option<Cow<'_, str>> {
        match self {
            Run::Indexed(e) => optional(e.fields[5]).map(unescape),
            Run::Read(s) => s.env.as_deref().map(Cow::Borrowed),
        }
    }

    /// The recorded end, if any.
    pub fn finished(&self) -> Option<RunStatus> {
        match self {
            Run::Indexed(e) => Some(e.status),
            Run::Read(s) => s.finished.map(|(status, _)| status),
        }
    }

    pub fn status_word(&self) -> String {
        match self {
            Run::Indexed(e) => status_name(e.status),
            Run::Read(s) => s.status_word(),
        }
    }

    pub fn started_at(&self) -> DateTime<Utc> {
        match self {
            Run::Indexed(e) => time(e.fields[9]).unwrap_or(DateTime::<Utc>::MIN_UTC),
            Run::Read(s) => s.started_at,
        }
    }

    pub fn summary(&self) -> Summary {
        match self {
            Run::Indexed(e) => e.summary(),
            Run::Read(s) => s.clone(),
        }
    }
}

/// One line of the index, split but not yet unescaped or parsed.
pub struct Entry<'a> {
    fields: [&'a str; FIELDS],
    status: RunStatus,
}

impl Entry<'_> {
    fn summary(&self) -> Summary {
        let f = &self.fields;
        let text = |i: usize| unescape(f[i]).into_owned();
        Summary {
            id: text(0),
            name: text(1),
            path: text(2),
            hash: text(3),
            command: text(4),
            env: optional(f[5]).map(|v| unescape(v).into_owned()),
            operator: text(6),
            host: text(7),
            reason: optional(f[8]).map(|v| unescape(v).into_owned()),
            started_at: time(f[9]).unwrap_or(DateTime::<Utc>::MIN_UTC),
            last_at: time(f[10]).unwrap_or(DateTime::<Utc>::MIN_UTC),
            finished: Some((self.status, f[12].parse().unwrap_or_default())),
            steps_ok: f[13].parse().unwrap_or_default(),
            steps_total: f[14].parse().unwrap_or_default(),
            open_label: None,
        }
    }
}

/// Show every readable run in `runs_dir` to `visit`, newest first, with the index brought up to
/// date on the way; returns the runs whose journals could not be read, with why.
pub fn each_run(runs_dir: &Path, mut visit: impl FnMut(&Run<'_>)) -> Result<Vec<String>> {
    let mut ids = folder_ids(runs_dir)?;
    ids.sort_unstable_by(|a, b| b.cmp(a));
    let index_path = index_path(runs_dir);
    let text = std::fs::read_to_string(&index_path).unwrap_or_default();
    let (known, changed) = load(&text);
    let mut dirty = !changed.is_empty();
    // Both lists are newest first: walk them side by side (no hashing of a hundred thousand ids).
    let mut next = 0;
    let mut stale = 0;
    let mut lines: Vec<Cow<'_, str>> = Vec::with_capacity(ids.len());
    let mut unreadable = Vec::new();
    for id in &ids {
        while next < known.len() && known[next].0 > id.as_str() {
            stale += 1; // its folder is gone
            next += 1;
        }
        let mut line = None;
        if next < known.len() && known[next].0 == id.as_str() {
            line = Some(known[next].1).filter(|_| !changed.contains(id.as_str()));
            next += 1;
        }
        if let Some(entry) = line.and_then(parse) {
            lines.push(Cow::Borrowed(line.unwrap_or_default()));
            visit(&Run::Indexed(entry));
            continue;
        }
        dirty |= line.is_some(); // a line that does not parse is replaced
        match reader::read(&runs_dir.join(id)) {
            Ok(run) => {
                let summary = Summary::of(&run);
                if summary.finished.is_some() {
                    dirty = true;
                    lines.push(Cow::Owned(format(&summary)));
                }
                visit(&Run::Read(summary));
            }
            // A folder made a moment ago has no journal yet: not a problem, not a run yet.
            Err(_) if !runs_dir.join(id).join("journal.jsonl").exists() => {}
            Err(e) => unreadable.push(format!("{id}: {e:#}")),
        }
    }
    dirty |= stale + (known.len() - next) > 0;
    if dirty {
        // Best effort: an index that cannot be written is rebuilt next time, nothing more.
        let _ = save(&index_path, &lines);
    }
    Ok(unreadable)
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
    let line = format!("changed\t{id}\n");
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

/// The index's lines with their run ids, newest first, one per run, and the ids marked changed;
/// empty when it is missing or not ours. Lines are kept as written: most are never parsed.
fn load(text: &str) -> (Vec<(&str, &str)>, HashSet<&str>) {
    let mut known = Vec::new();
    let mut changed = HashSet::new();
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return (known, changed);
    }
    for line in lines {
        if let Some(id) = line.strip_prefix("changed\t") {
            changed.insert(id);
        } else if let Some((id, _)) = line.split_once('\t') {
            known.push((id, line));
        }
    }
    // The index is written newest first; lines appended since may not be. A stable sort keeps
    // the file's order among lines of one run, and the last of them is the one that counts.
    if !known.windows(2).all(|w| w[0].0 > w[1].0) {
        known.sort_by(|a, b| b.0.cmp(a.0));
        known.reverse();
        known.dedup_by(|later, earlier| later.0 == earlier.0);
        known.reverse();
    }
    (known, changed)
}

/// Write the whole index to a temporary file and rename it over the old one, so a reader sees
/// the old index or the new one, never half of one.
fn save(path: &Path, lines: &[Cow<'_, str>]) -> Result<()> {
    let mut text = String::with_capacity(lines.len() * 256);
    text.push_str(HEADER);
    text.push('\n');
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

const FIELDS: usize = 15;

/// A finished run as one line (only finished runs are indexed: the others are read from their
/// journals every time anyway).
fn format(s: &Summary) -> String {
    let (status, code) = match s.finished {
        Some((status, code)) => (status_name(status), code.to_string()),
        None => (String::new(), String::new()),
    };
    let fields: [&str; FIELDS] = [
        &s.id,
        &s.name,
        &s.path,
        &s.hash,
        &s.command,
        s.env.as_deref().unwrap_or(NONE),
        &s.operator,
        &s.host,
        s.reason.as_deref().unwrap_or(NONE),
        &s.started_at.to_rfc3339(),
        &s.last_at.to_rfc3339(),
        &status,
        &code,
        &s.steps_ok.to_string(),
        &s.steps_total.to_string(),
    ];
    fields.iter().map(|f| escape(f)).collect::<Vec<_>>().join("\t")
}

/// A line split into its fields; `None` for a line that is torn or not ours (its run is then
/// read from its journal).
fn parse(line: &str) -> Option<Entry<'_>> {
    let mut fields = [""; FIELDS];
    let mut parts = line.split('\t');
    for field in &mut fields {
        *field = parts.next()?;
    }
    if parts.next().is_some() {
        return None;
    }
    let name: StrDeserializer<'_, serde::de::value::Error> = fields[11].into_deserializer();
    let status = RunStatus::deserialize(name).ok()?;
    // Times are parsed when a filter or the output needs them; a line is ours if it has the
    // right number of fields and a status.
    Some(Entry { fields, status })
}

/// Marks an absent environment or reason (an empty one is a value).
const NONE: &str = "\0";

fn optional(field: &str) -> Option<&str> {
    (field != NONE).then_some(field)
}

fn time(field: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(field).ok().map(|t| t.with_timezone(&Utc))
}

fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['\\', '\t', '\n', '\r']) {
        return Cow::Borrowed(text);
    }
    let escaped =
        text.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n").replace('\r', "\\r");
    Cow::Owned(escaped)
}

fn unescape(text: &str) -> Cow<'_, str> {
    if !text.contains('\\') {
        return Cow::Borrowed(text);
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
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_appended_out_of_order_are_sorted_and_the_last_line_of_a_run_counts() {
        let text = format!("{HEADER}\nb\tfirst\na\tonly\nc\tx\nb\tsecond\nchanged\tc\n");
        let (known, changed) = load(&text);
        assert_eq!(known, [("c", "c\tx"), ("b", "b\tsecond"), ("a", "a\tonly")]);
        assert!(changed.contains("c"));
        let (known, _) = load("not our header\nb\tx\n");
        assert!(known.is_empty(), "a foreign file is not read as an index");
    }

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
        assert_eq!(parse(&line).map(|e| e.summary()), Some(s));
    }
}
