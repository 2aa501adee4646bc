//! Rehearsals and the production gate. A passed rehearsal is recorded for the runbook's content
//! hash and environment in `rehearsals.jsonl` in the state directory; an environment with
//! `require_rehearsal` refuses to run a revision that has not passed one recently enough.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::runbook::{Gate, Runbook};

/// One passed rehearsal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rehearsal {
    pub ts: DateTime<Utc>,
    pub name: String,
    pub hash: String,
    pub env: String,
    pub run_id: String,
    pub operator: String,
    pub host: String,
}

fn index_path(state_dir: &Path) -> PathBuf {
    state_dir.join("rehearsals.jsonl")
}

/// Record a passed rehearsal, durably.
pub fn record(state_dir: &Path, rehearsal: &Rehearsal) -> Result<()> {
    let path = index_path(state_dir);
    let mut line = serde_json::to_vec(rehearsal)?;
    line.push(b'\n');
    let mut file = crate::private::open(&path, crate::private::options().create(true).append(true))
        .with_context(|| format!("cannot open {}", path.display()))?;
    file.write_all(&line)
        .and_then(|()| file.sync_data())
        .with_context(|| format!("cannot record the rehearsal in {}", path.display()))
}

/// Every recorded rehearsal of this runbook in this environment, oldest first. Lines that do not
/// parse (a torn last line) are passed over.
pub fn rehearsals(state_dir: &Path, name: &str, env: &str) -> Vec<Rehearsal> {
    let text = std::fs::read_to_string(index_path(state_dir)).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Rehearsal>(l).ok())
        .filter(|r| r.name == name && r.env == env)
        .collect()
}

/// Share a passed rehearsal with the team, through `[store]`.
pub fn share(url: &str, rehearsal: &Rehearsal) -> Result<()> {
    let line = serde_json::to_string(rehearsal)?;
    crate::journal::shared::append(
        url,
        &crate::journal::shared::rehearsal_stream(&rehearsal.name),
        &line,
    )
}

/// Local rehearsals plus the team's from `[store]`, oldest first. An unreachable store is said
/// and the local record decides alone.
pub fn with_team_rehearsals(
    mut local: Vec<Rehearsal>,
    url: &str,
    name: &str,
    env: &str,
) -> Vec<Rehearsal> {
    match crate::journal::shared::records(url, &crate::journal::shared::rehearsal_stream(name)) {
        Ok(lines) => {
            let team = lines.iter().filter_map(|l| serde_json::from_str::<Rehearsal>(l).ok());
            for r in team.filter(|r| r.env == env) {
                if !local.iter().any(|l| l.run_id == r.run_id) {
                    local.push(r);
                }
            }
            local.sort_by_key(|r| r.ts);
        }
        Err(e) => eprintln!(
            "warning: the team store {} is unreachable ({e:#}); the gate sees only this machine's rehearsals",
            crate::secret::redact(url)
        ),
    }
    local
}

/// What the gate decided.
#[derive(Debug)]
pub enum Verdict {
    Pass(Rehearsal),
    Refuse(String),
}

/// Check `rb` against its environment's gate, with `history` as the rehearsals on record.
pub fn check(rb: &Runbook, gate: &Gate, history: &[Rehearsal], now: DateTime<Utc>) -> Verdict {
    let same_revision = history.iter().rev().find(|r| r.hash == rb.hash);
    let window = chrono::Duration::from_std(gate.within).unwrap_or(chrono::Duration::MAX);
    let within = crate::runbook::duration::human(gate.within);
    let short = &rb.hash[..12];
    match same_revision {
        Some(r) if now - r.ts <= window => Verdict::Pass(r.clone()),
        Some(r) => Verdict::Refuse(format!(
            "this revision ({short}) last passed a rehearsal in {} on {} ({} ago, run {}), outside the {within} window",
            gate.env,
            r.ts.format("%Y-%m-%d %H:%M:%SZ"),
            ago(now - r.ts),
            r.run_id
        )),
        None => match history.last() {
            Some(r) => Verdict::Refuse(format!(
                "the runbook changed since its last rehearsal in {}: revision {} passed on {} (run {}), but this revision ({short}) never has",
                gate.env,
                &r.hash[..12.min(r.hash.len())],
                r.ts.format("%Y-%m-%d %H:%M:%SZ"),
                r.run_id
            )),
            None => Verdict::Refuse(format!(
                "this runbook has never passed a rehearsal in {}",
                gate.env
            )),
        },
    }
}

fn ago(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0);
    match secs {
        0..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}
