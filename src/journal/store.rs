//! The state directory: where runs live, how a new run gets its folder and id, and how a run is
//! found again by id, unique prefix or `last`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::Utc;

use super::reader::{self, RunState};

/// The state directory: `--state-dir`, else `RUNBOOK_STATE_DIR`, else
/// `$XDG_STATE_HOME/runbook`, else `~/.local/state/runbook`.
pub fn state_dir(flag: Option<&Path>) -> PathBuf {
    let dir = choose_state_dir(flag);
    crate::private::set_root(&dir);
    dir
}

fn choose_state_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(dir) = flag {
        return dir.to_path_buf();
    }
    if let Some(dir) = std::env::var_os("RUNBOOK_STATE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("runbook");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/state/runbook")
}

pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(root: PathBuf) -> Store {
        Store { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// Make a folder for a new run. Ids sort by start time, to the millisecond, so two runs in
    /// the same second still list newest first: `20261123T054700.123Z-upload-limits-3f9a`.
    pub fn create_run(&self, name: &str) -> Result<(String, PathBuf)> {
        let runs = self.runs_dir();
        crate::private::create_dir_all(&runs).with_context(|| {
            format!(
                "cannot create the state directory {} (set --state-dir or RUNBOOK_STATE_DIR)",
                runs.display()
            )
        })?;
        check_writable(&runs)?;
        let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let slug: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
            .take(40)
            .collect();
        for attempt in 0..100u32 {
            let id = format!("{stamp}-{slug}-{:04x}", suffix(attempt));
            let dir = runs.join(&id);
            match crate::private::create_new_dir(&dir) {
                Ok(()) => {
                    crate::private::create_dir_all(&dir.join("logs"))?;
                    return Ok((id, dir));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", dir.display()));
                }
            }
        }
        bail!("cannot find a free run id in {}", runs.display())
    }

    /// Every run id, newest first.
    pub fn run_ids(&self) -> Result<Vec<String>> {
        let runs = self.runs_dir();
        let entries = match std::fs::read_dir(&runs) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", runs.display())),
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("journal.jsonl").exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        Ok(ids)
    }

    /// Find a run by full id, unique prefix, or `last`.
    pub fn find(&self, wanted: &str) -> Result<RunState> {
        reader::read(&self.find_dir(wanted)?)
    }

    /// The folder of a run, by full id, unique prefix, or `last`, without reading its journal
    /// (a command that writes to it takes the run's lock first).
    pub fn find_dir(&self, wanted: &str) -> Result<PathBuf> {
        let ids = self.run_ids()?;
        let matches: Vec<&String> = if wanted == "last" {
            ids.iter().take(1).collect()
        } else {
            ids.iter().filter(|id| id.starts_with(wanted)).collect()
        };
        match matches.as_slice() {
            [id] => Ok(self.runs_dir().join(id)),
            [] => bail!(
                "no run {wanted:?} in {} (expected a run id from `runbook history`, a unique prefix, or `last`)",
                self.runs_dir().display()
            ),
            many => bail!("{wanted:?} matches {} runs; give more of the id", many.len()),
        }
    }
}

/// Fail before any step runs when the state directory cannot take a journal.
fn check_writable(dir: &Path) -> Result<()> {
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    crate::private::write(&probe, b"ok")
        .and_then(|()| Ok(std::fs::remove_file(&probe)?))
        .with_context(|| {
            format!("the state directory {} is not writable; nothing was run", dir.display())
        })
}

fn suffix(attempt: u32) -> u32 {
    let nanos = Utc::now().timestamp_subsec_nanos();
    (nanos ^ std::process::id().rotate_left(7) ^ attempt.wrapping_mul(0x9e37)) & 0xffff
}
