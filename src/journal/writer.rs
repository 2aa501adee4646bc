//! Appends events to a run's journal. Each event is one `write` of one line, then `fdatasync`, so
//! when a step begins its start is on disk, and a crash can only tear the last line.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::Utc;

use super::event::{Event, Record};

pub struct Writer {
    file: File,
    /// The team's stream in Redis, when the runbook has `[store]`.
    mirror: Option<super::shared::Mirror>,
    path: PathBuf,
    seq: u64,
}

impl Writer {
    /// Open (or create) a journal for appending; `seq` continues from the events already there.
    pub fn open(path: &Path, seq: u64) -> Result<Writer> {
        let mut file = crate::private::open(
            path,
            crate::private::options().create(true).read(true).append(true),
        )
        .with_context(|| format!("cannot open the journal {}", path.display()))?;
        end_torn_line(&mut file)
            .with_context(|| format!("cannot repair the journal {}", path.display()))?;
        Ok(Writer { file, mirror: None, path: path.to_path_buf(), seq })
    }

    /// Also send every event to the team's stream (best effort: the local journal is the record).
    pub fn mirror_to(&mut self, mirror: super::shared::Mirror) {
        self.mirror = Some(mirror);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write one event and make it durable before returning.
    pub fn append(&mut self, event: Event) -> Result<()> {
        self.seq += 1;
        let record = Record { ts: Utc::now(), seq: self.seq, event };
        let mut line = serde_json::to_vec(&record).context("cannot encode a journal event")?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| incomplete(&self.path, &line, &e))?;
        if let Some(mirror) = &mut self.mirror {
            mirror.push(&line[..line.len() - 1]);
        }
        if matches!(record.event, Event::RunFinished { .. } | Event::Resumed { .. }) {
            super::index::mark_changed(&self.path);
        }
        fault::after_event();
        Ok(())
    }
}

/// What the operator must know when an event cannot be written: what happened (the event itself,
/// shown since the journal cannot hold it), that the journal is incomplete, and what to do.
fn incomplete(path: &Path, line: &[u8], e: &std::io::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot write the journal {} ({e}). THE JOURNAL IS INCOMPLETE: it ends before this event, which did happen:\n  {}\nThe run stops here and runs nothing more; the terminal above is the only record of the rest. Free space (or fix the file), then look at the run with `runbook show` and go on with `runbook resume` or `runbook rollback` (the last step it recorded as started is then in doubt).",
        path.display(),
        String::from_utf8_lossy(line).trim_end()
    )
}

/// Fault injection for the crash tests: `RUNBOOK_FAULT_KILL_AFTER_EVENT=N` makes the process
/// SIGKILL itself right after its Nth event of this process is on disk, the harshest crash
/// there is, at a point a test can name.
mod fault {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    static AFTER: OnceLock<Option<u64>> = OnceLock::new();
    static WRITTEN: AtomicU64 = AtomicU64::new(0);

    pub fn after_event() {
        let limit = AFTER.get_or_init(|| {
            std::env::var("RUNBOOK_FAULT_KILL_AFTER_EVENT").ok().and_then(|v| v.parse().ok())
        });
        let written = WRITTEN.fetch_add(1, Ordering::SeqCst) + 1;
        if *limit == Some(written) {
            // The process kills itself; nothing after this runs.
            let _ =
                nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// A crash may have left half a line at the end. End it, so the next event starts a line of its
/// own instead of being glued to the torn one and lost with it.
fn end_torn_line(file: &mut File) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    let mut last = [0u8; 1];
    if len > 0 && file.read_at(&mut last, len - 1)? == 1 && last[0] != b'\n' {
        file.write_all(b"\n")?;
        file.sync_data()?;
    }
    Ok(())
}
